//! Linearizable reads served by followers with a read index they ask the
//! leader for, under faults. Reads go to a node picked at random for each
//! send, so followers, the leader and cut-off nodes all take them.

use crate::helpers::{check_minority_silent, check_recovery, config, elect, finish_and_check};
use crate::helpers::{for_seeds, leader_crash_run, lossy_run, FOLLOWER_READ_SEEDS};
use concoord_actors::sim::{Sim, SimConfig, SimReads};

pub(crate) fn follower_read_config(seed: u64, nodes: usize, reads: SimReads) -> SimConfig {
    SimConfig {
        read_percent: 60,
        reads,
        reads_anywhere: true,
        clients: 6,
        ops_per_client: 40,
        ..config(seed, nodes)
    }
}

/// Reads some follower took: without them the scenario proves nothing.
fn check_followers_took_reads(sim: &Sim) -> Result<(), String> {
    let taken: u64 = sim
        .nodes
        .iter()
        .map(|n| n.leader.stats().follower_reads)
        .sum();
    if taken == 0 {
        return Err("no follower took a read".into());
    }
    Ok(())
}

/// The leader and (with five nodes) one follower are cut off from the
/// others, which elect a new leader and count on. Reads reach every node:
/// the cut-off follower asks the old leader, which can no longer confirm a
/// round, so neither answers; the followers of the new leader serve reads
/// that see every count acknowledged before them.
fn leader_and_follower_isolated(seed: u64, nodes: usize) -> Result<(), String> {
    let mut sim = Sim::new(follower_read_config(seed, nodes, SimReads::ReadIndex));
    sim.run_until(400);
    let leader = elect(&mut sim)?;
    let mut minority = vec![leader];
    if nodes == 5 {
        minority.push((leader + 1) % nodes);
    }
    sim.partition(&minority);
    let cut_at = sim.now_ms;
    sim.run_until(cut_at + 1_500);
    sim.heal();
    let healed_at = sim.now_ms;
    finish_and_check(&mut sim)?;
    check_minority_silent(&sim, &minority, cut_at, healed_at)?;
    check_recovery(&sim, cut_at)?;
    check_followers_took_reads(&sim)
}

/// A follower is cut off while the others decide many counts, then comes
/// back: reads that reach it wait until it has caught up to the index the
/// leader gave, rather than answering from its old state.
pub(crate) fn lagging_follower(seed: u64, nodes: usize, reads: SimReads) -> Result<(), String> {
    let mut cfg = follower_read_config(seed, nodes, reads);
    cfg.ops_per_client = 150;
    cfg.read_percent = 40;
    let mut sim = Sim::new(cfg);
    sim.run_until(400);
    let leader = elect(&mut sim)?;
    let lagging = (leader + 1) % nodes;
    sim.partition(&[lagging]);
    let cut_at = sim.now_ms;
    sim.run_until(cut_at + 2_000);
    sim.heal();
    finish_and_check(&mut sim)?;
    check_followers_took_reads(&sim)
}

fn leader_crash(seed: u64, nodes: usize) -> Result<(), String> {
    let sim = leader_crash_run(follower_read_config(seed, nodes, SimReads::ReadIndex))?;
    check_followers_took_reads(&sim)
}

fn lossy_network(seed: u64, nodes: usize) -> Result<(), String> {
    let mut sim = lossy_run(follower_read_config(seed, nodes, SimReads::ReadIndex));
    finish_and_check(&mut sim)?;
    check_followers_took_reads(&sim)
}

#[test]
fn follower_reads_leader_isolated_3() {
    for_seeds(
        "follower_reads_leader_isolated_3",
        FOLLOWER_READ_SEEDS,
        |seed| leader_and_follower_isolated(seed, 3),
    );
}

#[test]
fn follower_reads_leader_and_follower_isolated_5() {
    for_seeds(
        "follower_reads_leader_and_follower_isolated_5",
        FOLLOWER_READ_SEEDS,
        |seed| leader_and_follower_isolated(seed, 5),
    );
}

#[test]
fn follower_reads_lagging_follower_3() {
    for_seeds(
        "follower_reads_lagging_follower_3",
        FOLLOWER_READ_SEEDS,
        |seed| lagging_follower(seed, 3, SimReads::ReadIndex),
    );
}

#[test]
fn follower_reads_leader_crash_3() {
    for_seeds(
        "follower_reads_leader_crash_3",
        FOLLOWER_READ_SEEDS,
        |seed| leader_crash(seed, 3),
    );
}

#[test]
fn follower_reads_lossy_duplicating_reordering_network_3() {
    for_seeds(
        "follower_reads_lossy_duplicating_reordering_network_3",
        FOLLOWER_READ_SEEDS,
        |seed| lossy_network(seed, 3),
    );
}
