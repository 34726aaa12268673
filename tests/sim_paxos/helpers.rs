//! Seeds, configurations and the checks every scenario shares.

use concoord_actors::sim::{Sim, SimConfig};
use concoord_objects::{rmpv, CommandId};
use std::collections::{BTreeMap, BTreeSet};

const DEFAULT_SEEDS: u64 = 200;
/// Session scenarios replay their whole order per seed: fewer seeds by default.
pub(crate) const DEFAULT_SESSION_SEEDS: u64 = 50;
/// Simulated time every run must finish in.
pub(crate) const RUN_DEADLINE_MS: u64 = 120_000;
/// After a fault heals, some client must be answered within this much simulated time.
pub(crate) const RECOVERY_BOUND_MS: u64 = 5_000;

fn seeds(default: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("CONCOORD_SIM_SEED") {
        return vec![seed.parse().expect("CONCOORD_SIM_SEED is a number")];
    }
    let count = std::env::var("CONCOORD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (1..=count).collect()
}

/// Runs `scenario` for every seed and reports every failing one with how to replay it.
pub(crate) fn for_each_seed(name: &str, scenario: impl Fn(u64) -> Result<(), String>) {
    for_seeds(name, DEFAULT_SEEDS, scenario)
}

/// Seeds per follower-read scenario.
pub(crate) const FOLLOWER_READ_SEEDS: u64 = 30;

pub(crate) fn for_seeds(name: &str, default: u64, scenario: impl Fn(u64) -> Result<(), String>) {
    let mut failures = Vec::new();
    for seed in seeds(default) {
        if let Err(why) = scenario(seed) {
            failures.push(format!("seed {seed}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} failing seed(s); replay one with CONCOORD_SIM_SEED=N cargo test --test sim_paxos {name}\n{}",
        failures.len(),
        failures.join("\n")
    );
}

thread_local! {
    /// Set by [`with_thrifty_leaders`]: every config made on this thread
    /// (each test runs on a thread of its own) has thrifty leaders.
    static THRIFTY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `scenario` with thrifty leaders (Accepts to a bare majority) in
/// every config [`config`] and the configs built on it make meanwhile.
pub(crate) fn with_thrifty_leaders<T>(scenario: impl FnOnce() -> T) -> T {
    THRIFTY.with(|t| t.set(true));
    let result = scenario();
    THRIFTY.with(|t| t.set(false));
    result
}

pub(crate) fn config(seed: u64, nodes: usize) -> SimConfig {
    let mut cfg = SimConfig {
        seed,
        nodes,
        clients: 4,
        ops_per_client: 12,
        read_percent: 25,
        ..SimConfig::default()
    };
    cfg.leader.thrifty = THRIFTY.with(|t| t.get());
    cfg
}

pub(crate) fn counter_value(sim: &Sim, node: usize) -> Result<i64, String> {
    // The default object's count plus every named Counter's.
    let snapshot = sim.nodes[node].replica.snapshot();
    let states = std::iter::once(snapshot.object_state.as_slice()).chain(
        snapshot
            .store
            .named
            .iter()
            .filter(|(_, type_name, _)| type_name == "Counter")
            .map(|(_, _, state)| state.0.as_slice()),
    );
    let mut total = 0;
    for state in states {
        let value = rmpv::decode::read_value(&mut &state[..]).map_err(|e| e.to_string())?;
        total += value[0]
            .as_i64()
            .ok_or_else(|| format!("counter state is not [value]: {value}"))?;
    }
    Ok(total)
}

/// Drives the run to the end and checks what every scenario must hold.
pub(crate) fn finish_and_check(sim: &mut Sim) -> Result<(), String> {
    if !sim.run_until_done(RUN_DEADLINE_MS) {
        let progress: Vec<_> = sim
            .clients
            .iter()
            .map(|c| match &c.session {
                Some(s) => format!("{:?}", s.phase),
                None => format!("{}/{}", c.acked, c.ops),
            })
            .collect();
        let nodes: Vec<String> = sim
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "{:x}: alive {} leads {} ballot {} promised {} executed {} waiting {:?}",
                    n.id,
                    n.alive,
                    n.leader.is_active(),
                    n.leader.ballot(),
                    n.acceptor.promised(),
                    n.replica.executed(),
                    n.replica.waiting_slots().first()
                )
            })
            .collect();
        return Err(format!(
            "clients did not finish by {RUN_DEADLINE_MS} ms: {progress:?}; nodes {nodes:?}"
        ));
    }
    // Let every live replica learn the last decisions.
    let settle = sim.now_ms + 2_000;
    sim.run_until(settle);
    let alive: Vec<usize> = (0..sim.nodes.len())
        .filter(|i| sim.nodes[*i].alive)
        .collect();

    // Same commands in the same slots everywhere.
    for a in 0..sim.nodes.len() {
        for b in a + 1..sim.nodes.len() {
            let (ta, tb) = (sim.trace(a), sim.trace(b));
            for (slot, digest) in &ta.slot_digests {
                if let Some(other) = tb.slot_digests.get(slot) {
                    if other != digest {
                        return Err(format!(
                            "nodes {a} and {b} executed different batches in slot {slot}"
                        ));
                    }
                }
            }
        }
    }
    let executed: BTreeSet<u64> = alive
        .iter()
        .map(|i| sim.nodes[*i].replica.executed())
        .collect();
    if executed.len() != 1 {
        return Err(format!(
            "live replicas stopped at different slots: {executed:?}"
        ));
    }
    // Each command id ran on the object at most once per start of a node,
    // in one order everywhere (a node that installed a snapshot, or
    // restarted, applied part of that order).
    let reference = (0..sim.nodes.len())
        .map(|n| &sim.trace(n).applied)
        .max_by_key(|applied| applied.len())
        .expect("a group has nodes");
    let position: BTreeMap<&CommandId, usize> = reference
        .iter()
        .enumerate()
        .map(|(i, id)| (id, i))
        .collect();
    for node in 0..sim.nodes.len() {
        let applied = &sim.trace(node).applied;
        let distinct: BTreeSet<_> = applied.iter().collect();
        if distinct.len() != applied.len() {
            return Err(format!("node {node} applied some command twice"));
        }
        let positions: Vec<usize> = applied
            .iter()
            .filter_map(|id| position.get(id).copied())
            .collect();
        if positions.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("node {node} applied commands in another order"));
        }
    }
    if let Some(why) = sim.durability_violations.first() {
        return Err(format!(
            "a durable node forgot what it acknowledged: {why} ({} in all)",
            sim.durability_violations.len()
        ));
    }
    // Final value: every acknowledged increment exactly once (no client is left in doubt).
    let acked: u64 = sim.clients.iter().map(|c| c.acked_writes).sum();
    for &node in &alive {
        let value = counter_value(sim, node)?;
        if value != acked as i64 {
            return Err(format!(
                "node {node} counts {value}, clients were acknowledged {acked}"
            ));
        }
    }
    for d in &sim.deliveries {
        // Session clients judge their own answers (check_session_order).
        if let (Err(e), None) = (&d.reply, &sim.clients[d.client].session) {
            return Err(format!("call {} failed: {e}", d.id));
        }
    }
    check_linearizable(sim)
}

