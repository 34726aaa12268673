use super::{ok, v};
use crate::history::{History, Operation};
use crate::linearizability::{
    check, check_object, CheckResult, Counter, Options, Queue, Register, Semaphore,
};

fn opts() -> Options {
    Options::default()
}

fn run<M: crate::Model>(model: &M, ops: Vec<Operation>) -> CheckResult {
    check(model, &History::from_operations(ops), &opts())
}

fn illegal<M: crate::Model>(model: &M, ops: Vec<Operation>) -> crate::Illegal {
    match run(model, ops) {
        CheckResult::Illegal(i) => *i,
        other => panic!("expected Illegal, got {other}"),
    }
}

fn info(client: &str, method: &str, args: Vec<rmpv::Value>, inv: u64) -> Operation {
    Operation::info(client, method, args, inv)
}

// --- Counter -------------------------------------------------------------

#[test]
fn counter_sequential_is_legal() {
    let ops = vec![
        ok("a", "increment", vec![], (), 0, 10),
        ok("a", "increment", vec![], (), 11, 20),
        ok("b", "decrement", vec![], (), 21, 30),
        ok("b", "getvalue", vec![], 1, 31, 40),
    ];
    assert!(run(&Counter::default(), ops).is_ok());
}

#[test]
fn counter_stale_read_is_illegal() {
    // The increment was acknowledged before the read began; the read still
    // shows the old value.
    let ops = vec![
        ok("a", "increment", vec![], (), 0, 10),
        ok("b", "getvalue", vec![], 0, 20, 30),
    ];
    let i = illegal(&Counter::default(), ops);
    assert_eq!(i.prefix_end, 30);
    assert_eq!(i.failing.len(), 1);
    assert_eq!(i.failing[0].method, "getvalue");
    assert!(
        i.explanation.contains("getvalue() -> 0"),
        "{}",
        i.explanation
    );
}

#[test]
fn counter_stale_read_marked_stale_is_left_out() {
    // The same stale read, sent allowing staleness: the checker is told so
    // and leaves it out; an ordinary read in the same history still counts.
    let ops = vec![
        ok("a", "increment", vec![], (), 0, 10),
        ok("b", "getvalue", vec![], 0, 20, 30).allow_stale(),
        ok("c", "getvalue", vec![], 1, 20, 30),
    ];
    let opts = opts();
    let checked = crate::linearizability::check_operations;
    assert!(checked(&Counter::default(), &ops, &opts).is_ok());
    let mut unmarked = ops.clone();
    unmarked[1].stale = false;
    assert!(!checked(&Counter::default(), &unmarked, &opts).is_ok());
}

#[test]
fn counter_lost_update_is_illegal() {
    // Two concurrent increments both acknowledged; the final read shows one.
    let lost = vec![
        ok("a", "increment", vec![], (), 0, 10),
        ok("b", "increment", vec![], (), 2, 12),
        ok("c", "getvalue", vec![], 1, 20, 30),
    ];
    let i = illegal(&Counter::default(), lost);
    assert_eq!(i.failing[0].client, "c");
    let fine = vec![
        ok("a", "increment", vec![], (), 0, 10),
        ok("b", "increment", vec![], (), 2, 12),
        ok("c", "getvalue", vec![], 2, 20, 30),
    ];
    assert!(run(&Counter::default(), fine).is_ok());
}

#[test]
fn counter_read_may_see_a_running_increment_or_not() {
    // A naive checker ordering operations by completion would insist the
    // read (done at 20) comes before the increment (done at 100).
    for seen in [0, 1] {
        let ops = vec![
            ok("a", "increment", vec![], (), 0, 100),
            ok("b", "getvalue", vec![], seen, 10, 20),
            ok("b", "getvalue", vec![], 1, 110, 120),
        ];
        assert!(run(&Counter::default(), ops).is_ok(), "saw {seen}");
    }
    // But once one read saw it, a later read cannot un-see it.
    let ops = vec![
        ok("a", "increment", vec![], (), 0, 100),
        ok("b", "getvalue", vec![], 1, 10, 20),
        ok("c", "getvalue", vec![], 0, 30, 40),
    ];
    assert!(run(&Counter::default(), ops).is_illegal());
}

