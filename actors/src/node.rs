//! The actix side of a node: one actor per Paxos role, each a thin shell that
//! feeds messages to its protocol struct and carries out the effects.
//! All actors of a node live on one arbiter (a cross-thread hop costs a wake-up).

use crate::config::{ConfigHistory, Member, MemberRef};
use crate::leader::{LeaderConfig, NotAccepted, RemovalRefused};
use crate::message::{Command, Effects, PeerMsg, Role};
use crate::storage::{DataDir, MemberFile, Record, Synced, Wal};
use crate::wire::StatusInfo;
use crate::{Acceptor, Leader, NodeId, Replica, Slot};
use actix::prelude::*;
use concoord_objects::{CommandId, Reply, StateMachine};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How peer messages leave a node: TCP in production, an in-memory network in tests.
pub trait Transport: Send + Sync + 'static {
    /// Sends `msg` to node `to`; may silently drop it (Paxos retries).
    fn send(&self, from: NodeId, to: NodeId, msg: PeerMsg);
    /// The group's members as the replica knows them (for addressing).
    fn learn(&self, _members: &[Member]) {}
    /// `members` are all the group's members now: links to an earlier
    /// incarnation at an address a later one has taken can go (a replica
    /// restarted on its address gets a new id).
    fn forget_superseded(&self, _members: &[Member]) {}
}

/// How long a node whose removal is in force keeps serving before it stops:
/// the decisions that removed it may not have reached the remaining
/// members yet (a leader holds Commits back for its next tick), and without
/// them they still count the old membership, in which they may be too few
/// to elect anyone (found by the simulator: membership_join_and_remove_3,
/// seeds 9 and 24).
pub const REMOVED_GRACE_MS: u64 = 1_000;
/// How often a removed node asks the new membership whether it has caught up.
pub(crate) const LEAVING_TICK: Duration = Duration::from_millis(100);

/// What a client connection learns about one of its commands.
#[derive(Clone, Debug)]
pub enum ConnectionEvent {
    /// The command's outcome.
    Reply(Reply),
    /// It waits in an object's queue; the reply comes later.
    Parked,
    /// This node does not lead; try `leader`, or any of `members`.
    NotLeader {
        leader: Option<String>,
        members: Vec<String>,
    },
    /// The leader's queue is full.
    Busy,
}

/// An event about command `id` for a client connection.
#[derive(Clone, Debug)]
pub struct ConnectionReply {
    pub id: CommandId,
    pub event: ConnectionEvent,
}

/// Events for one connection, in order: everything one batch produced for it
/// travels as one actor message.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ConnectionEvents(pub Vec<ConnectionReply>);

/// A connection registered with [`NodeHandle::open_connection`]; commands name it
/// so the node knows where their outcomes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionKey(u64);

/// A peer message for one of the node's roles.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub from: NodeId,
    pub msg: PeerMsg,
}

/// A client command for the leader; `connection` gets the outcome.
#[derive(Message)]
#[rtype(result = "Result<(), NotAccepted>")]
pub struct Submit {
    pub command: Command,
    pub connection: Option<ConnectionKey>,
    /// Into the log even if the method is read-only (a read the replica
    /// could not serve without it).
    pub via_log: bool,
}

/// Commands of one connection's frames, in the order they came: one
/// message for a pipelining client's many calls.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubmitMany {
    pub commands: Vec<Command>,
    pub connection: Option<ConnectionKey>,
}

/// A read the client allows to be stale: this node's replica answers it
/// from its own state at once (or hands it to the log if it cannot).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StaleRead {
    pub command: Command,
    pub connection: Option<ConnectionKey>,
}

/// A client's keep-alive reached this node: its session was heard from.
/// Answered `None` by the active leader and by a follower that tells the
/// leader of it ([`Leader::heard_client`]); otherwise where the leader is
/// (its address, if known) and the members, so the client can go there.
#[derive(Message)]
#[rtype(result = "Option<(Option<String>, Vec<String>)>")]
pub struct Touch {
    pub client: concoord_objects::ClientId,
}

/// Messages the leader sends once its own acceptor's promise is on disk:
/// a ballot reaches other nodes only after this node can never forget it.
#[derive(Message)]
#[rtype(result = "()")]
struct SendWhenDurable(Vec<(NodeId, PeerMsg)>);

