//! The threading scenarios through `concoord shell` (issue 6), as users script
//! them: a 3-replica group of `concoord replica` processes, and `concoord
//! shell` sessions driven line by line over stdin/stdout. Every child process
//! is killed and reaped when its guard drops, also when a test fails.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_concoord");
const PATIENCE: Duration = Duration::from_secs(20);

/// A child process that is killed and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a child's stdout lines on a thread, so a test can wait with a timeout.
fn line_reader(stdout: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

struct Group {
    replicas: Vec<Reaped>,
    addrs: Vec<String>,
}

impl Group {
    /// `concoord replica -o OBJECT -p 0 [--init ...]`, two more with `-b`, then
    /// waits (with `concoord status`) until all three have formed the group.
    fn start(object: &str, init: &[&str]) -> Group {
        let mut group = Group {
            replicas: Vec::new(),
            addrs: Vec::new(),
        };
        for i in 0..3 {
            let mut cmd = Command::new(BIN);
            cmd.args(["replica", "-o", object, "-p", "0"]);
            if i > 0 {
                cmd.args(["-b", &group.addrs[0]]);
            }
            // Last: `--init` takes every following argument, flags included.
            if !init.is_empty() {
                cmd.arg("--init").args(init);
            }
            let mut child = Reaped(
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start concoord replica"),
            );
            let lines = line_reader(child.0.stdout.take().expect("piped stdout"));
            group.replicas.push(child);
            let first = lines
                .recv_timeout(PATIENCE)
                .expect("the replica prints its address");
            let addr = first
                .strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
                .to_string();
            group.addrs.push(addr);
        }
        group.until("the group has formed", |statuses| {
            let leaders = statuses.iter().filter(|s| s["role"] == "leader").count();
            leaders == 1
                && statuses.iter().all(|s| {
                    s["members"].as_array().map(Vec::len) == Some(3) && s["role"] != "joining"
                })
        });
        group
    }

    fn bootstrap(&self) -> String {
        self.addrs.join(",")
    }

    /// `concoord status -r ADDRS`, parsed.
    fn status(&self) -> Vec<Value> {
        let out = Command::new(BIN)
            .args(["status", "--json", "-r", &self.bootstrap()])
            .stderr(Stdio::null())
            .output()
            .expect("run concoord status");
        assert!(out.status.success(), "concoord status failed");
        let v: Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
        v.as_array().expect("status is an array").clone()
    }

    /// Polls `concoord status` until `ok` holds for the statuses of all three.
    fn until(&self, what: &str, ok: impl Fn(&[Value]) -> bool) {
        let start = Instant::now();
        loop {
            let statuses = self.status();
            if statuses.iter().all(|s| s.get("error").is_none()) && ok(&statuses) {
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "gave up waiting until {what}: {statuses:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_parked(&self, n: u64) {
        self.until(&format!("{n} call(s) are parked"), |statuses| {
            statuses.iter().all(|s| s["parked"] == n)
        });
    }

    fn shell(&self) -> Shell {
        self.shell_with(&[])
    }

    /// A shell with extra flags (e.g. `--session-ttl 2`).
    fn shell_with(&self, extra: &[&str]) -> Shell {
        let mut child = Reaped(
            Command::new(BIN)
                .args(["shell", "-r", &self.bootstrap(), "--timeout", "15"])
                .args(extra)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start concoord shell"),
        );
        let stdin = child.0.stdin.take().expect("piped stdin");
        let lines = line_reader(child.0.stdout.take().expect("piped stdout"));
        let events = line_reader(child.0.stderr.take().expect("piped stderr"));
        Shell {
            stdin,
            lines,
            events,
            child,
        }
    }

    /// Live sessions as each replica reports them.
    fn sessions(&self) -> Vec<u64> {
        self.status()
            .iter()
            .map(|s| s["sessions"].as_u64().unwrap_or(0))
            .collect()
    }
}

/// One `concoord shell` session.
struct Shell {
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// What it says on stderr (session events).
    events: mpsc::Receiver<String>,
    child: Reaped,
}

impl Shell {
    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to the shell");
        self.stdin.flush().expect("flush the shell's stdin");
    }

    fn reply(&mut self, what: &str) -> Value {
        let line = self
            .lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no reply to {what:?}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {line:?} is not JSON: {e}"))
    }

    /// The next session event the shell reports on stderr (log lines skipped).
    fn event(&mut self, what: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .events
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the shell never reported {what}"));
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                return event["event"].clone();
            }
        }
    }

    /// Sends one line and returns its reply.
    fn call(&mut self, line: &str) -> Value {
        self.send(line);
        self.reply(line)
    }

    /// Sends one line and checks the error's kind (and message, if given).
    fn error(&mut self, line: &str, kind: &str, message: Option<&str>) {
        let reply = self.call(line);
        assert_eq!(reply["error"]["kind"], kind, "{line}: {reply}");
        if let Some(message) = message {
            assert_eq!(reply["error"]["message"], message, "{line}: {reply}");
        }
    }

    fn nothing_yet(&self) -> bool {
        self.lines.try_recv().is_err()
    }
}

