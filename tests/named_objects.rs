//! One group, many named objects, on live 3-replica groups in this process:
//! built-ins and a user type side by side under contention through a leader
//! kill, the typed errors (wrong type, deleted name with waiters, long
//! names, too many objects), a joiner installing a snapshot that arrives in
//! many pieces, and watches on a named Value through a leader kill.

mod local_group;

use concoord::actors::node::NodeOptions;
use concoord::check::mutex::{self, MutexKind};
use concoord::client::fetch_objects;
use concoord::data::blocking::{Counter, Queue, Value};
use concoord::history::History;
use concoord::objects::{Hosted, Limits, ObjectInfo, StateMachine, Types};
use concoord::threading::blocking::{Lock, Semaphore};
use concoord::{BlockingClient, ClientError, ClientOptions};
use local_group::Group;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// A user type hosted beside the built-ins.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tally {
    total: i64,
}

#[concoord::object]
impl Tally {
    pub fn add(&mut self, n: i64) -> i64 {
        self.total += n;
        self.total
    }

    pub fn total(&self) -> i64 {
        self.total
    }
}

fn node_options(types: Types, limits: Limits) -> NodeOptions {
    NodeOptions {
        types: Arc::new(types),
        limits,
        ..NodeOptions::default()
    }
}

fn counter_default() -> Box<dyn StateMachine> {
    Box::new(Hosted::<concoord::objects::Counter>::default())
}

fn with_tally() -> Types {
    let mut types = Types::builtins();
    types.register::<Tally>();
    types
}

fn client(addrs: &str) -> BlockingClient {
    BlockingClient::new(
        addrs,
        ClientOptions {
            deadline: Duration::from_secs(20),
            ..ClientOptions::default()
        },
    )
    .expect("a client")
}

fn kind(r: Result<impl std::fmt::Debug, ClientError>) -> String {
    match r {
        Err(ClientError::Object(e)) => e.kind,
        other => panic!("expected an object error, got {other:?}"),
    }
}

fn objects_of(addr: &str) -> Vec<ObjectInfo> {
    let rt = local_group::runtime();
    rt.block_on(fetch_objects(addr, "", Duration::from_secs(10)))
        .expect("objects")
}

