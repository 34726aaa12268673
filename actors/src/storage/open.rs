//! Starting a node in durable mode: a fresh data dir, or a restart from one.

use super::{DataDir, MemberFile, StorageError, Wal, WalOptions};
use crate::config::{ConfigHistory, Member};
use crate::message::{Decision, Effects};
use crate::node::{Durable, NodeOptions};
use crate::{Acceptor, Leader, Replica, Slot};
use concoord_objects::StateMachine;

/// Executed slots between snapshots written to disk, unless told otherwise.
pub const SNAPSHOT_EVERY_SLOTS: Slot = 10_000;

/// Where and how a durable replica keeps its state.
#[derive(Clone, Debug)]
pub struct DurableOptions {
    pub data_dir: std::path::PathBuf,
    /// Executed slots between snapshots written to disk.
    pub snapshot_every: Slot,
    /// Log segment size ([`super::SEGMENT_BYTES`] normally; tests make it small).
    pub segment_bytes: u64,
}

impl DurableOptions {
    pub fn new(data_dir: impl Into<std::path::PathBuf>) -> Self {
        DurableOptions {
            data_dir: data_dir.into(),
            snapshot_every: SNAPSHOT_EVERY_SLOTS,
            segment_bytes: super::SEGMENT_BYTES,
        }
    }
}

/// A node's roles built from its data dir, ready for
/// [`NodeHandle::start_parts`](crate::node::NodeHandle::start_parts).
pub struct OpenedNode {
    pub me: Member,
    pub replica: Replica,
    pub acceptor: Acceptor,
    pub leader: Leader,
    pub durable: Durable,
    /// The data dir held this member already.
    pub restarted: bool,
    /// It has no state yet and must ask the group to add it (`-b`).
    pub needs_join: bool,
}

/// Opens `dir` for a replica listening on `addr`: creates it for a new
/// member (`founding` makes it a group of one) or reads it back.
pub fn open_node(
    durable: &DurableOptions,
    addr: &str,
    object: Box<dyn StateMachine>,
    founding: bool,
    options: &NodeOptions,
) -> Result<OpenedNode, StorageError> {
    let dir = DataDir::new(&durable.data_dir);
    let snapshot_every = durable.snapshot_every.max(1);
    let wal_options = WalOptions {
        segment_bytes: durable.segment_bytes.max(1),
    };
    if !dir.exists() {
        return create(
            dir,
            addr,
            object,
            founding,
            options,
            snapshot_every,
            wal_options,
        );
    }
    let mut recovered = dir.recover()?;
    let member = recovered.member.clone();
    if member.addr != addr {
        return Err(StorageError::Foreign {
            path: dir.root().join("member"),
            what: format!(
                "this data dir is the member at {}, not {addr}; start it on that address \
                 (-a/-p, or --advertise if it is a name), or give a new --data-dir to \
                 start a new member",
                member.addr
            ),
        });
    }
    let next_segment = recovered.next_segment;
    let segments = std::mem::take(&mut recovered.segments);
    let roles = roles_from(recovered, dir.root(), object, options)?;
    let (me, replica, acceptor, leader, needs_join) = (
        roles.me,
        roles.replica,
        roles.acceptor,
        roles.leader,
        roles.needs_join,
    );
    let wal = Wal::start(
        dir.clone(),
        me.id,
        next_segment,
        segments,
        roles.promised,
        wal_options,
    )?;
    Ok(OpenedNode {
        me,
        replica,
        acceptor,
        leader,
        durable: Durable {
            wal,
            dir,
            member,
            snapshot_every,
        },
        restarted: true,
        needs_join,
    })
}