#[test]
fn lock_through_concoord_shell() {
    let group = Group::start("Lock", &[]);
    let mut a = group.shell();
    let mut b = group.shell();

    assert_eq!(a.call("locked"), json!(false));
    assert_eq!(a.call("acquire"), json!(true));
    assert_eq!(b.call("locked"), json!(true));
    assert_eq!(b.call("acquire false"), json!(false));
    assert_eq!(b.call("acquire true 0"), json!(false));
    assert_eq!(a.call("release"), Value::Null);
    a.error("release", "RuntimeError", Some("release unlocked lock"));
    // The session goes on after errors, whatever their kind.
    a.error(
        "acquire false 1",
        "ValueError",
        Some("can't specify a timeout for a non-blocking call"),
    );
    a.error("frobnicate", "UnknownMethod", None);
    a.error("acquire {oops", "BadArguments", None);
    assert_eq!(a.call("locked"), json!(false));

    // A blocking acquire in B returns true only after A releases.
    assert_eq!(a.call("acquire"), json!(true));
    b.send("acquire");
    group.wait_parked(1);
    assert!(
        b.nothing_yet(),
        "B's acquire returned while A held the lock"
    );
    assert_eq!(a.call("acquire false"), json!(false));
    assert!(b.nothing_yet());
    assert_eq!(a.call("release"), Value::Null);
    assert_eq!(b.reply("the blocked acquire"), json!(true));
    assert_eq!(a.call("locked"), json!(true), "handed to B");
    assert_eq!(a.call("acquire false"), json!(false));
    assert_eq!(b.call("release"), Value::Null);
    assert_eq!(a.call("locked"), json!(false));
    group.wait_parked(0);
}

#[test]
fn semaphore_and_rlock_through_concoord_shell() {
    let sem = Group::start("Semaphore", &["2"]);
    let mut a = sem.shell();
    let mut b = sem.shell();
    assert_eq!(a.call("acquire"), json!(true));
    assert_eq!(b.call("acquire"), json!(true));
    assert_eq!(b.call("acquire false"), json!(false));
    a.error("release 0", "ValueError", Some("n must be one or more"));
    b.send("acquire");
    sem.wait_parked(1);
    assert!(b.nothing_yet());
    // The seed's `>>> s`: the object describes itself, read-only.
    assert_eq!(
        a.call("concoord_str"),
        json!("<Semaphore: value=0, waiting=1>")
    );
    assert_eq!(a.call("release"), Value::Null);
    assert_eq!(b.reply("the blocked acquire"), json!(true));
    assert_eq!(a.call("acquire false"), json!(false), "2 permits, 2 held");
    assert_eq!(b.call("release 2"), Value::Null);
    assert_eq!(a.call("acquire false"), json!(true));
    drop(sem);

    let rlock = Group::start("RLock", &[]);
    let mut a = rlock.shell();
    let mut b = rlock.shell();
    assert_eq!(a.call("acquire"), json!(true));
    assert_eq!(a.call("acquire"), json!(true));
    b.error(
        "release",
        "RuntimeError",
        Some("cannot release un-acquired lock"),
    );
    assert_eq!(a.call("release"), Value::Null);
    assert_eq!(
        b.call("acquire false"),
        json!(false),
        "one level still held"
    );
    assert_eq!(a.call("release"), Value::Null);
    assert_eq!(b.call("acquire false"), json!(true));
    a.error(
        "release",
        "RuntimeError",
        Some("cannot release un-acquired lock"),
    );
}

