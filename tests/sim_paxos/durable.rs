//! Durable nodes: restarts from the simulated disk, whole-group restarts and
//! damaged disks.

use crate::helpers::{check_recovery, elect, finish_and_check, for_seeds, RUN_DEADLINE_MS};
use crate::membership::DEFAULT_RESTART_SEEDS;
use crate::sessions::{check_session_order, session_config};
use concoord_actors::sim::{Sim, SimConfig, SimDurability};

fn durable_config(seed: u64, nodes: usize, durability: SimDurability) -> SimConfig {
    SimConfig {
        durable: Some(durability),
        ..session_config(seed, nodes)
    }
}

/// Durable nodes crash one at a time (the leader in some rounds), losing
/// or tearing what was not synced, and restart from their disks; no node
/// may forget what it acknowledged, and every check holds.
pub(crate) fn durable_restarts(
    seed: u64,
    nodes: usize,
    durability: SimDurability,
) -> Result<(), String> {
    let mut sim = Sim::new(durable_config(seed, nodes, durability));
    sim.run_until(400);
    elect(&mut sim)?;
    let start = sim.now_ms;
    for round in 0..3u64 {
        sim.run_until(sim.now_ms + 200 + (seed * 37 + round * 101) % 500);
        let node = match sim.leader() {
            Some(l) if (seed + round) % 2 == 0 => l,
            _ => ((seed + round) % nodes as u64) as usize,
        };
        if !sim.nodes[node].alive {
            continue;
        }
        sim.crash(node);
        sim.run_until(sim.now_ms + 100 + (seed * 13 + round) % 400);
        sim.restart(node)
            .map_err(|e| format!("round {round}: node {node} refused to restart: {e}"))?;
    }
    finish_and_check(&mut sim)?;
    check_session_order(&sim, &[])?;
    check_recovery(&sim, start)
}

#[test]
fn restart_from_disk_3() {
    for_seeds("restart_from_disk_3", DEFAULT_RESTART_SEEDS, |seed| {
        durable_restarts(seed, 3, SimDurability::default())
    });
}

#[test]
fn restart_from_disk_5() {
    for_seeds("restart_from_disk_5", DEFAULT_RESTART_SEEDS, |seed| {
        durable_restarts(seed, 5, SimDurability::default())
    });
}

/// Every durable node crashes (unsynced writes lost or torn) and all
/// restart from their disks, twice, under load: the decided prefix and
/// exactly-once survive (every check of finish_and_check, and the replayed
/// order never sees a slot decided twice differently).
pub(crate) fn whole_group_restart(
    seed: u64,
    nodes: usize,
    durability: SimDurability,
) -> Result<(), String> {
    whole_group_restart_checked(seed, nodes, durability, true)
}

/// [`whole_group_restart`]; without `forgetting_checked`, only the
/// end-to-end checks judge it (agreement, exactly-once, mutual exclusion,
/// every client finishing), not the bookkeeping of what each node acknowledged.
pub(crate) fn whole_group_restart_checked(
    seed: u64,
    nodes: usize,
    durability: SimDurability,
    forgetting_checked: bool,
) -> Result<(), String> {
    let mut sim = Sim::new(durable_config(seed, nodes, durability));
    sim.run_until(400);
    elect(&mut sim)?;
    for round in 0..2u64 {
        sim.run_until(sim.now_ms + 300 + (seed * 41 + round * 89) % 700);
        for node in 0..nodes {
            sim.crash(node);
        }
        sim.run_until(sim.now_ms + 200 + seed % 300);
        for node in 0..nodes {
            sim.restart(node)
                .map_err(|e| format!("round {round}: node {node} refused to restart: {e}"))?;
        }
    }
    let restarted_at = sim.now_ms;
    if !forgetting_checked {
        sim.durability_violations.clear();
    }
    finish_and_check(&mut sim)?;
    check_session_order(&sim, &[])?;
    check_recovery(&sim, restarted_at)
}

#[test]
fn whole_group_restart_from_disk_3() {
    for_seeds(
        "whole_group_restart_from_disk_3",
        DEFAULT_RESTART_SEEDS,
        |seed| whole_group_restart(seed, 3, SimDurability::default()),
    );
}