/// A node's durable mode: its log, its data dir, how often it snapshots.
#[derive(Clone)]
pub struct Durable {
    pub wal: Arc<Wal>,
    pub dir: DataDir,
    pub member: MemberFile,
    /// Executed slots between snapshots written to disk.
    pub snapshot_every: Slot,
}

/// An operator asks to remove a member (see [`crate::Leader::request_removal`]).
#[derive(Message)]
#[rtype(result = "Result<Member, RemovalRefused>")]
pub struct RequestRemoval(pub MemberRef);

/// Stops an actor (a crash, in tests; shutdown otherwise).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

#[derive(Message)]
#[rtype(result = "LeaderView")]
pub struct GetLeaderView;

#[derive(Message)]
#[rtype(result = "ReplicaView")]
pub struct GetReplicaView;

/// Whether a client's session was ended by the group (recently enough to be remembered).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsSessionExpired(pub concoord_objects::ClientId);

/// A page of the named objects a replica holds (`concoord objects`).
#[derive(Message)]
#[rtype(result = "(Vec<concoord_objects::ObjectInfo>, bool)")]
pub struct GetObjects {
    pub after: String,
    pub limit: usize,
}

/// What the leader role says about itself.
#[derive(Clone, Debug)]
pub struct LeaderView {
    pub active: bool,
    pub ballot: crate::Ballot,
    pub leader_hint: Option<NodeId>,
    pub next_slot: u64,
    /// As a follower, how long ago it last heard the leader's heartbeat.
    pub leader_heard_ago_ms: Option<u64>,
    /// As the leader, how long ago a majority last answered it.
    pub quorum_heard_ago_ms: Option<u64>,
    pub election_timeout_ms: u64,
}

/// What the replica role says about itself.
#[derive(Clone, Debug)]
pub struct ReplicaView {
    pub executed: u64,
    pub snapshot_slot: u64,
    pub members: Vec<Member>,
    pub clients: usize,
    pub parked: usize,
    pub object: String,
    pub has_state: bool,
    pub sessions: usize,
}

/// Tunables of a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub leader: LeaderConfig,
    pub tick_ms: u64,
    /// Seeds the election jitter.
    pub seed: u64,
    /// A TCP replica polls its sockets this long after each message before it
    /// sleeps (see [`crate::spin`]); zero never spins.
    pub spin: Duration,
    /// The object types named objects may have (built-ins and registered user types).
    pub types: Arc<concoord_objects::Types>,
    /// The limits a founding replica gives the group (joiners take the group's).
    pub limits: concoord_objects::Limits,
    /// Bytes per piece of a snapshot sent to a joining or lagging member.
    pub snapshot_chunk_bytes: usize,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            leader: LeaderConfig {
                election_timeout_ms: 500,
                ..LeaderConfig::default()
            },
            tick_ms: 10,
            seed: 0,
            spin: Duration::from_micros(100),
            types: Arc::new(concoord_objects::Types::builtins()),
            limits: concoord_objects::Limits::default(),
            snapshot_chunk_bytes: crate::replica::SNAPSHOT_CHUNK_BYTES,
        }
    }
}

/// Where outcomes go: open connections, and which commands each waits for.
#[derive(Default)]
struct Connections {
    next_key: u64,
    open: BTreeMap<ConnectionKey, Recipient<ConnectionEvents>>,
    waiting: std::collections::BTreeSet<(CommandId, ConnectionKey)>,
}

impl Connections {
    fn waiters(&self, id: CommandId) -> impl Iterator<Item = ConnectionKey> + '_ {
        self.waiting
            .range((id, ConnectionKey(0))..=(id, ConnectionKey(u64::MAX)))
            .map(|(_, key)| *key)
    }

    /// Removes and returns one connection waiting for `id`.
    fn take_waiter(&mut self, id: CommandId) -> Option<ConnectionKey> {
        let key = self.waiters(id).next()?;
        self.waiting.remove(&(id, key));
        Some(key)
    }
}

struct Shared {
    me: NodeId,
    addr: String,
    transport: Arc<dyn Transport>,
    connections: Mutex<Connections>,
    started: Instant,
    metrics: Arc<crate::metrics::NodeMetrics>,
    /// Whether this node has been a member, and whether it no longer is.
    was_member: std::sync::atomic::AtomicBool,
    removed: tokio::sync::watch::Sender<bool>,
}

