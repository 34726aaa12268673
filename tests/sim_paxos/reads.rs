//! Read-only calls served by the read index (and the stale path) under faults.

use crate::helpers::{
    check_minority_silent, check_recovery, config, elect, finish_and_check, for_seeds,
    leader_crash_run, lossy_run,
};
use concoord_actors::message::Command;
use concoord_actors::sim::{Endpoint, Sim, SimConfig, SimReads};

/// Seeds per read scenario: each runs the read index under one fault.
const DEFAULT_READ_SEEDS: u64 = 50;

fn read_config(seed: u64, nodes: usize, reads: SimReads) -> SimConfig {
    let mut cfg = SimConfig {
        read_percent: 60,
        reads,
        ..config(seed, nodes)
    };
    // Check-quorum makes a cut-off leader step down after an election
    // timeout, which hides the broken read path most of the time; it is not
    // what makes reads safe (a paused leader's clock says nothing), so the
    // broken path runs without it, the read index with it.
    cfg.leader.check_quorum = reads != SimReads::Unconfirmed;
    cfg
}

/// The leader is cut off from the other nodes while one client, pinned to
/// it, only reads: the old leader still believes it leads, and the others
/// elect a new one and go on counting. A read the old leader answered from
/// its own state would be stale (the linearizability check on the mixed
/// history fails) and would be an answer from a minority (the silence
/// check fails).
pub(crate) fn reads_leader_isolated(
    seed: u64,
    nodes: usize,
    reads: SimReads,
) -> Result<(), String> {
    let mut cfg = read_config(seed, nodes, reads);
    cfg.clients = 6;
    cfg.ops_per_client = 40;
    let mut sim = Sim::new(cfg);
    // The last client waits, idle, for its turn to read.
    let reader = sim.clients.len() - 1;
    sim.clients[reader].ops = 0;
    sim.run_until(400);
    let leader = elect(&mut sim)?;
    sim.partition(&[leader]);
    let cut_at = sim.now_ms;
    // The others elect a new leader and count on.
    sim.run_until(cut_at + 1_000);
    // The reader now reaches only the old leader, and only reads.
    sim.heal();
    let client = &mut sim.clients[reader];
    client.pinned = Some(leader);
    client.target = leader;
    client.read_percent = Some(100);
    client.ops = 20;
    sim.partition(&[leader]);
    // (On a few seeds the old leader had already lost its ballot when the
    // cut came; the run is checked all the same.)
    sim.run_until(cut_at + 2_000);
    sim.heal();
    sim.clients[reader].pinned = None;
    let healed_at = sim.now_ms;
    finish_and_check(&mut sim)?;
    check_minority_silent(&sim, &[leader], cut_at, healed_at)?;
    check_recovery(&sim, cut_at)
}

fn reads_leader_crash(seed: u64, nodes: usize, reads: SimReads) -> Result<(), String> {
    leader_crash_run(read_config(seed, nodes, reads)).map(drop)
}

fn reads_lossy_network(seed: u64, nodes: usize, reads: SimReads) -> Result<(), String> {
    finish_and_check(&mut lossy_run(read_config(seed, nodes, reads)))
}

/// The stale read after an election (fixed in 243a4c1; the live nemesis
/// found it): a node lags, cut off while the others decide many writes
/// (more slots than one catch-up carries); the leader crashes, and the
/// lagging node comes back to others that hear no leader. It may be
/// elected (with five nodes it is the only one that can be: the others
/// cannot reach each other for a while) while they hold accepted slots its
/// replica has not executed, some decided and acknowledged under the old
/// leader; clients, which give up on a silent node quickly here, read from
/// it at once, alongside writes. A read served below the slots its phase 1
/// found answers from old state: the linearizability check on the mixed
/// history fails (with the fix reverted it does on 6 of the 20 seeds with
/// three nodes, 18 of 20 with five).
pub(crate) fn reads_lagging_node_elected(
    seed: u64,
    nodes: usize,
    reads: SimReads,
) -> Result<(), String> {
    let mut cfg = read_config(seed, nodes, reads);
    cfg.clients = 8;
    cfg.ops_per_client = 300;
    cfg.read_percent = 40;
    cfg.client_timeout_ms = 150;
    let mut sim = Sim::new(cfg);
    sim.run_until(400);
    let leader = elect(&mut sim)?;
    let lagging = (leader + 1) % nodes;
    sim.partition(&[lagging]);
    let cut_at = sim.now_ms;
    sim.run_until(cut_at + LAG_MS);
    // The leader crashes while the lagging node is still cut off; the
    // others cannot reach each other either, so none of them can win.
    sim.crash(leader);
    let crashed_at = sim.now_ms;
    let others: Vec<usize> = (0..nodes)
        .filter(|n| ![leader, lagging].contains(n))
        .collect();
    cut_apart(&mut sim, &others);
    sim.run_until(crashed_at + HEAL_AFTER_MS);
    // The lagging node comes back: it reaches every other node, which
    // hear no leader, and (with five nodes) they still not each other.
    sim.heal();
    cut_apart(&mut sim, &others);
    sim.run_until(crashed_at + HEAL_AFTER_MS + 1_000);
    sim.heal();
    finish_and_check(&mut sim)?;
    check_recovery(&sim, crashed_at)
}

