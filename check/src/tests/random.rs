//! Histories generated from a sequential execution: each operation gets a
//! linearization point and a random interval around it, so the history is
//! linearizable by construction; some are `info` (took effect, outcome
//! unknown), and some extra `info`/`fail` operations never took effect.

use super::v;
use crate::history::{Completion, ErrorValue, OpId, Operation, Time};
use crate::linearizability::{check_operations, CheckResult, Counter, Options, Queue, Register};
use crate::mutex::{check_operations as check_mutex, MutexKind};
use proptest::prelude::*;
use std::collections::VecDeque;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Counter,
    Register,
    Queue,
}

const KINDS: [Kind; 3] = [Kind::Counter, Kind::Register, Kind::Queue];

fn op(
    client: u64,
    method: &str,
    args: Vec<rmpv::Value>,
    inv: Time,
    completion: Completion,
) -> Operation {
    Operation {
        id: OpId(0),
        client: format!("c{client}"),
        method: method.to_string(),
        args,
        invoke: inv,
        completion,
        stale: false,
    }
}

/// A linearizable history of `n` operations on `kind`; `width` bounds how
/// far invocation and return lie from the linearization point (points are
/// 100 apart). Returns the operations and the indices of completed reads.
fn generate(
    kind: Kind,
    seed: u64,
    n: usize,
    width: u64,
    clients: u64,
) -> (Vec<Operation>, Vec<usize>) {
    let mut rng = Rng(seed);
    let mut counter = 0i64;
    let mut register = rmpv::Value::Nil;
    let mut queue: VecDeque<rmpv::Value> = VecDeque::new();
    let mut ops = Vec::new();
    let mut reads = Vec::new();
    let mut ghosts = 0u64;
    for i in 0..n as u64 {
        let point = 1_000_000 + 100 * i;
        let inv = point - rng.below(width + 1);
        let ret = point + rng.below(width + 1);
        let client = rng.below(clients);
        let (method, args, result, read): (
            &str,
            Vec<rmpv::Value>,
            Result<rmpv::Value, &str>,
            bool,
        ) = match kind {
            Kind::Counter => match rng.below(10) {
                0..=3 => {
                    counter += 1;
                    ("increment", vec![], Ok(rmpv::Value::Nil), false)
                }
                4 => {
                    counter -= 1;
                    ("decrement", vec![], Ok(rmpv::Value::Nil), false)
                }
                _ => ("getvalue", vec![], Ok(v(counter)), true),
            },
            Kind::Register => {
                if rng.chance(50) {
                    register = v(rng.below(8));
                    (
                        "setvalue",
                        vec![register.clone()],
                        Ok(rmpv::Value::Nil),
                        false,
                    )
                } else {
                    ("getvalue", vec![], Ok(register.clone()), true)
                }
            }
            Kind::Queue => match rng.below(10) {
                0..=3 => {
                    let item = v(format!("item{i}"));
                    queue.push_back(item.clone());
                    ("put", vec![item], Ok(rmpv::Value::Nil), false)
                }
                4..=7 => match queue.pop_front() {
                    Some(item) => ("get", vec![], Ok(item), true),
                    None => ("get", vec![], Err("Empty"), false),
                },
                _ => ("qsize", vec![], Ok(v(queue.len())), true),
            },
        };
        let completion = if rng.chance(7) {
            // Took effect, but the client never learnt the outcome.
            Completion::Info {
                reason: "timeout".into(),
                at: Some(ret),
            }
        } else {
            let result = result.map_err(|kind| ErrorValue {
                kind: kind.into(),
                message: String::new(),
            });
            Completion::Ok { result, at: ret }
        };
        if read && matches!(completion, Completion::Ok { .. }) {
            reads.push(ops.len());
        }
        ops.push(op(client, method, args, inv, completion));
        // Operations that never took effect.
        if rng.chance(4) {
            ghosts += 1;
            let (method, args) = match kind {
                Kind::Counter => ("increment", vec![]),
                Kind::Register => ("setvalue", vec![v(format!("ghost{ghosts}"))]),
                Kind::Queue => ("put", vec![v(format!("ghost{ghosts}"))]),
            };
            let inv = point - rng.below(width + 1);
            let completion = if rng.chance(50) {
                Completion::Info {
                    reason: "unavailable".into(),
                    at: None,
                }
            } else {
                Completion::Fail {
                    error: "refused".into(),
                    at: inv + rng.below(width + 1),
                }
            };
            ops.push(op(rng.below(clients), method, args, inv, completion));
        }
    }
    (ops, reads)
}