#[test]
fn many_named_objects_of_every_kind_through_a_leader_kill() {
    const WORKERS: usize = 6;
    const ROUNDS: u64 = 24;
    const HOT_LOCKS: u64 = 5;
    let mut group = Group::start_custom(
        3,
        counter_default,
        node_options(with_tally(), Limits::default()),
    );
    let addrs = group.addrs();
    // 100 named Locks and Counters exist before the load starts.
    let setup = client(&addrs);
    for i in 0..100 {
        assert!(Lock::named(&setup, &format!("lock/{i}"))
            .try_acquire()
            .expect("create"));
        Lock::named(&setup, &format!("lock/{i}"))
            .release()
            .expect("release");
        Counter::named(&setup, &format!("count/{i}"))
            .increment()
            .expect("create");
    }
    Semaphore::named(&setup, "slots")
        .concoord_init((3,))
        .expect("Semaphore(3)");
    let histories: Vec<History> = (0..HOT_LOCKS).map(|_| History::new()).collect();
    let slot_history = History::new();
    let rounds_done = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(WORKERS + 1));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let addrs = addrs.clone();
            let histories = histories.clone();
            let slot_history = slot_history.clone();
            let rounds_done = rounds_done.clone();
            let start = start.clone();
            thread::spawn(move || -> Result<BTreeMap<u64, u64>, ClientError> {
                // One client, one connection, for every object this worker uses.
                let c = client(&addrs);
                let me = format!("w{w}");
                let slots = Semaphore::named(&c, "slots");
                let jobs = Queue::named(&c, "jobs");
                let tally = TallyBlockingProxy::named(&c, "tally");
                let mut sections: BTreeMap<u64, u64> = BTreeMap::new();
                start.wait();
                for round in 0..ROUNDS {
                    let hot = (w as u64 + round) % HOT_LOCKS;
                    let lock = Lock::named(&c, &format!("lock/{hot}"));
                    let op = histories[hot as usize].invoke(&me, "acquire", vec![]);
                    let got = lock.acquire()?;
                    op.ok(got);
                    // A read-modify-write that only the lock makes safe.
                    let guarded = Value::named(&c, &format!("guard/{hot}"));
                    let seen = guarded.getvalue()?.as_i64().unwrap_or(0);
                    guarded.setvalue((seen + 1).into())?;
                    *sections.entry(hot).or_default() += 1;
                    let op = histories[hot as usize].invoke(&me, "release", vec![]);
                    lock.release()?;
                    op.ok(());
                    Counter::named(&c, &format!("count/{}", (round * 7 + w as u64) % 100))
                        .increment()?;
                    let op = slot_history.invoke(&me, "acquire", vec![]);
                    let got = slots.acquire()?;
                    op.ok(got);
                    let op = slot_history.invoke(&me, "release", vec![]);
                    slots.release(1)?;
                    op.ok(());
                    jobs.put(format!("{w}-{round}").into())?;
                    tally.add(1)?;
                    rounds_done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(sections)
            })
        })
        .collect();
    start.wait();
    // Kill the leader once a third of the work is done.
    let deadline = Instant::now() + WAIT;
    while rounds_done.load(Ordering::Relaxed) < WORKERS as u64 * ROUNDS / 3 {
        assert!(Instant::now() < deadline, "no progress before the kill");
        thread::sleep(Duration::from_millis(10));
    }
    let leader = group.leader("");
    group.kill(&leader);
    let mut sections: BTreeMap<u64, u64> = BTreeMap::new();
    for w in workers {
        for (lock, n) in w.join().expect("worker").expect("every call answered") {
            *sections.entry(lock).or_default() += n;
        }
    }
    let check = client(&group.addrs());
    // Every lock exclusive: no lost update under it, and the checker agrees.
    for (hot, n) in &sections {
        let guarded = Value::named(&check, &format!("guard/{hot}"));
        assert_eq!(
            guarded.getvalue().expect("read").as_i64(),
            Some(*n as i64),
            "guard/{hot}"
        );
        let report = mutex::check(MutexKind::Lock, &histories[*hot as usize]);
        assert!(report.is_ok(), "lock/{hot}: {report}");
    }
    let report = mutex::check(MutexKind::Semaphore(3), &slot_history);
    assert!(report.is_ok(), "slots: {report}");
    // Every counter exact: 1 at creation plus its increments.
    let mut expected = [1i64; 100];
    for w in 0..WORKERS as u64 {
        for round in 0..ROUNDS {
            expected[((round * 7 + w) % 100) as usize] += 1;
        }
    }
    for (i, want) in expected.iter().enumerate() {
        let got = Counter::named(&check, &format!("count/{i}"))
            .getvalue()
            .expect("read");
        assert_eq!(got, *want, "count/{i}");
    }
    let total = (WORKERS as u64 * ROUNDS) as i64;
    assert_eq!(
        Queue::named(&check, "jobs").qsize().expect("qsize"),
        total as u64
    );
    assert_eq!(
        TallyBlockingProxy::named(&check, "tally")
            .total()
            .expect("total"),
        total
    );
    // Every replica lists the same objects, each with its type, nothing parked.
    let lists: Vec<Vec<ObjectInfo>> = group.live().iter().map(|a| objects_of(a)).collect();
    let first = &lists[0];
    assert_eq!(first.len(), 100 + 100 + HOT_LOCKS as usize + 3, "{first:?}");
    assert!(first.iter().all(|o| o.parked == 0), "{first:?}");
    let type_of = |name: &str| {
        first
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.type_name.clone())
    };
    assert_eq!(type_of("lock/7").as_deref(), Some("Lock"));
    assert_eq!(type_of("guard/0").as_deref(), Some("Value"));
    assert_eq!(type_of("tally").as_deref(), Some("Tally"));
    assert_eq!(type_of("slots").as_deref(), Some("Semaphore"));
    for other in &lists[1..] {
        // A follower may still apply the last slot; wait for it to catch up.
        if other != first {
            let deadline = Instant::now() + WAIT;
            let addr = &group.live()[lists.iter().position(|l| l == other).expect("listed")];
            while objects_of(addr) != *first {
                assert!(Instant::now() < deadline, "{addr} never caught up");
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn typed_errors_change_nothing_and_the_group_keeps_serving() {
    let group = Group::start_custom(
        3,
        counter_default,
        node_options(
            Types::builtins(),
            Limits {
                max_objects: 3,
                max_name_len: 16,
                ..Limits::default()
            },
        ),
    );
    let c = client(&group.addrs());
    let held = Lock::named(&c, "db");
    assert!(held.acquire().expect("acquire"));
    // Wrong type: names both types; the lock is untouched.
    let e = Counter::named(&c, "db").increment().unwrap_err();
    match &e {
        ClientError::Object(o) => {
            assert_eq!(o.kind, "WrongType");
            assert!(
                o.message.contains("Lock") && o.message.contains("Counter"),
                "{o:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(held.locked().expect("locked"));
    // A deleted name answers its parked callers with Deleted.
    let addrs = group.addrs();
    let waiter = thread::spawn(move || Lock::named(&client(&addrs), "db").acquire());
    let deadline = Instant::now() + WAIT;
    while !objects_of(&group.live()[0])
        .iter()
        .any(|o| o.name == "db" && o.parked == 1)
    {
        assert!(Instant::now() < deadline, "the waiter never parked");
        thread::sleep(Duration::from_millis(20));
    }
    held.concoord_delete().expect("delete");
    assert_eq!(kind(waiter.join().expect("waiter")), "Deleted");
    assert!(objects_of(&group.live()[0]).iter().all(|o| o.name != "db"));
    assert_eq!(
        kind(Lock::named(&c, "db").concoord_delete()),
        "NoSuchObject"
    );
    // A name too long, and too many objects.
    assert_eq!(
        kind(Counter::named(&c, &"x".repeat(17)).increment()),
        "LimitExceeded"
    );
    for name in ["a", "b", "c"] {
        Counter::named(&c, name)
            .increment()
            .expect("within the limit");
    }
    assert_eq!(kind(Counter::named(&c, "d").increment()), "LimitExceeded");
    // Without a type a missing name cannot be created.
    let bare = concoord::objects::Target::named("e", "");
    assert_eq!(
        kind(c.call_on::<_, i64>(&bare, "getvalue", ())),
        "NoSuchObject"
    );
    // Nothing else changed, and the group serves on.
    assert_eq!(Counter::named(&c, "a").getvalue().expect("a"), 1);
    let default = Counter::from_client(&c);
    default.increment().expect("the default object");
    assert_eq!(default.getvalue().expect("read"), 1);
    assert_eq!(objects_of(&group.live()[0]).len(), 3);
}

#[test]
fn a_joiner_installs_a_snapshot_sent_in_many_pieces() {
    // Small pieces so a few thousand objects make many of them.
    let node = NodeOptions {
        snapshot_chunk_bytes: 2048,
        ..node_options(with_tally(), Limits::default())
    };
    let mut group = Group::start_custom(3, counter_default, node.clone());
    let rt = local_group::runtime();
    let c = rt
        .block_on(async { concoord::Client::new(&group.addrs(), ClientOptions::default()) })
        .expect("client");
    rt.block_on(async {
        let calls: Vec<_> = (0..1500)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move {
                    let counter = concoord::data::Counter::named(&c, &format!("c/{i:04}"));
                    for _ in 0..(i % 3) {
                        counter.increment().await?;
                    }
                    counter.getvalue().await
                })
            })
            .collect();
        for call in calls {
            call.await.expect("task").expect("call");
        }
    });
    let before = objects_of(&group.live()[0]);
    assert_eq!(before.len(), 1500);
    // Enough history that the group's log no longer reaches back to the start.
    let joiner = group.join(counter_default(), &node);
    group.wait_formed_of(4, "");
    let deadline = Instant::now() + WAIT;
    while objects_of(&joiner) != before {
        assert!(
            Instant::now() < deadline,
            "the joiner never held every object"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // Same values on every replica, read from each one's own state.
    let status = rt
        .block_on(concoord::client::fetch_status(
            &joiner,
            "",
            Duration::from_secs(5),
        ))
        .expect("status");
    assert!(status.snapshot_slot > 0 || status.executed_slot > 0);
    let only_joiner = client(&joiner);
    for i in [0, 1, 2, 749, 1499] {
        let v = Counter::named(&only_joiner, &format!("c/{i:04}"))
            .getvalue()
            .expect("read");
        assert_eq!(v, (i % 3) as i64, "c/{i:04}");
    }
}

#[test]
fn watches_on_a_named_value_see_every_version_through_a_leader_kill() {
    const WATCHERS: usize = 20;
    const UPDATES: u64 = 100;
    let mut group = Group::start_custom(
        3,
        counter_default,
        node_options(Types::builtins(), Limits::default()),
    );
    let addrs = group.addrs();
    let setup = client(&addrs);
    Value::named(&setup, "config")
        .setvalue(0.into())
        .expect("create");
    let watchers: Vec<_> = (0..WATCHERS)
        .map(|_| {
            let addrs = addrs.clone();
            thread::spawn(move || -> Result<Vec<u64>, ClientError> {
                let c = client(&addrs);
                let config = Value::named(&c, "config");
                let mut seen = vec![config.version()?];
                while *seen.last().expect("one") < UPDATES + 1 {
                    let last = *seen.last().expect("one");
                    match config.wait_change(last, Some(Duration::from_secs(25)))? {
                        Some((_, version)) => seen.push(version),
                        None => return Ok(seen), // timed out: the test fails below
                    }
                }
                Ok(seen)
            })
        })
        .collect();
    let writer = client(&addrs);
    let config = Value::named(&writer, "config");
    for i in 0..UPDATES as i64 {
        if i == UPDATES as i64 / 2 {
            let leader = group.leader("");
            group.kill(&leader);
        }
        assert!(config
            .compare_and_set(i.into(), (i + 1).into())
            .expect("cas"));
    }
    assert_eq!(config.version().expect("version"), UPDATES + 1);
    for w in watchers {
        let seen = w.join().expect("watcher").expect("every watch answered");
        assert!(
            seen.windows(2).all(|p| p[0] < p[1]),
            "versions only grow: {seen:?}"
        );
        assert_eq!(*seen.last().expect("one"), UPDATES + 1, "{seen:?}");
    }
    // Every replica wakes the last watchers when it executes the last
    // write; a follower may learn of that decision a heartbeat later.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for replica in group.live() {
        loop {
            let parked: u64 = objects_of(&replica).iter().map(|o| o.parked).sum();
            if parked == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{parked} watchers left parked for good"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn fencing_tokens_grow_across_leaders_and_refuse_stale_writes() {
    let mut group = Group::start_custom(
        3,
        counter_default,
        node_options(Types::builtins(), Limits::default()),
    );
    let c = client(&group.addrs());
    let lock = Lock::named(&c, "db");
    let store = Value::named(&c, "db-row");
    assert_eq!(lock.fence().expect("fence"), None, "free: no holder token");
    let first = lock.acquire_fenced().expect("acquire_fenced");
    assert_eq!(lock.fence().expect("fence"), Some(first));
    store
        .set_fenced(first, "written by the first holder".into())
        .expect("fenced write");
    lock.release().expect("release");
    // A new leader: tokens keep growing (they come from the log position).
    let leader = group.leader("");
    group.kill(&leader);
    let c2 = client(&group.addrs());
    let second = Lock::named(&c2, "db")
        .acquire_fenced()
        .expect("acquire_fenced");
    assert!(second > first, "{second} after {first}");
    Value::named(&c2, "db-row")
        .set_fenced(second, "written by the second holder".into())
        .expect("fenced write");
    // The first holder, still believing it holds the lock, is refused.
    let stale = Value::named(&c2, "db-row").set_fenced(first, "stale".into());
    assert_eq!(kind(stale), "StaleToken");
    assert_eq!(
        Value::named(&c2, "db-row").getvalue().expect("read"),
        concoord::objects::rmpv::Value::from("written by the second holder")
    );
    // A timed fenced acquire that times out gets None and takes nothing.
    let other = Lock::named(&c, "db");
    assert_eq!(
        other
            .acquire_fenced_timeout(Duration::from_millis(300))
            .expect("timed"),
        None
    );
    assert_eq!(Lock::named(&c2, "db").fence().expect("fence"), Some(second));
    // Semaphore permits are fenced too.
    let slots = Semaphore::named(&c2, "slots");
    slots.concoord_init((2,)).expect("Semaphore(2)");
    let a = slots.acquire_fenced().expect("permit");
    let b = slots.acquire_fenced().expect("permit");
    assert!(b > a && a > second);
}