/// Cuts every pair of `nodes` apart (each still reaches every other node).
fn cut_apart(sim: &mut Sim, nodes: &[usize]) {
    for &a in nodes {
        for &b in nodes {
            if a != b {
                sim.net
                    .blocked
                    .insert((Endpoint::Node(a), Endpoint::Node(b)));
            }
        }
    }
}

/// Seeds per lagging-node scenario (each runs 2,400 operations).
const LAGGING_SEEDS: u64 = 20;
/// How long the lagging node is cut off while the others write.
const LAG_MS: u64 = 3_000;
/// How long after the leader's crash the lagging node comes back.
const HEAL_AFTER_MS: u64 = 400;

/// Reads served by the read index: no log write for any of them.
fn check_reads_skipped_the_log(sim: &Sim) -> Result<(), String> {
    let order = sim.replicated_order()?;
    let logged = order
        .iter()
        .filter(|e| matches!(&e.command, Command::Call { method, .. } if method == "getvalue"))
        .count();
    if logged > 0 {
        return Err(format!("{logged} reads went through the log"));
    }
    Ok(())
}

#[test]
fn read_index_leader_isolated_3() {
    for_seeds("read_index_leader_isolated_3", DEFAULT_READ_SEEDS, |seed| {
        reads_leader_isolated(seed, 3, SimReads::ReadIndex)
    });
}

#[test]
fn read_index_leader_isolated_5() {
    for_seeds("read_index_leader_isolated_5", DEFAULT_READ_SEEDS, |seed| {
        reads_leader_isolated(seed, 5, SimReads::ReadIndex)
    });
}

#[test]
fn read_index_leader_crash_3() {
    for_seeds("read_index_leader_crash_3", DEFAULT_READ_SEEDS, |seed| {
        reads_leader_crash(seed, 3, SimReads::ReadIndex)
    });
}

#[test]
fn read_index_lossy_duplicating_reordering_network_3() {
    for_seeds(
        "read_index_lossy_duplicating_reordering_network_3",
        DEFAULT_READ_SEEDS,
        |seed| reads_lossy_network(seed, 3, SimReads::ReadIndex),
    );
}

/// Reads answered by the read index never enter the log.
#[test]
fn read_index_reads_write_nothing_to_the_log() {
    for_seeds(
        "read_index_reads_write_nothing_to_the_log",
        DEFAULT_READ_SEEDS / 5,
        |seed| {
            let mut sim = Sim::new(read_config(seed, 3, SimReads::ReadIndex));
            finish_and_check(&mut sim)?;
            let reads = sim.ops.iter().filter(|op| op.method == "getvalue").count();
            if reads == 0 {
                return Err("the run made no reads".into());
            }
            check_reads_skipped_the_log(&sim)
        },
    );
}

/// Stale reads: marked so in the history and left out of the
/// linearizability check; everything else still holds under the faults.
#[test]
fn stale_reads_leader_isolated_3() {
    for_seeds(
        "stale_reads_leader_isolated_3",
        DEFAULT_READ_SEEDS / 2,
        |seed| {
            let mut cfg = read_config(seed, 3, SimReads::Stale);
            cfg.clients = 5;
            let mut sim = Sim::new(cfg);
            sim.run_until(400);
            let leader = elect(&mut sim)?;
            sim.partition(&[leader]);
            let cut_at = sim.now_ms;
            sim.run_until(cut_at + 1_500);
            sim.heal();
            finish_and_check(&mut sim)?;
            if !sim.ops.iter().any(|op| op.stale) {
                return Err("no read was marked stale".into());
            }
            Ok(())
        },
    );
}

#[test]
fn read_index_lagging_node_elected_3() {
    for_seeds("read_index_lagging_node_elected_3", LAGGING_SEEDS, |seed| {
        reads_lagging_node_elected(seed, 3, SimReads::ReadIndex)
    });
}

#[test]
fn read_index_lagging_node_elected_5() {
    for_seeds("read_index_lagging_node_elected_5", LAGGING_SEEDS, |seed| {
        reads_lagging_node_elected(seed, 5, SimReads::ReadIndex)
    });
}
