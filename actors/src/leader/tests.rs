//! The leader's role struct driven message by message.

use super::reads::MAX_READ_ROUNDS;
use super::*;
use crate::message::{Accepted, Promise};
use crate::Member;
use concoord_objects::CommandId;

pub(super) fn call(seq: u64) -> Command {
    Command::Call {
        id: CommandId::new(7, seq),
        target: Default::default(),
        method: "increment".into(),
        args: vec![0x90],
        ack_below: 0,
    }
}

pub(super) fn members(ids: std::ops::RangeInclusive<NodeId>) -> Vec<Member> {
    ids.map(|id| Member {
        id,
        addr: format!("127.0.0.1:{}", 9000 + id),
    })
    .collect()
}

/// Node `me` of a group of 1, 2, 3 that heard no leader for long:
/// it asks for pre-votes (at time 20 000).
pub(super) fn pre_candidate(me: NodeId) -> (Leader, Effects) {
    pre_candidate_with(me, LeaderConfig::default())
}

pub(super) fn pre_candidate_with(me: NodeId, config: LeaderConfig) -> (Leader, Effects) {
    let mut leader = Leader::new(me, ConfigHistory::genesis(members(1..=3)), config, 1);
    let mut fx = Effects::default();
    leader.tick(10_000, &mut fx);
    leader.tick(20_000, &mut fx);
    assert_eq!(leader.state(), LeaderState::PreCandidate);
    (leader, fx)
}

pub(super) fn pre_vote_reply(leader: &Leader, fx: &Effects, granted: bool) -> PeerMsg {
    let ballot = fx
        .sends
        .iter()
        .find_map(|(_, m)| match m {
            PeerMsg::PreVote(v) => Some(v.ballot),
            _ => None,
        })
        .expect("a pre-vote was sent");
    PeerMsg::PreVoteReply(PreVoteReply {
        ballot,
        granted,
        executed: leader.executed,
    })
}

/// Node 1 leading a group of 1, 2, 3 (all promised).
pub(super) fn active_leader() -> Leader {
    active_leader_with(LeaderConfig::default())
}

pub(super) fn active_leader_with(config: LeaderConfig) -> Leader {
    let (mut leader, fx) = pre_candidate_with(1, config);
    let granted = pre_vote_reply(&leader, &fx, true);
    let mut fx = Effects::default();
    leader.handle(2, granted, &mut fx);
    assert_eq!(leader.state(), LeaderState::Candidate);
    for from in 1..=3 {
        let promise = Promise {
            ballot: leader.ballot(),
            accepted: Vec::new(),
            trimmed_below: 0,
        };
        leader.handle(from, PeerMsg::Promise(promise), &mut fx);
    }
    assert!(leader.is_active());
    leader
}

pub(super) fn accepted(leader: &Leader, slot: Slot) -> Accepted {
    Accepted {
        ballot: leader.ballot(),
        slot,
    }
}

/// Proposes one call and delivers Accepted from `acks`; returns its slot.
pub(super) fn propose_and_ack(leader: &mut Leader, acks: &[NodeId], fx: &mut Effects) -> Slot {
    leader.on_request(call(1), &mut Effects::default()).unwrap();
    let slot = leader.next_slot() - 1;
    for &from in acks {
        let a = accepted(leader, slot);
        leader.handle(from, PeerMsg::Accepted(a), fx);
    }
    slot
}

