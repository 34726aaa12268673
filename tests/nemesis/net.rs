//! The nemesis's network faults, as iptables rules in chains of our own:
//! per-replica source addresses (a nat SNAT rule per replica user) and
//! filter rules that drop or reset traffic between addresses.

use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Where the clients' connections come from (this process and the
/// `concoord call` subprocesses run as root, which no SNAT rule matches).
pub const CLIENT_HOST: &str = "127.0.0.1";

pub fn iptables(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether iptables can be used here; tries to install it once if missing.
pub fn iptables_available() -> Result<(), String> {
    static CHECK: Mutex<Option<Result<(), String>>> = Mutex::new(None);
    let mut check = CHECK.lock().unwrap();
    if let Some(r) = check.as_ref() {
        return r.clone();
    }
    let r = (|| {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root: cannot change iptables or run replicas as other users".into());
        }
        let present = || {
            Command::new("iptables")
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !present() {
            eprintln!("nemesis: iptables missing; trying `apt-get install -y iptables`");
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-q", "iptables"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !present() {
                return Err("iptables is not installed and could not be installed".into());
            }
        }
        // A harmless probe: can we make (and remove) a chain, and use the
        // matches the faults need (statistic for loss, REJECT for resets)?
        let probe = "CONCOORD_NEMESIS_PROBE";
        let _ = iptables(&["-F", probe]);
        let _ = iptables(&["-X", probe]);
        iptables(&["-N", probe]).map_err(|e| format!("iptables not permitted: {e}"))?;
        let matches = [
            vec!["-s", "127.0.0.254", "-m", "statistic", "--mode", "random"]
                .into_iter()
                .chain(["--probability", "0.1", "-j", "DROP"])
                .collect::<Vec<_>>(),
            vec!["-s", "127.0.0.254", "-p", "tcp", "-j", "REJECT"]
                .into_iter()
                .chain(["--reject-with", "tcp-reset"])
                .collect(),
        ];
        let usable = matches.iter().try_for_each(|m| {
            let mut args = vec!["-A", probe];
            args.extend(m.iter().copied());
            iptables(&args).map_err(|e| format!("iptables match not usable: {e}"))
        });
        let _ = iptables(&["-F", probe]);
        let _ = iptables(&["-X", probe]);
        usable?;
        let _ = iptables(&["-t", "nat", "-X", probe]);
        iptables(&["-t", "nat", "-N", probe])
            .map_err(|e| format!("iptables nat table not usable: {e}"))?;
        let _ = iptables(&["-t", "nat", "-X", probe]);
        Ok(())
    })();
    *check = Some(r.clone());
    r
}

/// Our chains: a filter chain jumped to from INPUT (the faults) and a nat
/// chain jumped to from POSTROUTING (each replica's source address).
/// Removed on drop, and at setup in case an earlier run died.
pub struct Net {
    chain: String,
    /// The fault rules in force (filter, in our chain), as rule specs.
    rules: Mutex<Vec<Vec<String>>>,
}

/// A rule spec's arguments, borrowed.
fn strs(spec: &[String]) -> Vec<&str> {
    spec.iter().map(String::as_str).collect()
}

impl Net {
    pub fn remove_chains(chain: &str) {
        while iptables(&["-D", "INPUT", "-j", chain]).is_ok() {}
        let _ = iptables(&["-F", chain]);
        let _ = iptables(&["-X", chain]);
        while iptables(&["-t", "nat", "-D", "POSTROUTING", "-j", chain]).is_ok() {}
        let _ = iptables(&["-t", "nat", "-F", chain]);
        let _ = iptables(&["-t", "nat", "-X", chain]);
    }

