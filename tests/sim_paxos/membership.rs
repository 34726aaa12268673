//! Nodes restarted empty rejoin, and members join and are removed.

use crate::helpers::{check_recovery, elect, finish_and_check, for_seeds};
use crate::sessions::{check_session_order, session_config};
use concoord_actors::sim::Sim;
use std::collections::BTreeSet;

/// Seeds per restart and membership scenario in CI (each runs a session
/// workload whose whole order is replayed).
pub(crate) const DEFAULT_RESTART_SEEDS: u64 = 25;

/// Runs until `node` has the group's state and is a member of the
/// membership in force where its replica is (not just of one decided and
/// pending: until the window after it is decided, the old membership still
/// decides, and losing another of its members would stall the group for
/// good); fails after 10 s.
fn wait_joined(sim: &mut Sim, node: usize) -> Result<(), String> {
    let deadline = sim.now_ms + 10_000;
    while sim.now_ms < deadline {
        let n = &sim.nodes[node];
        let configs = n.replica.configs();
        if n.alive
            && n.replica.has_state()
            && configs.latest().iter().any(|m| m.id == n.id)
            && configs
                .at(n.replica.executed())
                .iter()
                .any(|m| m.id == n.id)
        {
            return Ok(());
        }
        let next = sim.now_ms + 50;
        sim.run_until(next);
    }
    let states: Vec<String> = sim
        .nodes
        .iter()
        .map(|n| {
            format!(
                "{:x}: alive {} removed {} executed {} state {} leads {} members {:x?}",
                n.id,
                n.alive,
                n.removed,
                n.replica.executed(),
                n.replica.has_state(),
                n.leader.is_active(),
                n.replica
                    .configs()
                    .latest()
                    .iter()
                    .map(|m| m.id)
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    Err(format!(
        "node {node} did not rejoin within 10 s: {states:?}"
    ))
}

/// Every live node's newest membership is the live nodes: restarted
/// members replaced their old selves, removed ones are gone.
fn check_membership(sim: &Sim) -> Result<(), String> {
    let alive: BTreeSet<u64> = sim.nodes.iter().filter(|n| n.alive).map(|n| n.id).collect();
    for (i, n) in sim.nodes.iter().enumerate().filter(|(_, n)| n.alive) {
        let latest: BTreeSet<u64> = n.replica.configs().latest().iter().map(|m| m.id).collect();
        let stale: Vec<_> = latest.difference(&alive).collect();
        if !stale.is_empty() && sim.nodes.iter().all(|n| n.alive || n.refused.is_none()) {
            // (A node whose damaged disk was refused stays a member, down.)
            let down: BTreeSet<u64> = sim
                .nodes
                .iter()
                .filter(|n| !n.alive && !n.removed)
                .map(|n| n.id)
                .collect();
            if stale.iter().any(|id| !down.contains(id)) {
                return Err(format!(
                    "node {i}'s membership {latest:x?} names {stale:x?}, which no longer run"
                ));
            }
        }
        if !latest.contains(&n.id) {
            return Err(format!("live node {i} is not in its own membership"));
        }
    }
    Ok(())
}

/// A node crashes and comes back empty with a new id at its address: it
/// rejoins through the membership path and catches up from a snapshot.
/// Once it has, another original node crashes, so the group's majority
/// needs the rejoined one; it comes back empty too. Counters and Lock and
/// Semaphore sessions run throughout.
pub(crate) fn restart_empty(seed: u64, nodes: usize) -> Result<(), String> {
    let mut sim = Sim::new(session_config(seed, nodes));
    sim.run_until(400);
    let leader = elect(&mut sim)?;
    sim.run_until(sim.now_ms + seed * 53 % 600);
    let first = if seed % 2 == 0 {
        leader
    } else {
        (leader + 1) % nodes
    };
    sim.crash(first);
    let crashed_at = sim.now_ms;
    sim.run_until(crashed_at + 300 + seed * 31 % 700);
    let old_id = sim.nodes[first].id;
    sim.restart_empty(first);
    wait_joined(&mut sim, first)?;
    let second = (first + 1 + (seed as usize % (nodes - 1))) % nodes;
    sim.crash(second);
    sim.run_until(sim.now_ms + 500);
    sim.restart_empty(second);
    wait_joined(&mut sim, second)?;
    finish_and_check(&mut sim)?;
    check_session_order(&sim, &[])?;
    check_recovery(&sim, crashed_at)?;
    check_membership(&sim)?;
    if sim
        .nodes
        .iter()
        .any(|n| n.alive && n.replica.configs().latest().iter().any(|m| m.id == old_id))
    {
        return Err("the crashed node's old id is still a member".into());
    }
    Ok(())
}

#[test]
fn restart_empty_rejoins_3() {
    for_seeds("restart_empty_rejoins_3", DEFAULT_RESTART_SEEDS, |seed| {
        restart_empty(seed, 3)
    });
}

#[test]
fn restart_empty_rejoins_5() {
    for_seeds("restart_empty_rejoins_5", DEFAULT_RESTART_SEEDS, |seed| {
        restart_empty(seed, 5)
    });
}

/// Runs until `node` has stopped because its removal is in force, asking
/// again while it is still a member (a request may die with a leader).
fn wait_removed(sim: &mut Sim, node: usize) -> Result<(), String> {
    let deadline = sim.now_ms + 15_000;
    let mut asked_at = sim.now_ms;
    while sim.now_ms < deadline {
        if sim.nodes[node].removed {
            return Ok(());
        }
        if sim.now_ms >= asked_at + 1_000 {
            asked_at = sim.now_ms;
            let _ = sim.request_removal(node);
        }
        let next = sim.now_ms + 50;
        sim.run_until(next);
    }
    Err(format!("node {node} was not removed within 15 s"))
}

/// Under load, a new node joins and an original follower is removed (as
/// `concoord admin remove`); per seed the leader, the newcomer or nobody
/// crashes while the removal is under way (a crashed node comes back
/// empty). The removed member must stop taking part, the group must go on
/// without it, and every check holds.
pub(crate) fn membership_changes(seed: u64, nodes: usize) -> Result<(), String> {
    let mut sim = Sim::new(session_config(seed, nodes));
    sim.run_until(400);
    let leader = elect(&mut sim)?;
    sim.run_until(sim.now_ms + seed * 71 % 500);
    let newcomer = sim.add_node();
    wait_joined(&mut sim, newcomer)?;
    let leader = sim.leader().unwrap_or(leader);
    let victim = (leader + 1 + seed as usize % (nodes - 1)) % nodes;
    let mut asked = sim.request_removal(victim);
    for _ in 0..50 {
        if asked.is_ok() {
            break;
        }
        sim.run_until(sim.now_ms + 100);
        asked = sim.request_removal(victim);
    }
    asked.map_err(|e| format!("the removal was refused: {e:?}"))?;
    let crashed = match seed % 3 {
        0 => sim.leader().filter(|l| *l != victim),
        1 => Some(newcomer),
        _ => None,
    };
    if let Some(c) = crashed {
        sim.run_until(sim.now_ms + seed % 20);
        sim.crash(c);
    }
    wait_removed(&mut sim, victim)?;
    let removed_at = sim.now_ms;
    if let Some(c) = crashed {
        sim.restart_empty(c);
        wait_joined(&mut sim, c)?;
    }
    finish_and_check(&mut sim)?;
    check_session_order(&sim, &[])?;
    check_membership(&sim)?;
    if sim.nodes[victim].alive {
        return Err(format!("removed node {victim} still runs"));
    }
    let victim_id = sim.nodes[victim].id;
    for (i, n) in sim.nodes.iter().enumerate().filter(|(_, n)| n.alive) {
        if n.replica
            .configs()
            .latest()
            .iter()
            .any(|m| m.id == victim_id)
        {
            return Err(format!(
                "node {i} still counts removed node {victim} a member"
            ));
        }
    }
    if !sim.clients.iter().all(|c| c.finished()) {
        return Err("clients did not finish".into());
    }
    // The group decided on without it.
    let after = sim
        .nodes
        .iter()
        .filter(|n| n.alive)
        .map(|n| n.replica.executed())
        .max();
    if after <= Some(sim.nodes[victim].replica.executed()) {
        return Err(format!(
            "nothing was decided after node {victim} stopped at {removed_at} ms"
        ));
    }
    Ok(())
}

#[test]
fn membership_join_and_remove_3() {
    for_seeds(
        "membership_join_and_remove_3",
        DEFAULT_RESTART_SEEDS,
        |seed| membership_changes(seed, 3),
    );
}

#[test]
fn membership_join_and_remove_5() {
    for_seeds(
        "membership_join_and_remove_5",
        DEFAULT_RESTART_SEEDS,
        |seed| membership_changes(seed, 5),
    );
}