pub(super) fn sent_to(fx: &Effects, to: NodeId) -> Vec<&PeerMsg> {
    fx.sends
        .iter()
        .filter(|(id, _)| *id == to)
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn requests_taken_while_proposals_are_held_share_one_slot() {
    let mut leader = active_leader();
    let first = leader.next_slot();
    let mut fx = Effects::default();
    leader.hold_proposals();
    for seq in 1..=3 {
        leader.on_request(call(seq), &mut fx).unwrap();
    }
    assert!(sent_to(&fx, 2).is_empty(), "proposed while held");
    leader.propose_held(&mut fx);
    let batches: Vec<usize> = sent_to(&fx, 2)
        .into_iter()
        .filter_map(|m| match m {
            PeerMsg::Accept(a) => Some(a.batch.len()),
            _ => None,
        })
        .collect();
    assert_eq!(batches, vec![3]);
    assert_eq!(leader.next_slot(), first + 1);
    // Not held, each takes a slot of its own while the window has room.
    for seq in 4..=5 {
        leader.on_request(call(seq), &mut fx).unwrap();
    }
    assert_eq!(leader.next_slot(), first + 3);
}

fn heartbeat_ack(leader: &Leader) -> PeerMsg {
    PeerMsg::HeartbeatAck(HeartbeatAck {
        ballot: leader.ballot(),
    })
}

#[test]
fn a_leader_steps_down_once_no_majority_has_answered_for_an_election_timeout() {
    let mut leader = active_leader();
    let timeout = leader.election_timeout_ms();
    let beat = LeaderConfig::default().heartbeat_interval_ms;
    let mut now = 20_000;
    // One follower answering is a majority of three: it keeps leading.
    while now < 20_000 + 4 * timeout {
        now += beat;
        leader.tick(now, &mut Effects::default());
        leader.handle(2, heartbeat_ack(&leader), &mut Effects::default());
        assert!(leader.is_active(), "at {now}");
        assert_eq!(leader.quorum_heard_ago_ms(), Some(0));
    }
    // Answers at an older ballot say nothing about this one.
    let stale = PeerMsg::HeartbeatAck(HeartbeatAck {
        ballot: Ballot::ZERO,
    });
    let last_answer = now;
    while leader.is_active() {
        now += beat;
        let mut fx = Effects::default();
        leader.tick(now, &mut fx);
        leader.handle(3, stale.clone(), &mut Effects::default());
        if leader.is_active() {
            assert!(
                now - last_answer <= timeout + beat,
                "still leading at {now}"
            );
        }
    }
    assert!(now - last_answer > timeout, "stepped down at {now}");
    assert_eq!(leader.state(), LeaderState::Follower);
    assert_eq!(leader.leader_hint(), None);
    assert_eq!(leader.stats().step_downs, 1);
    assert_eq!(leader.quorum_heard_ago_ms(), None);
    // It no longer takes commands: clients go elsewhere.
    assert!(leader.on_request(call(1), &mut Effects::default()).is_err());
}

#[test]
fn a_leader_resumed_from_a_pause_asks_before_it_steps_down() {
    let mut leader = active_leader();
    let timeout = leader.election_timeout_ms();
    let beat = LeaderConfig::default().heartbeat_interval_ms;
    // Paused for ten election timeouts: every answer it has is stale.
    let now = 20_000 + 10 * timeout;
    let mut fx = Effects::default();
    leader.tick(now, &mut fx);
    assert!(leader.is_active());
    assert!(
        sent_to(&fx, 2)
            .iter()
            .any(|m| matches!(m, PeerMsg::Heartbeat(_))),
        "it asks the followers at once: {:?}",
        fx.sends
    );
    // A follower answers within a heartbeat interval: it keeps leading.
    leader.handle(2, heartbeat_ack(&leader), &mut Effects::default());
    leader.tick(now + beat, &mut Effects::default());
    assert!(leader.is_active());
    assert_eq!(leader.stats().step_downs, 0);
}

#[test]
fn a_follower_answers_the_heartbeats_it_takes() {
    let mut follower = Leader::new(
        2,
        ConfigHistory::genesis(members(1..=3)),
        LeaderConfig::default(),
        1,
    );
    let ballot = Ballot::ZERO.next_for(1);
    let mut fx = Effects::default();
    follower.handle(
        1,
        PeerMsg::Heartbeat(Heartbeat {
            ballot,
            executed: 0,
        }),
        &mut fx,
    );
    assert!(
        matches!(&sent_to(&fx, 1)[..], [PeerMsg::HeartbeatAck(a)] if a.ballot == ballot),
        "{:?}",
        fx.sends
    );
    // A heartbeat below the ballots it has seen is not taken, nor answered.
    follower.handle(
        3,
        PeerMsg::Heartbeat(Heartbeat {
            ballot: ballot.next_for(3),
            executed: 0,
        }),
        &mut Effects::default(),
    );
    let mut fx = Effects::default();
    follower.handle(
        1,
        PeerMsg::Heartbeat(Heartbeat {
            ballot,
            executed: 0,
        }),
        &mut fx,
    );
    assert!(sent_to(&fx, 1).is_empty(), "{:?}", fx.sends);
}

pub(super) fn read_index_ack(leader: &Leader, round: u64) -> PeerMsg {
    PeerMsg::ReadIndexAck(ReadIndexAck {
        promised: leader.ballot(),
        round,
    })
}

/// The reads sent to the local replica, in order.
fn reads_released(fx: &Effects) -> Vec<u64> {
    sent_to(fx, 1)
        .iter()
        .filter_map(|m| match m {
            PeerMsg::ReadAt(r) => Some(r.reads.iter().map(|(_, c)| c.id().unwrap().seq)),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn read_rounds_overlap_and_an_answer_confirms_every_round_before_it() {
    let mut leader = active_leader();
    let mut fx = Effects::default();
    // Each read starts a round while fewer than MAX_READ_ROUNDS are in flight.
    for seq in 1..=MAX_READ_ROUNDS as u64 + 2 {
        leader.on_read(call(seq), &mut fx).unwrap();
    }
    let rounds: Vec<u64> = sent_to(&fx, 2)
        .iter()
        .filter_map(|m| match m {
            PeerMsg::ReadIndex(r) => Some(r.round),
            _ => None,
        })
        .collect();
    assert_eq!(rounds.len(), MAX_READ_ROUNDS, "{rounds:?}");
    let (first, last) = (rounds[0], rounds[MAX_READ_ROUNDS - 1]);
    // One member's answer is not a majority; the leader's own acceptor makes one.
    let mut fx = Effects::default();
    leader.handle(2, read_index_ack(&leader, first + 1), &mut fx);
    assert!(reads_released(&fx).is_empty());
    leader.handle(1, read_index_ack(&leader, first + 1), &mut fx);
    assert_eq!(reads_released(&fx), vec![1, 2], "rounds up to the second");
    // The two reads that waited go out together in a new round.
    let newer: Vec<u64> = sent_to(&fx, 3)
        .iter()
        .filter_map(|m| match m {
            PeerMsg::ReadIndex(r) => Some(r.round),
            _ => None,
        })
        .collect();
    assert_eq!(newer, vec![last + 1]);
    // Answers to the newest round confirm everything before it.
    let mut fx = Effects::default();
    leader.handle(3, read_index_ack(&leader, last + 1), &mut fx);
    leader.handle(1, read_index_ack(&leader, last + 1), &mut fx);
    assert_eq!(reads_released(&fx), vec![3, 4, 5, 6]);
    assert_eq!(leader.reads_pending(), 0);
}

#[test]
fn answers_to_rounds_of_an_earlier_leadership_confirm_no_read_of_this_one() {
    let mut leader = active_leader();
    let mut fx = Effects::default();
    leader.on_read(call(1), &mut fx).unwrap();
    let old_round = leader.read_round;
    // Deposed and elected again: the read is dropped, round numbers go on.
    leader.handle(
        2,
        PeerMsg::Promise(Promise {
            ballot: leader.ballot().next_for(2),
            accepted: Vec::new(),
            trimmed_below: 0,
        }),
        &mut Effects::default(),
    );
    assert!(!leader.is_active());
    assert_eq!(leader.reads_pending(), 0);
    let mut fx = Effects::default();
    leader.tick(40_000, &mut fx);
    leader.tick(50_000, &mut fx);
    let granted = pre_vote_reply(&leader, &fx, true);
    leader.handle(2, granted, &mut Effects::default());
    for from in 1..=3 {
        let promise = Promise {
            ballot: leader.ballot(),
            accepted: Vec::new(),
            trimmed_below: 0,
        };
        leader.handle(from, PeerMsg::Promise(promise), &mut Effects::default());
    }
    assert!(leader.is_active());
    let mut fx = Effects::default();
    leader.on_read(call(2), &mut fx).unwrap();
    // Late answers to the old round, at the new ballot, from a majority.
    for from in 1..=2 {
        leader.handle(from, read_index_ack(&leader, old_round), &mut fx);
    }
    assert!(reads_released(&fx).is_empty());
    assert_eq!(leader.reads_pending(), 1);
}

/// Found by the nemesis (a stale read after a lagging member, just
/// back from a partition, was elected): slots found accepted in phase 1
/// may have been decided by the old leader, and clients told so; a read
/// arriving before this leader has re-proposed them must wait for them.
#[test]
fn a_read_at_a_new_leader_waits_for_the_slots_it_found_in_phase_1() {
    let (mut leader, fx) = pre_candidate(1);
    let granted = pre_vote_reply(&leader, &fx, true);
    let mut fx = Effects::default();
    leader.handle(2, granted, &mut fx);
    let old: Batch = Arc::new(vec![call(9)].into());
    for from in 1..=2 {
        // Node 2 accepted slots 0..5 under the old leader; node 1 (this
        // one) never heard of them.
        let accepted = if from == 2 {
            (0..5)
                .map(|slot| (slot, Ballot::ZERO, old.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let promise = Promise {
            ballot: leader.ballot(),
            accepted,
            trimmed_below: 0,
        };
        leader.handle(from, PeerMsg::Promise(promise), &mut fx);
    }
    assert!(leader.is_active());
    assert_eq!(leader.next_slot(), 5);
    leader.on_read(call(10), &mut Effects::default()).unwrap();
    let (point, _) = leader
        .read_rounds
        .back()
        .and_then(|(_, reads)| reads.last())
        .expect("the read is in a round");
    assert_eq!(
        *point, 5,
        "a read must see every slot found in phase 1 (any may be decided)"
    );
}

#[test]
fn commits_ride_on_the_next_accept_and_late_acks_become_commits() {
    let mut leader = active_leader();
    let mut fx = Effects::default();
    let slot = propose_and_ack(&mut leader, &[1, 2], &mut fx);
    // Decided: the local replica hears at once; followers not yet.
    assert!(matches!(sent_to(&fx, 1)[..], [PeerMsg::Decision(d)] if d.slot == slot));
    assert!(sent_to(&fx, 2).is_empty() && sent_to(&fx, 3).is_empty());

    // Node 3's Accepted comes late: it is owed a Commit too.
    let a = accepted(&leader, slot);
    leader.handle(3, PeerMsg::Accepted(a), &mut fx);
    assert!(sent_to(&fx, 3).is_empty());

    // The next Accept to each follower carries the commit in front of it.
    let mut fx = Effects::default();
    leader.on_request(call(2), &mut fx).unwrap();
    for to in [2, 3] {
        match &sent_to(&fx, to)[..] {
            [PeerMsg::Commit(c), PeerMsg::Accept(a)] => {
                assert_eq!(c.slots, vec![slot]);
                assert_eq!(a.slot, slot + 1);
            }
            other => panic!("node {to} got {other:?}"),
        }
    }
}

#[test]
fn an_idle_leader_sends_held_back_commits_on_its_tick() {
    let mut leader = active_leader();
    let mut fx = Effects::default();
    let slot = propose_and_ack(&mut leader, &[1, 2, 3], &mut fx);
    let mut fx = Effects::default();
    leader.tick(20_010, &mut fx);
    for to in [2, 3] {
        assert!(
            sent_to(&fx, to)
                .iter()
                .any(|m| matches!(m, PeerMsg::Commit(c) if c.slots == vec![slot])),
            "node {to} was not told slot {slot} is decided"
        );
    }
}

#[test]
fn a_member_that_never_acknowledges_gets_the_whole_decision_after_retry() {
    let mut leader = active_leader();
    let mut fx = Effects::default();
    let slot = propose_and_ack(&mut leader, &[1, 2], &mut fx);
    let mut fx = Effects::default();
    leader.tick(20_000 + LeaderConfig::default().retry_ms / 2, &mut fx);
    assert!(!sent_to(&fx, 3)
        .iter()
        .any(|m| matches!(m, PeerMsg::Decision(_))));
    leader.tick(20_000 + LeaderConfig::default().retry_ms, &mut fx);
    assert!(sent_to(&fx, 3)
        .iter()
        .any(|m| matches!(m, PeerMsg::Decision(d) if d.slot == slot && d.batch.len() == 1)));
}

#[test]
fn a_member_hearing_no_leader_asks_before_it_raises_its_ballot() {
    let (mut leader, fx) = pre_candidate(1);
    assert_eq!(
        leader.ballot(),
        Ballot::ZERO,
        "a pre-vote raised the ballot"
    );
    let asked: Vec<NodeId> = fx
        .sends
        .iter()
        .filter(|(_, m)| matches!(m, PeerMsg::PreVote(_)))
        .map(|(to, _)| *to)
        .collect();
    assert_eq!(asked, vec![2, 3]);
    assert!(!fx
        .sends
        .iter()
        .any(|(_, m)| matches!(m, PeerMsg::Prepare(_))));

    // Refused by both (they hear a leader): no election, same ballot.
    let refused = pre_vote_reply(&leader, &fx, false);
    let mut out = Effects::default();
    leader.handle(2, refused.clone(), &mut out);
    leader.handle(3, refused, &mut out);
    assert_eq!(leader.state(), LeaderState::PreCandidate);
    assert_eq!(leader.ballot(), Ballot::ZERO);
    assert!(
        out.sends.is_empty(),
        "refusals made it send {:?}",
        out.sends
    );

    // Asking again later, and granted by one: a majority, so it prepares.
    let mut fx = Effects::default();
    leader.tick(21_000, &mut fx);
    let granted = pre_vote_reply(&leader, &fx, true);
    let mut out = Effects::default();
    leader.handle(3, granted, &mut out);
    assert_eq!(leader.state(), LeaderState::Candidate);
    assert!(leader.ballot() > Ballot::ZERO);
    assert!(out
        .sends
        .iter()
        .any(|(_, m)| matches!(m, PeerMsg::Prepare(_))));
}

#[test]
fn followers_that_hear_their_leader_refuse_pre_votes_and_others_grant() {
    let mut follower = Leader::new(
        2,
        ConfigHistory::genesis(members(1..=3)),
        LeaderConfig::default(),
        2,
    );
    let timeout = LeaderConfig::default().election_timeout_ms;
    let ask = PeerMsg::PreVote(PreVote {
        ballot: Ballot::ZERO.next_for(3),
    });
    let answer = |follower: &mut Leader, now_ms| {
        let mut fx = Effects::default();
        follower.tick(now_ms, &mut fx);
        let mut fx = Effects::default();
        follower.handle(3, ask.clone(), &mut fx);
        match &fx.sends[..] {
            [(3, PeerMsg::PreVoteReply(r))] => r.granted,
            other => panic!("answered {other:?}"),
        }
    };
    // Never heard a leader: grants.
    assert!(answer(&mut follower, 10));
    let hb = Heartbeat {
        ballot: Ballot::ZERO.next_for(1),
        executed: 0,
    };
    follower.handle(1, PeerMsg::Heartbeat(hb), &mut Effects::default());
    assert!(
        !answer(&mut follower, 10 + timeout - 1),
        "granted within the timeout"
    );
    assert_eq!(
        follower.ballot(),
        Ballot::ZERO.next_for(1),
        "a pre-vote changed it"
    );
    assert!(
        answer(&mut follower, 10 + timeout),
        "refused after the timeout"
    );

    // The active leader refuses too.
    let mut leader = active_leader();
    let mut fx = Effects::default();
    leader.handle(3, ask.clone(), &mut fx);
    assert!(matches!(&fx.sends[..], [(3, PeerMsg::PreVoteReply(r))] if !r.granted));
}

#[test]
fn a_pre_candidate_follows_a_leader_it_hears() {
    let (mut leader, _) = pre_candidate(2);
    let hb = Heartbeat {
        ballot: Ballot::ZERO.next_for(1),
        executed: 0,
    };
    leader.handle(1, PeerMsg::Heartbeat(hb), &mut Effects::default());
    assert_eq!(leader.state(), LeaderState::Follower);
    assert_eq!(leader.leader_hint(), Some(1));
}

#[test]
fn removals_of_non_members_and_of_the_last_member_are_refused() {
    let mut leader = active_leader();
    let mut fx = Effects::default();
    let unknown = MemberRef::Addr("127.0.0.1:1".into());
    assert!(matches!(
        leader.request_removal(&unknown, &mut fx),
        Err(RemovalRefused::NoSuchMember(m)) if m.contains("127.0.0.1:9002")
    ));
    let by_id = leader.request_removal(&MemberRef::Id(3), &mut fx);
    assert_eq!(by_id.map(|m| m.id), Ok(3));
    assert_eq!(leader.pending_len() + leader.inflight_acks().len(), 1);

    let mut alone = Leader::new(
        1,
        ConfigHistory::genesis(members(1..=1)),
        LeaderConfig::default(),
        1,
    );
    alone.tick(10_000, &mut fx);
    alone.tick(20_000, &mut fx);
    let ballot = alone.ballot();
    let promise = Promise {
        ballot,
        accepted: Vec::new(),
        trimmed_below: 0,
    };
    alone.handle(1, PeerMsg::Promise(promise), &mut fx);
    assert!(alone.is_active(), "a group of one elects itself");
    assert!(matches!(
        alone.request_removal(&MemberRef::Id(1), &mut fx),
        Err(RemovalRefused::LastMember(_))
    ));
    let mut follower = pre_candidate(2).0;
    assert_eq!(
        follower.request_removal(&MemberRef::Id(3), &mut fx),
        Err(RemovalRefused::NotLeader(None))
    );
}