/// The clients' history of increments and reads has a linearization, for
/// each object on its own.
fn check_linearizable(sim: &Sim) -> Result<(), String> {
    use concoord::check::linearizability::{check_object, CheckResult, Options};
    use concoord::history::{ms, Operation};
    let mut per_object: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in &sim.ops {
        let client = format!("c{}", op.client);
        let operation = match &op.completed {
            Some((at, Ok(bytes))) => {
                let result = rmpv::decode::read_value(&mut &bytes[..]).unwrap_or(rmpv::Value::Nil);
                Operation::ok(
                    client,
                    &op.method,
                    vec![],
                    result,
                    ms(op.invoke_ms),
                    ms(*at),
                )
            }
            Some((at, Err(e))) => Operation::err(
                client,
                &op.method,
                vec![],
                &e.kind,
                ms(op.invoke_ms),
                ms(*at),
            ),
            None => Operation::info(client, &op.method, vec![], ms(op.invoke_ms)),
        };
        // Stale reads are marked so; the checker leaves them out.
        let operation = if op.stale {
            operation.allow_stale()
        } else {
            operation
        };
        per_object
            .entry(op.object.as_str())
            .or_default()
            .push(operation);
    }
    for (object, ops) in per_object {
        match check_object("Counter", &ops, &Options::default()) {
            CheckResult::Ok => {}
            CheckResult::Illegal(why) => {
                return Err(format!(
                    "history of object {object:?} not linearizable: {}",
                    why.explanation
                ))
            }
            CheckResult::Unknown(why) => {
                return Err(format!("linearizability of {object:?} undecided: {why}"))
            }
        }
    }
    Ok(())
}