/// A running node: the addresses of its role actors.
#[derive(Clone)]
pub struct NodeHandle {
    pub acceptor: Addr<AcceptorActor>,
    pub leader: Addr<LeaderActor>,
    pub replica: Addr<ReplicaActor>,
    shared: Arc<Shared>,
}

impl NodeHandle {
    /// Starts a node's actors on the current arbiter. `founding` members found
    /// a new group; `None` makes a newcomer that waits for a snapshot.
    pub fn start(
        me: Member,
        object: Box<dyn StateMachine>,
        founding: Option<Vec<Member>>,
        transport: Arc<dyn Transport>,
        options: NodeOptions,
    ) -> NodeHandle {
        let (replica, configs) = match founding {
            Some(members) => {
                let configs = ConfigHistory::genesis(members);
                (Replica::founding(me.id, object, configs.clone()), configs)
            }
            None => (
                Replica::joining(me.id, object, Vec::new()),
                ConfigHistory::genesis(Vec::new()),
            ),
        };
        let replica = replica.with_types(options.types.clone(), options.limits);
        let leader = Leader::new(me.id, configs, options.leader.clone(), options.seed);
        let acceptor = Acceptor::new(me.id);
        Self::start_parts(me, replica, acceptor, leader, transport, options, None)
    }

    /// Starts a node from its roles as built (a restart from disk builds them
    /// from its data dir; the replica comes with its types and limits). With
    /// `durable`, nothing the acceptor says leaves the node before it is on disk.
    pub fn start_parts(
        me: Member,
        replica: Replica,
        acceptor: Acceptor,
        leader: Leader,
        transport: Arc<dyn Transport>,
        options: NodeOptions,
        durable: Option<Durable>,
    ) -> NodeHandle {
        let shared = Arc::new(Shared {
            me: me.id,
            addr: me.addr.clone(),
            transport,
            connections: Mutex::new(Connections::default()),
            started: Instant::now(),
            metrics: Arc::new(crate::metrics::NodeMetrics::default()),
            was_member: Default::default(),
            removed: tokio::sync::watch::channel(false).0,
        });
        let replica = replica.with_snapshot_chunk_bytes(options.snapshot_chunk_bytes);
        // A later start of this node numbers its read-index asks above any
        // an earlier one used (that would take an ask per nanosecond).
        let mut leader = leader;
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        leader.start_asks_at(since_epoch.as_nanos() as u64);
        let acceptor_ctx = Context::<AcceptorActor>::new();
        let leader_ctx = Context::<LeaderActor>::new();
        let replica_ctx = Context::<ReplicaActor>::new();
        let handle = NodeHandle {
            acceptor: acceptor_ctx.address(),
            leader: leader_ctx.address(),
            replica: replica_ctx.address(),
            shared,
        };
        let wal = durable.as_ref().map(|d| d.wal.clone());
        if let Some(wal) = &wal {
            wal.notify(handle.acceptor.clone().recipient());
        }
        let mut fx = Effects::default();
        let mut replica = replica;
        replica.announce(&mut fx);
        acceptor_ctx.run(AcceptorActor {
            logic: if wal.is_some() {
                acceptor.journaled()
            } else {
                acceptor
            },
            node: handle.clone(),
            wal: wal.clone(),
            held: VecDeque::new(),
        });
        leader_ctx.run(LeaderActor {
            reads: crate::replica::ReadRouting::new(options.types.clone(), replica.object_name()),
            logic: leader,
            node: handle.clone(),
            tick_ms: options.tick_ms,
            wal,
        });
        replica_ctx.run(ReplicaActor {
            last_disk_snapshot: replica.executed(),
            logic: replica,
            node: handle.clone(),
            durable,
        });
        handle.carry_out(fx);
        handle
    }

    pub fn id(&self) -> NodeId {
        self.shared.me
    }