#[test]
fn counter_info_increment_may_or_may_not_apply() {
    let base = || {
        vec![
            ok("a", "increment", vec![], (), 0, 10),
            info("b", "increment", vec![], 5),
        ]
    };
    for (seen, legal) in [(0, false), (1, true), (2, true), (3, false)] {
        let mut ops = base();
        ops.push(ok("c", "getvalue", vec![], seen, 20, 30));
        assert_eq!(run(&Counter::default(), ops).is_ok(), legal, "read {seen}");
    }
    // It may take effect long after: 1, then 2.
    let mut ops = base();
    ops.push(ok("c", "getvalue", vec![], 1, 20, 30));
    ops.push(ok("c", "getvalue", vec![], 2, 1000, 1010));
    assert!(run(&Counter::default(), ops).is_ok());
    // But not before it was invoked.
    let ops = vec![
        ok("c", "getvalue", vec![], 1, 0, 4),
        info("b", "increment", vec![], 5),
    ];
    assert!(run(&Counter::default(), ops).is_illegal());
}

#[test]
fn many_identical_info_ops_stay_cheap() {
    // 60 timed-out increments: without the twin rule this is 2^60 subsets.
    let mut ops: Vec<Operation> = (0..60)
        .map(|i| info(&format!("c{i}"), "increment", vec![], i))
        .collect();
    ops.push(ok("r", "getvalue", vec![], 30, 100, 110));
    ops.push(ok("r", "getvalue", vec![], 61, 200, 210));
    let started = std::time::Instant::now();
    assert!(run(&Counter::default(), ops).is_illegal());
    assert!(started.elapsed().as_secs() < 5);
}

#[test]
fn fail_ops_did_not_happen_and_bad_arguments_change_nothing() {
    let ops = vec![
        Operation::fail("a", "increment", vec![], 0, 10),
        ok("b", "getvalue", vec![], 1, 20, 30),
    ];
    assert!(run(&Counter::default(), ops).is_illegal());
    let ops = vec![
        Operation::fail("a", "increment", vec![], 0, 10),
        Operation::err("a", "increment", vec![v(1)], "BadArguments", 11, 12),
        ok("b", "getvalue", vec![], 0, 20, 30),
    ];
    assert!(run(&Counter::default(), ops).is_ok());
    // Another error on increment is impossible.
    let ops = vec![Operation::err(
        "a",
        "increment",
        vec![],
        "RuntimeError",
        0,
        10,
    )];
    assert!(run(&Counter::default(), ops).is_illegal());
}

// --- Value register ------------------------------------------------------

#[test]
fn register_stale_read_is_illegal() {
    let ops = vec![
        ok("a", "setvalue", vec![v(1)], (), 0, 10),
        ok("a", "setvalue", vec![v(2)], (), 11, 20),
        ok("b", "getvalue", vec![], 1, 30, 40),
    ];
    let i = illegal(&Register::default(), ops);
    assert!(
        i.explanation.contains("getvalue() -> 1"),
        "{}",
        i.explanation
    );
    assert_eq!(i.linearized_tail.last().unwrap().1, "2");
}

#[test]
fn register_overlap_that_completion_order_would_reject() {
    // write(1) runs long; write(2) completes first; the read sees 1 — legal:
    // write(2) at 15, write(1) at 35, read at 38.
    let ops = vec![
        ok("a", "setvalue", vec![v(1)], (), 0, 50),
        ok("b", "setvalue", vec![v(2)], (), 10, 20),
        ok("c", "getvalue", vec![], 1, 30, 40),
    ];
    assert!(run(&Register::default(), ops).is_ok());
    // An initial read before anything is nil; values of any type.
    let ops = vec![
        ok("c", "getvalue", vec![], (), 0, 1),
        ok("a", "setvalue", vec![v(vec!["x", "y"])], (), 2, 3),
        ok("c", "getvalue", vec![], vec!["x", "y"], 4, 5),
    ];
    assert!(run(&Register::default(), ops).is_ok());
}

