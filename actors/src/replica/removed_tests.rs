//! A removed member is never added back (its join, sent before it learned
//! of its removal, is ignored, on every replica and after a snapshot too), and
//! serves until the membership that replaced it has learned its removal.

use super::*;
use crate::message::{Decision, PeerMsg};

fn member(id: NodeId) -> Member {
    Member {
        id,
        addr: format!("mem-{id}"),
    }
}

fn founding() -> Replica {
    let object = concoord_objects::builtin("Counter").expect("built in");
    Replica::founding(
        1,
        object,
        ConfigHistory::genesis(vec![member(1), member(2), member(3)]),
    )
}

fn decide(replica: &mut Replica, command: Command) {
    let slot = replica.executed();
    let mut fx = Effects::default();
    replica.on_decision(
        Decision {
            slot,
            batch: Arc::new(vec![command].into()),
        },
        &mut fx,
    );
    assert_eq!(replica.executed(), slot + 1);
}

fn member_ids(replica: &Replica) -> Vec<NodeId> {
    replica.configs().latest().iter().map(|m| m.id).collect()
}

#[test]
fn a_join_decided_after_the_members_removal_is_ignored() {
    let mut replica = founding();
    decide(&mut replica, Command::RemoveMember(3));
    assert_eq!(member_ids(&replica), vec![1, 2]);
    decide(&mut replica, Command::AddMember(member(3)));
    assert_eq!(
        member_ids(&replica),
        vec![1, 2],
        "a removed member came back"
    );
    // A new member at the removed one's address (a restart with a new id) joins.
    decide(
        &mut replica,
        Command::AddMember(Member {
            id: 4,
            addr: "mem-3".into(),
        }),
    );
    assert_eq!(member_ids(&replica), vec![1, 2, 4]);
}

#[test]
fn a_replica_that_installed_a_snapshot_ignores_the_join_too() {
    let mut replica = founding();
    decide(&mut replica, Command::RemoveMember(3));
    let snapshot = replica.snapshot();
    assert_eq!(snapshot.format, SNAPSHOT_FORMAT);
    assert_eq!(snapshot.removed, vec![3]);

    let object = concoord_objects::builtin("Counter").expect("built in");
    let mut joiner = Replica::joining(5, object, vec![member(1)]);
    joiner.restore(snapshot).expect("the snapshot installs");
    decide(&mut joiner, Command::AddMember(member(3)));
    assert_eq!(member_ids(&joiner), vec![1, 2]);
}

#[test]
fn a_format_3_snapshot_installs_with_no_removed_members_and_format_5_is_refused() {
    let mut replica = founding();
    decide(&mut replica, Command::RemoveMember(3));
    // Format 3 is format 4 without the removed ids at the end of the array.
    let bytes = rmp_serde::to_vec(&replica.snapshot()).unwrap();
    let mut value: rmpv::Value = rmp_serde::from_slice(&bytes).unwrap();
    let fields = match &mut value {
        rmpv::Value::Array(fields) => fields,
        other => panic!("a snapshot encodes as an array, not {other:?}"),
    };
    assert_eq!(fields.pop(), Some(rmpv::Value::Array(vec![3.into()])));
    fields[0] = 3.into();
    let old = rmp_serde::to_vec(&value).unwrap();
    let decoded: Snapshot = rmp_serde::from_slice(&old).expect("format 3 decodes");
    assert_eq!(decoded.format, 3);
    assert!(decoded.removed.is_empty());

    let object = concoord_objects::builtin("Counter").expect("built in");
    let mut joiner = Replica::joining(5, object, vec![member(1)]);
    joiner
        .restore(decoded)
        .expect("a format-3 snapshot installs");
    assert_eq!(member_ids(&joiner), vec![1, 2]);
    // The removal before the upgrade is not known, so the old join is taken;
    // removals from now on are guarded.
    decide(&mut joiner, Command::RemoveMember(2));
    decide(&mut joiner, Command::AddMember(member(2)));
    assert_eq!(member_ids(&joiner), vec![1]);

    let mut newer = replica.snapshot();
    newer.format = SNAPSHOT_FORMAT + 1;
    let object = concoord_objects::builtin("Counter").expect("built in");
    let mut joiner = Replica::joining(6, object, vec![member(1)]);
    assert!(
        joiner.restore(newer).is_err(),
        "a newer format must be refused"
    );
    assert!(!joiner.has_state());
}