fn check(kind: Kind, ops: &[Operation]) -> CheckResult {
    let options = Options::default();
    match kind {
        Kind::Counter => check_operations(&Counter::default(), ops, &options),
        Kind::Register => check_operations(&Register::default(), ops, &options),
        Kind::Queue => check_operations(&Queue::default(), ops, &options),
    }
}

/// Makes read `i` return something no execution can produce.
fn corrupt(kind: Kind, ops: &mut [Operation], i: usize) {
    let impossible = match (kind, ops[i].method.as_str()) {
        (Kind::Counter, _) | (Kind::Queue, "qsize") => v(10_000_000),
        _ => v("never written"),
    };
    if let Completion::Ok { result, .. } = &mut ops[i].completion {
        *result = Ok(impossible);
    }
}

fn legal_and_corrupted(kind: Kind, seed: u64, n: usize, width: u64, clients: u64) {
    let (mut ops, reads) = generate(kind, seed, n, width, clients);
    let verdict = check(kind, &ops);
    assert!(verdict.is_ok(), "{kind:?} seed {seed}: {verdict}");
    if reads.is_empty() {
        return;
    }
    let i = reads[(seed as usize / 7) % reads.len()];
    corrupt(kind, &mut ops, i);
    let verdict = check(kind, &ops);
    match &verdict {
        CheckResult::Illegal(why) => {
            assert!(
                why.failing.iter().any(|o| o.invoke == ops[i].invoke),
                "{why}"
            );
        }
        other => panic!(
            "{kind:?} seed {seed}: corrupted read {} gave {other}",
            ops[i]
        ),
    }
}

#[test]
fn generated_histories_pass_and_corrupted_ones_fail() {
    for seed in 0..150u64 {
        let kind = KINDS[seed as usize % 3];
        let width = [10, 150, 400][(seed as usize / 3) % 3];
        // Wide overlaps make queue searches explode (see the test below).
        let width = if let Kind::Queue = kind {
            width.min(60)
        } else {
            width
        };
        legal_and_corrupted(kind, seed, 120, width, 8);
    }
}