/// Python: `lock.acquire(True, 0.3)` on a held lock returns False after about
/// 0.3 s, and the lock stays with its owner. Through the command line the
/// timeout argument reaches the object, which parks the call, but the CLI
/// never sends the replicated cancel (it calls with `cancel_at_deadline =
/// false`): the call blocks until `--timeout`, fails `Unavailable`, and stays
/// parked, so the next release hands the lock to the abandoned call and the
/// lock is held by nobody alive, for good.
#[test]

fn timed_acquire_through_concoord_shell_returns_false_and_leaks_nothing() {
    let group = Group::start("Lock", &[]);
    let mut a = group.shell();
    let mut b = group.shell();
    assert_eq!(a.call("acquire"), json!(true));
    // Python's answer to a timed-out acquire; what the object did is checked
    // below (its cancel was replicated: nothing stays parked, nothing leaks).
    assert_eq!(b.call("acquire true 0.3"), json!(false));
    group.wait_parked(0);
    assert_eq!(a.call("release"), Value::Null);
    assert_eq!(b.call("locked"), json!(false), "the timed-out call took it");
    group.wait_parked(0);
}

/// Named objects from the command line: shell lines `@NAME[:TYPE] METHOD`,
/// `concoord call --object NAME --type TYPE`, and `concoord objects`.
#[test]
fn named_objects_through_the_command_line() {
    let group = Group::start("Counter", &[]);
    let mut a = group.shell();
    let mut b = group.shell();
    assert_eq!(a.call("@orders-db:Lock acquire"), json!(true));
    a.error("@orders-db:Counter increment", "WrongType", None);
    assert_eq!(a.call("@jobs:Counter increment"), Value::Null);
    assert_eq!(a.call("@jobs getvalue"), json!(1), "a name keeps its type");
    assert_eq!(
        a.call("getvalue"),
        json!(0),
        "a plain line is the default object"
    );
    a.error("@nosuch getvalue", "NoSuchObject", None);
    a.error("@jobs", "BadArguments", None);
    b.send("@orders-db:Lock acquire");
    group.wait_parked(1);
    let out = Command::new(BIN)
        .args(["objects", "-r", &group.bootstrap()])
        .stderr(Stdio::null())
        .output()
        .expect("run concoord objects");
    assert!(out.status.success());
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        listed,
        json!([
            {"name": "jobs", "type": "Counter", "parked": 0},
            {"name": "orders-db", "type": "Lock", "parked": 1},
        ])
    );
    // Deleting the lock answers the parked acquire with Deleted.
    assert_eq!(a.call("@orders-db concoord_delete"), Value::Null);
    let reply = b.reply("the parked acquire");
    assert_eq!(reply["error"]["kind"], "Deleted", "{reply}");
    // The shell prints a fenced acquire's token, and the holder's token.
    let token = a.call("@fenced:Lock acquire_fenced");
    assert!(token.is_u64(), "{token}");
    assert_eq!(a.call("@fenced fence"), token);
    assert_eq!(b.call("@fenced acquire_fenced false"), Value::Null);
    let call = |extra: &[&str]| {
        Command::new(BIN)
            .args(["call", "-r", &group.bootstrap()])
            .args(extra)
            .output()
            .expect("run concoord call")
    };
    let out = call(&["--object", "jobs", "--type", "Counter", "increment"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = call(&["--object", "jobs", "getvalue"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    let out = call(&["--object", "jobs", "--type", "Lock", "acquire"]);
    assert_eq!(out.status.code(), Some(1));
    let e: Value = serde_json::from_slice(&out.stderr).expect("a JSON error");
    assert_eq!(e["error"]["kind"], "WrongType");
    // --type needs --object: a clear usage error, exit 2.
    let out = call(&["--type", "Lock", "acquire"]);
    assert_eq!(out.status.code(), Some(2));
}

fn signal(shell: &Shell, sig: libc::c_int) {
    let pid = shell.child.0.id() as libc::pid_t;
    // SAFETY: signalling a child process this test started and still owns.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "signal {sig} to {pid}");
}

/// A crashed client's lock comes back: the holder (a shell with a 2 s
/// session) is killed with kill -9 while another waits; once its session
/// expires the waiter is granted, with a higher fencing token.
#[test]
fn a_killed_holders_lock_goes_to_the_waiter_when_its_session_expires() {
    let group = Group::start("Lock", &[]);
    let mut holder = group.shell_with(&["--session-ttl", "2"]);
    let mut waiter = group.shell_with(&["--session-ttl", "2"]);
    let first = holder.call("acquire_fenced");
    assert!(first.is_u64(), "{first}");
    waiter.send("acquire_fenced");
    group.wait_parked(1);
    group.until("both sessions are open", |s| {
        s.iter().all(|s| s["sessions"] == 2)
    });
    signal(&holder, libc::SIGKILL);
    let granted = waiter.reply("the waiting acquire");
    assert!(
        granted.as_u64() > first.as_u64(),
        "granted {granted} after {first}"
    );
    group.until("the dead session is gone", |s| {
        s.iter().all(|s| s["sessions"] == 1)
    });
    // The waiter holds it now: its fence is its token.
    assert_eq!(waiter.call("fence"), granted);
}

/// A paused holder (SIGSTOP past its TTL) loses the lock to a waiter; when
/// it resumes, its next call reports SessionExpired, and a write fenced with
/// its old token is refused with StaleToken.
#[test]
fn a_paused_holder_is_fenced_off_and_told_its_session_expired() {
    let group = Group::start("Lock", &[]);
    let mut holder = group.shell_with(&["--session-ttl", "2"]);
    let mut other = group.shell_with(&["--session-ttl", "2"]);
    let old = holder.call("acquire_fenced");
    assert_eq!(
        holder.call(&format!("@row:Value set_fenced {old} \"holder\"")),
        Value::Null
    );
    other.send("acquire_fenced");
    group.wait_parked(1);
    signal(&holder, libc::SIGSTOP);
    let new = other.reply("the waiting acquire");
    assert!(new.as_u64() > old.as_u64());
    assert_eq!(
        other.call(&format!("@row set_fenced {new} \"other\"")),
        Value::Null
    );
    signal(&holder, libc::SIGCONT);
    // Resumed, the holder is told at once (its keep-alive is answered so),
    // before it makes any call.
    let event = holder.event("its session's end, without a call");
    assert_eq!(event["kind"], "SessionExpired", "{event}");
    // What the paused holder would still write with its old token is refused.
    other.error(
        &format!("@row set_fenced {old} \"stale\""),
        "StaleToken",
        None,
    );
    assert_eq!(other.call("@row getvalue"), json!("other"));
    // And the holder learns its session is gone on its next call.
    holder.error("locked", "SessionExpired", None);
}

/// A leader change while sessions are idle but alive expires none of them:
/// the new leader gives every session a full TTL first.
#[test]
fn a_leader_change_expires_no_live_session() {
    let mut group = Group::start("Lock", &[]);
    let mut holder = group.shell_with(&["--session-ttl", "3"]);
    let token = holder.call("acquire_fenced");
    group.until("the session is open", |s| {
        s.iter().all(|s| s["sessions"] == 1)
    });
    let leader = group
        .status()
        .iter()
        .position(|s| s["role"] == "leader")
        .expect("a leader");
    group.replicas[leader].0.kill().expect("kill the leader");
    group.replicas[leader].0.wait().expect("reap it");
    let survivors: Vec<String> = group
        .addrs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, a)| a.clone())
        .collect();
    group.addrs = survivors;
    group.replicas.remove(leader);
    // Well past the TTL, through the election: the session lives on.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        assert_eq!(group.sessions(), vec![1, 1], "a live session expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(holder.call("fence"), token, "it still holds the lock");
}

/// Bad session input: a TTL outside the group's bounds is a ValueError.
#[test]
fn a_session_ttl_outside_the_bounds_is_refused() {
    let group = Group::start("Lock", &[]);
    let out = Command::new(BIN)
        .args([
            "call",
            "-r",
            &group.bootstrap(),
            "--session-ttl",
            "0",
            "concoord_open_session",
            "100",
        ])
        .output()
        .expect("run concoord call");
    assert_eq!(out.status.code(), Some(1));
    let e: Value = serde_json::from_slice(&out.stderr).expect("a JSON error");
    assert_eq!(e["error"]["kind"], "ValueError", "{e}");
    let out = Command::new(BIN)
        .args([
            "call",
            "-r",
            &group.bootstrap(),
            "--session-ttl",
            "-1",
            "locked",
        ])
        .output()
        .expect("run concoord call");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a negative TTL is a usage error"
    );
    // Above the group's maximum (300 s by default): the session is refused,
    // the shell says so, and the call it came with never runs.
    let mut greedy = group.shell_with(&["--session-ttl", "3600"]);
    greedy.error("acquire", "Refused", None);
    let event = greedy.event("the refused session");
    assert_eq!(event["kind"], "SessionRefused", "{event}");
    greedy.error("acquire", "Refused", None);
    let mut other = group.shell();
    assert_eq!(other.call("locked"), json!(false), "nothing was acquired");
}