fn noops_until_removed(replica: &mut Replica) {
    while replica
        .configs()
        .members_from(replica.executed())
        .contains(&1)
    {
        decide(replica, Command::Noop);
    }
}

fn sent(fx: &Effects) -> Vec<(NodeId, &PeerMsg)> {
    fx.sends.iter().map(|(to, m)| (*to, m)).collect()
}

#[test]
fn a_removed_member_serves_until_a_majority_of_the_new_membership_has_learned_its_removal() {
    let mut removed = founding();
    let mut fx = Effects::default();
    assert_eq!(removed.leaving_tick(&mut fx), LeavingStatus::NotRemoved);
    decide(&mut removed, Command::RemoveMember(1));
    // Decided, not yet in force: it is still a member.
    assert_eq!(removed.leaving_tick(&mut fx), LeavingStatus::NotRemoved);
    assert!(fx.sends.is_empty());
    noops_until_removed(&mut removed);
    let upto = removed.executed();

    let status = removed.leaving_tick(&mut fx);
    assert_eq!(status, LeavingStatus::Waiting(vec![2, 3]));
    assert_eq!(
        sent(&fx),
        vec![
            (2, &PeerMsg::Leaving { upto }),
            (3, &PeerMsg::Leaving { upto })
        ]
    );

    // Member 2 is three slots behind: it gets them.
    let mut fx = Effects::default();
    let behind = PeerMsg::Learned {
        executed: upto - 3,
        needs_snapshot: false,
    };
    removed.handle(2, behind, &mut fx);
    match sent(&fx).as_slice() {
        [(2, PeerMsg::CatchUp(c))] => {
            let slots: Vec<Slot> = c.decisions.iter().map(|(s, _)| *s).collect();
            assert_eq!(slots, vec![upto - 3, upto - 2, upto - 1]);
        }
        other => panic!("expected a catch-up for member 2, got {other:?}"),
    }
    assert_eq!(
        removed.leaving_tick(&mut Effects::default()),
        LeavingStatus::Waiting(vec![2, 3])
    );

    // One of two is not a majority of {2, 3}; both are.
    let caught_up = PeerMsg::Learned {
        executed: upto,
        needs_snapshot: false,
    };
    removed.handle(2, caught_up.clone(), &mut Effects::default());
    let mut fx = Effects::default();
    assert_eq!(
        removed.leaving_tick(&mut fx),
        LeavingStatus::Waiting(vec![3])
    );
    assert_eq!(sent(&fx), vec![(3, &PeerMsg::Leaving { upto })]);
    removed.handle(3, caught_up, &mut Effects::default());
    assert_eq!(
        removed.leaving_tick(&mut Effects::default()),
        LeavingStatus::Done
    );
}

#[test]
fn a_member_asked_by_a_leaving_one_says_how_far_it_has_executed() {
    let mut member = founding();
    decide(&mut member, Command::Noop);
    decide(&mut member, Command::Noop);
    let mut fx = Effects::default();
    member.handle(9, PeerMsg::Leaving { upto: 40 }, &mut fx);
    assert_eq!(
        sent(&fx),
        vec![(
            9,
            &PeerMsg::Learned {
                executed: 2,
                needs_snapshot: false
            }
        )]
    );
}

#[test]
fn a_removed_node_stops_once_confirmed_and_its_grace_is_over_or_at_the_deadline() {
    let grace = crate::node::REMOVED_GRACE_MS;
    let max = LEAVING_CONFIRM_MAX_MS;
    assert!(!LeavingStatus::Done.may_stop(grace - 1));
    assert!(LeavingStatus::Done.may_stop(grace));
    let waiting = LeavingStatus::Waiting(vec![2]);
    assert!(!waiting.may_stop(max - 1));
    assert!(waiting.may_stop(max));
    assert!(LeavingStatus::NotRemoved.may_stop(max));
}
