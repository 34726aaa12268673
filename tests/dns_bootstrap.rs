//! DNS bootstrap on the real binary: one host name stands for three
//! replicas on three loopback addresses (the shape of a Kubernetes headless
//! service), through /etc/hosts lines for one name (glibc returns them all
//! when /etc/host.conf says `multi on`). Two replicas join with `-b
//! NAME:PORT`; after the first address the name resolves to dies (stopped:
//! it accepts connections and answers nothing), a client that knows only
//! the name still finds the group. (Without the client's own resolution,
//! connecting to the name as one address, this test fails: every attempt
//! lands on the stopped replica.)
//!
//! The test adds its lines to /etc/hosts and removes them (only them) on
//! every way out; it is skipped, saying why, when it cannot write the file
//! or the name does not resolve to all three addresses.

mod support;

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};
use support::{run_cli, spawn_replica, Proc, FORM_TIMEOUT};

const HOSTS: &str = "/etc/hosts";
/// One `concoord` command.
const CLI_TIMEOUT: Duration = Duration::from_secs(40);
const POLL: Duration = Duration::from_millis(50);

/// Lines `IP NAME` in /etc/hosts, removed again on drop.
struct HostsLines {
    name: String,
}

impl HostsLines {
    fn add(name: &str, ips: &[&str]) -> std::io::Result<HostsLines> {
        let mut hosts = std::fs::read_to_string(HOSTS)?;
        if !hosts.ends_with('\n') && !hosts.is_empty() {
            hosts.push('\n');
        }
        for ip in ips {
            hosts.push_str(&format!("{ip} {name}\n"));
        }
        // Written in place: /etc/hosts is often a bind mount (no rename).
        std::fs::write(HOSTS, hosts)?;
        Ok(HostsLines {
            name: name.to_string(),
        })
    }
}

impl Drop for HostsLines {
    fn drop(&mut self) {
        let Ok(hosts) = std::fs::read_to_string(HOSTS) else {
            eprintln!("cannot read {HOSTS} to remove the {} lines", self.name);
            return;
        };
        let kept: String = hosts
            .lines()
            .filter(|l| l.split_whitespace().nth(1) != Some(self.name.as_str()))
            .map(|l| format!("{l}\n"))
            .collect();
        if let Err(e) = std::fs::write(HOSTS, kept) {
            eprintln!("cannot remove the {} lines from {HOSTS}: {e}", self.name);
        }
    }
}

/// Replica processes, killed and reaped however the test ends.
struct Replicas(Vec<Proc>);

impl Drop for Replicas {
    fn drop(&mut self) {
        for p in &mut self.0 {
            if std::thread::panicking() {
                eprintln!("==== {} ====\n{}", p.addr, p.stderr_tail());
            }
            p.kill_and_reap();
        }
    }
}

/// A port free on all of `ips` right now.
fn port_free_on(ips: &[&str]) -> u16 {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind((ips[0], 0)).expect("bind a loopback alias");
        let port = first.local_addr().expect("local addr").port();
        let rest: Vec<_> = ips[1..]
            .iter()
            .map(|ip| std::net::TcpListener::bind((*ip, port)))
            .collect();
        if rest.iter().all(Result::is_ok) {
            return port;
        }
    }
    panic!("no port free on all of {ips:?} in 50 tries");
}

fn replica(ip: &str, port: u16, bootstrap: Option<&str>) -> Proc {
    let mut args: Vec<String> = ["-o", "Counter", "-a", ip, "-p", &port.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(b) = bootstrap {
        args.extend(["-b".to_string(), b.to_string()]);
    }
    spawn_replica(&args).unwrap_or_else(|f| {
        panic!(
            "replica {ip}:{port} did not start ({:?}): {}",
            f.status, f.stderr
        )
    })
}

/// `concoord status --json` of `addrs`, parsed.
fn statuses(addrs: &str) -> Vec<serde_json::Value> {
    let out = run_cli(&["status", "--json", "-r", addrs], None, CLI_TIMEOUT);
    assert_eq!(out.code(), Some(0), "status: {}", out.stderr);
    serde_json::from_str(out.stdout.trim()).expect("status --json is JSON")
}

#[test]
fn a_client_that_knows_only_the_name_finds_the_group_after_the_first_address_dies() {
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let name = format!("concoord-dns-test-{}", std::process::id());
    let hosts = match HostsLines::add(&name, &ips) {
        Ok(h) => h,
        Err(e) => {
            eprintln!(
                "skipped: cannot add lines to {HOSTS} ({e}); run as root to test DNS bootstrap"
            );
            return;
        }
    };
    let port = port_free_on(&ips);
    let service = format!("{name}:{port}");
    let resolved: Vec<String> = match service.to_socket_addrs() {
        Ok(addrs) => addrs.map(|a| a.to_string()).collect(),
        Err(e) => {
            eprintln!("skipped: {service} does not resolve ({e})");
            return;
        }
    };
    let mut wanted: Vec<String> = ips.iter().map(|ip| format!("{ip}:{port}")).collect();
    let mut sorted = resolved.clone();
    sorted.sort();
    if sorted != wanted {
        eprintln!(
            "skipped: {name} resolves to {resolved:?}, not to all of {ips:?} \
             (multi-address lookup of /etc/hosts needs `multi on` in /etc/host.conf)"
        );
        return;
    }
    wanted.sort();

    // The first address the name resolves to founds the group; the other
    // two join knowing only the name (join_group resolves it, skips itself).
    let first_ip = resolved[0].rsplit_once(':').expect("ip:port").0.to_string();
    let mut group = Replicas(vec![replica(&first_ip, port, None)]);
    for addr in &resolved[1..] {
        let ip = addr.rsplit_once(':').expect("ip:port").0;
        group.0.push(replica(ip, port, Some(&service)));
    }
    let deadline = Instant::now() + FORM_TIMEOUT;
    loop {
        let all = statuses(&resolved.join(","));
        let formed = all.iter().all(|s| {
            let mut members: Vec<String> = s["members"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(|a| a.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            members.sort();
            members == wanted && s["role"] != "joining" && s["leader"].is_string()
        });
        if formed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not form through {service} within {FORM_TIMEOUT:?}: {all:?}"
        );
        std::thread::sleep(POLL);
    }

    // The first address dies the hard way: SIGSTOPped, it still accepts
    // connections (the kernel does) and answers nothing, so a client that
    // connected to the name as one address would wait on it for ever; one
    // that knows only the name must still get in through the others.
    // SAFETY: kill(2) on our own unreaped child.
    let rc = unsafe { libc::kill(group.0[0].pid(), libc::SIGSTOP) };
    assert_eq!(rc, 0, "SIGSTOP the first replica");
    for _ in 0..3 {
        let out = run_cli(
            &["call", "-r", &service, "--timeout", "30", "increment"],
            None,
            CLI_TIMEOUT,
        );
        assert_eq!(out.code(), Some(0), "call via {service}: {}", out.stderr);
    }
    let out = run_cli(
        &["call", "-r", &service, "--timeout", "30", "getvalue"],
        None,
        CLI_TIMEOUT,
    );
    assert_eq!(
        out.code(),
        Some(0),
        "getvalue via {service}: {}",
        out.stderr
    );
    assert_eq!(out.stdout.trim(), "3", "the value after three increments");
    drop(group);
    drop(hosts);
}
