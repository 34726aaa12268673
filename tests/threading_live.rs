//! Python `threading` conformance across machines (issue 6): several clients
//! against a live 3-replica group, after CPython's Lib/test/lock_tests.py
//! where its scenarios make sense across machines; and reconnect safety of a
//! parked or granted acquire whose connection is cut under it.
//!
//! Ordering between clients is never left to sleeps: a test waits until the
//! replicas report the previous call parked before it starts the next one.

mod threading_support;

use concoord::threading::Semaphore;
use concoord::threading::{self, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock};
use concoord::ClientError;
use std::fmt::Debug;
use std::time::{Duration, Instant};
use threading_support::{options, until, Group, Proxy, PATIENCE};
use tokio::sync::mpsc;

/// The object error a call must have failed with: (kind, message).
fn object_error<T: Debug>(what: &str, result: Result<T, ClientError>) -> (String, String) {
    match result {
        Err(ClientError::Object(e)) => (e.kind, e.message),
        other => panic!("{what}: expected an object error, got {other:?}"),
    }
}

fn assert_error<T: Debug>(what: &str, result: Result<T, ClientError>, kind: &str, message: &str) {
    let (k, m) = object_error(what, result);
    assert_eq!((k.as_str(), m.as_str()), (kind, message), "{what}");
}

/// A timed call gave up after about `timeout`: not before, and not much later.
fn assert_took_about(what: &str, started: Instant, timeout: Duration) {
    let took = started.elapsed();
    assert!(
        took >= timeout,
        "{what}: returned after {took:?}, before its timeout {timeout:?}"
    );
    assert!(
        took < timeout + Duration::from_secs(5),
        "{what}: returned after {took:?}, long after its timeout {timeout:?}"
    );
}

/// The next finished waiter, failing after [`PATIENCE`].
async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("a waiter to finish")
        .expect("waiter tasks alive")
}

