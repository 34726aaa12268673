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

    /// Reads a read-index round confirmed: each runs once this replica has
    /// executed up to its index (at once if it has).
    fn on_read_at(&mut self, at: ReadAt, fx: &mut Effects) {
        for (index, command) in at.reads {
            self.reads_waiting.entry(index).or_default().push(command);
        }
        self.serve_ready_reads(fx);
    }

    fn serve_ready_reads(&mut self, fx: &mut Effects) {
        if !self.has_state {
            return;
        }
        while let Some(entry) = self.reads_waiting.first_entry() {
            if *entry.key() > self.executed {
                return;
            }
            for command in entry.remove() {
                self.serve_read(command, fx);
            }
        }
    }

    /// A read allowed to be stale: runs on this replica's state as it is now.
    pub fn stale_read(&mut self, command: Command, fx: &mut Effects) {
        self.serve_read(command, fx);
    }

    /// Reads waiting for this replica to execute further.
    pub fn reads_waiting(&self) -> usize {
        self.reads_waiting.values().map(Vec::len).sum()
    }

    /// Answers a read from the state as it is, or hands it to the log when
    /// it cannot be served so ([`ObjectStore::read`]).
    fn serve_read(&mut self, command: Command, fx: &mut Effects) {
        let Command::Call {
            id,
            target,
            method,
            args,
            ..
        } = &command
        else {
            return fx.to_log.push(command);
        };
        if !self.has_state {
            return fx.to_log.push(command);
        }
        if self.expired.contains_key(&id.client) {
            let e = ObjectError::new(
                SESSION_EXPIRED_KIND,
                "this client's session expired; what it held was released (start a new client)",
            );
            fx.replies.push((*id, Err(e)));
            return;
        }
        let mut wakes = Vec::new();
        let mut ctx = CallContext::new(*id, self.executed, &mut wakes);
        let outcome = self.objects.read(target, method, args, &mut ctx);
        drop(ctx);
        match outcome {
            None => fx.to_log.push(command),
            Some(Outcome::Reply(reply)) if wakes.is_empty() => fx.replies.push((*id, reply)),
            Some(_) => {
                // A method marked read-only must answer at once and wake nobody.
                debug_assert!(false, "read-only {method} parked or woke a call");
                let e = ObjectError::runtime(format!(
                    "{method} is marked read-only but did not answer at once"
                ));
                fx.replies.push((*id, Err(e)));
            }
        }
    }

    fn execute(&mut self, slot: Slot, command: &Command, fx: &mut Effects) {
        match command {
            Command::Call {
                id,
                target,
                method,
                args,
                ack_below,
            } => self.execute_call(slot, *id, target, method, args, *ack_below, fx),
            Command::Cancel { id } => self.execute_cancel(slot, *id, fx),
            Command::AddMember(member) => {
                if self.configs.latest().contains(member) {
                    return; // a resent join
                }
                if self.removed.contains(&member.id) {
                    // Sent before it learned of its removal: adding it back
                    // would count a member that no longer serves.
                    log::warn!(
                        "slot {slot}: ignoring a join of member {:x} at {}: it was removed",
                        member.id,
                        member.addr
                    );
                    return;
                }
                let mut members: Vec<Member> = self
                    .configs
                    .latest()
                    .iter()
                    .filter(|m| m.addr != member.addr && m.id != member.id)
                    .cloned()
                    .collect();
                members.push(member.clone());
                log::info!(
                    "slot {slot}: member {:x} at {} joins",
                    member.id,
                    member.addr
                );
                self.configs.change(slot, members);
            }
            Command::RemoveMember(id) => {
                let members = self
                    .configs
                    .latest()
                    .iter()
                    .filter(|m| m.id != *id)
                    .cloned()
                    .collect();
                log::info!("slot {slot}: member {id:x} leaves");
                self.removed.insert(*id);
                self.configs.change(slot, members);
            }
            Command::Noop => {}
            Command::ExpireSession { client } => self.expire_session(slot, *client, fx),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn execute_call(
        &mut self,
        slot: Slot,
        id: CommandId,
        target: &Target,
        method: &str,
        args: &[u8],
        ack_below: u64,
        fx: &mut Effects,
    ) {
        if self.expired.contains_key(&id.client) {
            let e = ObjectError::new(
                SESSION_EXPIRED_KIND,
                "this client's session expired; what it held was released (start a new client)",
            );
            fx.replies.push((id, Err(e)));
            return;
        }
        let record = self.clients.entry(id.client).or_default();
        if ack_below > record.ack_below {
            record.ack_below = ack_below;
            // The client holds these replies; a parked one stays until answered.
            record
                .results
                .retain(|seq, state| *seq >= ack_below || *state == CommandState::Parked);
        }
        if id.seq < record.ack_below && !record.results.contains_key(&id.seq) {
            return; // an old duplicate whose reply the client already has
        }
        match record.results.get(&id.seq) {
            Some(CommandState::Done(reply)) => {
                fx.replies.push((id, reply.clone()));
                return;
            }
            Some(CommandState::Parked) => {
                fx.parked.push(id);
                return;
            }
            None => {}
        }
        if method == OPEN_SESSION_METHOD && target.is_default() {
            let outcome = Outcome::Reply(self.open_session(id.client, args));
            self.settle(id, outcome, None, fx);
            return;
        }
        let (outcome, follow) = self.run(id, slot, target, method, args, RunMode::First);
        if let Some(trace) = &mut self.trace {
            trace.applied.push(id);
        }
        self.settle(id, outcome, Some((&target.name, method, args)), fx);
        self.follow_up(slot, id, follow, fx);
    }

    /// Runs one call on the object. Primitives see which commands still wait
    /// through the client table.
    fn run(
        &mut self,
        id: CommandId,
        slot: Slot,
        target: &Target,
        method: &str,
        args: &[u8],
        mode: RunMode,
    ) -> (Outcome, FollowUp) {
        let mut wakes = Vec::new();
        let clients = &self.clients;
        let waiting = |w: CommandId| {
            clients
                .get(&w.client)
                .is_some_and(|r| r.results.get(&w.seq) == Some(&CommandState::Parked))
        };
        let mut ctx = CallContext::new(id, slot, &mut wakes)
            .with_mode(mode)
            .with_waiting(&waiting);
        let (outcome, change) = self.objects.apply(target, method, args, &mut ctx);
        let reruns = ctx.take_reruns();
        let reinitialised = ctx.reinitialised();
        drop(ctx);
        let follow = FollowUp {
            // Only a re-init, a delete or a re-run needs the name later.
            object: if reinitialised || change == StoreChange::Deleted || !reruns.is_empty() {
                target.name.clone()
            } else {
                String::new()
            },
            wakes,
            reruns,
            reinitialised,
            deleted: change == StoreChange::Deleted,
        };
        (outcome, follow)
    }

    /// Records a run's outcome in the client table and answers the caller.
    /// `first_run` carries the call when this was its first run, so the
    /// caller hears that it waits and an object that re-runs calls has it.
    fn settle(
        &mut self,
        id: CommandId,
        outcome: Outcome,
        first_run: Option<(&str, &str, &[u8])>,
        fx: &mut Effects,
    ) {
        let record = self.clients.entry(id.client).or_default();
        match outcome {
            Outcome::Reply(reply) => {
                fx.replies.push((id, reply.clone()));
                record.results.insert(id.seq, CommandState::Done(reply));
                // Only a call that waited before has a parked call to forget.
                if first_run.is_none() && record.parked_calls.remove(&id.seq).is_some() {
                    self.parked_total -= 1;
                }
            }
            Outcome::Park => {
                record.results.insert(id.seq, CommandState::Parked);
                if let Some((object, method, args)) = first_run {
                    fx.parked.push(id);
                    // The method and arguments only matter to an object that runs calls again.
                    let (method, args) = if self.objects.reruns_parked(object) {
                        (method.to_string(), args.to_vec())
                    } else {
                        (String::new(), Vec::new())
                    };
                    let call = ParkedCall {
                        object: object.to_string(),
                        method,
                        args,
                    };
                    if record.parked_calls.insert(id.seq, call).is_none() {
                        self.parked_total += 1;
                    }
                }
            }
        }
    }

    /// Delivers wake-ups, answers what a re-init left parked, and runs woken
    /// calls again, in the order asked, until nothing more is woken.
    fn follow_up(&mut self, slot: Slot, cause: CommandId, first: FollowUp, fx: &mut Effects) {
        // Most calls wake nobody: no queues to allocate then.
        if first.reruns.is_empty() && !first.reinitialised && !first.deleted {
            if !first.wakes.is_empty() {
                self.deliver_wakes(first.wakes, fx);
            }
            return;
        }
        let mut pending = VecDeque::from([first]);
        let mut runs = 0usize;
        let mut woken: VecDeque<CommandId> = VecDeque::new();
        loop {
            while let Some(follow) = pending.pop_front() {
                self.deliver_wakes(follow.wakes, fx);
                if follow.reinitialised {
                    self.answer_parked_in(
                        &follow.object,
                        ObjectError::runtime("object was re-initialised while this call waited"),
                        fx,
                    );
                }
                if follow.deleted {
                    let gone =
                        ObjectError::new(DELETED, format!("{:?} was deleted", follow.object));
                    self.answer_parked_in(&follow.object, gone, fx);
                }
                woken.extend(follow.reruns);
            }
            let Some(id) = woken.pop_front() else { break };
            let Some(call) = self.parked_call(id) else {
                continue; // answered meanwhile
            };
            runs += 1;
            if runs > RERUNS_PER_COMMAND_MAX {
                log::error!(
                    "slot {slot}: calls woken by {cause} keep waking each other; \
                     {} stay parked",
                    woken.len() + 1
                );
                break;
            }
            let target = Target::named(call.object.clone(), "");
            let (outcome, follow) =
                self.run(id, slot, &target, &call.method, &call.args, RunMode::Woken);
            self.settle(id, outcome, None, fx);
            pending.push_back(follow);
        }
    }

    /// `concoord_open_session(ttl_ms)`: opens the caller's session, or sets
    /// its TTL anew; the TTL must be within the group's bounds.
    fn open_session(&mut self, client: ClientId, args: &[u8]) -> Reply {
        let args = concoord_objects::Args::decode(args)?;
        args.at_most(1)?;
        let ttl_ms: u64 = args.get(0, "ttl_ms")?;
        let limits = self.objects.limits();
        if ttl_ms < limits.session_ttl_min_ms || ttl_ms > limits.session_ttl_max_ms {
            return Err(ObjectError::value(format!(
                "a session TTL must be between {} and {} ms; {ttl_ms} ms asked",
                limits.session_ttl_min_ms, limits.session_ttl_max_ms
            )));
        }
        if self.sessions.insert(client, ttl_ms) != Some(ttl_ms) {
            self.sessions_opened.push((client, ttl_ms));
        }
        Ok(concoord_objects::encode_value(&()))
    }

    /// The leader decided the session of `client` is gone: every replica
    /// releases what it held, answers its parked calls with SessionExpired
    /// and forgets its cached replies, at this slot.
    fn expire_session(&mut self, slot: Slot, client: ClientId, fx: &mut Effects) {
        if self.sessions.remove(&client).is_none() {
            return; // expired already, or never opened
        }
        log::info!("slot {slot}: session {client:x} expired");
        self.sessions_ended.push(client);
        self.expired.insert(client, slot);
        while self.expired.len() > EXPIRED_SESSIONS_KEEP {
            let oldest = self
                .expired
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(c, _)| *c)
                .expect("not empty");
            self.expired.remove(&oldest);
        }
        let expired: Reply = Err(ObjectError::new(
            SESSION_EXPIRED_KIND,
            "the session expired while this call waited",
        ));
        // Its parked calls leave their queues first, so nothing is handed to them.
        if let Some(record) = self.clients.get(&client) {
            let parked: Vec<(u64, String)> = record
                .parked_calls
                .iter()
                .map(|(seq, call)| (*seq, call.object.clone()))
                .collect();
            for (seq, object) in parked {
                let id = CommandId::new(client, seq);
                let mut wakes = Vec::new();
                {
                    let mut ctx = CallContext::new(id, slot, &mut wakes);
                    let _ = self.objects.cancel(&object, id, &mut ctx);
                }
                self.deliver_wakes(wakes, fx);
                self.deliver_wakes(vec![(id, expired.clone())], fx);
            }
        }
        let mut wakes = Vec::new();
        let reruns = {
            let mut ctx = CallContext::new(CommandId::new(client, 0), slot, &mut wakes);
            self.objects.session_ended(client, &mut ctx);
            ctx.take_reruns()
        };
        let follow = FollowUp {
            object: String::new(),
            wakes,
            reruns,
            reinitialised: false,
            deleted: false,
        };
        self.follow_up(slot, CommandId::new(client, 0), follow, fx);
        if let Some(record) = self.clients.remove(&client) {
            self.parked_total -= record.parked_calls.len();
        }
    }

    /// The call of `id` if it is parked and kept for a re-run.
    fn parked_call(&self, id: CommandId) -> Option<ParkedCall> {
        let record = self.clients.get(&id.client)?;
        if record.results.get(&id.seq) != Some(&CommandState::Parked) {
            return None;
        }
        record
            .parked_calls
            .get(&id.seq)
            .filter(|call| !call.method.is_empty())
            .cloned()
    }

    /// After `concoord_init` or `concoord_delete`: nothing waits on the old
    /// object any more; whatever still does is answered `error`.
    fn answer_parked_in(&mut self, object: &str, error: ObjectError, fx: &mut Effects) {
        let reply: Reply = Err(error);
        let parked_total = &mut self.parked_total;
        for (client, record) in &mut self.clients {
            let ClientRecord {
                results,
                parked_calls,
                ..
            } = record;
            parked_calls.retain(|seq, call| {
                if call.object != object {
                    return true;
                }
                if let Some(state) = results.get_mut(seq) {
                    if *state == CommandState::Parked {
                        *state = CommandState::Done(reply.clone());
                        fx.replies
                            .push((CommandId::new(*client, *seq), reply.clone()));
                    }
                }
                *parked_total -= 1;
                false
            });
        }
    }

    fn execute_cancel(&mut self, slot: Slot, id: CommandId, fx: &mut Effects) {
        let record = self.clients.entry(id.client).or_default();
        if id.seq < record.ack_below && !record.results.contains_key(&id.seq) {
            return;
        }
        match record.results.get(&id.seq) {
            Some(CommandState::Done(reply)) => fx.replies.push((id, reply.clone())),
            Some(CommandState::Parked) => {
                let call = record.parked_calls.get(&id.seq).cloned();
                let object = call.as_ref().map(|c| c.object.clone()).unwrap_or_default();
                if let Some(call) = call.filter(|c| !c.method.is_empty()) {
                    // Its primitives answer as timed out, or it stays parked
                    // (a Condition wait re-acquiring its lock).
                    let target = Target::named(call.object.clone(), "");
                    let (outcome, follow) = self.run(
                        id,
                        slot,
                        &target,
                        &call.method,
                        &call.args,
                        RunMode::DeadlinePassed,
                    );
                    self.settle(id, outcome, None, fx);
                    self.follow_up(slot, id, follow, fx);
                    return;
                }
                let mut wakes = Vec::new();
                let reply = {
                    let mut ctx = CallContext::new(id, slot, &mut wakes);
                    self.objects.cancel(&object, id, &mut ctx)
                };
                if let Some(reply) = reply {
                    wakes.insert(0, (id, reply));
                }
                self.deliver_wakes(wakes, fx);
            }
            None => {
                // Ordered before the call itself: the call, if it ever comes, is void.
                let reply: Reply = Err(ObjectError::new(
                    CANCELLED_KIND,
                    "the call was cancelled before it was ordered",
                ));
                record
                    .results
                    .insert(id.seq, CommandState::Done(reply.clone()));
                fx.replies.push((id, reply));
            }
        }
    }

    fn deliver_wakes(&mut self, wakes: Vec<(CommandId, Reply)>, fx: &mut Effects) {
        for (id, reply) in wakes {
            let record = self.clients.entry(id.client).or_default();
            if record.results.get(&id.seq) == Some(&CommandState::Parked) {
                record
                    .results
                    .insert(id.seq, CommandState::Done(reply.clone()));
                if record.parked_calls.remove(&id.seq).is_some() {
                    self.parked_total -= 1;
                }
                fx.replies.push((id, reply));
            } else {
                log::warn!("object woke {id}, which was not parked; ignored");
            }
        }
    }

    fn on_commit_point(&mut self, source: NodeId, executed: Slot, fx: &mut Effects) {
        let stalled = self.executed == self.executed_at_last_commit_point;
        self.executed_at_last_commit_point = self.executed;
        if source == self.me || executed <= self.executed {
            return;
        }
        if !self.has_state || stalled {
            fx.send(
                source,
                PeerMsg::CatchUpRequest(CatchUpRequest {
                    from_slot: self.executed,
                    needs_snapshot: !self.has_state,
                }),
            );
        }
    }

    fn on_catch_up_request(&mut self, from: NodeId, request: CatchUpRequest, fx: &mut Effects) {
        if !self.has_state || request.from_slot >= self.executed {
            return;
        }
        if request.needs_snapshot || request.from_slot < self.log_start {
            for chunk in self.snapshot_chunks() {
                fx.send(from, PeerMsg::SnapshotChunk(chunk));
            }
            return;
        }
        let decisions = self
            .log
            .range(request.from_slot..)
            .take(CATCH_UP_MAX_SLOTS)
            .map(|(slot, batch)| (*slot, batch.clone()))
            .collect();
        fx.send(from, PeerMsg::CatchUp(CatchUp { decisions }));
    }

    /// The whole replicated state as of `executed`.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            format: SNAPSHOT_FORMAT,
            executed: self.executed,
            object_name: self.objects.default_name().to_string(),
            object_state: self.objects.default_object().snapshot(),
            clients: self
                .clients
                .iter()
                .map(|(id, record)| (*id, record.clone()))
                .collect(),
            configs: self.configs.clone(),
            store: self.objects.snapshot(),
            sessions: self.sessions.iter().map(|(c, t)| (*c, *t)).collect(),
            expired: self.expired.iter().map(|(c, s)| (*c, *s)).collect(),
            group: self.group,
            removed: self.removed.iter().copied().collect(),
        }
    }

    /// The snapshot as the pieces that carry it.
    pub fn snapshot_chunks(&self) -> Vec<SnapshotChunk> {
        let snapshot = self.snapshot();
        let bytes = rmp_serde::to_vec(&snapshot).expect("snapshots serialize");
        let pieces: Vec<&[u8]> = bytes.chunks(self.chunk_bytes).collect();
        let total = pieces.len() as u32;
        pieces
            .into_iter()
            .enumerate()
            .map(|(index, piece)| SnapshotChunk {
                executed: snapshot.executed,
                index: index as u32,
                total,
                bytes: piece.to_vec(),
            })
            .collect()
    }

    /// Collects pieces in order; installs the snapshot on the last one.
    fn on_snapshot_chunk(&mut self, chunk: SnapshotChunk, fx: &mut Effects) {
        if self.has_state && chunk.executed <= self.executed {
            return;
        }
        if chunk.index == 0 {
            self.incoming_snapshot = Some(Assembly {
                executed: chunk.executed,
                total: chunk.total,
                bytes: Vec::new(),
                next: 0,
            });
        }
        let Some(assembly) = &mut self.incoming_snapshot else {
            return; // a piece of a snapshot whose start was lost
        };
        if assembly.executed != chunk.executed
            || assembly.next != chunk.index
            || assembly.total != chunk.total
        {
            // Out of order or of another snapshot: drop it; a later catch-up asks again.
            self.incoming_snapshot = None;
            return;
        }
        assembly.bytes.extend_from_slice(&chunk.bytes);
        assembly.next += 1;
        if assembly.next < assembly.total {
            return;
        }
        let bytes = std::mem::take(&mut assembly.bytes);
        self.incoming_snapshot = None;
        match rmp_serde::from_slice::<Snapshot>(&bytes) {
            Ok(snapshot) => {
                log::info!(
                    "snapshot at slot {} arrived in {} pieces ({} bytes)",
                    chunk.executed,
                    chunk.total,
                    bytes.len()
                );
                self.on_snapshot(snapshot, fx)
            }
            Err(e) => log::error!(
                "cannot decode the snapshot at slot {} ({} bytes): {e}",
                chunk.executed,
                bytes.len()
            ),
        }
    }

    fn on_snapshot(&mut self, snapshot: Snapshot, fx: &mut Effects) {
        if self.has_state && snapshot.executed <= self.executed {
            return;
        }
        if !(OLDEST_SNAPSHOT_FORMAT..=SNAPSHOT_FORMAT).contains(&snapshot.format) {
            log::error!(
                "refusing a snapshot of format {} at slot {}: this replica reads formats \
                 {OLDEST_SNAPSHOT_FORMAT} to {SNAPSHOT_FORMAT}",
                snapshot.format,
                snapshot.executed
            );
            return;
        }
        if self.group != 0 && snapshot.group != self.group {
            log::error!(
                "refusing a snapshot of group {:x}: this replica is in group {:x}",
                snapshot.group,
                self.group
            );
            return;
        }
        if snapshot.object_name != self.objects.default_name() {
            log::error!(
                "refusing a snapshot of {} for a replica of {}",
                snapshot.object_name,
                self.objects.default_name()
            );
            return;
        }
        let before = self.objects.default_object().snapshot();
        if let Err(e) = self.objects.default_mut().restore(&snapshot.object_state) {
            log::error!("cannot install snapshot at slot {}: {e}", snapshot.executed);
            return;
        }
        if let Err(e) = self.objects.restore(&snapshot.store) {
            log::error!("cannot install snapshot at slot {}: {e}", snapshot.executed);
            let _ = self.objects.default_mut().restore(&before);
            return;
        }
        log::info!("installed snapshot at slot {}", snapshot.executed);
        self.group = snapshot.group;
        self.removed = snapshot.removed.into_iter().collect();
        self.installed_snapshot = true;
        self.executed = snapshot.executed;
        self.executed_at_last_commit_point = snapshot.executed;
        self.clients = snapshot.clients.into_iter().collect();
        self.sessions = snapshot.sessions.into_iter().collect();
        self.expired = snapshot.expired.into_iter().collect();
        self.all_sessions_news = true;
        self.parked_total = self.clients.values().map(|r| r.parked_calls.len()).sum();
        self.configs = snapshot.configs;
        self.has_state = true;
        self.log.clear();
        self.log_start = snapshot.executed;
        self.decisions = self.decisions.split_off(&snapshot.executed);
        if let Some(trace) = &mut self.trace {
            trace.slot_digests.clear();
        }
        self.announce(fx);
        self.execute_ready(fx);
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

/// Which calls a node sends down the read path: a guess from the types the
/// node knows (the default object's, or the type a call names), made
/// without asking the replica, so writes never wait for it. The replica
/// decides for good ([`ObjectStore::read`]); a wrong guess costs a read
/// round before the call goes through the log.
pub struct ReadRouting {
    types: Arc<Types>,
    default_type: &'static str,
    /// One object per type name calls gave, to ask `is_read_only`.
    samples: BTreeMap<String, Box<dyn StateMachine>>,
}

/// Type names [`ReadRouting`] keeps a sample object for (clients name types).
const READ_ROUTING_TYPES_MAX: usize = 64;

impl ReadRouting {
    pub fn new(types: Arc<Types>, default_type: &'static str) -> Self {
        ReadRouting {
            types,
            default_type,
            samples: BTreeMap::new(),
        }
    }

    /// Whether `method` on `target` is probably read-only.
    pub fn may_read(&mut self, target: &Target, method: &str) -> bool {
        let type_name = if target.name.is_empty() {
            self.default_type
        } else if target.type_name.is_empty() {
            return false;
        } else {
            target.type_name.as_str()
        };
        if let Some(sample) = self.samples.get(type_name) {
            return sample.is_read_only(method);
        }
        let Some(sample) = self.types.make(type_name) else {
            return false;
        };
        let read_only = sample.is_read_only(method);
        if self.samples.len() < READ_ROUTING_TYPES_MAX {
            self.samples.insert(type_name.to_string(), sample);
        }
        read_only
    }
}

fn digest(batch: &Batch) -> u64 {
    let bytes = rmp_serde::to_vec(&batch[..]).expect("batches serialize");
    // FNV-1a: stable across processes, unlike std's randomized hasher.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

mod leaving;
pub use leaving::{LeavingStatus, LEAVING_CONFIRM_MAX_MS};

#[cfg(test)]
mod removed_tests;