/// Ephemeral membership: three clients register, one is killed, and the
/// list drops it once its session expires; the others stay.
#[test]
fn ephemeral_members_leave_with_a_dead_clients_session() {
    let group = Group::start("Membership", &[]);
    let mut shells: Vec<Shell> = (0..3)
        .map(|_| group.shell_with(&["--session-ttl", "2"]))
        .collect();
    for (i, shell) in shells.iter_mut().enumerate() {
        assert_eq!(
            shell.call(&format!("add_ephemeral \"node-{i}\"")),
            Value::Null
        );
    }
    assert_eq!(
        shells[0].call("get_members"),
        json!(["node-0", "node-1", "node-2"])
    );
    signal(&shells[1], libc::SIGKILL);
    let start = Instant::now();
    loop {
        let members = shells[0].call("get_members");
        if members == json!(["node-0", "node-2"]) {
            break;
        }
        assert_eq!(
            members,
            json!(["node-0", "node-1", "node-2"]),
            "only the dead one may go"
        );
        assert!(start.elapsed() < PATIENCE, "node-1 never left");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(shells[2].call("get_members"), json!(["node-0", "node-2"]));
}

/// Election: three campaigners; the leader is killed with kill -9; the next
/// campaigner leads with a higher token once the dead one's session
/// expires, and an observer sees the change once.
#[test]
fn election_passes_to_the_next_campaigner_when_the_leader_dies() {
    let group = Group::start("Election", &[]);
    let mut c: Vec<Shell> = (0..3)
        .map(|_| group.shell_with(&["--session-ttl", "2"]))
        .collect();
    let first = c[0].call("campaign \"node-0\"");
    assert!(first.is_u64(), "{first}");
    c[1].send("campaign \"node-1\"");
    group.wait_parked(1);
    c[2].send("campaign \"node-2\"");
    group.wait_parked(2);
    let mut observer = group.shell();
    assert_eq!(observer.call("leader"), json!(["node-0", first]));
    observer.send(&format!("observe {first}"));
    group.wait_parked(3);
    signal(&c[0], libc::SIGKILL);
    let second = c[1].reply("the second campaign");
    assert!(second.as_u64() > first.as_u64(), "{second} after {first}");
    assert_eq!(observer.reply("the observation"), json!(["node-1", second]));
    assert!(c[2].nothing_yet(), "the third still waits its turn");
    assert_eq!(c[1].call("resign"), Value::Null);
    let third = c[2].reply("the third campaign");
    assert!(third.as_u64() > second.as_u64());
    assert_eq!(observer.call("leader"), json!(["node-2", third]));
}
