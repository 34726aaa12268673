use super::{ok, v};
use crate::history::{History, Operation};
use crate::mutex::{check, MutexKind, MutexReport};

fn run(kind: MutexKind, ops: Vec<Operation>) -> MutexReport {
    check(kind, &History::from_operations(ops))
}

fn acq(c: &str, inv: u64, ret: u64) -> Operation {
    ok(c, "acquire", vec![], true, inv, ret)
}

fn rel(c: &str, inv: u64, ret: u64) -> Operation {
    ok(c, "release", vec![], (), inv, ret)
}

fn info(c: &str, method: &str, inv: u64) -> Operation {
    Operation::info(c, method, vec![], inv)
}

const LOCKS: [MutexKind; 4] = [
    MutexKind::Lock,
    MutexKind::RLock,
    MutexKind::Semaphore(1),
    MutexKind::BoundedSemaphore(1),
];

#[test]
fn overlapping_holders_are_a_violation() {
    // b's acquire returns at 3 while a (acquired at 1) has not yet
    // invoked its release (at 5).
    for kind in LOCKS {
        let r = run(
            kind,
            vec![
                acq("a", 0, 1),
                acq("b", 2, 3),
                rel("a", 5, 6),
                rel("b", 7, 8),
            ],
        );
        assert_eq!(r.violations.len(), 1, "{kind:?}: {r}");
        let x = &r.violations[0];
        assert_eq!((x.from, x.until), (3, Some(5)), "{kind:?}");
        assert_eq!(
            x.holders,
            vec!["a".to_string(), "b".to_string()],
            "{kind:?}"
        );
        assert!(
            x.explanation.contains("violated at t=3"),
            "{}",
            x.explanation
        );
    }
}

#[test]
fn handover_is_legal() {
    // b waits (parked) from 2; a's release (5..6) hands it over; b's
    // acquire returns at 7.
    for kind in LOCKS {
        let r = run(
            kind,
            vec![
                acq("a", 0, 1),
                acq("b", 2, 7),
                rel("a", 5, 6),
                rel("b", 8, 9),
            ],
        );
        assert!(r.is_ok(), "{kind:?}: {r}");
        // Also when b's acquire returns before a's release does (the release
        // took effect, its reply was slow).
        let r = run(
            kind,
            vec![
                acq("a", 0, 1),
                rel("a", 5, 20),
                acq("b", 2, 7),
                rel("b", 8, 9),
            ],
        );
        assert!(r.is_ok(), "{kind:?}: {r}");
        // And with equal timestamps.
        let r = run(kind, vec![acq("a", 0, 1), rel("a", 5, 6), acq("b", 2, 5)]);
        assert!(r.is_ok(), "{kind:?}: {r}");
    }
}

#[test]
fn semaphore_of_two() {
    let three = vec![
        acq("a", 0, 1),
        acq("b", 0, 2),
        acq("c", 0, 3),
        rel("a", 10, 11),
        rel("b", 10, 11),
        rel("c", 10, 11),
    ];
    for kind in [MutexKind::Semaphore(2), MutexKind::BoundedSemaphore(2)] {
        let r = run(kind, three.clone());
        assert_eq!(r.violations.len(), 1, "{r}");
        assert_eq!(r.violations[0].from, 3);
        assert_eq!(r.violations[0].held, 3);
        assert_eq!(r.violations[0].holders.len(), 3);
        assert!(run(kind, three[..2].to_vec()).is_ok());
        let staggered = vec![
            acq("a", 0, 1),
            acq("b", 0, 2),
            rel("a", 3, 4),
            acq("c", 0, 5),
        ];
        assert!(run(kind, staggered).is_ok());
    }
    assert!(run(MutexKind::Semaphore(3), three).is_ok());
    // release(2) returns two permits at once.
    let two_back = vec![
        acq("a", 0, 1),
        acq("a", 2, 3),
        ok("a", "release", vec![v(2)], (), 4, 5),
        acq("b", 6, 7),
        acq("c", 6, 7),
    ];
    assert!(run(MutexKind::Semaphore(2), two_back).is_ok());
}

#[test]
fn info_acquire_never_released() {
    // a's acquire timed out; maybe it never took effect: b and c may take
    // the lock in turn.
    for kind in LOCKS {
        let ops = vec![
            info("a", "acquire", 0),
            acq("b", 1, 2),
            rel("b", 3, 4),
            acq("c", 5, 6),
        ];
        assert!(run(kind, ops).is_ok(), "{kind:?}");
    }
    let r = run(MutexKind::Lock, vec![info("a", "acquire", 0)]);
    assert_eq!((r.acquired, r.info_acquires), (0, 1));
}