    /// This node's metrics (always kept; served only with `--metrics`).
    pub fn metrics(&self) -> &Arc<crate::metrics::NodeMetrics> {
        &self.shared.metrics
    }

    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Hands a peer message to the roles it is for.
    pub fn deliver(&self, from: NodeId, msg: PeerMsg) {
        let roles = msg.roles();
        for role in roles {
            let msg = msg.clone();
            match role {
                Role::Acceptor => self.acceptor.do_send(Deliver { from, msg }),
                Role::Leader => self.leader.do_send(Deliver { from, msg }),
                Role::Replica => self.replica.do_send(Deliver { from, msg }),
            }
        }
    }

    fn carry_out(&self, fx: Effects) {
        self.send_all(fx.sends);
        self.hand_out(fx.replies, fx.parked);
        for command in fx.to_log {
            // The connection that waits for it has it registered already.
            let connection = command.id().and_then(|id| {
                let connections = self
                    .shared
                    .connections
                    .lock()
                    .expect("connection table lock");
                let key = connections.waiters(id).next();
                key
            });
            self.leader.do_send(Submit {
                command,
                connection,
                via_log: true,
            });
        }
    }

    fn send_all(&self, sends: Vec<(NodeId, PeerMsg)>) {
        for (to, msg) in sends {
            match &msg {
                PeerMsg::Progress(p) => {
                    let members = p.configs.all_members();
                    self.shared.transport.learn(&members);
                    self.shared.transport.forget_superseded(&members);
                    self.note_membership(p);
                }
                PeerMsg::Snapshot(s) => self
                    .shared
                    .metrics
                    .snapshot_bytes
                    .observe(s.object_state.len() as f64),
                // The whole snapshot's size, observed once per snapshot sent.
                PeerMsg::SnapshotChunk(c) if c.index == 0 => self
                    .shared
                    .metrics
                    .snapshot_bytes
                    .observe(c.bytes.len() as f64 * f64::from(c.total.max(1))),
                _ => {}
            }
            if to == self.shared.me {
                self.deliver(to, msg);
            } else {
                self.shared.transport.send(self.shared.me, to, msg);
            }
        }
    }

    /// Outcomes and parked notices to the connections that wait for them.
    fn hand_out(&self, replies: Vec<(CommandId, Reply)>, parked: Vec<CommandId>) {
        if replies.is_empty() && parked.is_empty() {
            return;
        }
        let mut connections = self
            .shared
            .connections
            .lock()
            .expect("connection table lock");
        let mut out: BTreeMap<ConnectionKey, Vec<ConnectionReply>> = BTreeMap::new();
        for id in parked {
            for key in connections.waiters(id) {
                out.entry(key).or_default().push(ConnectionReply {
                    id,
                    event: ConnectionEvent::Parked,
                });
            }
        }
        for (id, reply) in replies {
            // Usually one connection waits (it gets the reply itself, uncopied);
            // a client that reconnected may have two.
            let mut reply = Some(reply);
            while let Some(key) = connections.take_waiter(id) {
                let more = connections.waiters(id).next().is_some();
                let reply = if more { reply.clone() } else { reply.take() };
                out.entry(key).or_default().push(ConnectionReply {
                    id,
                    event: ConnectionEvent::Reply(reply.expect("taken by the last waiter only")),
                });
            }
        }
        for (key, events) in out {
            if let Some(connection) = connections.open.get(&key) {
                connection.do_send(ConnectionEvents(events));
            }
        }
    }

