//! The replica's logic: executes decided batches strictly in slot order on
//! the object, keeps the client table that makes every command id take effect
//! once, and brings lagging or new replicas up to date. Inputs in, effects out.

use crate::config::{ConfigHistory, Member};
use crate::message::{
    Batch, CatchUp, CatchUpRequest, ClientRecord, Command, CommandState, Decision, Effects,
    ParkedCall, PeerMsg, Progress, ReadAt, Snapshot, SnapshotChunk, OLDEST_SNAPSHOT_FORMAT,
    OPEN_SESSION_METHOD, SESSION_EXPIRED_KIND, SNAPSHOT_FORMAT,
};
use crate::{NodeId, Slot};
use concoord_objects::{
    CallContext, ClientId, CommandId, Limits, ObjectError, ObjectInfo, ObjectStore, Outcome, Reply,
    RunMode, StateMachine, StoreChange, Target, Types, DELETED,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Expired sessions remembered (so their calls get SessionExpired rather
/// than start afresh); the oldest are forgotten first.
pub const EXPIRED_SESSIONS_KEEP: usize = 65_536;

/// A snapshot travels in pieces of at most this many bytes, so a group
/// holding many objects still fits the frame limit.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 << 20;

/// Executed batches a replica keeps to serve catch-up; older ones are only
/// available inside a snapshot.
pub const REPLICA_LOG_KEEP_SLOTS: Slot = 4096;
/// Decisions sent in one catch-up message.
pub const CATCH_UP_MAX_SLOTS: usize = 256;

pub use concoord_proto::message::CANCELLED_KIND;

/// Runs of woken parked calls one command may cause, chained wake-ups
/// included. Calls that keep waking each other without making progress
/// would otherwise spin a replica forever; past this the rest stay parked.
pub const RERUNS_PER_COMMAND_MAX: usize = 1 << 16;

/// What a run of the object asks the replica to do next.
struct FollowUp {
    /// The object the run was on.
    object: String,
    wakes: Vec<(CommandId, Reply)>,
    reruns: Vec<CommandId>,
    reinitialised: bool,
    deleted: bool,
}

/// A snapshot arriving in pieces.
#[derive(Clone, Debug)]
struct Assembly {
    executed: Slot,
    total: u32,
    bytes: Vec<u8>,
    next: u32,
}

/// A replica of the group's objects.
pub struct Replica {
    me: NodeId,
    objects: ObjectStore,
    incoming_snapshot: Option<Assembly>,
    /// Parked commands (entries of every record's `parked_calls`), kept
    /// counted so metrics need no walk over the client table.
    parked_total: usize,
    /// Bytes per snapshot piece sent ([`SNAPSHOT_CHUNK_BYTES`] unless set).
    chunk_bytes: usize,
    /// Live client sessions and their TTL in ms (replicated state).
    sessions: BTreeMap<ClientId, u64>,
    /// Recently expired sessions, with the slot they ended in.
    expired: BTreeMap<ClientId, Slot>,
    /// Session changes not yet told to this node's leader.
    sessions_opened: Vec<(ClientId, u64)>,
    sessions_ended: Vec<ClientId>,
    all_sessions_news: bool,
    /// Every slot below this has been executed.
    executed: Slot,
    /// Decided, not yet executed.
    decisions: BTreeMap<Slot, Batch>,
    /// Executed batches kept for catch-up, from `log_start`.
    log: BTreeMap<Slot, Batch>,
    log_start: Slot,
    clients: BTreeMap<ClientId, ClientRecord>,
    configs: ConfigHistory,
    /// A newcomer has no state until it installs a snapshot.
    has_state: bool,
    executed_at_last_commit_point: Slot,
    /// The group (its founder's id); 0 until a joiner has the group's state.
    group: u64,
    /// Members removed (replicated state): ids never come back, so a join
    /// for one of them is a stale resend and is ignored.
    removed: BTreeSet<NodeId>,
    /// A snapshot from the group was installed since the last look (durable
    /// mode writes it down: it is the base a restart replays from).
    installed_snapshot: bool,
    /// Once removed: which members of the membership that replaced it have
    /// learned every decision up to where it took over.
    leaving: Option<leaving::Leaving>,
    /// Reads a read-index round confirmed, by the slot this replica must
    /// have executed before running them.
    reads_waiting: BTreeMap<Slot, Vec<Command>>,
    /// For tests: per slot, a digest of the batch executed there, and the
    /// command ids whose calls actually ran on the object, in order.
    pub trace: Option<ReplicaTrace>,
}

/// What a replica executed, recorded only when a test asks for it.
#[derive(Debug, Default, Clone)]
pub struct ReplicaTrace {
    pub slot_digests: BTreeMap<Slot, u64>,
    pub applied: Vec<CommandId>,
}

impl Replica {
    /// A founding member: the group's first membership is known and the state is fresh.
    pub fn founding(me: NodeId, object: Box<dyn StateMachine>, configs: ConfigHistory) -> Self {
        // Founders of one group must agree on its id, or none of them
        // installs another's snapshot: the lowest founding member's.
        let group = configs.latest().iter().map(|m| m.id).min().unwrap_or(me);
        Replica {
            me,
            objects: ObjectStore::new(object, Arc::new(Types::builtins()), Limits::default()),
            incoming_snapshot: None,
            parked_total: 0,
            chunk_bytes: SNAPSHOT_CHUNK_BYTES,
            sessions: BTreeMap::new(),
            expired: BTreeMap::new(),
            sessions_opened: Vec::new(),
            sessions_ended: Vec::new(),
            all_sessions_news: false,
            executed: 0,
            decisions: BTreeMap::new(),
            log: BTreeMap::new(),
            log_start: 0,
            clients: BTreeMap::new(),
            configs,
            has_state: true,
            executed_at_last_commit_point: 0,
            group,
            removed: BTreeSet::new(),
            leaving: None,
            installed_snapshot: false,
            reads_waiting: BTreeMap::new(),
            trace: None,
        }
    }

    /// A newcomer that will get its state from a snapshot.
    pub fn joining(me: NodeId, object: Box<dyn StateMachine>, bootstrap: Vec<Member>) -> Self {
        let mut replica = Self::founding(me, object, ConfigHistory::genesis(bootstrap));
        replica.has_state = false;
        replica.group = 0;
        replica
    }

    /// An exact copy of this replica, its objects rebuilt from their
    /// snapshots: `object` is a fresh default object of the same type, and
    /// `types` the types it can create. For the model checker (`model/`),
    /// which branches on every state; the roles never copy a replica.
    pub fn fork(&self, object: Box<dyn StateMachine>, types: Arc<Types>) -> Replica {
        let mut objects = ObjectStore::new(object, types, self.objects.limits());
        objects
            .default_mut()
            .restore(&self.objects.default_object().snapshot())
            .expect("a replica's own object state restores");
        objects
            .restore(&self.objects.snapshot())
            .expect("a replica's own named objects restore");
        Replica {
            me: self.me,
            objects,
            incoming_snapshot: self.incoming_snapshot.clone(),
            parked_total: self.parked_total,
            chunk_bytes: self.chunk_bytes,
            sessions: self.sessions.clone(),
            expired: self.expired.clone(),
            sessions_opened: self.sessions_opened.clone(),
            sessions_ended: self.sessions_ended.clone(),
            all_sessions_news: self.all_sessions_news,
            executed: self.executed,
            decisions: self.decisions.clone(),
            log: self.log.clone(),
            log_start: self.log_start,
            clients: self.clients.clone(),
            configs: self.configs.clone(),
            has_state: self.has_state,
            executed_at_last_commit_point: self.executed_at_last_commit_point,
            group: self.group,
            removed: self.removed.clone(),
            leaving: self.leaving.clone(),
            installed_snapshot: self.installed_snapshot,
            reads_waiting: self.reads_waiting.clone(),
            trace: self.trace.clone(),
        }
    }

    /// The types it can create and the limits a founding replica gives the
    /// group (a joiner takes the group's limits from its snapshot).
    pub fn with_types(mut self, types: Arc<Types>, limits: Limits) -> Self {
        self.objects.configure(types, limits);
        self
    }

    /// Sends snapshots in pieces of `bytes` (tests use small pieces to
    /// exercise reassembly without building a huge state).
    pub fn with_snapshot_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.max(1);
        self
    }

    pub fn executed(&self) -> Slot {
        self.executed
    }

    /// Decided slots waiting for an earlier one.
    pub fn waiting_slots(&self) -> Vec<Slot> {
        self.decisions.keys().copied().collect()
    }

    pub fn has_state(&self) -> bool {
        self.has_state
    }

    pub fn configs(&self) -> &ConfigHistory {
        &self.configs
    }

    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Commands waiting for an answer, from the client table (the object's
    /// own count cannot see calls parked in a user type's primitives).
    pub fn parked_count(&self) -> usize {
        self.parked_total
    }

    pub fn snapshot_slot(&self) -> Slot {
        self.log_start
    }

    /// The group: its founding member's id (0 while a joiner waits for its state).
    pub fn group(&self) -> u64 {
        self.group
    }

    /// Whether a snapshot from the group was installed since the last call.
    pub fn take_installed_snapshot(&mut self) -> bool {
        std::mem::take(&mut self.installed_snapshot)
    }

    /// Installs a snapshot read back from disk. Err says why it cannot be used.
    pub fn restore(&mut self, snapshot: Snapshot) -> Result<(), String> {
        let slot = snapshot.executed;
        let mut fx = Effects::default();
        self.has_state = false;
        self.on_snapshot(snapshot, &mut fx);
        self.installed_snapshot = false;
        if self.has_state && self.executed == slot {
            Ok(())
        } else {
            Err(format!(
                "the snapshot at slot {slot} cannot be installed (see the log)"
            ))
        }
    }

    pub fn object_name(&self) -> &'static str {
        self.objects.default_name()
    }

    /// Named objects held.
    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// Named objects after `after` in name order, at most `limit`, each with
    /// its calls parked; and whether more follow.
    pub fn list_objects(&self, after: &str, limit: usize) -> (Vec<ObjectInfo>, bool) {
        let page = self.objects.list(after, limit.saturating_add(1));
        let more = page.len() > limit;
        let mut parked: BTreeMap<&str, u64> = BTreeMap::new();
        for record in self.clients.values() {
            for call in record.parked_calls.values() {
                *parked.entry(call.object.as_str()).or_default() += 1;
            }
        }
        let objects = page
            .into_iter()
            .take(limit)
            .map(|(name, type_name)| ObjectInfo {
                parked: parked.get(name.as_str()).copied().unwrap_or(0),
                name,
                type_name: type_name.to_string(),
            })
            .collect();
        (objects, more)
    }

    /// The cached outcome of a command, if it has one.
    pub fn cached(&self, id: CommandId) -> Option<&CommandState> {
        self.clients.get(&id.client)?.results.get(&id.seq)
    }

    /// Tells the node's other roles where this replica stands; call once at start.
    pub fn announce(&mut self, fx: &mut Effects) {
        let all = std::mem::take(&mut self.all_sessions_news);
        let sessions_opened = if all {
            self.sessions.iter().map(|(c, t)| (*c, *t)).collect()
        } else {
            std::mem::take(&mut self.sessions_opened)
        };
        if all {
            self.sessions_opened.clear();
        }
        fx.send(
            self.me,
            PeerMsg::Progress(Progress {
                executed: self.executed,
                configs: self.configs.clone(),
                sessions_opened,
                sessions_ended: std::mem::take(&mut self.sessions_ended),
                all_sessions: all,
            }),
        );
    }

    /// Whether the group ended `client`'s session (among those remembered).
    pub fn session_expired(&self, client: ClientId) -> bool {
        self.expired.contains_key(&client)
    }

    /// Live client sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn handle(&mut self, from: NodeId, msg: PeerMsg, fx: &mut Effects) {
        match msg {
            PeerMsg::Decision(d) => self.on_decision(d, fx),
            PeerMsg::CatchUpRequest(r) => self.on_catch_up_request(from, r, fx),
            PeerMsg::Leaving { upto } => self.on_leaving(from, upto, fx),
            PeerMsg::Learned {
                executed,
                needs_snapshot,
            } => self.on_learned(from, executed, needs_snapshot, fx),
            PeerMsg::CatchUp(c) => {
                for (slot, batch) in c.decisions {
                    self.on_decision(Decision { slot, batch }, fx);
                }
            }
            PeerMsg::Snapshot(s) => self.on_snapshot(*s, fx),
            PeerMsg::SnapshotChunk(c) => self.on_snapshot_chunk(c, fx),
            PeerMsg::CommitPoint { source, executed } => self.on_commit_point(source, executed, fx),
            PeerMsg::ReadAt(r) => self.on_read_at(r, fx),
            _ => {}
        }
    }

    pub fn on_decision(&mut self, decision: Decision, fx: &mut Effects) {
        if decision.slot < self.executed {
            return;
        }
        if let Some(known) = self.decisions.get(&decision.slot) {
            assert_eq!(
                known, &decision.batch,
                "slot {} decided twice with different values",
                decision.slot
            );
            return;
        }
        self.decisions.insert(decision.slot, decision.batch);
        self.execute_ready(fx);
    }

    fn execute_ready(&mut self, fx: &mut Effects) {
        if !self.has_state {
            return;
        }
        let before = self.executed;
        while let Some(batch) = self.decisions.remove(&self.executed) {
            let slot = self.executed;
            for command in batch.iter() {
                self.execute(slot, command, fx);
            }
            if let Some(trace) = &mut self.trace {
                trace.slot_digests.insert(slot, digest(&batch));
            }
            self.log.insert(slot, batch);
            self.executed += 1;
        }
        if self.executed != before {
            while self.executed - self.log_start > REPLICA_LOG_KEEP_SLOTS {
                self.log.remove(&self.log_start);
                self.log_start += 1;
            }
            self.configs.forget_before(self.log_start);
            self.announce(fx);
        }
        self.serve_ready_reads(fx);
    }
}