#[test]
fn a_few_thousand_operations_with_many_clients() {
    // Counter: ~10 operations overlap at any time, Value ~30; 7% of them
    // info, plus 4% that never took effect. Queue histories are much harder
    // to search (the order of concurrent puts shows only when their items
    // come out, and a timed-out get may have taken any item), so fewer
    // overlap there.
    for (kind, width) in [
        (Kind::Counter, 500),
        (Kind::Register, 1500),
        (Kind::Queue, 40),
    ] {
        let started = std::time::Instant::now();
        let (ops, _) = generate(kind, 42, 3000, width, 40);
        let verdict = check(kind, &ops);
        assert!(verdict.is_ok(), "{kind:?}: {verdict}");
        println!("{kind:?}: 3000 operations in {:?}", started.elapsed());
        assert!(
            started.elapsed().as_secs() < 30,
            "{kind:?} took {:?}",
            started.elapsed()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn proptest_linearizable_histories(
        seed in any::<u64>(),
        n in 1usize..80,
        width in 0u64..500,
        kind in 0usize..3,
    ) {
        let width = if kind == 2 { width.min(60) } else { width };
        legal_and_corrupted(KINDS[kind], seed, n, width, 6);
    }
}

// --- Mutual exclusion ----------------------------------------------------

/// A legal history of a `permits`-semaphore used as a lock: a client
/// releases only what it holds; acquires find a permit or answer false.
fn generate_locking(seed: u64, n: usize, width: u64, clients: u64, permits: u64) -> Vec<Operation> {
    let mut rng = Rng(seed);
    let mut held = vec![false; clients as usize];
    let mut free = permits;
    let mut ops = Vec::new();
    for i in 0..n as u64 {
        let point = 1_000_000 + 100 * i;
        let inv = point - rng.below(width + 1);
        let ret = point + rng.below(width + 1);
        let c = rng.below(clients);
        let (method, result) = if held[c as usize] {
            held[c as usize] = false;
            free += 1;
            ("release", v(()))
        } else if free > 0 {
            held[c as usize] = true;
            free -= 1;
            ("acquire", v(true))
        } else {
            ("acquire", v(false))
        };
        let completion = if rng.chance(6) {
            Completion::Info {
                reason: "timeout".into(),
                at: Some(ret),
            }
        } else {
            Completion::Ok {
                result: Ok(result),
                at: ret,
            }
        };
        ops.push(op(c, method, vec![], inv, completion));
        if rng.chance(3) {
            // An acquire that never took effect.
            let completion = Completion::Info {
                reason: "unavailable".into(),
                at: None,
            };
            ops.push(op(rng.below(clients), "acquire", vec![], inv, completion));
        }
    }
    ops
}

#[test]
fn generated_lock_histories_pass_and_an_intruder_is_caught() {
    let mut caught = 0;
    for seed in 0..300u64 {
        let permits = 1 + seed % 3;
        let width = [5, 60, 300][(seed as usize / 3) % 3];
        let mut ops = generate_locking(seed, 200, width, 6, permits);
        let kinds = [
            MutexKind::Semaphore(permits),
            MutexKind::BoundedSemaphore(permits),
        ];
        for kind in kinds {
            let r = check_mutex(kind, &ops, &[]);
            assert!(r.is_ok(), "seed {seed}: {r}");
        }
        if permits != 1 {
            continue;
        }
        for kind in [MutexKind::Lock, MutexKind::RLock] {
            let r = check_mutex(kind, &ops, &[]);
            assert!(r.is_ok(), "seed {seed}: {r}");
        }
        // An intruder acquires while a holder certainly holds: after its
        // acquire returned and before it invoked its release, at a point
        // where no earlier release may still be running.
        let found = ops.iter().enumerate().find_map(|(i, a)| {
            let Completion::Ok { result: Ok(r), at } = &a.completion else {
                return None;
            };
            if a.method != "acquire" || r.as_bool() != Some(true) {
                return None;
            }
            let quiet = ops.iter().all(|o| {
                o.method != "release"
                    || o.invoke > *at
                    || matches!(o.completion, Completion::Ok { at: end, .. } if end < a.invoke)
            });
            let next_release = ops
                .iter()
                .filter(|o| o.client == a.client && o.method == "release" && o.invoke > *at)
                .map(|o| o.invoke)
                .min()
                .unwrap_or(u64::MAX);
            (quiet && next_release > at + 2).then_some((i, *at, next_release))
        });
        let Some((_, from, until)) = found else {
            continue;
        };
        let until = until.min(from + 1000);
        ops.push(op(
            99,
            "acquire",
            vec![],
            from + 1,
            Completion::Ok {
                result: Ok(v(true)),
                at: until - 1,
            },
        ));
        for kind in [
            MutexKind::Lock,
            MutexKind::RLock,
            MutexKind::BoundedSemaphore(1),
        ] {
            let r = check_mutex(kind, &ops, &[]);
            assert!(!r.is_ok(), "seed {seed} {kind:?}: intruder not caught");
            assert!(r.violations[0].holders.contains(&"c99".to_string()), "{r}");
        }
        caught += 1;
    }
    assert!(caught > 20, "only {caught} intruders placed");
}