    /// Turns true once a removal of this node (or its replacement at its
    /// address) is in force: the group no longer counts it, and its
    /// process should stop serving.
    pub fn removed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.removed.subscribe()
    }

    fn note_membership(&self, progress: &crate::message::Progress) {
        use std::sync::atomic::Ordering::Relaxed;
        let me = self.shared.me;
        if progress
            .configs
            .members_from(progress.executed)
            .contains(&me)
        {
            self.shared.was_member.store(true, Relaxed);
        } else if self.shared.was_member.load(Relaxed) && !*self.shared.removed.borrow() {
            log::warn!(
                "node {me:x}: removed from the group (no longer a member from slot {}); \
                 it stops serving. To serve again, start a new replica with -b",
                progress.executed
            );
            self.shared.removed.send_replace(true);
        }
    }

    /// Asks this node's leader to remove a member.
    pub async fn request_removal(&self, member: MemberRef) -> Result<Member, RemovalRefused> {
        self.leader
            .send(RequestRemoval(member))
            .await
            .unwrap_or(Err(RemovalRefused::NotLeader(None)))
    }

    /// Registers a connection: outcomes of commands submitted with the key go to `to`.
    pub fn open_connection(&self, to: Recipient<ConnectionEvents>) -> ConnectionKey {
        let mut connections = self
            .shared
            .connections
            .lock()
            .expect("connection table lock");
        connections.next_key += 1;
        let key = ConnectionKey(connections.next_key);
        connections.open.insert(key, to);
        key
    }

    /// Forgets a connection that went away (its replies would go nowhere).
    pub fn close_connection(&self, key: ConnectionKey) {
        let mut connections = self
            .shared
            .connections
            .lock()
            .expect("connection table lock");
        connections.open.remove(&key);
        connections.waiting.retain(|(_, k)| *k != key);
    }

    fn register(&self, id: CommandId, connection: ConnectionKey) {
        let mut connections = self
            .shared
            .connections
            .lock()
            .expect("connection table lock");
        connections.waiting.insert((id, connection));
    }

    fn unregister(&self, id: CommandId, connection: ConnectionKey) {
        let mut connections = self
            .shared
            .connections
            .lock()
            .expect("connection table lock");
        connections.waiting.remove(&(id, connection));
    }

    /// Sends `event` about `id` to one connection now (outside any batch).
    fn notify(&self, connection: ConnectionKey, id: CommandId, event: ConnectionEvent) {
        let connections = self
            .shared
            .connections
            .lock()
            .expect("connection table lock");
        if let Some(to) = connections.open.get(&connection) {
            to.do_send(ConnectionEvents(vec![ConnectionReply { id, event }]));
        }
    }

    /// Submits a command; the outcome goes to `connection`.
    pub async fn submit(
        &self,
        command: Command,
        connection: Option<ConnectionKey>,
    ) -> Result<(), NotAccepted> {
        self.leader
            .send(Submit {
                command,
                connection,
                via_log: false,
            })
            .await
            .unwrap_or(Err(NotAccepted::NotLeader(None)))
    }

    /// The node's status as `concoord status` shows it.
    pub async fn status(&self) -> Option<StatusInfo> {
        let leader = self.leader.send(GetLeaderView).await.ok()?;
        let replica = self.replica.send(GetReplicaView).await.ok()?;
        let addr_of = |id: NodeId| {
            replica
                .members
                .iter()
                .find(|m| m.id == id)
                .map(|m| m.addr.clone())
        };
        Some(StatusInfo {
            id: self.shared.me,
            address: self.shared.addr.clone(),
            role: if leader.active {
                "leader".into()
            } else if replica.has_state {
                "follower".into()
            } else {
                "joining".into()
            },
            leader: leader.leader_hint.and_then(addr_of),
            ballot: leader.ballot,
            members: replica.members.iter().map(|m| m.addr.clone()).collect(),
            next_slot: leader.next_slot.max(replica.executed),
            executed_slot: replica.executed,
            snapshot_slot: replica.snapshot_slot,
            clients: replica.clients,
            parked: replica.parked,
            uptime_s: self.shared.started.elapsed().as_secs(),
            object: replica.object,
            sessions: replica.sessions,
        })
    }

    /// Whether this node hears a leader (what a readiness probe asks):
    /// `Ok` with who leads, `Err` with why not.
    pub async fn health(&self) -> Result<String, String> {
        let leader = self
            .leader
            .send(GetLeaderView)
            .await
            .map_err(|_| "the replica is stopped".to_string())?;
        let replica = self
            .replica
            .send(GetReplicaView)
            .await
            .map_err(|_| "the replica is stopped".to_string())?;
        if !replica.has_state {
            return Err("joining: it has no state from the group yet".into());
        }
        if !replica.members.iter().any(|m| m.id == self.shared.me) {
            return Err("not a member of the group".into());
        }
        if leader.active {
            // An isolated leader still believes it leads until check-quorum
            // makes it step down: it is not ready while no majority answers.
            return match leader.quorum_heard_ago_ms {
                Some(ago) if ago > leader.election_timeout_ms => Err(if ago == u64::MAX {
                    "the leader, but no majority of the group has answered it".into()
                } else {
                    format!(
                        "the leader, but no majority of the group has answered it for {ago} ms (election timeout {} ms)",
                        leader.election_timeout_ms
                    )
                }),
                _ => Ok("the leader".into()),
            };
        }
        let leader_addr = leader
            .leader_hint
            .and_then(|id| replica.members.iter().find(|m| m.id == id))
            .map_or_else(|| "?".to_string(), |m| m.addr.clone());
        match leader.leader_heard_ago_ms {
            Some(ago) if ago <= leader.election_timeout_ms => {
                Ok(format!("a follower of {leader_addr} (heard {ago} ms ago)"))
            }
            Some(ago) => Err(format!(
                "no heartbeat from a leader for {ago} ms (election timeout {} ms); last leader {leader_addr}",
                leader.election_timeout_ms
            )),
            None => Err("no leader heard since start".into()),
        }
    }

    /// Writes a snapshot of this replica's state to its data dir now and
    /// answers the slot it was taken at once it is on disk; `Err` says why
    /// not (`NotDurable` without -w).
    pub async fn take_snapshot(&self) -> Result<u64, String> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.replica
            .send(TakeSnapshot(done))
            .await
            .map_err(|_| "stopped".to_string())?;
        answer.await.map_err(|_| "stopped".to_string())?
    }

    /// Once removed: serves until a majority of the membership that
    /// replaced it has executed every slot up to its removal (it may hold the
    /// only copy of those decisions), for at most
    /// [`crate::replica::LEAVING_CONFIRM_MAX_MS`], and at least
    /// [`REMOVED_GRACE_MS`]. Returns when the node may stop.
    pub async fn serve_until_left(&self) {
        use crate::replica::LeavingStatus;
        let start = tokio::time::Instant::now();
        loop {
            let Ok(status) = self.replica.send(LeavingTick).await else {
                break; // the replica stopped
            };
            if status.may_stop(start.elapsed().as_millis() as u64) {
                let waiting = match status {
                    LeavingStatus::Done => break,
                    LeavingStatus::Waiting(ids) => {
                        let ids: Vec<String> = ids.iter().map(|id| format!("{id:x}")).collect();
                        format!("members {}", ids.join(", "))
                    }
                    LeavingStatus::NotRemoved => "its replica".to_string(),
                };
                log::warn!(
                    "removed, and {waiting} did not confirm the removal was learned \
                     within {} ms; stopping anyway",
                    crate::replica::LEAVING_CONFIRM_MAX_MS
                );
                break;
            }
            tokio::time::sleep(LEAVING_TICK).await;
        }
    }

    /// Whether the group ended `client`'s session.
    pub async fn session_expired(&self, client: concoord_objects::ClientId) -> bool {
        self.replica
            .send(IsSessionExpired(client))
            .await
            .unwrap_or(false)
    }

    /// Named objects after `after`, at most `limit`, and whether more follow.
    pub async fn objects(
        &self,
        after: String,
        limit: usize,
    ) -> Option<(Vec<concoord_objects::ObjectInfo>, bool)> {
        self.replica.send(GetObjects { after, limit }).await.ok()
    }

    /// Stops every role actor (a crash, as far as the group can tell).
    pub fn stop(&self) {
        self.acceptor.do_send(Stop);
        self.leader.do_send(Stop);
        self.replica.do_send(Stop);
    }
}