/// After `healed_ms`, some client must be answered within the recovery bound.
pub(crate) fn check_recovery(sim: &Sim, healed_ms: u64) -> Result<(), String> {
    let first = sim
        .deliveries
        .iter()
        .find(|d| d.at_ms >= healed_ms)
        .map(|d| d.at_ms);
    match first {
        Some(at) if at - healed_ms <= RECOVERY_BOUND_MS => Ok(()),
        Some(at) => Err(format!("first reply {} ms after healing", at - healed_ms)),
        None => Err("no reply after healing".into()),
    }
}

/// Nodes cut off in `[from_ms, to_ms)` must not answer any command first sent then.
pub(crate) fn check_minority_silent(
    sim: &Sim,
    minority: &[usize],
    from_ms: u64,
    to_ms: u64,
) -> Result<(), String> {
    for d in &sim.deliveries {
        if minority.contains(&d.node)
            && d.at_ms >= from_ms
            && d.at_ms < to_ms
            && d.first_sent_ms >= from_ms
        {
            return Err(format!(
                "minority node {} answered {} at {} ms during the partition",
                d.node, d.id, d.at_ms
            ));
        }
    }
    Ok(())
}

/// Elects a leader and crashes it; the run must finish, checked, and
/// answer again soon after the crash.
pub(crate) fn leader_crash_run(cfg: SimConfig) -> Result<Sim, String> {
    let mut sim = Sim::new(cfg);
    sim.run_until(400);
    let leader = elect(&mut sim)?;
    sim.crash(leader);
    let crashed_at = sim.now_ms;
    finish_and_check(&mut sim)?;
    check_recovery(&sim, crashed_at)?;
    Ok(sim)
}

/// Runs 3 s on a network that drops 20% of messages, duplicates 10% and
/// delays them enough to reorder, then heals it.
pub(crate) fn lossy_run(mut cfg: SimConfig) -> Sim {
    cfg.delay_max_ms = 25;
    let mut sim = Sim::new(cfg);
    sim.net.drop_percent = 20;
    sim.net.duplicate_percent = 10;
    sim.run_until(3_000);
    sim.net.drop_percent = 0;
    sim.net.duplicate_percent = 0;
    sim
}

/// The followers `leader` sends its Accepts to (thrifty), as node indexes.
pub(crate) fn counted_on(sim: &Sim, leader: usize) -> Vec<usize> {
    sim.nodes[leader]
        .leader
        .accept_quorum()
        .iter()
        .filter_map(|id| sim.nodes.iter().position(|n| n.id == *id))
        .collect()
}

pub(crate) fn elect(sim: &mut Sim) -> Result<usize, String> {
    for _ in 0..100 {
        if let Some(leader) = sim.leader() {
            return Ok(leader);
        }
        let next = sim.now_ms + 100;
        sim.run_until(next);
    }
    Err("no leader elected in 10 s".into())
}

/// Runs a broken variant over seeds 1..=`seeds`; asserts the simulator
/// caught it on at least `at_least` of them, and prints the first.
pub(crate) fn assert_caught(
    name: &str,
    seeds: u64,
    at_least: usize,
    run: impl Fn(u64) -> Result<(), String>,
) {
    let caught: Vec<(u64, String)> = (1..=seeds)
        .filter_map(|seed| run(seed).err().map(|why| (seed, why)))
        .collect();
    eprintln!(
        "{name}: caught on {} of {seeds} seeds; the first: {:?}",
        caught.len(),
        caught
            .first()
            .map(|(seed, why)| (seed, why.chars().take(300).collect::<String>()))
    );
    assert!(
        caught.len() >= at_least,
        "{name}: caught on only {} of {seeds} seeds: {caught:?}",
        caught.len()
    );
}
