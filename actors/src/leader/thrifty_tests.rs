//! A thrifty leader: Accepts to a bare majority, decided batches to the
//! member left out later and together.

use super::tests::{
    accepted, active_leader, active_leader_with, call, propose_and_ack, read_index_ack, sent_to,
};
use super::*;

fn accepts_to(fx: &Effects, to: NodeId) -> Vec<Slot> {
    sent_to(fx, to)
        .iter()
        .filter_map(|m| match m {
            PeerMsg::Accept(a) => Some(a.slot),
            _ => None,
        })
        .collect()
}

fn caught_up(fx: &Effects, to: NodeId) -> Vec<Vec<Slot>> {
    sent_to(fx, to)
        .iter()
        .filter_map(|m| match m {
            PeerMsg::CatchUp(c) => Some(c.decisions.iter().map(|(s, _)| *s).collect()),
            _ => None,
        })
        .collect()
}

fn thrifty_leader() -> Leader {
    active_leader_with(LeaderConfig {
        thrifty: true,
        ..LeaderConfig::default()
    })
}

/// Node 1 leading 1, 2, 3, whose first slot node 2 answered before node 3:
/// node 2 is its accept quorum.
fn leader_with_quorum_of_node_2() -> Leader {
    let mut leader = thrifty_leader();
    propose_and_ack(&mut leader, &[1, 2], &mut Effects::default());
    leader
}

#[test]
fn after_a_decided_slot_accepts_go_to_the_follower_that_answered_first_only() {
    let mut leader = thrifty_leader();
    let mut fx = Effects::default();
    leader.on_request(call(1), &mut fx).unwrap();
    let first = leader.next_slot() - 1;
    // No quorum picked yet: everyone is asked.
    for to in [1, 2, 3] {
        assert_eq!(accepts_to(&fx, to), vec![first], "node {to}");
    }
    for from in [1, 2] {
        leader.handle(from, PeerMsg::Accepted(accepted(&leader, first)), &mut fx);
    }

    let mut fx = Effects::default();
    leader.on_request(call(2), &mut fx).unwrap();
    let second = leader.next_slot() - 1;
    assert_eq!(accepts_to(&fx, 1), vec![second]);
    assert_eq!(accepts_to(&fx, 2), vec![second]);
    assert!(
        sent_to(&fx, 3).is_empty(),
        "node 3 got {:?}",
        sent_to(&fx, 3)
    );
    assert_eq!(leader.stats().thrifty_slots, 1);

    // Decided by nodes 1 and 2; node 3 hears nothing of it until the tick.
    let mut fx = Effects::default();
    for from in [1, 2] {
        leader.handle(from, PeerMsg::Accepted(accepted(&leader, second)), &mut fx);
    }
    assert!(leader.inflight_acks().is_empty());
    assert!(sent_to(&fx, 3).is_empty());
    let mut fx = Effects::default();
    leader.tick(20_010, &mut fx);
    assert_eq!(caught_up(&fx, 3), vec![vec![second]]);
    assert!(accepts_to(&fx, 3).is_empty());
}

#[test]
fn the_member_left_out_gets_its_batches_together_once_enough_wait() {
    let mut leader = leader_with_quorum_of_node_2();
    let mut fx = Effects::default();
    let slots: Vec<Slot> = (0..LAZY_FLUSH_SLOTS)
        .map(|_| {
            let slot = propose_and_ack(&mut leader, &[1, 2], &mut fx);
            // Its replica executes it, so the window moves on.
            let progress = Progress {
                executed: slot + 1,
                configs: leader.configs().clone(),
                sessions_opened: Vec::new(),
                sessions_ended: Vec::new(),
                all_sessions: false,
            };
            leader.handle(1, PeerMsg::Progress(progress), &mut Effects::default());
            slot
        })
        .collect();
    // One message, every batch in slot order, and no tick needed.
    assert_eq!(caught_up(&fx, 3), vec![slots.clone()]);
    let batches = sent_to(&fx, 3)
        .iter()
        .find_map(|m| match m {
            PeerMsg::CatchUp(c) => Some(c.decisions.iter().map(|(_, b)| b.len()).collect()),
            _ => None,
        })
        .unwrap_or_else(Vec::new);
    assert_eq!(batches, vec![1; LAZY_FLUSH_SLOTS]);
    assert_eq!(leader.stats().thrifty_slots, LAZY_FLUSH_SLOTS as u64);
}

