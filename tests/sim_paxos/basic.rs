//! Counter clients under leader crashes, partitions, one-way cuts and a
//! lossy network.

use crate::helpers::{
    check_minority_silent, check_recovery, config, counter_value, elect, finish_and_check,
    for_each_seed, leader_crash_run, lossy_run, RECOVERY_BOUND_MS, RUN_DEADLINE_MS,
};
use concoord_actors::sim::{Sim, SimConfig};
use concoord_objects::ObjectError;
use std::collections::BTreeSet;

pub(crate) fn leader_crash(seed: u64, nodes: usize) -> Result<(), String> {
    leader_crash_run(config(seed, nodes)).map(drop)
}

fn leader_isolated(seed: u64, nodes: usize) -> Result<(), String> {
    let mut sim = Sim::new(config(seed, nodes));
    sim.run_until(400);
    let leader = elect(&mut sim)?;
    sim.partition(&[leader]);
    let cut_at = sim.now_ms;
    sim.run_until(cut_at + 1_500);
    sim.heal();
    let healed_at = sim.now_ms;
    finish_and_check(&mut sim)?;
    check_minority_silent(&sim, &[leader], cut_at, healed_at)?;
    check_recovery(&sim, cut_at)
}

/// One-way partition: the leader's messages reach the others, theirs never
/// reach it. The followers still hear its heartbeats, so they refuse every
/// pre-vote while it leads; only its stepping down (check-quorum: no
/// majority answered) lets them elect a leader among themselves. Commands
/// sent during the cut must be answered by another node before it heals.
pub(crate) fn leader_deaf(seed: u64, nodes: usize, check_quorum: bool) -> Result<(), String> {
    let mut cfg = config(seed, nodes);
    cfg.ops_per_client = 40;
    cfg.leader.check_quorum = check_quorum;
    let mut sim = Sim::new(cfg);
    sim.run_until(400);
    let leader = elect(&mut sim)?;
    sim.deafen(leader);
    let cut_at = sim.now_ms;
    sim.run_until(cut_at + 3_000);
    let served_during_cut = sim
        .deliveries
        .iter()
        .any(|d| d.node != leader && d.first_sent_ms >= cut_at);
    sim.heal();
    if !served_during_cut {
        return Err(format!(
            "no command sent during the one-way cut of node {leader} was answered by another node in 3 s"
        ));
    }
    finish_and_check(&mut sim)
}

pub(crate) fn minority_partitioned(seed: u64, nodes: usize) -> Result<(), String> {
    let mut cfg = config(seed, nodes);
    cfg.clients = 5;
    let mut sim = Sim::new(cfg);
    sim.run_until(400);
    let leader = elect(&mut sim)?;
    // The minority: followers only, so the leader keeps serving the majority side.
    let minority: Vec<usize> = (0..nodes)
        .filter(|n| *n != leader)
        .take((nodes - 1) / 2)
        .collect();
    sim.clients[0].pinned = Some(minority[0]);
    sim.partition(&minority);
    let cut_at = sim.now_ms;
    sim.run_until(cut_at + 2_000);
    sim.heal();
    // A real client follows redirects; the pinned one only stayed to watch the minority.
    sim.clients[0].pinned = None;
    let healed_at = sim.now_ms;
    finish_and_check(&mut sim)?;
    check_minority_silent(&sim, &minority, cut_at, healed_at)?;
    // The pinned client waited for the minority side and is served after healing.
    let pinned_after = sim
        .deliveries
        .iter()
        .find(|d| d.client == 0 && d.at_ms >= healed_at);
    match pinned_after {
        Some(d) if d.at_ms - healed_at <= RECOVERY_BOUND_MS => Ok(()),
        Some(d) => Err(format!(
            "pinned client answered {} ms after healing",
            d.at_ms - healed_at
        )),
        None if sim.clients[0].acked == sim.clients[0].ops => Ok(()),
        None => Err("pinned client never answered after healing".into()),
    }
}

