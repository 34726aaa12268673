//! A thrifty leader sends each Accept to a bare majority (itself and the
//! followers that answered first) and the decided batches to the others
//! later, together. Cut off the followers it counts on: it must ask the
//! others and go on serving; then crash it: the group it leaves behind
//! (some of it a tick behind, some the whole cut) must agree and finish.
//! The other scenarios here are the basic, durable, membership and
//! follower-read ones again, with thrifty leaders.

use crate::basic::{leader_crash, lossy_network, minority_partitioned};
use crate::durable::durable_restarts;
use crate::follower_reads::lagging_follower;
use crate::helpers::{
    check_recovery, config, counted_on, elect, finish_and_check, for_each_seed, for_seeds,
    with_thrifty_leaders,
};
use crate::membership::{membership_changes, restart_empty, DEFAULT_RESTART_SEEDS};
use concoord_actors::sim::{Sim, SimDurability, SimReads};

fn quorum_cut_then_leader_crash(seed: u64, nodes: usize) -> Result<(), String> {
    let mut cfg = config(seed, nodes);
    cfg.leader.thrifty = true;
    cfg.ops_per_client = 150;
    let mut sim = Sim::new(cfg);
    sim.run_until(400);
    // Until a leader has proposed to a bare majority (an early election
    // may still change who leads).
    let mut waited = 0;
    let leader = loop {
        let leader = elect(&mut sim)?;
        if sim.nodes[leader].leader.stats().thrifty_slots > 0 {
            break leader;
        }
        if waited >= 3_000 {
            return Err(format!(
                "no leader proposed a slot to a bare majority in {waited} ms"
            ));
        }
        sim.run_until(sim.now_ms + 10);
        waited += 10;
    };
    let quorum = counted_on(&sim, leader);
    if quorum.is_empty() || quorum.len() > nodes / 2 {
        return Err(format!("accept quorum {quorum:?} of {nodes} nodes"));
    }

    let unfinished = sim.clients.iter().any(|c| c.acked < c.ops);
    sim.partition(&quorum);
    let cut_at = sim.now_ms;
    sim.run_until(cut_at + 1_500);
    let served_in_cut = sim
        .deliveries
        .iter()
        .any(|d| d.node == leader && d.first_sent_ms >= cut_at);
    if !served_in_cut && unfinished {
        return Err(format!(
            "node {leader} answered no command sent while its accept quorum {quorum:?} was cut off"
        ));
    }
    if sim.leader() != Some(leader) {
        return Err(format!(
            "node {leader} lost the lead while only a minority was cut off"
        ));
    }
    sim.heal();
    sim.crash(leader);
    let crashed_at = sim.now_ms;
    let unfinished = sim.clients.iter().any(|c| c.acked < c.ops);
    finish_and_check(&mut sim)?;
    if unfinished {
        check_recovery(&sim, crashed_at)?;
    }
    Ok(())
}

#[test]
fn accept_quorum_cut_off_then_leader_crash_3() {
    for_each_seed("accept_quorum_cut_off_then_leader_crash_3", |seed| {
        quorum_cut_then_leader_crash(seed, 3)
    });
}

#[test]
fn accept_quorum_cut_off_then_leader_crash_5() {
    for_each_seed("accept_quorum_cut_off_then_leader_crash_5", |seed| {
        quorum_cut_then_leader_crash(seed, 5)
    });
}

#[test]
fn thrifty_leader_crash_3() {
    with_thrifty_leaders(|| for_each_seed("thrifty_leader_crash_3", |s| leader_crash(s, 3)));
}

#[test]
fn thrifty_minority_partitioned_5() {
    with_thrifty_leaders(|| {
        for_each_seed("thrifty_minority_partitioned_5", |s| {
            minority_partitioned(s, 5)
        })
    });
}

#[test]
fn thrifty_lossy_duplicating_reordering_network_3() {
    with_thrifty_leaders(|| {
        for_each_seed("thrifty_lossy_duplicating_reordering_network_3", |s| {
            lossy_network(s, 3)
        })
    });
}

#[test]
fn thrifty_restart_from_disk_3() {
    with_thrifty_leaders(|| {
        for_seeds("thrifty_restart_from_disk_3", DEFAULT_RESTART_SEEDS, |s| {
            durable_restarts(s, 3, SimDurability::default())
        })
    });
}

#[test]
fn thrifty_membership_join_and_remove_3() {
    with_thrifty_leaders(|| {
        for_seeds(
            "thrifty_membership_join_and_remove_3",
            DEFAULT_RESTART_SEEDS,
            |s| membership_changes(s, 3),
        )
    });
}

#[test]
fn thrifty_restart_empty_rejoins_3() {
    with_thrifty_leaders(|| {
        for_seeds(
            "thrifty_restart_empty_rejoins_3",
            DEFAULT_RESTART_SEEDS,
            |s| restart_empty(s, 3),
        )
    });
}

#[test]
fn thrifty_follower_reads_lagging_follower_3() {
    with_thrifty_leaders(|| {
        for_seeds(
            "thrifty_follower_reads_lagging_follower_3",
            crate::helpers::FOLLOWER_READ_SEEDS,
            |s| lagging_follower(s, 3, SimReads::ReadIndex),
        )
    });
}