#[test]
fn register_info_write_took_effect_or_not() {
    let base = || {
        vec![
            ok("a", "setvalue", vec![v(1)], (), 0, 10),
            info("b", "setvalue", vec![v(2)], 5),
        ]
    };
    // Never took effect.
    let mut ops = base();
    ops.push(ok("c", "getvalue", vec![], 1, 20, 30));
    assert!(run(&Register::default(), ops).is_ok());
    // Took effect late, after a read of 1.
    let mut ops = base();
    ops.push(ok("c", "getvalue", vec![], 1, 20, 30));
    ops.push(ok("c", "getvalue", vec![], 2, 40, 50));
    assert!(run(&Register::default(), ops.clone()).is_ok());
    // And then the register cannot go back to 1.
    ops.push(ok("c", "getvalue", vec![], 1, 60, 70));
    let i = illegal(&Register::default(), ops);
    assert_eq!(i.prefix_end, 70);
}

#[test]
fn register_read_of_a_value_never_written() {
    let ops = vec![
        ok("a", "setvalue", vec![v(1)], (), 0, 10),
        ok("b", "getvalue", vec![], 7, 5, 30),
    ];
    assert!(run(&Register::default(), ops).is_illegal());
}

#[test]
fn equal_timestamps_count_as_concurrent() {
    let ops = vec![
        ok("a", "setvalue", vec![v(1)], (), 0, 10),
        ok("b", "getvalue", vec![], (), 10, 20),
    ];
    assert!(run(&Register::default(), ops).is_ok());
}

// --- Queue ---------------------------------------------------------------

#[test]
fn queue_fifo() {
    let legal = vec![
        ok("a", "put", vec![v(1)], (), 0, 10),
        ok("a", "put", vec![v(2)], (), 20, 30),
        ok("b", "get", vec![], 1, 40, 50),
        ok("b", "qsize", vec![], 1, 51, 52),
        ok("b", "get", vec![], 2, 60, 70),
        Operation::err("b", "get", vec![], "Empty", 80, 90),
        ok("b", "empty", vec![], true, 91, 92),
    ];
    assert!(run(&Queue::default(), legal).is_ok());
    let reordered = vec![
        ok("a", "put", vec![v(1)], (), 0, 10),
        ok("a", "put", vec![v(2)], (), 20, 30),
        ok("b", "get", vec![], 2, 40, 50),
    ];
    assert!(run(&Queue::default(), reordered).is_illegal());
    // Concurrent puts may land in either order.
    let concurrent = vec![
        ok("a", "put", vec![v(1)], (), 0, 10),
        ok("c", "put", vec![v(2)], (), 5, 15),
        ok("b", "get", vec![], 2, 40, 50),
        ok("b", "get", vec![], 1, 60, 70),
    ];
    assert!(run(&Queue::default(), concurrent).is_ok());
}

#[test]
fn queue_lost_item_and_duplicate_delivery() {
    let lost = vec![
        ok("a", "put", vec![v(1)], (), 0, 10),
        Operation::err("b", "get", vec![], "Empty", 20, 30),
    ];
    assert!(run(&Queue::default(), lost).is_illegal());
    let twice = vec![
        ok("a", "put", vec![v(1)], (), 0, 10),
        ok("b", "get", vec![], 1, 20, 30),
        ok("c", "get", vec![], 1, 25, 35),
    ];
    assert!(run(&Queue::default(), twice).is_illegal());
    // An info get may have taken the item.
    let taken = vec![
        ok("a", "put", vec![v(1)], (), 0, 10),
        info("c", "get", vec![], 15),
        Operation::err("b", "get", vec![], "Empty", 20, 30),
    ];
    assert!(run(&Queue::default(), taken).is_ok());
}

