//! Follower reads: a follower asks the leader for a read index and serves
//! the reads behind the ask itself.

use super::reads::MAX_READ_ROUNDS;
use super::tests::{active_leader, call, members, read_index_ack, sent_to};
use super::*;

/// Node 2 of 1, 2, 3 following node 1, whose heartbeat it took.
fn follower(config: LeaderConfig) -> Leader {
    let mut follower = Leader::new(2, ConfigHistory::genesis(members(1..=3)), config, 2);
    follower.start_asks_at(100);
    let ballot = Ballot::ZERO.next_for(1);
    let heartbeat = PeerMsg::Heartbeat(Heartbeat {
        ballot,
        executed: 0,
    });
    follower.handle(1, heartbeat, &mut Effects::default());
    assert_eq!(follower.leader_hint(), Some(1));
    follower
}

fn asks(fx: &Effects, to: NodeId) -> Vec<u64> {
    sent_to(fx, to)
        .iter()
        .filter_map(|m| match m {
            PeerMsg::ReadIndexAsk { ask } => Some(*ask),
            _ => None,
        })
        .collect()
}

/// The reads a node's leader role hands its own replica (node `me`), with
/// the index each waits for.
fn released(fx: &Effects, me: NodeId) -> Vec<(Slot, u64)> {
    sent_to(fx, me)
        .iter()
        .filter_map(|m| match m {
            PeerMsg::ReadAt(r) => Some(r.reads.iter().map(|(i, c)| (*i, c.id().unwrap().seq))),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn a_follower_asks_once_for_a_burst_of_reads_and_serves_them_at_the_answered_index() {
    let mut follower = follower(LeaderConfig::default());
    let mut fx = Effects::default();
    for seq in 1..=MAX_READ_ROUNDS as u64 + 3 {
        follower.on_read(call(seq), &mut fx).unwrap();
    }
    // One ask per read while fewer than MAX_READ_ROUNDS wait; the rest share one.
    let sent = asks(&fx, 1);
    assert_eq!(
        sent,
        (101..=100 + MAX_READ_ROUNDS as u64).collect::<Vec<_>>()
    );
    assert_eq!(follower.reads_pending(), MAX_READ_ROUNDS + 3);
    assert_eq!(follower.stats().follower_reads, MAX_READ_ROUNDS as u64 + 3);

    // An answer from a node not asked, or to an ask never sent, serves nothing.
    let mut fx = Effects::default();
    follower.handle(3, PeerMsg::ReadIndexAnswer { ask: 101, index: 9 }, &mut fx);
    follower.handle(1, PeerMsg::ReadIndexAnswer { ask: 99, index: 9 }, &mut fx);
    assert!(released(&fx, 2).is_empty(), "{:?}", fx.sends);

    // The leader's answer releases that ask's read at its index, and the
    // reads that waited for room go in one new ask.
    let mut fx = Effects::default();
    follower.handle(1, PeerMsg::ReadIndexAnswer { ask: 102, index: 7 }, &mut fx);
    assert_eq!(released(&fx, 2), vec![(7, 2)]);
    assert_eq!(asks(&fx, 1), vec![105]);
    // A second answer to the same ask is a duplicate.
    let mut fx = Effects::default();
    follower.handle(1, PeerMsg::ReadIndexAnswer { ask: 102, index: 8 }, &mut fx);
    assert!(released(&fx, 2).is_empty());
    let mut fx = Effects::default();
    follower.handle(1, PeerMsg::ReadIndexAnswer { ask: 105, index: 8 }, &mut fx);
    assert_eq!(released(&fx, 2), vec![(8, 5), (8, 6), (8, 7)]);
    assert_eq!(follower.reads_pending(), 3);
}

#[test]
fn a_follower_that_knows_no_leader_or_may_not_serve_reads_sends_the_client_on() {
    let mut lost = Leader::new(
        2,
        ConfigHistory::genesis(members(1..=3)),
        LeaderConfig::default(),
        2,
    );
    let mut fx = Effects::default();
    assert_eq!(
        lost.on_read(call(1), &mut fx),
        Err(NotAccepted::NotLeader(None))
    );
    let mut off = follower(LeaderConfig {
        follower_reads: false,
        ..LeaderConfig::default()
    });
    assert_eq!(
        off.on_read(call(1), &mut fx),
        Err(NotAccepted::NotLeader(Some(1)))
    );
    assert!(fx.sends.is_empty(), "{:?}", fx.sends);
}

#[test]
fn an_unanswered_ask_goes_again_to_whoever_leads_now() {
    let config = LeaderConfig::default();
    let mut follower = follower(config.clone());
    let mut fx = Effects::default();
    follower.on_read(call(1), &mut fx).unwrap();
    let start = follower.now_ms;
    follower.tick(start + config.retry_ms - 1, &mut fx);
    assert_eq!(
        asks(&fx, 1),
        vec![101],
        "not again before the retry interval"
    );
    let mut fx = Effects::default();
    follower.tick(start + config.retry_ms, &mut fx);
    assert_eq!(asks(&fx, 1), vec![101], "the same ask again");
    // Node 3 leads now: the ask goes to it, and node 1's answer no longer counts.
    let heartbeat = PeerMsg::Heartbeat(Heartbeat {
        ballot: Ballot::ZERO.next_for(1).next_for(3),
        executed: 0,
    });
    let mut fx = Effects::default();
    follower.handle(3, heartbeat, &mut fx);
    follower.tick(start + config.retry_ms + 1, &mut fx);
    assert_eq!(asks(&fx, 3), vec![101]);
    let mut fx = Effects::default();
    follower.handle(1, PeerMsg::ReadIndexAnswer { ask: 101, index: 4 }, &mut fx);
    assert!(released(&fx, 2).is_empty());
    follower.handle(3, PeerMsg::ReadIndexAnswer { ask: 101, index: 5 }, &mut fx);
    assert_eq!(released(&fx, 2), vec![(5, 1)]);
}

#[test]
fn the_leader_answers_an_ask_with_its_commit_point_once_a_later_round_is_confirmed() {
    let mut leader = active_leader();
    // A write in phase 2 holds the commit point at its slot.
    let mut fx = Effects::default();
    let slot = leader.next_slot();
    leader.on_request(call(1), &mut fx).unwrap();
    let mut fx = Effects::default();
    leader.handle(2, PeerMsg::ReadIndexAsk { ask: 40 }, &mut fx);
    let round = sent_to(&fx, 3)
        .iter()
        .find_map(|m| match m {
            PeerMsg::ReadIndex(r) => Some(r.round),
            _ => None,
        })
        .expect("the ask starts a round");
    let mut fx = Effects::default();
    leader.handle(3, read_index_ack(&leader, round), &mut fx);
    assert!(sent_to(&fx, 2).is_empty(), "one answer is not a majority");
    leader.handle(1, read_index_ack(&leader, round), &mut fx);
    let answers: Vec<_> = sent_to(&fx, 2)
        .into_iter()
        .filter(|m| matches!(m, PeerMsg::ReadIndexAnswer { .. }))
        .collect();
    assert_eq!(
        answers,
        vec![&PeerMsg::ReadIndexAnswer {
            ask: 40,
            index: slot
        }]
    );
    assert!(
        released(&fx, 1).is_empty(),
        "the leader's replica serves none"
    );
}

#[test]
fn a_node_that_is_not_leading_ignores_asks() {
    let mut follower = follower(LeaderConfig::default());
    let mut fx = Effects::default();
    follower.handle(3, PeerMsg::ReadIndexAsk { ask: 1 }, &mut fx);
    assert!(fx.sends.is_empty(), "{:?}", fx.sends);
    assert_eq!(follower.reads_pending(), 0);
}

#[test]
fn a_follower_that_becomes_leader_serves_its_waiting_reads_in_its_own_rounds() {
    let (mut node, _) = tests::pre_candidate(1);
    node.start_asks_at(100);
    let mut fx = Effects::default();
    // Node 1 heard node 2 lead; a read waits for node 2's answer.
    let heartbeat = PeerMsg::Heartbeat(Heartbeat {
        ballot: node.ballot().next_for(2),
        executed: 0,
    });
    node.handle(2, heartbeat, &mut fx);
    node.on_read(call(1), &mut fx).unwrap();
    assert_eq!(asks(&fx, 2), vec![101]);
    // It is elected before the answer comes.
    let mut node = {
        let mut fx = Effects::default();
        node.tick(100_000, &mut fx);
        node.tick(200_000, &mut fx);
        let granted = tests::pre_vote_reply(&node, &fx, true);
        node.handle(3, granted, &mut Effects::default());
        for from in 1..=3 {
            let promise = Promise {
                ballot: node.ballot(),
                accepted: Vec::new(),
                trimmed_below: 0,
            };
            node.handle(from, PeerMsg::Promise(promise), &mut Effects::default());
        }
        assert!(node.is_active());
        node
    };
    let mut fx = Effects::default();
    node.tick(200_001, &mut fx);
    let round = sent_to(&fx, 3)
        .iter()
        .find_map(|m| match m {
            PeerMsg::ReadIndex(r) => Some(r.round),
            _ => None,
        })
        .expect("its waiting read starts a round");
    let mut fx = Effects::default();
    node.handle(3, read_index_ack(&node, round), &mut fx);
    node.handle(1, read_index_ack(&node, round), &mut fx);
    assert_eq!(
        released(&fx, 1).iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![1]
    );
    // Node 2's late answer serves nothing twice.
    let mut fx = Effects::default();
    node.handle(2, PeerMsg::ReadIndexAnswer { ask: 101, index: 0 }, &mut fx);
    assert!(released(&fx, 1).is_empty());
}

fn sessions_heard(fx: &Effects, to: NodeId) -> Vec<Vec<u64>> {
    sent_to(fx, to)
        .iter()
        .filter_map(|m| match m {
            PeerMsg::SessionsHeard { clients } => Some(clients.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_follower_tells_the_leader_of_the_clients_it_hears_and_the_leader_keeps_their_sessions() {
    let mut follower = follower(LeaderConfig::default());
    assert!(follower.heard_client(5), "a keep-alive is answered here");
    let mut fx = Effects::default();
    follower.on_read(call(1), &mut fx).unwrap(); // client 7
    assert!(sessions_heard(&fx, 1).is_empty(), "not before the tick");
    follower.tick(1, &mut fx);
    assert_eq!(sessions_heard(&fx, 1), vec![vec![5, 7]]);
    let mut fx = Effects::default();
    follower.tick(2, &mut fx);
    assert!(sessions_heard(&fx, 1).is_empty(), "once per hearing");

    // The leader keeps a session it hears of this way past its TTL.
    let mut leader = active_leader();
    leader.config.check_quorum = false; // no heartbeat answers in this test
    let progress = Progress {
        executed: 0,
        configs: ConfigHistory::genesis(members(1..=3)),
        sessions_opened: vec![(7, 1_000)],
        sessions_ended: Vec::new(),
        all_sessions: false,
    };
    leader.handle(1, PeerMsg::Progress(progress), &mut Effects::default());
    let start = leader.now_ms;
    for t in (1..=20).map(|i| start + i * 100) {
        let mut fx = Effects::default();
        leader.handle(2, PeerMsg::SessionsHeard { clients: vec![7] }, &mut fx);
        leader.tick(t, &mut fx);
        assert!(!expires(&fx, 7), "expired at {t} while heard");
    }
    // Unheard, it expires.
    let mut fx = Effects::default();
    leader.tick(start + 2_000 + 1_500, &mut fx);
    leader.tick(start + 2_000 + 1_600, &mut fx);
    assert!(expires(&fx, 7), "{:?}", fx.sends);
}

/// Whether the leader proposed the end of `client`'s session.
fn expires(fx: &Effects, client: u64) -> bool {
    fx.sends.iter().any(|(_, m)| {
        matches!(m, PeerMsg::Accept(a)
            if a.batch.contains(&Command::ExpireSession { client }))
    })
}

#[test]
fn a_follower_cut_off_from_the_leader_sends_reads_and_keep_alives_on() {
    let config = LeaderConfig::default();
    let mut follower = follower(config.clone());
    let mut fx = Effects::default();
    follower.tick(config.election_timeout_ms + 1, &mut fx);
    assert!(!follower.heard_client(5));
    assert!(matches!(
        follower.on_read(call(1), &mut fx),
        Err(NotAccepted::NotLeader(_))
    ));
}