fn create(
    dir: DataDir,
    addr: &str,
    object: Box<dyn StateMachine>,
    founding: bool,
    options: &NodeOptions,
    snapshot_every: Slot,
    wal_options: WalOptions,
) -> Result<OpenedNode, StorageError> {
    let me = Member {
        id: concoord_proto::fresh_id(),
        addr: addr.to_string(),
    };
    let member = MemberFile {
        node: me.id,
        group: if founding { me.id } else { 0 },
        addr: addr.to_string(),
    };
    dir.create(&member)?;
    let (replica, configs) = if founding {
        let configs = ConfigHistory::genesis(vec![me.clone()]);
        let replica = Replica::founding(me.id, object, configs.clone())
            .with_types(options.types.clone(), options.limits);
        // The base a restart replays from, before anything can be acknowledged.
        dir.write_snapshot(member.group, me.id, &replica.snapshot())?;
        (replica, configs)
    } else {
        let replica = Replica::joining(me.id, object, Vec::new())
            .with_types(options.types.clone(), options.limits);
        (replica, ConfigHistory::genesis(Vec::new()))
    };
    let leader = Leader::new(me.id, configs, options.leader.clone(), options.seed ^ me.id);
    let wal = Wal::start(
        dir.clone(),
        me.id,
        0,
        Vec::new(),
        crate::Ballot::ZERO,
        wal_options,
    )?;
    log::info!(
        "new member {:x} with data dir {}",
        me.id,
        dir.root().display()
    );
    Ok(OpenedNode {
        acceptor: Acceptor::new(me.id),
        me,
        replica,
        leader,
        durable: Durable {
            wal,
            dir,
            member,
            snapshot_every,
        },
        restarted: false,
        needs_join: !founding,
    })
}

/// The roles of a restarted member, built from what its data dir holds.
pub(crate) struct RecoveredRoles {
    pub me: Member,
    pub replica: Replica,
    pub acceptor: Acceptor,
    pub leader: Leader,
    pub promised: crate::Ballot,
    /// It never received the group's state: it must ask to join (`-b`).
    pub needs_join: bool,
}

/// Builds a restarted member's roles from `recovered` (`root` names the
/// data dir in errors): the snapshot installed, the decided slots after it
/// replayed, the acceptor's promise and accepted values, a leader above the
/// promise. A member the group removed is refused. The simulator restarts
/// its durable nodes through this too.
pub(crate) fn roles_from(
    recovered: super::Recovered,
    root: &std::path::Path,
    object: Box<dyn StateMachine>,
    options: &NodeOptions,
) -> Result<RecoveredRoles, StorageError> {
    let member = &recovered.member;
    let me = Member {
        id: member.node,
        addr: member.addr.clone(),
    };
    let snapshot_slot = recovered.snapshot_slot();
    let mut replica = Replica::joining(me.id, object, Vec::new())
        .with_types(options.types.clone(), options.limits);
    let needs_join = recovered.snapshot.is_none();
    if let Some(snapshot) = recovered.snapshot {
        replica
            .restore(snapshot)
            .map_err(|what| StorageError::Corrupt {
                path: root.join("snap"),
                what,
            })?;
        let mut ignored = Effects::default();
        for (slot, batch) in recovered.decided {
            replica.on_decision(Decision { slot, batch }, &mut ignored);
        }
    }
    if !needs_join && !replica.configs().latest().iter().any(|m| m.id == me.id) {
        return Err(StorageError::Foreign {
            path: root.join("member"),
            what: format!(
                "member {:x} was removed from the group (as of slot {}); it cannot come back \
                 from this data dir: start a new member with a new --data-dir and -b",
                me.id,
                replica.executed()
            ),
        });
    }
    log::info!(
        "restarting member {:x} from {}: snapshot at slot {snapshot_slot}, replayed to slot {}, \
         promised {}{}",
        me.id,
        root.display(),
        replica.executed(),
        recovered.promised,
        if recovered.torn_tail {
            " (a torn last write was dropped)"
        } else {
            ""
        }
    );
    let mut leader = Leader::new(
        me.id,
        replica.configs().clone(),
        options.leader.clone(),
        options.seed ^ me.id,
    );
    leader.observe_ballot(recovered.promised);
    let acceptor = Acceptor::restored(me.id, recovered.promised, recovered.accepted, snapshot_slot);
    Ok(RecoveredRoles {
        me,
        replica,
        acceptor,
        leader,
        promised: recovered.promised,
        needs_join,
    })
}
