//! The replica's HTTP endpoint (`--http`) on the real binary: `/health`
//! follows whether a replica hears a leader (503 while the other two are
//! SIGSTOPped, 200 again once they run), `/status` and `/metrics` parse and
//! agree with `concoord status`, unknown paths are 404 and other methods
//! 405, the status page shows in a headless browser what `concoord status`
//! shows, and `concoord status` without `--json` prints a table.
//! Every wait is a bounded poll; every process is reaped by the harness.

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{run_cli, spawn_replica, unused_addr, Cluster, FORM_TIMEOUT};

/// One HTTP request or `concoord status` run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `/health` may take to follow a partition or its healing (the
/// election timeout is 0.5 s; a healed group may hold an election first).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the headless browser may run.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
/// Between two polls.
const POLL: Duration = Duration::from_millis(50);

/// A response: status code and body.
struct Response {
    code: u16,
    body: String,
}

/// `METHOD path` over HTTP/1.1 (`Connection: close`), read to the end.
fn http(addr: &str, method: &str, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr)
        .unwrap_or_else(|e| panic!("the HTTP endpoint {addr} accepts connections: {e}"));
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .expect("a read timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("the request is written");
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: reading the response: {e}"));
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no header end in {raw:?}"));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status code in {head:?}"));
    Response {
        code,
        body: body.to_string(),
    }
}

/// Polls `GET /health` until it answers `code`; returns the body.
fn wait_health(addr: &str, code: u16, why: &str) -> String {
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    loop {
        let r = http(addr, "GET", "/health");
        if r.code == code {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: /health on {addr} still {} after {HEALTH_TIMEOUT:?} (wanted {code}): {}",
            r.code,
            r.body
        );
        std::thread::sleep(POLL);
    }
}

/// `concoord status --json -r ADDRS`, parsed.
fn status_json(addrs: &str) -> Vec<Value> {
    let out = run_cli(&["status", "--json", "-r", addrs], None, REQUEST_TIMEOUT);
    assert_eq!(out.code(), Some(0), "status failed: {}", out.stderr);
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", out.stdout))
}

/// A group of three: replica 0 founds it (no HTTP), replicas 1 and 2 join
/// it with `--http` on the returned addresses.
fn group_with_http() -> (Cluster, Vec<String>) {
    let mut cluster = Cluster::start(1);
    let founder = cluster.addr(0).to_string();
    let mut http_addrs = Vec::new();
    for _ in 1..3 {
        let http_addr = unused_addr();
        let args: Vec<String> = [
            "-o", "Counter", "-p", "0", "-b", &founder, "--http", &http_addr,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let p = spawn_replica(&args).unwrap_or_else(|f| {
            panic!(
                "a replica with --http did not start ({:?}): {}",
                f.status, f.stderr
            )
        });
        cluster.procs.push(p);
        http_addrs.push(http_addr);
    }
    cluster.wait_formed(FORM_TIMEOUT);
    (cluster, http_addrs)
}

#[test]
fn health_follows_the_leader_and_status_and_metrics_parse() {
    let (mut cluster, http_addrs) = group_with_http();
    // Cut off a follower with HTTP: SIGSTOP the other two (whoever leads).
    let leader = cluster.leader();
    let watched = if leader == 1 { 2 } else { 1 };
    let http_addr = &http_addrs[watched - 1];
    let body = wait_health(http_addr, 200, "a formed group");
    assert!(body.starts_with("ok: "), "{body}");

    // /status: the entry `concoord status --json` prints for it.
    let r = http(http_addr, "GET", "/status");
    assert_eq!(r.code, 200, "{}", r.body);
    let mut from_http: Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("/status is not JSON ({e}): {}", r.body));
    let mut from_cli = status_json(cluster.addr(watched)).remove(0);
    // What moves between two reads: the uptime, and the clients (the
    // status command's own connection counts as one).
    for entry in [&mut from_http, &mut from_cli] {
        let entry = entry.as_object_mut().expect("an object");
        for moving in ["uptime_s", "clients"] {
            let value = entry.remove(moving);
            assert!(value.is_some_and(|v| v.is_u64()), "{moving} in {entry:?}");
        }
    }
    assert_eq!(from_http, from_cli, "/status and concoord status --json");

    // /metrics: Prometheus text, every sample a name and a number.
    let r = http(http_addr, "GET", "/metrics");
    assert_eq!(r.code, 200);
    let mut samples = 0;
    for line in r
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not `name value`: {line:?}"));
        assert!(name.starts_with("concoord_"), "{line:?}");
        assert!(value.parse::<f64>().is_ok(), "not a number: {line:?}");
        samples += 1;
    }
    assert!(samples > 10, "{samples} samples in\n{}", r.body);
    assert!(r.body.contains("\nconcoord_is_leader 0\n"), "{}", r.body);

    // Wrong paths and methods.
    assert_eq!(http(http_addr, "GET", "/nope").code, 404);
    assert_eq!(http(http_addr, "POST", "/status").code, 405);
    assert_eq!(http(http_addr, "DELETE", "/health").code, 405);

    // Cut off: the other two stop; this one hears no leader.
    let others: Vec<usize> = (0..3).filter(|&i| i != watched).collect();
    for &i in &others {
        cluster.stop(i);
    }
    let body = wait_health(http_addr, 503, "the other two stopped");
    assert!(body.starts_with("unavailable: "), "{body}");
    // Healed: a leader is heard again.
    for &i in &others {
        cluster.cont(i);
    }
    wait_health(http_addr, 200, "the other two running again");

    // A leader cut off from the rest (check-quorum): with the founder
    // paused, one of the two replicas with HTTP leads; pause the other too.
    cluster.stop(0);
    let leader = cluster.leader();
    assert!(leader == 1 || leader == 2, "replica {leader} leads");
    let leader_http = &http_addrs[leader - 1];
    wait_health(leader_http, 200, "the leader of the two running replicas");
    let other = 3 - leader;
    cluster.stop(other);
    let body = wait_health(leader_http, 503, "the leader's followers paused");
    assert!(body.starts_with("unavailable: "), "{body}");
    // /health turns 503 once no majority answered for an election timeout;
    // a heartbeat interval later the leader steps down.
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    loop {
        let metrics = http(leader_http, "GET", "/metrics").body;
        if metrics.contains("\nconcoord_is_leader 0\n") {
            assert!(
                metrics.contains("\nconcoord_leader_step_downs_total 1\n"),
                "it stopped leading by stepping down, once:\n{metrics}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the isolated leader still leads after {HEALTH_TIMEOUT:?}:\n{metrics}"
        );
        std::thread::sleep(POLL);
    }
    let body = wait_health(leader_http, 503, "the isolated leader stepped down");
    assert!(body.contains("no heartbeat from a leader"), "{body}");
    cluster.cont(other);
    wait_health(leader_http, 200, "a majority running again");
    cluster.cont(0);
    wait_health(leader_http, 200, "all three running again");
}

