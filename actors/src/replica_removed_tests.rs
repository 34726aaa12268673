//! A removed member is never added back: its join, sent before it learned of
//! its removal, is ignored, on every replica, and after a snapshot too.

use super::*;
use crate::message::Decision;

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
            batch: Arc::new(vec![command]),
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