/// The acceptor role.
pub struct AcceptorActor {
    logic: Acceptor,
    node: NodeHandle,
    wal: Option<Arc<Wal>>,
    /// Messages waiting for the log to reach the sequence number they follow.
    held: VecDeque<(u64, Vec<(NodeId, PeerMsg)>)>,
}

impl AcceptorActor {
    /// Sends now, or, in durable mode, once everything appended so far is
    /// on disk. Decisions for the local replica acknowledge nothing and go at once.
    fn send_when_durable(&mut self, sends: Vec<(NodeId, PeerMsg)>) {
        let Some(wal) = &self.wal else {
            return self.node.send_all(sends);
        };
        let appended = wal.appended();
        if self.held.is_empty() && appended <= wal.synced() {
            return self.node.send_all(sends);
        }
        let (now, later): (Vec<_>, Vec<_>) = sends.into_iter().partition(|(_, msg)| {
            // A read-index answer reports the promise in memory, which
            // is never below the one on disk: it need not wait.
            matches!(msg, PeerMsg::Decision(_) | PeerMsg::ReadIndexAck(_))
        });
        self.node.send_all(now);
        if !later.is_empty() {
            self.held.push_back((appended, later));
        }
    }
}

impl Actor for AcceptorActor {
    type Context = Context<Self>;
}