#[test]
fn info_release_excuses_only_while_it_may_run() {
    // a holds, its release times out (may take effect any time from 3);
    // b acquires at 5: legal.
    for kind in LOCKS {
        let ops = vec![acq("a", 0, 1), info("a", "release", 3), acq("b", 4, 5)];
        assert!(run(kind, ops).is_ok(), "{kind:?}");
    }
    // x's acquire has an unknown outcome, its release returned; much later
    // b and c overlap. For a Lock that is certain: x's release took effect
    // by t=2, so the window from b's acquire has no release to excuse the
    // overlap (counting from the beginning, x's release would). For an
    // unbounded Semaphore, x's release may have raised the count to 2.
    let ops = vec![
        info("x", "acquire", 0),
        rel("x", 1, 2),
        acq("b", 100, 101),
        acq("c", 102, 103),
        rel("b", 110, 111),
    ];
    let r = run(MutexKind::Lock, ops.clone());
    assert_eq!(r.violations.len(), 1, "{r}");
    assert_eq!(r.violations[0].window_start, Some(100));
    assert_eq!(r.violations[0].until, Some(110));
    assert!(
        run(MutexKind::BoundedSemaphore(1), ops.clone())
            .violations
            .len()
            == 1
    );
    assert!(run(MutexKind::Semaphore(1), ops.clone()).is_ok());
    assert!(!run(MutexKind::RLock, ops.clone()).is_ok());
    // An info release, though, may take effect at any time after its
    // invocation, even between b's and c's acquires (a Lock may be
    // released by anyone).
    let mut ops = ops;
    ops[1] = info("x", "release", 1);
    assert!(run(MutexKind::Lock, ops.clone()).is_ok());
    assert!(!run(MutexKind::RLock, ops).is_ok());
}

#[test]
fn anyones_release_frees_a_lock_but_not_an_rlock() {
    // a holds and never releases; x's acquire timed out and x released
    // (successfully); c acquires.
    let ops = vec![
        acq("a", 0, 1),
        info("x", "acquire", 2),
        rel("x", 3, 4),
        acq("c", 5, 6),
    ];
    assert!(run(MutexKind::Lock, ops.clone()).is_ok());
    let r = run(MutexKind::RLock, ops);
    assert_eq!(r.violations.len(), 1);
    assert_eq!(
        r.violations[0].holders,
        vec!["a".to_string(), "c".to_string()]
    );
    assert_eq!(r.violations[0].until, None);
}

#[test]
fn raised_or_failed_releases_release_nothing() {
    for (name, bad) in [
        (
            "raised",
            Operation::err("a", "release", vec![], "RuntimeError", 2, 3),
        ),
        ("failed", Operation::fail("a", "release", vec![], 2, 3)),
    ] {
        for kind in LOCKS {
            let r = run(kind, vec![acq("a", 0, 1), bad.clone(), acq("b", 4, 5)]);
            assert_eq!(r.violations.len(), 1, "{name} {kind:?}");
        }
    }
    // acquire answered false or raised holds nothing.
    for kind in LOCKS {
        let ops = vec![
            acq("a", 0, 1),
            ok("b", "acquire", vec![v(false)], false, 2, 3),
            Operation::err("b", "acquire", vec![v("x")], "BadArguments", 2, 3),
            Operation::fail("b", "acquire", vec![], 2, 3),
            ok("b", "locked", vec![], true, 2, 3),
        ];
        assert!(run(kind, ops).is_ok(), "{kind:?}");
    }
}

#[test]
fn rlock_counts_reentrant_holds_per_client() {
    let still_held = vec![
        acq("a", 0, 1),
        acq("a", 2, 3),
        rel("a", 4, 5),
        acq("b", 6, 7),
        rel("a", 8, 9),
    ];
    let r = run(MutexKind::RLock, still_held.clone());
    assert_eq!(r.violations.len(), 1, "{r}");
    assert_eq!((r.violations[0].from, r.violations[0].until), (7, Some(8)));
    // For a Lock the second acquire by a would itself be the overlap.
    assert!(!run(MutexKind::Lock, still_held).is_ok());
    let released = vec![
        acq("a", 0, 1),
        acq("a", 2, 3),
        rel("a", 4, 5),
        rel("a", 6, 7),
        acq("b", 8, 9),
    ];
    assert!(run(MutexKind::RLock, released).is_ok());
}

#[test]
fn a_gone_session_may_release() {
    let ops = vec![acq("a", 0, 1), acq("b", 6, 7)];
    for kind in LOCKS {
        assert!(!run(kind, ops.clone()).is_ok(), "{kind:?}");
        let h = History::from_operations(ops.clone());
        h.session_end_at("a", 5);
        assert!(check(kind, &h).is_ok(), "{kind:?}");
        // Ending after b's acquire excuses nothing before it.
        let h = History::from_operations(ops.clone());
        h.session_end_at("a", 9);
        let r = check(kind, &h);
        assert_eq!(r.violations.len(), 1, "{kind:?}");
        assert_eq!(r.violations[0].until, Some(9), "{kind:?}");
    }
}

#[test]
fn recorded_live_with_the_real_clock() {
    let h = History::new();
    let a = h.invoke("a", "acquire", vec![]);
    a.ok(true);
    let b = h.invoke("b", "acquire", vec![]);
    let r = h.invoke("a", "release", vec![]);
    r.ok(());
    b.ok(true);
    h.invoke("b", "release", vec![]).ok(());
    assert!(check(MutexKind::Lock, &h).is_ok());
    h.invoke("c", "acquire", vec![]).ok(true);
    h.invoke("d", "acquire", vec![]).ok(true);
    assert_eq!(check(MutexKind::Lock, &h).violations.len(), 1);
}
