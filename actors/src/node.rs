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

mod acceptor_actor;
mod connections;
mod leader_actor;
mod messages;
mod replica_actor;
pub use acceptor_actor::AcceptorActor;
use connections::Connections;
pub use leader_actor::LeaderActor;
pub use messages::*;
pub use replica_actor::{LeavingTick, ReplicaActor, TakeSnapshot};

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
        // Cloned only for a second role: most messages have one.
        let Some((last, others)) = msg.roles().split_last() else {
            return;
        };
        for role in others {
            self.deliver_to(*role, from, msg.clone());
        }
        self.deliver_to(*last, from, msg);
    }

    /// `peer`'s link to this node closed.
    pub fn peer_lost(&self, peer: NodeId) {
        self.leader.do_send(PeerLost(peer));
    }

    fn deliver_to(&self, role: Role, from: NodeId, msg: PeerMsg) {
        match role {
            Role::Acceptor => self.acceptor.do_send(Deliver { from, msg }),
            Role::Leader => self.leader.do_send(Deliver { from, msg }),
            Role::Replica => self.replica.do_send(Deliver { from, msg }),
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
                let more = connections.is_waited_for(id);
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
        connections.forget_connection(key);
    }

    fn register(&self, id: CommandId, connection: ConnectionKey) {
        let mut connections = self
            .shared
            .connections
            .lock()
            .expect("connection table lock");
        connections.add_waiter(id, connection);
    }

    fn unregister(&self, id: CommandId, connection: ConnectionKey) {
        let mut connections = self
            .shared
            .connections
            .lock()
            .expect("connection table lock");
        connections.remove_waiter(id, connection);
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
