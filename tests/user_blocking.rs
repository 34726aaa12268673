//! User types that block, on a live 3-replica group: the seed's Semaphore
//! walk-through (a user type around the library's semaphore, its proxy
//! generated with `-p 1`), Python's bounded buffer from a Lock and two
//! Conditions through a leader kill, a parked call resent through another
//! replica after its connection is cut, and a timed acquire that times out.

#[path = "../examples/semaphore/semaphore.rs"]
mod semaphore;
// The proxy `concoord object -o examples.semaphore.semaphore.Semaphore -p 1`
// wrote (its `use super::*` finds Semaphore here).
mod local_group;
#[path = "../examples/semaphore/semaphore_proxy.rs"]
mod semaphore_proxy;

use concoord::sync::{DCondition, DLock};
use concoord::{ready, Blocking, CallContext, ClientOptions, ObjectError};
use local_group::Group;
use semaphore::Semaphore;
use semaphore_proxy::SemaphoreBlockingProxy;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long any one wait in these tests may take before it fails.
const WAIT: Duration = Duration::from_secs(30);

fn options() -> ClientOptions {
    ClientOptions {
        deadline: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

fn proxy(addrs: &str) -> SemaphoreBlockingProxy {
    SemaphoreBlockingProxy::with_options(addrs, options()).expect("a proxy")
}

/// Polls `describe` until it contains `wanted` (an event the group reports,
/// not a guess at how long it takes).
fn await_description(s: &SemaphoreBlockingProxy, wanted: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = s.concoord_str().expect("concoord_str");
        if text.contains(wanted) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {wanted:?}; last {text:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn seed_semaphore_walk_through() {
    let group = Group::start::<Semaphore>("");
    let addrs = group.addrs();
    // >>> s = Semaphore("127.0.0.1:14000"); s.acquire()
    let s = proxy(&addrs);
    assert!(s.acquire(None).expect("acquire"));
    // >>> s
    assert_eq!(
        s.concoord_str().expect("describe"),
        "<Semaphore: value=0, waiting=0>"
    );
    // A second client blocks until the first releases.
    let (tx, rx) = mpsc::channel();
    let second_addrs = addrs.clone();
    let second = thread::spawn(move || {
        let r = proxy(&second_addrs).acquire(None);
        tx.send(()).ok();
        r
    });
    await_description(&s, "waiting=1");
    assert!(
        rx.try_recv().is_err(),
        "the second acquire returned while the permit was held"
    );
    s.release().expect("release");
    assert!(second.join().expect("second client").expect("granted"));
    assert_eq!(
        s.concoord_str().expect("describe"),
        "<Semaphore: value=0, waiting=0>"
    );
    // Every proxy reaches concoord_str, and concoord_init re-runs `new`.
    s.concoord_init(Some(3)).expect("init");
    assert_eq!(
        s.concoord_str().expect("describe"),
        "<Semaphore: value=3, waiting=0>"
    );
    let err = s.concoord_init(Some(-1)).expect_err("a negative count");
    assert!(matches!(err, concoord::ClientError::Object(ref e) if e.kind == "ValueError"));
}

#[test]
fn timed_acquire_that_times_out_leaks_nothing() {
    let group = Group::start::<Semaphore>("");
    let s = proxy(&group.addrs());
    assert!(s.acquire(None).expect("acquire"));
    let before = s.concoord_str().expect("describe");
    let other = proxy(&group.addrs());
    assert!(!other.acquire(Some(0.3)).expect("a timed acquire answers"));
    assert_eq!(s.concoord_str().expect("describe"), before);
    s.release().expect("release");
    assert_eq!(
        s.concoord_str().expect("describe"),
        "<Semaphore: value=1, waiting=0>",
        "the permit came back and nobody holds it"
    );
    // A zero timeout does not park at all.
    assert!(other.acquire(Some(0.0)).expect("try"));
    assert!(!s.acquire(Some(0.0)).expect("try"));
}

#[test]
fn parked_call_resent_through_another_replica_is_granted_once() {
    let mut group = Group::start::<Semaphore>("");
    let addrs = group.addrs();
    let holder = proxy(&addrs);
    assert!(holder.acquire(None).expect("acquire"));
    let (tx, rx) = mpsc::channel();
    let waiter_addrs = addrs.clone();
    let waiter = thread::spawn(move || {
        let s = proxy(&waiter_addrs);
        let granted = s.acquire(None);
        tx.send(()).ok();
        granted.map(|g| (g, s))
    });
    await_description(&holder, "waiting=1");
    // The waiter's connection goes with the leader: it reconnects elsewhere
    // and resends the same command id, which attaches to the same wait.
    let leader = group.leader("");
    group.kill(&leader);
    let survivors = group.addrs();
    let holder = proxy(&survivors);
    // Still exactly one queued: the resend did not queue twice.
    await_description(&holder, "value=0, waiting=1");
    assert!(rx.try_recv().is_err(), "granted before the release");
    holder.release().expect("release through the new leader");
    let (granted, waiter_proxy) = waiter.join().expect("waiter").expect("answered");
    assert!(granted);
    assert_eq!(
        holder.concoord_str().expect("describe"),
        "<Semaphore: value=0, waiting=0>",
        "one permit, granted once"
    );
    waiter_proxy.release().expect("release");
    assert_eq!(
        holder.concoord_str().expect("describe"),
        "<Semaphore: value=1, waiting=0>"
    );
}

/// Python's textbook bounded buffer: one Lock, two Conditions over it.
#[derive(Debug, Serialize, Deserialize)]
pub struct BoundedBuffer {
    capacity: usize,
    items: VecDeque<i64>,
    mutex: DLock,
    not_full: DCondition,
    not_empty: DCondition,
}

impl Default for BoundedBuffer {
    fn default() -> Self {
        BoundedBuffer {
            capacity: 4,
            items: VecDeque::new(),
            mutex: DLock::new(),
            not_full: DCondition::new(),
            not_empty: DCondition::new(),
        }
    }
}

#[concoord::object]
impl BoundedBuffer {
    pub fn put(
        &mut self,
        cmd: &mut CallContext<'_>,
        item: i64,
    ) -> Result<Blocking<()>, ObjectError> {
        ready!(self.mutex.acquire(cmd, true, None)?);
        while self.items.len() >= self.capacity {
            ready!(self.not_full.wait(cmd, &mut self.mutex, None)?);
        }
        self.items.push_back(item);
        self.not_empty.notify(cmd, &self.mutex, 1)?;
        self.mutex.release(cmd)?;
        Ok(Blocking::Ready(()))
    }

    pub fn get(
        &mut self,
        cmd: &mut CallContext<'_>,
        timeout: Option<f64>,
    ) -> Result<Blocking<Option<i64>>, ObjectError> {
        ready!(self.mutex.acquire(cmd, true, None)?);
        while self.items.is_empty() {
            if !ready!(self.not_empty.wait(cmd, &mut self.mutex, timeout)?) {
                self.mutex.release(cmd)?;
                return Ok(Blocking::Ready(None));
            }
        }
        let item = self.items.pop_front();
        self.not_full.notify(cmd, &self.mutex, 1)?;
        self.mutex.release(cmd)?;
        Ok(Blocking::Ready(item))
    }

    pub fn size(&self) -> usize {
        self.items.len()
    }
}

#[test]
fn bounded_buffer_delivers_every_item_once_in_order_through_a_leader_kill() {
    const PRODUCERS: i64 = 3;
    const CONSUMERS: usize = 3;
    const ITEMS: i64 = 40; // per producer
    let mut group = Group::start::<BoundedBuffer>("");
    let addrs = group.addrs();
    let (got_tx, got_rx) = mpsc::channel::<(usize, i64)>();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|c| {
            let addrs = addrs.clone();
            let got_tx = got_tx.clone();
            thread::spawn(move || {
                let buffer =
                    BoundedBufferBlockingProxy::with_options(&addrs, options()).expect("a proxy");
                // A consumer stops at its first empty 3 s wait after the end.
                loop {
                    match buffer.get(Some(3.0)) {
                        Ok(Some(item)) => got_tx.send((c, item)).expect("collector"),
                        Ok(None) => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
            })
        })
        .collect();
    drop(got_tx);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let addrs = addrs.clone();
            thread::spawn(move || {
                let buffer =
                    BoundedBufferBlockingProxy::with_options(&addrs, options()).expect("a proxy");
                for i in 0..ITEMS {
                    buffer.put(p * 1000 + i)?;
                }
                Ok::<(), concoord::ClientError>(())
            })
        })
        .collect();
    // Kill the leader once some items have gone through.
    let mut received: Vec<(usize, i64)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    while received.len() < 20 {
        let remaining = deadline.saturating_duration_since(Instant::now());
        received.push(got_rx.recv_timeout(remaining).expect("items flow"));
    }
    let leader = group.leader("");
    group.kill(&leader);
    for p in producers {
        p.join().expect("producer").expect("every put answered");
    }
    for c in consumers {
        c.join().expect("consumer").expect("every get answered");
    }
    received.extend(got_rx.iter());
    // Every item exactly once.
    let mut all: Vec<i64> = received.iter().map(|(_, i)| *i).collect();
    all.sort_unstable();
    let expected: Vec<i64> = (0..PRODUCERS)
        .flat_map(|p| (0..ITEMS).map(move |i| p * 1000 + i))
        .collect();
    assert_eq!(all, expected, "each item delivered once");
    // In order: each consumer sees each producer's items in put order.
    let mut last: BTreeMap<(usize, i64), i64> = BTreeMap::new();
    for (c, item) in &received {
        let key = (*c, item / 1000);
        if let Some(prev) = last.insert(key, *item) {
            assert!(prev < *item, "consumer {c} got {item} after {prev}");
        }
    }
    let check = BoundedBufferBlockingProxy::with_options(&group.addrs(), options()).expect("proxy");
    assert_eq!(check.size().expect("size"), 0);
    // No Display: concoord_str shows the Debug form, every queue empty.
    let text = check.concoord_str().expect("describe");
    assert!(text.contains("locked: false"), "{text}");
    assert_eq!(
        text.matches("entries: []").count(),
        3,
        "no waiter left behind: {text}"
    );
}

/// A type with neither Display nor Debug: concoord_str shows its state.
#[derive(Default, Serialize, Deserialize)]
pub struct Plain {
    hits: i64,
}

#[concoord::object]
impl Plain {
    pub fn hit(&mut self) {
        self.hits += 1;
    }
}

#[test]
fn concoord_str_is_display_else_debug_else_state() {
    use concoord::ReplicatedObject;
    assert_eq!(
        Semaphore::default().describe(),
        "<Semaphore: value=1, waiting=0>"
    );
    assert!(BoundedBuffer::default()
        .describe()
        .starts_with("BoundedBuffer { capacity: 4"));
    assert_eq!(Plain { hits: 3 }.describe(), "Plain([3])");
    use concoord::objects::{Hosted, StateMachine};
    let hosted = Hosted::<Semaphore>::default();
    assert!(hosted.is_read_only("concoord_str"));
    assert!(!hosted.is_read_only("acquire"));
    const { assert!(<Semaphore as ReplicatedObject>::RERUNS_PARKED) };
    const { assert!(!<Plain as ReplicatedObject>::RERUNS_PARKED) };
}

/// The example binary: `cargo test` builds examples beside the tests; a
/// filtered run (`--test user_blocking`) may not have, so build it then.
fn example_binary(name: &str) -> std::path::PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let path = dir.join("examples").join(name);
    BUILT.call_once(|| {
        if !path.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args(["build", "--example", name])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("cargo runs");
            assert!(status.success(), "cargo build --example {name} failed");
        }
    });
    path
}

/// A child process killed when dropped, so a failing test leaves none behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `semaphore replica ...` and returns it with the address it printed.
fn spawn_example_replica(extra: &[&str]) -> (Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(example_binary("semaphore"))
        .args([
            "replica",
            "-o",
            "concoord.object.semaphore.Semaphore",
            "-a",
            "127.0.0.1",
            "-p",
            "0",
        ])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the example starts");
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the replica prints its address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (Child(child), addr)
}

#[test]
fn semaphore_example_walks_through_the_seed() {
    let (first, addr) = spawn_example_replica(&[]);
    let others: Vec<(Child, String)> = (0..2)
        .map(|_| spawn_example_replica(&["-b", &addr]))
        .collect();
    let all: Vec<&str> = std::iter::once(addr.as_str())
        .chain(others.iter().map(|(_, a)| a.as_str()))
        .collect();
    let out = std::process::Command::new(example_binary("semaphore"))
        .args(["client", &all.join(",")])
        .output()
        .expect("the client runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(">>> s.acquire()\ntrue"), "{text}");
    assert!(
        text.contains(">>> s\n<Semaphore: value=0, waiting=0>"),
        "{text}"
    );
    assert!(
        text.contains("second client waits: <Semaphore: value=0, waiting=1>"),
        "{text}"
    );
    assert!(
        text.contains("second client's acquire returned true"),
        "{text}"
    );
    // A replica binary refuses to serve an object it does not hold (and
    // must exit: a replica that started instead is killed, failing the test).
    let mut wrong = Child(
        std::process::Command::new(example_binary("semaphore"))
            .args(["replica", "-o", "concoord.object.pinger.Pinger", "-p", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runs"),
    );
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = wrong.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "a replica of an unknown object started"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut wrong.0.stderr.take().expect("piped"), &mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("this binary serves"), "{stderr}");
    drop(first);
}