#[test]
fn a_silent_quorum_follower_makes_the_leader_ask_everyone_and_pick_again() {
    let mut leader = leader_with_quorum_of_node_2();
    let mut fx = Effects::default();
    leader.on_request(call(2), &mut fx).unwrap();
    let slot = leader.next_slot() - 1;
    assert!(accepts_to(&fx, 3).is_empty());
    leader.handle(1, PeerMsg::Accepted(accepted(&leader, slot)), &mut fx);

    // Node 2 never answers: after retry_ms node 3 is asked too, and decides it.
    let mut fx = Effects::default();
    leader.tick(20_000 + LeaderConfig::default().retry_ms, &mut fx);
    assert_eq!(accepts_to(&fx, 3), vec![slot]);
    assert_eq!(accepts_to(&fx, 2), vec![slot]);
    leader.handle(3, PeerMsg::Accepted(accepted(&leader, slot)), &mut fx);
    assert!(leader.inflight_acks().is_empty(), "not decided");

    // Node 3 answered first: the next slot goes to it, not to node 2.
    let mut fx = Effects::default();
    leader.on_request(call(3), &mut fx).unwrap();
    let next = leader.next_slot() - 1;
    assert_eq!(accepts_to(&fx, 3), vec![next]);
    assert!(accepts_to(&fx, 2).is_empty());
}

#[test]
fn a_read_index_answer_to_the_member_left_out_follows_its_decided_batches() {
    let mut leader = leader_with_quorum_of_node_2();
    let mut fx = Effects::default();
    let slot = propose_and_ack(&mut leader, &[1, 2], &mut fx);
    leader.handle(3, PeerMsg::ReadIndexAsk { ask: 77 }, &mut fx);
    for from in [1, 2] {
        leader.handle(from, read_index_ack(&leader, leader.read_round), &mut fx);
    }
    let to_3: Vec<&PeerMsg> = sent_to(&fx, 3)
        .into_iter()
        .filter(|m| matches!(m, PeerMsg::CatchUp(_) | PeerMsg::ReadIndexAnswer { .. }))
        .collect();
    match &to_3[..] {
        [PeerMsg::CatchUp(c), PeerMsg::ReadIndexAnswer { ask: 77, index }] => {
            assert_eq!(c.decisions.last().map(|(s, _)| *s), Some(slot));
            assert_eq!(*index, slot + 1);
        }
        other => panic!("node 3 got {other:?}"),
    }
}

#[test]
fn a_deposed_leader_drops_its_quorum_and_the_batches_it_owed() {
    let mut leader = leader_with_quorum_of_node_2();
    let mut fx = Effects::default();
    let slot = propose_and_ack(&mut leader, &[1, 2], &mut fx);
    assert_eq!(leader.accept_quorum(), &[2]);
    let owed: Vec<Slot> = leader.lazy_decisions[&3].iter().map(|(s, _)| *s).collect();
    assert_eq!(owed, vec![slot]);
    // Deposed before its tick: what node 3 was owed is dropped with the
    // quorum (those slots were chosen; the next leader finds them).
    leader.preempted(Ballot {
        round: leader.ballot().round + 1,
        node: 2,
    });
    assert!(leader.accept_quorum.is_empty() && leader.lazy_decisions.is_empty());
}

#[test]
fn by_default_every_member_is_asked_every_slot() {
    let mut leader = active_leader();
    let mut fx = Effects::default();
    let first = propose_and_ack(&mut leader, &[1, 2], &mut fx);
    let mut fx = Effects::default();
    leader.on_request(call(2), &mut fx).unwrap();
    for to in [1, 2, 3] {
        assert_eq!(accepts_to(&fx, to), vec![first + 1], "node {to}");
    }
    assert_eq!(leader.stats().thrifty_slots, 0);
}

#[test]
fn losing_the_quorum_followers_link_sends_the_slots_in_flight_to_the_others_at_once() {
    let mut leader = leader_with_quorum_of_node_2();
    let mut fx = Effects::default();
    let decided = propose_and_ack(&mut leader, &[1, 2], &mut fx);
    leader.on_request(call(2), &mut fx).unwrap();
    let slot = leader.next_slot() - 1;
    assert!(accepts_to(&fx, 3).is_empty());
    leader.handle(1, PeerMsg::Accepted(accepted(&leader, slot)), &mut fx);

    // A member outside the quorum going away changes nothing.
    let mut fx = Effects::default();
    leader.peer_lost(3, &mut fx);
    assert!(fx.sends.is_empty(), "{:?}", fx.sends);
    assert_eq!(leader.accept_quorum(), &[2]);

    // Node 2's link closes: node 3 gets what it is owed, then the Accept,
    // with no time gone by; its answer decides the slot.
    let mut fx = Effects::default();
    leader.peer_lost(2, &mut fx);
    assert!(leader.accept_quorum().is_empty());
    assert_eq!(caught_up(&fx, 3), vec![vec![decided]]);
    let to_3: Vec<&PeerMsg> = sent_to(&fx, 3);
    assert!(
        matches!(to_3[..], [PeerMsg::CatchUp(_), PeerMsg::Accept(_)]),
        "node 3 got {to_3:?}"
    );
    assert_eq!(accepts_to(&fx, 3), vec![slot]);
    assert!(sent_to(&fx, 2).is_empty());
    leader.handle(3, PeerMsg::Accepted(accepted(&leader, slot)), &mut fx);
    assert!(leader.inflight_acks().is_empty(), "not decided");
}