const SHORT: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_acquire_release_timeouts_errors_and_fifo_wakeups() {
    let group = Group::start("Lock").await;
    let boot = group.bootstrap();
    let a = Lock::new(&boot, options()).unwrap();
    let b = Lock::new(&boot, options()).unwrap();

    // test_acquire_release / test_locked
    assert!(!a.locked().await.unwrap());
    assert!(a.acquire().await.unwrap());
    assert!(a.locked().await.unwrap());
    assert!(b.locked().await.unwrap(), "every client sees it locked");
    // test_try_acquire_contended: non-blocking and zero-timeout attempts fail at once.
    assert!(!b.try_acquire().await.unwrap());
    assert!(!b
        .client()
        .call::<_, bool>("acquire", (true, 0))
        .await
        .unwrap());
    // test_timeout: a timed acquire on a held lock returns false after about the
    // timeout, and the lock stays held by its owner.
    let started = Instant::now();
    assert!(!b.acquire_timeout(SHORT).await.unwrap());
    assert_took_about("acquire_timeout on a held lock", started, SHORT);
    assert!(a.locked().await.unwrap());
    assert!(!b.try_acquire().await.unwrap());
    a.release().await.unwrap();
    assert!(!b.locked().await.unwrap());
    assert!(
        b.acquire_timeout(SHORT).await.unwrap(),
        "free: acquired at once"
    );
    // test_different_thread: a Lock may be released by another client.
    a.release().await.unwrap();
    assert!(!a.locked().await.unwrap());
    // Releasing an unlocked lock.
    assert_error(
        "release unlocked",
        a.release().await,
        "RuntimeError",
        "release unlocked lock",
    );
    // Argument errors, Python's kinds and texts.
    assert_error(
        "acquire(False, 1)",
        a.client().call::<_, bool>("acquire", (false, 1.0)).await,
        "ValueError",
        "can't specify a timeout for a non-blocking call",
    );
    assert_error(
        "acquire(True, -2)",
        a.client().call::<_, bool>("acquire", (true, -2.0)).await,
        "ValueError",
        "timeout value must be a non-negative number",
    );
    assert!(matches!(
        a.client().call::<_, bool>("locked", (1,)).await,
        Err(ClientError::BadArguments(_))
    ));
    assert!(matches!(
        a.client().call::<_, ()>("frobnicate", ()).await,
        Err(ClientError::UnknownMethod(_))
    ));

    // test_thread_leak / contention: four clients park in order, and each
    // release hands the lock to the longest-waiting one, never freeing it.
    let holder = Lock::new(&boot, options()).unwrap();
    assert!(holder.acquire().await.unwrap());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut waiters = Vec::new();
    for i in 0..4 {
        let w = Lock::new(&boot, options()).unwrap();
        let (w2, tx) = (w.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send((i, w2.acquire().await));
        });
        group.wait_parked(i + 1).await;
        waiters.push(w);
    }
    holder.release().await.unwrap();
    for (i, w) in waiters.iter().enumerate() {
        let (who, granted) = next(&mut rx).await;
        assert_eq!(who, i, "woken out of FIFO order");
        assert!(granted.unwrap());
        group.wait_parked(3 - i).await;
        assert!(rx.try_recv().is_err(), "one release woke two waiters");
        assert!(holder.locked().await.unwrap(), "handed over, never free");
        assert!(
            !holder.try_acquire().await.unwrap(),
            "no barging past the queue"
        );
        w.release().await.unwrap();
    }
    assert!(!holder.locked().await.unwrap());
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rlock_ownership_reentry_and_handoff() {
    let group = Group::start("RLock").await;
    let boot = group.bootstrap();
    let a = RLock::new(&boot, options()).unwrap();
    let b = RLock::new(&boot, options()).unwrap();
    let c = RLock::new(&boot, options()).unwrap();
    let locked = |l: &RLock| {
        let client = l.client().clone();
        async move { client.call::<_, bool>("locked", ()).await.unwrap() }
    };

    // test_reacquire / test_release_unacquired / test_different_thread
    assert_error(
        "release of a free RLock",
        a.release().await,
        "RuntimeError",
        "cannot release un-acquired lock",
    );
    for _ in 0..3 {
        assert!(a.acquire().await.unwrap(), "re-entrant for its owner");
    }
    assert!(!b.try_acquire().await.unwrap());
    assert_error(
        "release by a non-owner",
        b.release().await,
        "RuntimeError",
        "cannot release un-acquired lock",
    );
    a.release().await.unwrap();
    a.release().await.unwrap();
    assert!(locked(&b).await, "count 3, released twice: still held");
    assert!(!b.try_acquire().await.unwrap());
    a.release().await.unwrap();
    assert!(!locked(&b).await);
    assert_error(
        "one release too many",
        a.release().await,
        "RuntimeError",
        "cannot release un-acquired lock",
    );

    // Timed acquire against another owner.
    assert!(a.acquire().await.unwrap());
    let started = Instant::now();
    assert!(!b.acquire_timeout(SHORT).await.unwrap());
    assert_took_about("RLock acquire_timeout", started, SHORT);

    // The final release passes ownership to the longest-waiting client.
    assert!(a.acquire().await.unwrap()); // count 2
    let (tx, mut rx) = mpsc::unbounded_channel();
    for (i, w) in [b.clone(), c.clone()].into_iter().enumerate() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send((i, w.acquire().await));
        });
        group.wait_parked(i + 1).await;
    }
    a.release().await.unwrap();
    group.wait_parked(2).await;
    assert!(rx.try_recv().is_err(), "count 2 released once: still a's");
    a.release().await.unwrap();
    let (who, granted) = next(&mut rx).await;
    assert_eq!(who, 0);
    assert!(granted.unwrap());
    assert_error(
        "release by the previous owner",
        a.release().await,
        "RuntimeError",
        "cannot release un-acquired lock",
    );
    assert!(b.acquire().await.unwrap(), "the new owner re-enters");
    b.release().await.unwrap();
    group.wait_parked(1).await;
    b.release().await.unwrap();
    let (who, granted) = next(&mut rx).await;
    assert_eq!(who, 1);
    assert!(granted.unwrap());
    assert!(locked(&a).await);
    c.release().await.unwrap();
    assert!(!locked(&a).await);
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphore_counting_and_value_errors() {
    let group = Group::start("Semaphore").await;
    let boot = group.bootstrap();
    let s: Vec<Semaphore> = (0..4)
        .map(|_| Semaphore::new(&boot, options()).unwrap())
        .collect();
    assert_error(
        "Semaphore(-1)",
        threading::concoord_init(s[0].client(), (-1,)).await,
        "ValueError",
        "semaphore initial value must be >= 0",
    );
    threading::concoord_init(s[0].client(), (3,)).await.unwrap();

    // test_acquire_contended: three permits, three holders, then nobody.
    for sem in &s[..3] {
        assert!(sem.acquire().await.unwrap());
    }
    assert!(!s[3].try_acquire().await.unwrap());
    let started = Instant::now();
    assert!(!s[3].acquire_timeout(SHORT).await.unwrap());
    assert_took_about("Semaphore acquire_timeout", started, SHORT);
    assert_error(
        "acquire(False, 1)",
        s[3].client().call::<_, bool>("acquire", (false, 1)).await,
        "ValueError",
        "can't specify timeout for non-blocking acquire",
    );
    assert_error(
        "release(0)",
        s[0].release(0).await,
        "ValueError",
        "n must be one or more",
    );

    // Blocked acquirers are woken FIFO, release(n) wakes up to n of them.
    let (tx, mut rx) = mpsc::unbounded_channel();
    for i in 0..3 {
        let (w, tx) = (Semaphore::new(&boot, options()).unwrap(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send((i, w.acquire().await));
        });
        group.wait_parked(i + 1).await;
    }
    s[0].release(2).await.unwrap();
    // One command wakes the two longest-waiting; their answers may arrive in any order.
    let mut woken = vec![next(&mut rx).await, next(&mut rx).await];
    woken.sort_by_key(|(i, _)| *i);
    for (i, (who, granted)) in woken.into_iter().enumerate() {
        assert_eq!(who, i, "release(2) woke the wrong two");
        assert!(granted.unwrap());
    }
    group.wait_parked(1).await;
    assert!(rx.try_recv().is_err(), "release(2) woke three");
    s[1].release(1).await.unwrap();
    let (who, granted) = next(&mut rx).await;
    assert_eq!(who, 2);
    assert!(granted.unwrap());
    assert!(!s[3].try_acquire().await.unwrap(), "all three permits held");

    // Counting: release all three, and an unbounded one may go above its start.
    s[2].release(3).await.unwrap();
    s[2].release(2).await.unwrap();
    let mut taken = 0;
    for _ in 0..6 {
        taken += usize::from(s[3].try_acquire().await.unwrap());
    }
    assert_eq!(taken, 5, "3 released + 2 extra");
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_semaphore_refuses_over_release() {
    let group = Group::start("BoundedSemaphore").await;
    let boot = group.bootstrap();
    let a = BoundedSemaphore::new(&boot, options()).unwrap();
    let b = BoundedSemaphore::new(&boot, options()).unwrap();
    threading::concoord_init(a.client(), (2,)).await.unwrap();
    assert_error(
        "release above the initial value",
        a.release(1).await,
        "ValueError",
        "Semaphore released too many times",
    );
    assert!(a.acquire().await.unwrap());
    assert!(b.acquire().await.unwrap());
    assert!(!b.try_acquire().await.unwrap());
    b.release(1).await.unwrap();
    assert_error(
        "release(2) with one permit out",
        a.release(2).await,
        "ValueError",
        "Semaphore released too many times",
    );
    a.release(1).await.unwrap();
    assert_error(
        "release(0)",
        a.release(0).await,
        "ValueError",
        "n must be one or more",
    );
    assert!(a.try_acquire().await.unwrap());
    assert!(b.try_acquire().await.unwrap());
    assert!(
        !a.try_acquire().await.unwrap(),
        "a failed release changes nothing"
    );
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condition_wait_notify_notify_all_and_timed_wait() {
    let group = Group::start("Condition").await;
    let boot = group.bootstrap();
    let n = Condition::new(&boot, options()).unwrap();
    let c = Condition::new(&boot, options()).unwrap();

    // Without the lock: RuntimeError, as Python.
    assert_error(
        "wait without the lock",
        c.wait().await,
        "RuntimeError",
        "cannot wait on un-acquired lock",
    );
    assert_error(
        "notify without the lock",
        c.notify(1).await,
        "RuntimeError",
        "cannot notify on un-acquired lock",
    );
    assert_error(
        "notify_all without the lock",
        c.notify_all().await,
        "RuntimeError",
        "cannot notify on un-acquired lock",
    );
    assert_error(
        "release without the lock",
        c.release().await,
        "RuntimeError",
        "cannot release un-acquired lock",
    );
    assert!(n.acquire().await.unwrap());
    assert_error(
        "notify while another client holds the lock",
        c.notify(1).await,
        "RuntimeError",
        "cannot notify on un-acquired lock",
    );
    n.release().await.unwrap();

    // test_timeout: a timed wait returns false after about the timeout, holding
    // the lock again with its old recursion count.
    assert!(c.acquire().await.unwrap());
    assert!(c.acquire().await.unwrap());
    let started = Instant::now();
    assert!(!c.wait_timeout(SHORT).await.unwrap());
    assert_took_about("Condition wait_timeout", started, SHORT);
    assert!(
        !n.try_acquire().await.unwrap(),
        "re-acquired before returning"
    );
    c.release().await.unwrap();
    assert!(!n.try_acquire().await.unwrap(), "count 2 restored");
    c.release().await.unwrap();
    assert!(n.try_acquire().await.unwrap());
    n.release().await.unwrap();

    // test_notify: three waiters park in order; notify(1) wakes the first once
    // the notifier releases, notify_all the rest, one lock holder at a time.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut waiters = Vec::new();
    for i in 0..3 {
        let w = Condition::new(&boot, options()).unwrap();
        assert!(w.acquire().await.unwrap());
        let (w2, tx) = (w.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send((i, w2.wait().await));
        });
        group.wait_parked(i + 1).await;
        waiters.push(w);
    }
    assert!(n.acquire().await.unwrap(), "wait released the lock");
    n.notify(1).await.unwrap();
    n.release().await.unwrap();
    let (who, notified) = next(&mut rx).await;
    assert_eq!(who, 0);
    assert!(notified.unwrap());
    assert!(
        !n.try_acquire().await.unwrap(),
        "a woken waiter holds the lock"
    );
    group.wait_parked(2).await;
    assert!(rx.try_recv().is_err(), "notify(1) woke more than one");
    waiters[0].release().await.unwrap();
    group.wait_parked(2).await;
    assert!(rx.try_recv().is_err(), "woken without a notify");

    assert!(n.acquire().await.unwrap());
    n.notify_all().await.unwrap();
    n.release().await.unwrap();
    for (i, w) in waiters.iter().enumerate().skip(1) {
        let (who, notified) = next(&mut rx).await;
        assert_eq!(who, i);
        assert!(notified.unwrap());
        group.wait_parked(2 - i).await;
        assert!(rx.try_recv().is_err(), "two waiters hold the lock at once");
        w.release().await.unwrap();
    }
    assert!(n.try_acquire().await.unwrap());
    n.notify(1).await.unwrap(); // nobody waiting: a no-op
    n.release().await.unwrap();
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barrier_indices_timeout_abort_reset() {
    let group = Group::start("Barrier").await;
    let boot = group.bootstrap();
    let b: Vec<Barrier> = (0..3)
        .map(|_| Barrier::new(&boot, options()).unwrap())
        .collect();
    assert_error(
        "Barrier(0)",
        threading::concoord_init(b[0].client(), (0,)).await,
        "ValueError",
        "parties must be > 0",
    );
    threading::concoord_init(b[0].client(), (3,)).await.unwrap();
    assert_eq!(b[0].parties().await.unwrap(), 3);
    assert!(!b[0].broken().await.unwrap());

    // test_barrier: two cycles; arrival order gives indices 0..parties-1.
    for _cycle in 0..2 {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for (i, party) in b.iter().take(2).enumerate() {
            let (p, tx) = (party.clone(), tx.clone());
            tokio::spawn(async move {
                let _ = tx.send((i, p.wait().await));
            });
            group.wait_parked(i + 1).await;
            assert_eq!(b[2].n_waiting().await.unwrap(), i as u64 + 1);
        }
        assert_eq!(b[2].wait().await.unwrap(), 2, "the last to arrive");
        let mut got: Vec<(usize, u64)> = Vec::new();
        for _ in 0..2 {
            let (i, index) = next(&mut rx).await;
            got.push((i, index.unwrap()));
        }
        got.sort();
        assert_eq!(got, vec![(0, 0), (1, 1)]);
        assert_eq!(b[0].n_waiting().await.unwrap(), 0);
        assert!(!b[0].broken().await.unwrap());
    }

    // test_timeout: a timed-out wait breaks the barrier for everyone waiting.
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let (p, tx) = (b[0].clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(p.wait().await);
        });
    }
    group.wait_parked(1).await;
    let started = Instant::now();
    assert_error(
        "wait_timeout",
        b[1].wait_timeout(SHORT).await,
        "BrokenBarrierError",
        "barrier is broken",
    );
    assert_took_about("Barrier wait_timeout", started, SHORT);
    assert_error(
        "the other waiter",
        next(&mut rx).await,
        "BrokenBarrierError",
        "barrier is broken",
    );
    assert!(b[2].broken().await.unwrap());
    assert_error(
        "wait on a broken barrier",
        b[2].wait().await,
        "BrokenBarrierError",
        "barrier is broken",
    );
    // test_reset: reset repairs it.
    b[2].reset().await.unwrap();
    assert!(!b[2].broken().await.unwrap());

    // test_abort: waiters get BrokenBarrierError, and the barrier stays broken.
    for party in b.iter().take(2) {
        let (p, tx) = (party.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(p.wait().await);
        });
    }
    group.wait_parked(2).await;
    b[2].abort().await.unwrap();
    for _ in 0..2 {
        assert_error(
            "aborted waiter",
            next(&mut rx).await,
            "BrokenBarrierError",
            "barrier is broken",
        );
    }
    assert!(b[0].broken().await.unwrap());
    assert_error(
        "wait after abort",
        b[0].wait().await,
        "BrokenBarrierError",
        "barrier is broken",
    );
    b[0].reset().await.unwrap();

    // test_reset with a waiter: it gets BrokenBarrierError; the barrier is usable.
    {
        let (p, tx) = (b[0].clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(p.wait().await);
        });
    }
    group.wait_parked(1).await;
    b[1].reset().await.unwrap();
    assert_error(
        "waiter during reset",
        next(&mut rx).await,
        "BrokenBarrierError",
        "barrier is broken",
    );
    assert!(!b[1].broken().await.unwrap());
    assert_eq!(b[1].n_waiting().await.unwrap(), 0);
    let (tx, mut rx) = mpsc::unbounded_channel();
    for party in b.iter().take(2) {
        let (p, tx) = (party.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(p.wait().await);
        });
    }
    let last = b[2].wait().await.unwrap();
    let mut indices = vec![
        last,
        next(&mut rx).await.unwrap(),
        next(&mut rx).await.unwrap(),
    ];
    indices.sort();
    assert_eq!(indices, vec![0, 1, 2], "distinct indices after reset");
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_set_clear_wait_and_timed_wait() {
    let group = Group::start("Event").await;
    let boot = group.bootstrap();
    let e: Vec<Event> = (0..3)
        .map(|_| Event::new(&boot, options()).unwrap())
        .collect();
    assert!(!e[0].is_set().await.unwrap());
    let started = Instant::now();
    assert!(!e[0].wait_timeout(SHORT).await.unwrap());
    assert_took_about("Event wait_timeout", started, SHORT);

    let (tx, mut rx) = mpsc::unbounded_channel();
    for (i, ev) in e.iter().take(2).enumerate() {
        let (w, tx) = (ev.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send((i, w.wait().await));
        });
        group.wait_parked(i + 1).await;
    }
    assert!(rx.try_recv().is_err());
    e[2].set().await.unwrap();
    let mut woken = vec![next(&mut rx).await, next(&mut rx).await];
    woken.sort_by_key(|(i, _)| *i);
    for (i, (who, r)) in woken.into_iter().enumerate() {
        assert_eq!(who, i);
        assert!(r.unwrap(), "set wakes every waiter with true");
    }
    assert!(e[0].is_set().await.unwrap());
    assert!(e[0].wait().await.unwrap(), "already set: at once");
    assert!(e[1].wait_timeout(SHORT).await.unwrap());
    e[1].clear().await.unwrap();
    assert!(!e[2].is_set().await.unwrap());
    let started = Instant::now();
    assert!(!e[2].wait_timeout(SHORT).await.unwrap());
    assert_took_about("Event wait_timeout after clear", started, SHORT);
    assert!(matches!(
        e[0].client().call::<_, ()>("set", (1,)).await,
        Err(ClientError::BadArguments(_))
    ));
    group.stop().await;
}