impl Handler<Deliver> for AcceptorActor {
    type Result = ();
    fn handle(&mut self, m: Deliver, _: &mut Context<Self>) {
        let mut fx = Effects::default();
        self.logic.handle(m.from, m.msg, &mut fx);
        if let Some(wal) = &self.wal {
            let records = self.logic.take_journal();
            if !records.is_empty() {
                wal.append(records);
            }
        }
        self.send_when_durable(fx.sends);
    }
}

impl Handler<SendWhenDurable> for AcceptorActor {
    type Result = ();
    fn handle(&mut self, m: SendWhenDurable, _: &mut Context<Self>) {
        self.send_when_durable(m.0);
    }
}

impl Handler<Synced> for AcceptorActor {
    type Result = ();
    fn handle(&mut self, m: Synced, _: &mut Context<Self>) {
        while self.held.front().is_some_and(|(seq, _)| *seq <= m.0) {
            let (_, sends) = self.held.pop_front().expect("front checked");
            self.node.send_all(sends);
        }
    }
}

impl Handler<Stop> for AcceptorActor {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The leader role, ticking for heartbeats, retries and elections.
pub struct LeaderActor {
    logic: Leader,
    /// Which calls go down the read path.
    reads: crate::replica::ReadRouting,
    node: NodeHandle,
    tick_ms: u64,
    wal: Option<Arc<Wal>>,
}

impl LeaderActor {
    /// In durable mode, decisions for the local replica are written down
    /// (so a restart replays them) and Prepares to other nodes wait until
    /// this node's acceptor has its promise of the ballot on disk.
    fn carry_out(&self, mut fx: Effects) {
        let Some(wal) = &self.wal else {
            return self.node.carry_out(fx);
        };
        let me = self.node.shared.me;
        let ballot = self.logic.ballot();
        let chosen = crate::storage::chosen_to_record(me, ballot, &fx.sends);
        if !chosen.is_empty() {
            wal.append(chosen);
        }
        let (prepares, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut fx.sends)
            .into_iter()
            .partition(|(to, msg)| *to != me && matches!(msg, PeerMsg::Prepare(_)));
        fx.sends = rest;
        // The Prepare to this node's acceptor goes first (same mailbox, in order).
        self.node.carry_out(fx);
        if !prepares.is_empty() {
            self.node.acceptor.do_send(SendWhenDurable(prepares));
        }
    }
}

impl Actor for LeaderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let started = Instant::now();
        ctx.run_interval(Duration::from_millis(self.tick_ms), move |actor, _| {
            let mut fx = Effects::default();
            actor
                .logic
                .tick(started.elapsed().as_millis() as u64, &mut fx);
            actor.carry_out(fx);
            let metrics = &actor.node.shared.metrics;
            metrics.observe_leader(actor.logic.stats(), actor.logic.leader_changes());
            metrics.ballot_round.set(actor.logic.ballot().round as i64);
            metrics.is_leader.set(actor.logic.is_active() as i64);
        });
    }
}

impl Handler<Deliver> for LeaderActor {
    type Result = ();
    fn handle(&mut self, m: Deliver, _: &mut Context<Self>) {
        let decided_before = self.logic.stats().slots_decided;
        let mut fx = Effects::default();
        self.logic.handle(m.from, m.msg, &mut fx);
        self.carry_out(fx);
        if self.logic.stats().slots_decided != decided_before {
            let metrics = &self.node.shared.metrics;
            let batch = self.logic.stats().last_batch_commands;
            metrics.batch_commands.observe(batch as f64);
            metrics.observe_leader(self.logic.stats(), self.logic.leader_changes());
        }
    }
}

