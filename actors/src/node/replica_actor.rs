//! The replica role's actor: execution, replies, snapshots, leaving.

use super::*;

/// The replica role.
pub struct ReplicaActor {
    pub(super) logic: Replica,
    pub(super) node: NodeHandle,
    pub(super) durable: Option<Durable>,
    pub(super) last_disk_snapshot: Slot,
}

impl ReplicaActor {
    /// Decisions that reached this replica whole from another node: the log
    /// keeps them (those through this node's acceptor are already there).
    fn decisions_to_record(&self, from: NodeId, msg: &PeerMsg) -> Vec<Record> {
        if self.durable.is_none() {
            return Vec::new();
        }
        crate::storage::decisions_to_record(self.node.shared.me, from, self.logic.executed(), msg)
    }

    /// Writes a snapshot when one arrived from the group (a restart's base
    /// must not be older than what the log still holds) or when enough
    /// slots ran since the last one.
    fn snapshot_to_disk(&mut self, asked: Option<crate::storage::SnapshotDone>) {
        let installed = self.logic.take_installed_snapshot();
        let Some(durable) = &mut self.durable else {
            if let Some(asked) = asked {
                let _ = asked.send(Err("NotDurable".into()));
            }
            return;
        };
        let executed = self.logic.executed();
        let due = executed >= self.last_disk_snapshot + durable.snapshot_every;
        if !installed && !due && asked.is_none() {
            return;
        }
        if durable.member.group != self.logic.group() {
            // A joiner learns its group with its first snapshot.
            durable.member.group = self.logic.group();
            if let Err(e) = durable.dir.write_member(&durable.member) {
                log::error!("cannot record the group in the data dir: {e}");
            }
        }
        self.last_disk_snapshot = executed;
        let snapshot = self.logic.snapshot();
        let bytes =
            crate::storage::encode_snapshot(self.logic.group(), durable.member.node, &snapshot);
        durable.wal.snapshot(executed, bytes, asked);
    }
}

/// Write a snapshot to disk now (durable replicas; `concoord admin snapshot`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TakeSnapshot(pub crate::storage::SnapshotDone);

/// A removed node's replica asks the new membership how far it has
/// executed, and says whether the node may stop.
#[derive(Message)]
#[rtype(result = "crate::replica::LeavingStatus")]
pub struct LeavingTick;

impl Handler<LeavingTick> for ReplicaActor {
    type Result = MessageResult<LeavingTick>;
    fn handle(&mut self, _: LeavingTick, _: &mut Context<Self>) -> Self::Result {
        let mut fx = Effects::default();
        let status = self.logic.leaving_tick(&mut fx);
        self.node.carry_out(fx);
        MessageResult(status)
    }
}

impl Handler<TakeSnapshot> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, m: TakeSnapshot, _: &mut Context<Self>) {
        self.snapshot_to_disk(Some(m.0));
    }
}

impl Actor for ReplicaActor {
    type Context = Context<Self>;
}

impl Handler<Deliver> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, m: Deliver, _: &mut Context<Self>) {
        let executed_before = self.logic.executed();
        let records = self.decisions_to_record(m.from, &m.msg);
        if let (false, Some(durable)) = (records.is_empty(), &self.durable) {
            durable.wal.append(records);
        }
        let mut fx = Effects::default();
        self.logic.handle(m.from, m.msg, &mut fx);
        self.node.carry_out(fx);
        self.snapshot_to_disk(None);
        if self.logic.executed() != executed_before {
            let metrics = &self.node.shared.metrics;
            metrics.executed_slot.set(self.logic.executed() as i64);
            metrics
                .parked_commands
                .set(self.logic.parked_count() as i64);
        }
    }
}

impl Handler<StaleRead> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, m: StaleRead, _: &mut Context<Self>) {
        if let (Some(id), Some(connection)) = (m.command.id(), m.connection) {
            self.node.register(id, connection);
        }
        let mut fx = Effects::default();
        self.logic.stale_read(m.command, &mut fx);
        self.node.carry_out(fx);
    }
}

impl Handler<GetReplicaView> for ReplicaActor {
    type Result = MessageResult<GetReplicaView>;
    fn handle(&mut self, _: GetReplicaView, _: &mut Context<Self>) -> Self::Result {
        let executed = self.logic.executed();
        MessageResult(ReplicaView {
            executed,
            snapshot_slot: self.logic.snapshot_slot(),
            members: self.logic.configs().latest().to_vec(),
            clients: self.logic.client_count(),
            parked: self.logic.parked_count(),
            object: self.logic.object_name().to_string(),
            has_state: self.logic.has_state(),
            sessions: self.logic.session_count(),
        })
    }
}

impl Handler<IsSessionExpired> for ReplicaActor {
    type Result = bool;
    fn handle(&mut self, m: IsSessionExpired, _: &mut Context<Self>) -> bool {
        self.logic.session_expired(m.0)
    }
}

impl Handler<GetObjects> for ReplicaActor {
    type Result = MessageResult<GetObjects>;
    fn handle(&mut self, m: GetObjects, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.logic.list_objects(&m.after, m.limit))
    }
}

impl Handler<Stop> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