#[test]
fn bounded_queue_raises_full() {
    let ops = vec![
        ok("a", "put", vec![v(1)], (), 0, 10),
        Operation::err("a", "put", vec![v(2)], "Full", 11, 20),
        ok("a", "full", vec![], true, 21, 22),
        ok("a", "get_queue", vec![], vec![1], 23, 24),
    ];
    assert!(run(&Queue { maxsize: 1 }, ops.clone()).is_ok());
    assert!(run(&Queue::default(), ops).is_illegal());
}

// --- Lock / Semaphore as sequential objects -------------------------------

#[test]
fn lock_model() {
    let overlap = vec![
        ok("a", "acquire", vec![], true, 0, 10),
        ok("b", "acquire", vec![], true, 20, 30),
    ];
    assert!(run(&Semaphore::lock(), overlap).is_illegal());
    let handover = vec![
        ok("a", "acquire", vec![], true, 0, 10),
        ok("b", "acquire", vec![], true, 5, 40),
        ok("a", "release", vec![], (), 20, 30),
        ok("b", "locked", vec![], true, 41, 42),
        Operation::err("c", "release", vec![], "RuntimeError", 43, 44).clone(),
    ];
    // c's release raised although b held: illegal for a Lock.
    assert!(run(&Semaphore::lock(), handover.clone()).is_illegal());
    assert!(run(&Semaphore::lock(), handover[..4].to_vec()).is_ok());
    // release(2) after one acquire: fine unbounded, too many if bounded.
    let two = vec![
        ok("a", "acquire", vec![], true, 0, 10),
        ok("c", "acquire", vec![v(false)], false, 11, 12),
        ok("a", "release", vec![v(2)], (), 13, 14),
        ok("b", "acquire", vec![], true, 15, 16),
        ok("c", "acquire", vec![], true, 15, 16),
        ok("d", "acquire", vec![], true, 15, 16),
    ];
    assert!(run(&Semaphore::new(2, false), two.clone()).is_ok());
    assert!(run(&Semaphore::new(2, true), two).is_illegal());
}

// --- Plumbing ------------------------------------------------------------

#[test]
fn unknown_on_budget_or_unsupported_operations() {
    let ops = vec![
        ok("a", "increment", vec![], (), 0, 10),
        ok("b", "getvalue", vec![], 1, 0, 30),
    ];
    let h = History::from_operations(ops);
    let tight = Options {
        max_steps: 1,
        ..Options::default()
    };
    assert!(check(&Counter::default(), &h, &tight).is_unknown());
    let ops = vec![ok("a", "frobnicate", vec![], (), 0, 10)];
    assert!(run(&Counter::default(), ops).is_unknown());
    assert!(check_object("Barrier", &[], &opts()).is_unknown());
    assert!(check_object("Counter", &[], &opts()).is_ok());
}

#[test]
fn smallest_failing_prefix_points_at_the_first_bad_read() {
    let mut ops = Vec::new();
    for i in 0..50u64 {
        ops.push(ok("w", "setvalue", vec![v(i)], (), 100 * i, 100 * i + 10));
        ops.push(ok("r", "getvalue", vec![], i, 100 * i + 20, 100 * i + 30));
    }
    // The 20th read goes stale; everything after is fine again.
    ops[41] = ok("r", "getvalue", vec![], 19, 2020, 2030);
    ops[40] = ok("w", "setvalue", vec![v(20)], (), 2000, 2010);
    ops[41] = ok("r", "getvalue", vec![], 19, 2020, 2030);
    let i = illegal(&Register::default(), ops);
    assert_eq!(i.prefix_end, 2030);
    assert_eq!(i.failing[0].invoke, 2020);
    assert!(i.prefix_len <= 42);
    assert!(i.blocked.is_some());
    let text = i.to_string();
    assert!(
        text.contains("smallest failing prefix ends at t=2030"),
        "{text}"
    );
}