impl Handler<Touch> for LeaderActor {
    type Result = MessageResult<Touch>;
    fn handle(&mut self, m: Touch, _: &mut Context<Self>) -> Self::Result {
        if self.logic.heard_client(m.client) {
            return MessageResult(None);
        }
        let configs = self.logic.configs();
        let leader = self
            .logic
            .leader_hint()
            .and_then(|h| configs.addr_of(h))
            .map(str::to_string);
        let members = configs.latest().iter().map(|m| m.addr.clone()).collect();
        MessageResult(Some((leader, members)))
    }
}

impl Handler<Submit> for LeaderActor {
    type Result = Result<(), NotAccepted>;
    fn handle(&mut self, m: Submit, _: &mut Context<Self>) -> Self::Result {
        let mut fx = Effects::default();
        let taken = self.take(m, &mut fx);
        self.carry_out(fx);
        taken
    }
}

impl Handler<SubmitMany> for LeaderActor {
    type Result = ();
    fn handle(&mut self, m: SubmitMany, _: &mut Context<Self>) {
        let mut fx = Effects::default();
        self.logic.hold_proposals();
        for command in m.commands {
            let submit = Submit {
                command,
                connection: m.connection,
                via_log: false,
            };
            let _ = self.take(submit, &mut fx);
        }
        self.logic.propose_held(&mut fx);
        // One round of messages for them all.
        self.carry_out(fx);
    }
}

impl LeaderActor {
    /// Sends a client on to the leader `hint` names, if any.
    fn not_leader(&self, hint: Option<NodeId>) -> ConnectionEvent {
        let configs = self.logic.configs();
        ConnectionEvent::NotLeader {
            leader: hint.and_then(|h| configs.addr_of(h)).map(str::to_string),
            members: configs.latest().iter().map(|m| m.addr.clone()).collect(),
        }
    }

    /// Takes a client's command into the leader's queue or read rounds, or
    /// tells its connection why not. The messages it causes go to `fx`.
    fn take(&mut self, m: Submit, fx: &mut Effects) -> Result<(), NotAccepted> {
        let id = m.command.id();
        let read = !m.via_log
            && matches!(&m.command, Command::Call { target, method, .. }
                if self.reads.may_read(target, method));
        if !read && !self.logic.is_active() {
            let hint = self.logic.leader_hint();
            if let (Some(id), Some(connection)) = (id, m.connection) {
                self.node.notify(connection, id, self.not_leader(hint));
            }
            return Err(NotAccepted::NotLeader(hint));
        }
        // Register first: the reply may be produced while this call is still running.
        if let (Some(id), Some(connection)) = (id, m.connection) {
            self.node.register(id, connection);
        }
        let taken = if read {
            self.logic.on_read(m.command, fx)
        } else {
            self.logic.on_request(m.command, fx)
        };
        if let (Err(refused), Some(id), Some(connection)) = (&taken, id, m.connection) {
            self.node.unregister(id, connection);
            let event = match refused {
                NotAccepted::Busy => ConnectionEvent::Busy,
                // A follower that does not know the leader yet.
                NotAccepted::NotLeader(hint) => self.not_leader(*hint),
            };
            self.node.notify(connection, id, event);
        }
        taken
    }
}

impl Handler<RequestRemoval> for LeaderActor {
    type Result = Result<Member, RemovalRefused>;
    fn handle(&mut self, m: RequestRemoval, _: &mut Context<Self>) -> Self::Result {
        let mut fx = Effects::default();
        let answer = self.logic.request_removal(&m.0, &mut fx);
        self.node.carry_out(fx);
        answer
    }
}

impl Handler<GetLeaderView> for LeaderActor {
    type Result = MessageResult<GetLeaderView>;
    fn handle(&mut self, _: GetLeaderView, _: &mut Context<Self>) -> Self::Result {
        MessageResult(LeaderView {
            active: self.logic.is_active(),
            ballot: self.logic.ballot(),
            leader_hint: self.logic.leader_hint(),
            next_slot: self.logic.next_slot(),
            leader_heard_ago_ms: self.logic.leader_heard_ago_ms(),
            quorum_heard_ago_ms: self.logic.quorum_heard_ago_ms(),
            election_timeout_ms: self.logic.election_timeout_ms(),
        })
    }
}

impl Handler<Stop> for LeaderActor {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The replica role.
pub struct ReplicaActor {
    logic: Replica,
    node: NodeHandle,
    durable: Option<Durable>,
    last_disk_snapshot: Slot,
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