/// Syncs of up to 40 ms: much is unsynced when the group crashes.
pub(crate) fn slow_disk() -> SimDurability {
    SimDurability {
        sync_ms_max: 40,
        ..SimDurability::default()
    }
}

#[test]
fn whole_group_restart_from_slow_disk_3() {
    for_seeds(
        "whole_group_restart_from_slow_disk_3",
        DEFAULT_RESTART_SEEDS,
        |seed| whole_group_restart(seed, 3, slow_disk()),
    );
}

#[test]
fn whole_group_restart_from_disk_5() {
    for_seeds(
        "whole_group_restart_from_disk_5",
        DEFAULT_RESTART_SEEDS,
        |seed| whole_group_restart(seed, 5, SimDurability::default()),
    );
}

/// Durable followers crash and their disks come back damaged: a bit
/// flipped in a synced record followed by another (opt-in, every crash
/// here), besides unsynced writes lost or torn. Recovery must refuse such
/// a disk, so the node stays down, as the real one refuses to start; the
/// others go on and every check holds with it down.
pub(crate) fn damaged_disk(
    seed: u64,
    nodes: usize,
    durability: SimDurability,
) -> Result<(), String> {
    let trusting = durability.broken_trust_damage;
    let mut sim = Sim::new(durable_config(seed, nodes, durability));
    sim.run_until(400);
    let leader = elect(&mut sim)?;
    let mut refused = 0;
    for k in 0..(nodes - 1) / 2 {
        sim.run_until(sim.now_ms + 300 + (seed * 29 + k as u64 * 97) % 600);
        let node = (leader + 1 + k) % nodes;
        sim.crash(node);
        sim.run_until(sim.now_ms + 100 + seed % 200);
        let flipped = sim.nodes[node]
            .disk
            .as_ref()
            .is_some_and(|d| d.damage.iter().any(|what| what.starts_with("flipped")));
        match sim.restart(node) {
            Err(why) if flipped => {
                refused += 1;
                if sim.nodes[node].alive || sim.nodes[node].refused.is_none() {
                    return Err(format!("node {node} was refused ({why}) yet runs"));
                }
            }
            Err(why) => return Err(format!("node {node}'s undamaged disk was refused: {why}")),
            Ok(()) if flipped && !trusting => {
                return Err(format!("node {node} restarted from a damaged disk"))
            }
            Ok(()) => {}
        }
    }
    finish_and_check(&mut sim)?;
    check_session_order(&sim, &[])?;
    if refused == 0 && !trusting {
        return Err("no disk was damaged: the scenario tests nothing".into());
    }
    Ok(())
}

pub(crate) fn damaging() -> SimDurability {
    SimDurability {
        corrupt_percent: 100,
        ..SimDurability::default()
    }
}

#[test]
fn damaged_disk_is_refused_3() {
    for_seeds("damaged_disk_is_refused_3", DEFAULT_RESTART_SEEDS, |seed| {
        damaged_disk(seed, 3, damaging())
    });
}

#[test]
fn damaged_disk_is_refused_5() {
    for_seeds("damaged_disk_is_refused_5", DEFAULT_RESTART_SEEDS, |seed| {
        damaged_disk(seed, 5, damaging())
    });
}

/// Runs with restarts, joins, removals and disks replay exactly too.
#[test]
fn same_seed_replays_the_same_restarts() {
    let run = |seed| {
        let mut sim = Sim::new(durable_config(seed, 3, SimDurability::default()));
        sim.net.drop_percent = 5;
        sim.run_until(700);
        sim.crash(0);
        sim.run_until(900);
        sim.restart(0).expect("an undamaged disk restarts");
        let joined = sim.add_node();
        sim.run_until(2_000);
        let _ = sim.request_removal(1);
        sim.crash(2);
        sim.run_until(2_300);
        sim.restart_empty(2);
        sim.run_until_done(RUN_DEADLINE_MS);
        let order = sim.replicated_order().expect("the order replays");
        let commands: Vec<_> = order.iter().map(|e| (e.slot, e.command.clone())).collect();
        let ids: Vec<u64> = sim.nodes.iter().map(|n| n.id).collect();
        (sim.events_processed, commands, sim.now_ms, ids, joined)
    };
    assert_eq!(run(5), run(5), "two runs of seed 5 with restarts differ");
}