/// Sets up a holder and a waiter whose acquire is parked on the leader through
/// a proxy. The waiter knows the proxy and a follower only.
async fn parked_behind_proxy(
    group: &Group,
) -> (
    Lock,
    Lock,
    Proxy,
    tokio::task::JoinHandle<Result<bool, ClientError>>,
) {
    let (leader, followers) = group.leader().await;
    let holder = Lock::new(&leader, options()).unwrap();
    assert!(holder.acquire().await.unwrap());
    let proxy = Proxy::start(&leader).await;
    let waiter = Lock::new(&format!("{},{}", proxy.addr, followers[0]), options()).unwrap();
    let acquiring = {
        let w = waiter.clone();
        tokio::spawn(async move { w.acquire().await })
    };
    group.wait_parked(1).await;
    assert_eq!(proxy.accepted(), 1, "the waiter came through the proxy");
    (holder, waiter, proxy, acquiring)
}

/// The lock is held exactly once, by `waiter`.
async fn assert_held_once_by(waiter: &Lock, group: &Group) {
    let other = Lock::new(&group.bootstrap(), options()).unwrap();
    assert!(waiter.locked().await.unwrap());
    assert!(other.locked().await.unwrap());
    assert!(!other.try_acquire().await.unwrap());
    waiter.release().await.unwrap();
    assert!(!other.locked().await.unwrap(), "one release frees it");
    assert_error(
        "a second release",
        other.release().await,
        "RuntimeError",
        "release unlocked lock",
    );
    group.wait_parked(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_while_parked_resends_and_is_granted_once() {
    let group = Group::start("Lock").await;
    let (leader, _) = group.leader().await;
    let (holder, waiter, proxy, acquiring) = parked_behind_proxy(&group).await;
    let before = threading_support::status(&leader)
        .await
        .unwrap()
        .executed_slot;
    // Cut the waiter off: it reconnects to the follower, is redirected to the
    // leader and resends the same command id, which is ordered again.
    proxy.sever().await;
    until("the resent acquire is ordered", || {
        let leader = leader.clone();
        async move {
            let s = threading_support::status(&leader).await.ok()?;
            (s.executed_slot > before).then_some(())
        }
    })
    .await;
    group.wait_parked(1).await; // attached to its wait entry, not queued twice
    assert!(!acquiring.is_finished());
    holder.release().await.unwrap();
    let granted = tokio::time::timeout(PATIENCE, acquiring)
        .await
        .expect("the waiter is answered")
        .expect("task");
    assert!(granted.unwrap(), "exactly one grant, true");
    assert_held_once_by(&waiter, &group).await;
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_the_grant_gets_the_same_grant() {
    let group = Group::start("Lock").await;
    let (holder, waiter, proxy, acquiring) = parked_behind_proxy(&group).await;
    // The grant's answer is lost on the way back ...
    proxy.mute_replies();
    holder.release().await.unwrap();
    group.wait_parked(0).await; // the grant is ordered everywhere
    assert!(!acquiring.is_finished(), "the answer was swallowed");
    // ... then the connection is cut: the client resends and gets the same grant.
    proxy.sever().await;
    let granted = tokio::time::timeout(PATIENCE, acquiring)
        .await
        .expect("the waiter is answered")
        .expect("task");
    assert!(granted.unwrap(), "the same grant, true");
    assert_held_once_by(&waiter, &group).await;
    group.stop().await;
}