/// Followers (a minority) cut off for ten election timeouts, then healed:
/// they ask for pre-votes, never win one, and so never raise a ballot; the
/// leader keeps its ballot throughout and they follow it again.
fn followers_isolated_then_healed(seed: u64, nodes: usize) -> Result<(), String> {
    let mut sim = Sim::new(config(seed, nodes));
    sim.run_until(400);
    let leader = elect(&mut sim)?;
    let ballot = sim.nodes[leader].leader.ballot();
    let cut: Vec<usize> = (0..nodes)
        .filter(|n| *n != leader)
        .take((nodes - 1) / 2)
        .collect();
    sim.partition(&cut);
    let cut_at = sim.now_ms;
    sim.run_until(cut_at + 10 * sim.config.leader.election_timeout_ms);
    sim.heal();
    let healed_at = sim.now_ms;
    finish_and_check(&mut sim)?;
    check_minority_silent(&sim, &cut, cut_at, healed_at)?;
    if sim.leader() != Some(leader) || sim.nodes[leader].leader.ballot() != ballot {
        return Err(format!(
            "the leader changed: node {leader} led with ballot {ballot}; now {:?} leads, \
             node {leader} at ballot {}",
            sim.leader(),
            sim.nodes[leader].leader.ballot()
        ));
    }
    let leader_id = sim.nodes[leader].id;
    for n in 0..nodes {
        let node = &sim.nodes[n];
        if node.acceptor.promised() > ballot || node.leader.ballot() > ballot {
            return Err(format!(
                "node {n} went above the leader's ballot {ballot}: promised {}, saw {}",
                node.acceptor.promised(),
                node.leader.ballot()
            ));
        }
        if n != leader && node.leader.leader_hint() != Some(leader_id) {
            return Err(format!("node {n} does not follow the leader after healing"));
        }
    }
    Ok(())
}

pub(crate) fn lossy_network(seed: u64, nodes: usize) -> Result<(), String> {
    let mut sim = lossy_run(config(seed, nodes));
    let healed_at = sim.now_ms;
    finish_and_check(&mut sim)?;
    if sim.clients.iter().any(|c| c.acked < c.ops) {
        check_recovery(&sim, healed_at)?;
    }
    Ok(())
}

/// Calls spread over the default object and four named Counters, created
/// by their first call, through a leader crash and through loss.
fn named_objects(seed: u64, nodes: usize) -> Result<(), String> {
    let mut cfg = config(seed, nodes);
    cfg.named_objects = 4;
    cfg.ops_per_client = 16;
    let mut sim = Sim::new(cfg);
    sim.run_until(400);
    let leader = elect(&mut sim)?;
    sim.net.drop_percent = 10;
    sim.net.duplicate_percent = 10;
    sim.run_until(sim.now_ms + 300);
    sim.crash(leader);
    sim.run_until(sim.now_ms + 1_000);
    sim.net.drop_percent = 0;
    sim.net.duplicate_percent = 0;
    finish_and_check(&mut sim)?;
    let held: BTreeSet<usize> = (0..sim.nodes.len())
        .filter(|n| sim.nodes[*n].alive)
        .map(|n| sim.nodes[n].replica.object_count())
        .collect();
    let named_used: BTreeSet<&str> = sim
        .ops
        .iter()
        .filter(|op| !op.object.is_empty() && matches!(op.completed, Some((_, Ok(_)))))
        .map(|op| op.object.as_str())
        .collect();
    if held.len() != 1 || held.iter().next().copied().unwrap_or(0) < named_used.len() {
        return Err(format!(
            "replicas hold {held:?} named objects; calls reached {named_used:?}"
        ));
    }
    Ok(())
}

#[test]
fn named_objects_3() {
    for_each_seed("named_objects_3", |seed| named_objects(seed, 3));
}

#[test]
fn leader_crash_3() {
    for_each_seed("leader_crash_3", |seed| leader_crash(seed, 3));
}

#[test]
fn leader_crash_5() {
    for_each_seed("leader_crash_5", |seed| leader_crash(seed, 5));
}

#[test]
fn leader_isolated_3() {
    for_each_seed("leader_isolated_3", |seed| leader_isolated(seed, 3));
}

#[test]
fn leader_isolated_5() {
    for_each_seed("leader_isolated_5", |seed| leader_isolated(seed, 5));
}

#[test]
fn leader_deaf_one_way_3() {
    for_each_seed("leader_deaf_one_way_3", |seed| leader_deaf(seed, 3, true));
}

#[test]
fn leader_deaf_one_way_5() {
    for_each_seed("leader_deaf_one_way_5", |seed| leader_deaf(seed, 5, true));
}

#[test]
fn minority_partitioned_3() {
    for_each_seed("minority_partitioned_3", |seed| {
        minority_partitioned(seed, 3)
    });
}

