//! Operating concoord: the network logger and the metrics endpoint, on the
//! real binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_concoord");
const WAIT: Duration = Duration::from_secs(20);

/// Children killed and reaped however the test ends.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `concoord ARGS` and returns it with a channel of its stdout lines.
fn spawn(procs: &mut Procs, args: &[&str]) -> (usize, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the concoord binary runs");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    procs.0.push(child);
    (procs.0.len() - 1, rx)
}

fn listening_addr(rx: &mpsc::Receiver<String>) -> String {
    let line = rx.recv_timeout(WAIT).expect("a `listening on` line");
    line.strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string()
}

fn call(replicas: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["call", "-r", replicas, "--timeout", "20"])
        .args(args)
        .output()
        .expect("concoord call runs");
    assert!(
        out.status.success(),
        "call {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until `rx` has produced lines satisfying `done`; returns them all.
fn collect_until(rx: &mpsc::Receiver<String>, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut lines = Vec::new();
    while !done(&lines) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("gave up waiting; got {lines:#?}"),
        }
    }
    lines
}

#[test]
fn logdaemon_receives_records_from_both_replicas_and_its_death_does_not_stop_them() {
    let mut procs = Procs(Vec::new());
    let (daemon, daemon_out) = spawn(&mut procs, &["logdaemon", "-p", "0"]);
    let logger = listening_addr(&daemon_out);
    let (_, r0) = spawn(
        &mut procs,
        &["replica", "-o", "Counter", "-p", "0", "-l", &logger],
    );
    let a0 = listening_addr(&r0);
    let (_, r1) = spawn(
        &mut procs,
        &[
            "replica", "-o", "Counter", "-p", "0", "-b", &a0, "-l", &logger,
        ],
    );
    let a1 = listening_addr(&r1);
    let both = format!("{a0},{a1}");
    call(&both, &["increment"]);
    let lines = collect_until(&daemon_out, |lines| {
        let from = |a: &str| {
            lines
                .iter()
                .any(|l| l.starts_with(&format!("[replica {a}]")))
        };
        from(&a0) && from(&a1)
    });
    assert!(
        lines.iter().any(|l| l.contains("leading with ballot")),
        "the leader's election is logged: {lines:#?}"
    );

    // The logger dies; the replicas keep serving.
    let _ = procs.0[daemon].kill();
    let _ = procs.0[daemon].wait();
    for _ in 0..5 {
        call(&both, &["increment"]);
    }
    assert_eq!(call(&both, &["getvalue"]), "6");
}

fn scrape(addr: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("the metrics endpoint listens");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.0 200"), "{body}");
    body
}

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
}

#[test]
fn metrics_counters_move_with_the_calls_made() {
    let mut procs = Procs(Vec::new());
    let (_, r0) = spawn(
        &mut procs,
        &[
            "replica",
            "-o",
            "Counter",
            "-p",
            "0",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let addr = listening_addr(&r0);
    let metrics_line = r0.recv_timeout(WAIT).expect("a metrics line");
    let metrics_addr = metrics_line
        .strip_prefix("metrics on http://")
        .and_then(|s| s.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("unexpected line {metrics_line:?}"))
        .to_string();
    call(&addr, &["increment"]);
    let before = scrape(&metrics_addr);
    for _ in 0..10 {
        call(&addr, &["increment"]);
    }
    let after = scrape(&metrics_addr);
    let grew = |name: &str, by: f64| {
        let (b, a) = (metric(&before, name), metric(&after, name));
        assert!(a - b >= by, "{name}: {b} -> {a}, expected +{by}");
    };
    grew("concoord_commands_committed_total", 10.0);
    grew("concoord_slots_decided_total", 10.0);
    grew("concoord_commit_latency_seconds_count", 10.0);
    grew("concoord_batch_commands_count", 10.0);
    assert_eq!(metric(&after, "concoord_is_leader"), 1.0);
    assert!(metric(&after, "concoord_leader_changes_total") >= 1.0);
}