    /// Sets up `chain` with one SNAT rule per `(host, uid)`.
    pub fn setup(chain: &str, replicas: &[(String, u32)]) -> Result<Net, String> {
        iptables_available()?;
        Self::remove_chains(chain);
        let net = Net {
            chain: chain.to_string(),
            rules: Mutex::new(Vec::new()),
        };
        iptables(&["-N", chain])?;
        iptables(&["-I", "INPUT", "1", "-j", chain])?;
        iptables(&["-t", "nat", "-N", chain])?;
        iptables(&["-t", "nat", "-I", "POSTROUTING", "1", "-j", chain])?;
        for (host, uid) in replicas {
            let uid = uid.to_string();
            iptables(&[
                "-t",
                "nat",
                "-A",
                chain,
                "-o",
                "lo",
                "-m",
                "owner",
                "--uid-owner",
                &uid,
                "-j",
                "SNAT",
                "--to-source",
                host,
            ])?;
        }
        Ok(net)
    }

    /// Adds the filter rules `specs` (arguments after `-A CHAIN`) and
    /// returns them, to be passed to [`Net::remove`].
    pub fn add(&self, specs: Vec<Vec<String>>) -> Result<Vec<Vec<String>>, String> {
        let mut rules = self.rules.lock().unwrap();
        for spec in &specs {
            let mut args = vec!["-A", self.chain.as_str()];
            args.extend(strs(spec));
            iptables(&args)?;
            rules.push(spec.clone());
        }
        Ok(specs)
    }

    /// Removes rules added by [`Net::add`].
    pub fn remove(&self, specs: &[Vec<String>]) {
        let mut rules = self.rules.lock().unwrap();
        for spec in specs {
            if let Some(k) = rules.iter().position(|r| r == spec) {
                let mut args = vec!["-D", self.chain.as_str()];
                args.extend(strs(spec));
                iptables(&args).unwrap_or_else(|e| panic!("cannot remove a fault rule: {e}"));
                rules.remove(k);
            }
        }
    }

    pub fn heal_all(&self) {
        let _ = iptables(&["-F", &self.chain]);
        self.rules.lock().unwrap().clear();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        Self::remove_chains(&self.chain);
    }
}

fn spec(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Packets from `s` to `d` dropped.
pub fn drop_rule(s: &str, d: &str) -> Vec<String> {
    spec(&["-s", s, "-d", d, "-j", "DROP"])
}

/// Every host in `a` cut off from every host in `b`, both ways.
pub fn partition(a: &[String], b: &[String]) -> Vec<Vec<String>> {
    let mut rules = Vec::new();
    for x in a {
        for y in b {
            rules.push(drop_rule(x, y));
            rules.push(drop_rule(y, x));
        }
    }
    rules
}

/// Packets from every host in `from` to every host in `to` dropped; the
/// other direction delivered.
pub fn one_way(from: &[String], to: &[String]) -> Vec<Vec<String>> {
    let mut rules = Vec::new();
    for x in from {
        for y in to {
            rules.push(drop_rule(x, y));
        }
    }
    rules
}

/// Each packet between any two of `hosts` dropped with probability `p`.
pub fn loss(hosts: &[String], p: f64) -> Vec<Vec<String>> {
    let p = format!("{p:.2}");
    let mut rules = Vec::new();
    for x in hosts {
        for y in hosts {
            if x != y {
                rules.push(spec(&[
                    "-s",
                    x,
                    "-d",
                    y,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ]));
            }
        }
    }
    rules
}

/// Every client connection to `host` reset (a TCP RST answers every
/// segment, either way), while peers still reach it. RSTs themselves pass
/// (the ones the rules send, too): each end learns its connection is gone.
pub fn cut_clients(host: &str) -> Vec<Vec<String>> {
    [(CLIENT_HOST, host), (host, CLIENT_HOST)]
        .iter()
        .map(|(s, d)| {
            spec(&[
                "-s",
                s,
                "-d",
                d,
                "-p",
                "tcp",
                "!",
                "--tcp-flags",
                "RST",
                "RST",
                "-j",
                "REJECT",
                "--reject-with",
                "tcp-reset",
            ])
        })
        .collect()
}