#[test]
fn status_prints_a_table_without_json() {
    let cluster = Cluster::start(3);
    let dead = unused_addr();
    let addrs = format!("{},{dead}", cluster.addrs());
    let entries = status_json(&cluster.addrs());
    let out = run_cli(&["status", "-r", &addrs], None, REQUEST_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ADDRESS", "ROLE", "LEADER", "BALLOT", "EXECUTED", "SNAPSHOT", "CLIENTS", "SESSIONS",
            "PARKED"
        ],
        "{}",
        out.stdout
    );
    for (i, entry) in entries.iter().enumerate() {
        let row: Vec<&str> = lines[1 + i].split_whitespace().collect();
        assert_eq!(row.len(), header.len(), "{}", out.stdout);
        assert_eq!(row[0], entry["address"], "{}", out.stdout);
        assert_eq!(row[1], entry["role"], "{}", out.stdout);
        assert_eq!(row[2], entry["leader"], "{}", out.stdout);
        assert!(
            row[3].starts_with(&format!("{}.", entry["ballot"][0])),
            "{}",
            out.stdout
        );
        for (col, key) in [(5, "snapshot_slot"), (7, "sessions"), (8, "parked")] {
            assert_eq!(row[col], entry[key].to_string(), "{key}: {}", out.stdout);
        }
    }
    let dead_row: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(
        dead_row[..2],
        [dead.as_str(), "unreachable"],
        "{}",
        out.stdout
    );
    assert!(
        lines[5].starts_with(&format!("{dead}: ")),
        "the error follows the table: {}",
        out.stdout
    );
}

/// A Chromium (or Chrome) on the PATH, if any.
fn find_browser() -> Option<&'static str> {
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .into_iter()
    .find(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The text of the element with `id` in a dumped DOM (tags inside stripped).
fn element_text(dom: &str, id: &str) -> String {
    let open = format!("id=\"{id}\"");
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let rest = &dom[start..];
    let rest = &rest[rest.find('>').expect("the tag ends") + 1..];
    let mut text = String::new();
    let mut depth = 0usize;
    let mut in_tag = false;
    for (i, c) in rest.char_indices() {
        match c {
            '<' => {
                in_tag = true;
                if rest[i..].starts_with("</") {
                    if depth == 0 {
                        break;
                    }
                    depth -= 1;
                } else {
                    depth += 1;
                }
                text.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn status_page_in_a_headless_browser_shows_what_status_shows() {
    let Some(browser) = find_browser() else {
        eprintln!(
            "skipped: no chromium, chromium-browser or google-chrome on the PATH \
             (apt-get install chromium to run this test)"
        );
        return;
    };
    let (cluster, http_addrs) = group_with_http();
    let entry = status_json(cluster.addr(1)).remove(0);
    let profile = support::TempDir::new("status-page-browser");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            // Run the page's script (its first fetches and a few refreshes).
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{}/", http_addrs[0]))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the browser starts");
    let mut pipe = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = pipe.read_to_string(&mut dom);
        dom
    });
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{browser} --dump-dom did not finish within {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(POLL);
    }
    let dom = reader.join().expect("the reader thread");
    let shown = |id: &str| element_text(&dom, id);
    assert!(
        shown("updated").starts_with("updated "),
        "the page's script has not refreshed it: {:?}\n{dom}",
        shown("updated")
    );
    let text = |v: &Value| v.as_str().expect("a string").to_string();
    assert_eq!(shown("address"), text(&entry["address"]));
    assert_eq!(shown("role"), text(&entry["role"]));
    assert_eq!(shown("leader"), text(&entry["leader"]));
    assert_eq!(
        shown("ballot"),
        format!("{}.{}", entry["ballot"][0], text(&entry["ballot"][1]))
    );
    let members = shown("members");
    for m in entry["members"].as_array().expect("members") {
        assert!(members.contains(&text(m)), "{m} not in {members:?}");
    }
    assert!(
        members.contains(&format!("{} (leader)", text(&entry["leader"]))),
        "{members:?}"
    );
    assert!(
        shown("state").starts_with("ok: "),
        "health on the page: {:?}",
        shown("state")
    );
    for key in ["parked", "sessions", "executed_slot", "snapshot_slot"] {
        assert_eq!(shown(key), entry[key].to_string(), "{key}");
    }
}