/// Every field, the objects as their snapshots: two replicas that print
/// alike behave alike (the model checker fingerprints states so).
impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("me", &self.me)
            .field("object", &self.objects.default_object().snapshot())
            .field("objects", &self.objects.snapshot())
            .field("incoming_snapshot", &self.incoming_snapshot)
            .field("parked_total", &self.parked_total)
            .field("sessions", &self.sessions)
            .field("expired", &self.expired)
            .field("sessions_opened", &self.sessions_opened)
            .field("sessions_ended", &self.sessions_ended)
            .field("all_sessions_news", &self.all_sessions_news)
            .field("executed", &self.executed)
            .field("decisions", &self.decisions)
            .field("log", &self.log)
            .field("log_start", &self.log_start)
            .field("clients", &self.clients)
            .field("configs", &self.configs)
            .field("has_state", &self.has_state)
            .field(
                "executed_at_last_commit_point",
                &self.executed_at_last_commit_point,
            )
            .field("group", &self.group)
            .field("installed_snapshot", &self.installed_snapshot)
            .field("reads_waiting", &self.reads_waiting)
            .field("trace", &self.trace)
            .finish()
    }
}

fn digest(batch: &Batch) -> u64 {
    let bytes = rmp_serde::to_vec(&batch[..]).expect("batches serialize");
    // FNV-1a: stable across processes, unlike std's randomized hasher.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

mod catch_up;
mod execute;
mod leaving;
mod reads;
mod sessions;
pub use leaving::{LeavingStatus, LEAVING_CONFIRM_MAX_MS};
pub use reads::ReadRouting;

#[cfg(test)]
mod removed_tests;