#[test]
fn minority_partitioned_5() {
    for_each_seed("minority_partitioned_5", |seed| {
        minority_partitioned(seed, 5)
    });
}

#[test]
fn follower_isolated_then_healed_keeps_the_leaders_ballot_3() {
    for_each_seed(
        "follower_isolated_then_healed_keeps_the_leaders_ballot_3",
        |seed| followers_isolated_then_healed(seed, 3),
    );
}

#[test]
fn followers_isolated_then_healed_keep_the_leaders_ballot_5() {
    for_each_seed(
        "followers_isolated_then_healed_keep_the_leaders_ballot_5",
        |seed| followers_isolated_then_healed(seed, 5),
    );
}

#[test]
fn lossy_duplicating_reordering_network_3() {
    for_each_seed("lossy_duplicating_reordering_network_3", |seed| {
        lossy_network(seed, 3)
    });
}

#[test]
fn lossy_duplicating_reordering_network_5() {
    for_each_seed("lossy_duplicating_reordering_network_5", |seed| {
        lossy_network(seed, 5)
    });
}

#[test]
fn same_seed_replays_the_same_run() {
    let run = |seed| {
        let mut sim = Sim::new(config(seed, 3));
        sim.net.drop_percent = 10;
        sim.run_until_done(RUN_DEADLINE_MS);
        (
            sim.events_processed,
            sim.trace(0).slot_digests.clone(),
            sim.now_ms,
        )
    };
    assert_eq!(run(7), run(7), "two runs of seed 7 differ");
    assert_ne!(
        run(7).0,
        run(8).0,
        "different seeds should give different schedules"
    );
}

#[test]
fn resent_commands_take_effect_once() {
    // Very short client timeouts make clients resend each command to several nodes.
    for_each_seed("resent_commands_take_effect_once", |seed| {
        let mut cfg = config(seed, 3);
        cfg.client_timeout_ms = 15;
        cfg.delay_max_ms = 12;
        let mut sim = Sim::new(cfg);
        finish_and_check(&mut sim)?;
        let resends: u64 = sim.clients.iter().map(|c| c.resends).sum();
        if resends == 0 {
            return Err("no command was resent; the scenario tests nothing".into());
        }
        Ok(())
    });
}

#[test]
fn bad_calls_fail_alike_everywhere_and_change_nothing() {
    use concoord_actors::Command;
    use concoord_objects::CommandId;
    let mut cfg = config(3, 3);
    cfg.clients = 0;
    let mut sim = Sim::new(cfg);
    let leader = elect(&mut sim).expect("a leader");
    let bad = [
        ("no_such_method", concoord_objects::encode_args::<i64>(&[])),
        ("increment", vec![0xc1]), // 0xc1 is never valid MessagePack
        ("increment", concoord_objects::encode_args(&[1, 2])),
    ];
    for (seq, (method, args)) in bad.iter().enumerate() {
        let call = Command::Call {
            id: CommandId::new(99, seq as u64 + 1),
            target: Default::default(),
            method: method.to_string(),
            args: args.clone(),
            ack_below: 0,
        };
        sim.submit(leader, call).expect("the leader takes requests");
    }
    sim.run_until(sim.now_ms + 1_000);
    let expected = [
        ObjectError::UNKNOWN_METHOD,
        ObjectError::BAD_ARGUMENTS,
        ObjectError::BAD_ARGUMENTS,
    ];
    for node in 0..3 {
        assert_eq!(
            counter_value(&sim, node),
            Ok(0),
            "node {node}: a bad call changed the state"
        );
        for (seq, kind) in expected.iter().enumerate() {
            let id = CommandId::new(99, seq as u64 + 1);
            match sim.nodes[node].replica.cached(id) {
                Some(concoord_actors::message::CommandState::Done(Err(e))) => {
                    assert_eq!(&e.kind, kind, "node {node}, call {id}: {e}")
                }
                other => panic!("node {node}, call {id}: expected a {kind} error, found {other:?}"),
            }
        }
    }
}

/// A network without delay: clients that find no leader yet must not resend
/// in a loop that never lets time pass (this hung `cargo bench` once).
#[test]
fn zero_delay_network_elects_and_finishes() {
    for_each_seed("zero_delay_network_elects_and_finishes", |seed| {
        let mut sim = Sim::new(SimConfig {
            delay_min_ms: 0,
            delay_max_ms: 0,
            ..config(seed, 3)
        });
        finish_and_check(&mut sim)
    });
}
