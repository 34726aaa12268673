//! A deterministic simulator: the protocol structs of every node, clients,
//! and a faulty network (loss, duplication, delay and reordering, partitions,
//! crashes), driven by one seeded event queue and simulated time. The same
//! seed replays the same run exactly.
//!
//! Besides closed-loop Counter clients, a run may have session clients
//! ([`SessionWorkload`]): they open a session, keep it alive, and take turns
//! on a Lock and a Semaphore; a test crashes or cuts off some of them so
//! their sessions expire in the replicated order. [`Sim::replicated_order`]
//! replays the decided log command by command, for checks on that order.
//!
//! Nodes can also restart: a memory-mode node comes back empty with a new
//! id and rejoins through the membership path, as `concoord replica -b`
//! does ([`Sim::restart_empty`]); a durable node ([`SimDurability`]) keeps
//! its acceptor state and decisions on a simulated disk ([`SimDisk`]) that
//! holds the real record encoding, and comes back through the real recovery
//! code ([`Sim::restart`]). Members join ([`Sim::add_node`]) and are
//! removed ([`Sim::request_removal`]) as with `concoord admin remove`.

mod checks;
mod clients;
mod config;
mod disk;
mod net;

pub use checks::Executed;
pub use clients::{
    Delivery, SessionClient, SessionPhase, SessionWorkload, SimClient, SimOp, SESSION_LOCK,
    SESSION_SEMAPHORE, SIM_SESSION_TTL_MIN_MS,
};
pub use config::{SimConfig, SimReads, SimRng};
pub use disk::{SimDisk, SimDurability};
pub use net::{Endpoint, NetFaults};

use disk::{snapshot_file, HeldSends};
use net::{Answer, Event};

use crate::config::{ConfigHistory, Member, MemberRef};
use crate::leader::{LeaderConfig, NotAccepted, RemovalRefused};
use crate::message::{
    Batch, Command, Decision, Effects, PeerMsg, Role, OPEN_SESSION_METHOD, SESSION_EXPIRED_KIND,
};
use crate::replica::ReplicaTrace;
use crate::storage::{MemberFile, Record, StorageError};
use crate::{Acceptor, Ballot, Leader, NodeId, Replica, Slot};
use concoord_objects::{encode_args, ClientId, CommandId, Limits, Reply, Types, INIT_METHOD};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

/// One simulated node: the three roles and the client connections waiting
/// for replies. Its index is its address (`sim-<index>`); its id changes
/// when it restarts empty.
pub struct SimNode {
    pub id: NodeId,
    pub acceptor: Acceptor,
    pub leader: Leader,
    pub replica: Replica,
    pub alive: bool,
    connections: BTreeMap<CommandId, BTreeSet<usize>>,
    /// Counts starts: events of an earlier one are ignored.
    pub incarnation: u64,
    /// Asking the group to add it, as a replica started with `-b` does,
    /// until it has the group's state.
    pub joining: bool,
    join_target: usize,
    next_join_ms: u64,
    /// Its replica has counted it a member (so a later membership without
    /// it is its removal).
    was_member: bool,
    /// Stopped because its removal is in force (the real process exits).
    pub removed: bool,
    /// Durable mode: its disk, and messages held until the disk has synced
    /// everything written before them (as the real `AcceptorActor` holds them).
    pub disk: Option<SimDisk>,
    /// Each entry: the disk offset it waits for, the messages, and the
    /// (slot, ballot) acceptances its Accepted replies acknowledge.
    held: VecDeque<HeldSends>,
    last_disk_snapshot: Slot,
    /// What it told other nodes it promised and accepted: a restart must
    /// remember all of it.
    acked_promise: Ballot,
    acked_accepts: BTreeMap<Slot, Ballot>,
    /// Why its last restart was refused (damage recovery detected).
    pub refused: Option<String>,
}

/// The simulation.
pub struct Sim {
    pub config: SimConfig,
    pub now_ms: u64,
    rng: SimRng,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    next_event: u64,
    pub nodes: Vec<SimNode>,
    pub clients: Vec<SimClient>,
    pub net: NetFaults,
    pub deliveries: Vec<Delivery>,
    pub events_processed: u64,
    /// Every operation Counter clients issued, in invocation order.
    pub ops: Vec<SimOp>,
    /// Every decision seen on the network, by slot: the log replicas execute.
    decided: BTreeMap<Slot, Batch>,
    /// Slots seen decided with two different batches.
    decided_conflicts: Vec<Slot>,
    /// The first session client created the Semaphore.
    semaphore_ready: bool,
    /// Which calls take the read path (as a real node's leader decides).
    routing: crate::replica::ReadRouting,
    /// The id the next node started empty gets.
    next_node_id: NodeId,
    /// Durable nodes that restarted having forgotten something they had
    /// acknowledged (the disk lied in a way recovery did not detect).
    pub durability_violations: Vec<String>,
}

fn node_id(index: usize) -> NodeId {
    index as NodeId + 1
}

/// How long a newcomer waits for the group's state before asking again.
const JOIN_RETRY_MS: u64 = 300;

/// The node id of the replica [`Sim::replicated_order`] replays on (no member).
const OBSERVER: NodeId = 0;

fn members(nodes: usize) -> Vec<Member> {
    (0..nodes)
        .map(|i| Member {
            id: node_id(i),
            addr: format!("sim-{i}"),
        })
        .collect()
}

/// A replica as every simulated node starts, at node id `me`.
fn fresh_replica(config: &SimConfig, me: NodeId, configs: ConfigHistory) -> Replica {
    let object =
        concoord_objects::builtin(&config.object).expect("the simulated object is a built-in");
    let replica = Replica::founding(me, object, configs);
    if config.sessions.is_none() {
        return replica;
    }
    let limits = Limits {
        session_ttl_min_ms: SIM_SESSION_TTL_MIN_MS,
        ..Limits::default()
    };
    replica.with_types(Arc::new(Types::builtins()), limits)
}

impl SimNode {
    fn new(id: NodeId, acceptor: Acceptor, leader: Leader, replica: Replica) -> Self {
        SimNode {
            id,
            acceptor,
            leader,
            replica,
            alive: true,
            connections: BTreeMap::new(),
            incarnation: 0,
            joining: false,
            join_target: 0,
            next_join_ms: 0,
            was_member: false,
            removed: false,
            disk: None,
            held: VecDeque::new(),
            last_disk_snapshot: 0,
            acked_promise: Ballot::ZERO,
            acked_accepts: BTreeMap::new(),
            refused: None,
        }
    }
}

/// The limits every simulated replica starts with.
fn sim_limits(config: &SimConfig) -> Limits {
    if config.sessions.is_none() {
        return Limits::default();
    }
    Limits {
        session_ttl_min_ms: SIM_SESSION_TTL_MIN_MS,
        ..Limits::default()
    }
}

fn nodes_default_type(nodes: &[SimNode]) -> &'static str {
    nodes.first().map_or("", |n| n.replica.object_name())
}

impl Sim {
    /// A founded group of `config.nodes` members and its clients, all idle at time 0.
    pub fn new(config: SimConfig) -> Self {
        let members = members(config.nodes);
        let mut rng = SimRng::new(config.seed);
        let nodes: Vec<SimNode> = (0..config.nodes)
            .map(|i| {
                let configs = ConfigHistory::genesis(members.clone());
                let mut replica = fresh_replica(&config, node_id(i), configs.clone());
                replica.trace = Some(ReplicaTrace::default());
                let leader =
                    Leader::new(node_id(i), configs, config.leader.clone(), rng.next_u64());
                let mut node = SimNode::new(node_id(i), Acceptor::new(node_id(i)), leader, replica);
                if config.durable.is_some() {
                    // As `open_node` creates a founding member's data dir:
                    // the member file and the snapshot a restart replays from.
                    let member = MemberFile {
                        node: node.id,
                        group: node.replica.group(),
                        addr: format!("sim-{i}"),
                    };
                    let mut disk = SimDisk::new(member, Ballot::ZERO);
                    disk.snapshot = Some(snapshot_file(&node.replica, node.id));
                    node.disk = Some(disk);
                    node.acceptor = std::mem::take(&mut node.acceptor).journaled();
                }
                node
            })
            .collect();
        let session_clients = config.sessions.as_ref().map_or(0, |s| s.clients);
        let clients = (0..config.clients + session_clients)
            .map(|i| SimClient {
                session: config
                    .sessions
                    .as_ref()
                    .filter(|_| i >= config.clients)
                    .map(|s| SessionClient {
                        phase: if i == config.clients {
                            SessionPhase::CreatingSemaphore
                        } else {
                            SessionPhase::Opening
                        },
                        rounds_left: s.rounds,
                        grants: Vec::new(),
                        unexpected: Vec::new(),
                        last_sent_ms: 0,
                        last_heard_ms: 0,
                    }),
                crashed: false,
                id: 0x1000 + i as u64,
                acked: 0,
                acked_writes: 0,
                issued: 0,
                ops: config.ops_per_client,
                pinned: None,
                read_percent: None,
                target: i % config.nodes,
                outstanding: None,
                resends: 0,
            })
            .collect();
        let routing = crate::replica::ReadRouting::new(
            Arc::new(Types::builtins()),
            nodes_default_type(&nodes),
        );
        let mut sim = Sim {
            routing,
            config,
            now_ms: 0,
            rng,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            next_event: 0,
            nodes,
            clients,
            net: NetFaults::default(),
            deliveries: Vec::new(),
            events_processed: 0,
            ops: Vec::new(),
            decided: BTreeMap::new(),
            decided_conflicts: Vec::new(),
            semaphore_ready: false,
            next_node_id: 0x100,
            durability_violations: Vec::new(),
        };
        for i in 0..sim.nodes.len() {
            let offset = sim.rng.below(sim.config.tick_ms);
            sim.schedule(offset, Event::NodeTick(i));
        }
        for i in 0..sim.clients.len() {
            let offset = sim.rng.below(sim.config.tick_ms);
            sim.schedule(offset, Event::ClientTick(i));
        }
        sim
    }

    /// Runs until simulated time `until_ms`.
    pub fn run_until(&mut self, until_ms: u64) {
        while let Some(Reverse((at, id))) = self.queue.peek().copied() {
            if at > until_ms {
                break;
            }
            self.queue.pop();
            self.now_ms = at;
            let event = self
                .events
                .remove(&id)
                .expect("every queued id has an event");
            self.events_processed += 1;
            self.dispatch(event);
        }
        self.now_ms = until_ms;
    }

    /// Runs until every client finished its operations or `deadline_ms` passes;
    /// returns whether they all finished.
    pub fn run_until_done(&mut self, deadline_ms: u64) -> bool {
        while self.now_ms < deadline_ms {
            if self.all_done() {
                return true;
            }
            let step = (self.now_ms + 50).min(deadline_ms);
            self.run_until(step);
        }
        self.all_done()
    }

    pub fn all_done(&self) -> bool {
        self.clients.iter().all(SimClient::finished)
    }

    /// As the real node notes its membership: once it was a member and its
    /// replica has executed past its removal, it stops (the process exits).
    fn note_membership(&mut self, node: usize, progress: &crate::message::Progress) {
        let n = &mut self.nodes[node];
        if progress
            .configs
            .members_from(progress.executed)
            .contains(&n.id)
        {
            n.was_member = true;
        } else if n.was_member && !n.removed {
            n.removed = true;
            let incarnation = n.incarnation;
            let removed_at_ms = self.now_ms;
            self.schedule(
                0,
                Event::LeavingTick {
                    node,
                    incarnation,
                    removed_at_ms,
                },
            );
        }
    }

    /// A removed node's turn to ask the new membership, as the real node's
    /// `serve_until_left` does; it stops once it may.
    fn leaving_tick(&mut self, node: usize, incarnation: u64, removed_at_ms: u64) {
        let n = &mut self.nodes[node];
        if !n.alive || n.incarnation != incarnation {
            return;
        }
        let mut fx = Effects::default();
        let status = n.replica.leaving_tick(&mut fx);
        self.apply_effects(node, fx);
        if status.may_stop(self.now_ms - removed_at_ms) {
            self.nodes[node].alive = false;
            return;
        }
        let tick = crate::node::LEAVING_TICK.as_millis() as u64;
        self.schedule(
            tick,
            Event::LeavingTick {
                node,
                incarnation,
                removed_at_ms,
            },
        );
    }

    /// A newcomer's turn to ask the group to add it, until it has the
    /// group's state (`join_group` of the real node).
    fn join_tick(&mut self, node: usize) {
        let now = self.now_ms;
        let count = self.nodes.len();
        let n = &mut self.nodes[node];
        if n.replica.has_state() {
            n.joining = false;
            return;
        }
        if now < n.next_join_ms || count < 2 {
            return;
        }
        if n.join_target == node || n.join_target >= count {
            n.join_target = (node + 1) % count;
        }
        let to = n.join_target;
        n.join_target = (to + 1) % count;
        n.next_join_ms = now + JOIN_RETRY_MS;
        let member = Member {
            id: n.id,
            addr: format!("sim-{node}"),
        };
        self.transmit(Endpoint::Node(node), Endpoint::Node(to), || Event::Join {
            from: node,
            to,
            member: member.clone(),
        });
    }

    /// Hands a command to a node's leader as a connection would, without a client waiting.
    pub fn submit(&mut self, node: usize, command: Command) -> Result<(), NotAccepted> {
        let mut fx = Effects::default();
        let taken = self.nodes[node].leader.on_request(command, &mut fx);
        self.leader_effects(node, fx);
        taken
    }

    /// Asks the active leader to remove `member`, as `concoord admin remove`
    /// does; refused as the real leader refuses (no leader, no such member,
    /// the last member).
    pub fn request_removal(&mut self, member: usize) -> Result<Member, RemovalRefused> {
        let Some(leader) = self.leader() else {
            return Err(RemovalRefused::NotLeader(None));
        };
        let mut fx = Effects::default();
        let id = self.nodes[member].id;
        let answer = self.nodes[leader]
            .leader
            .request_removal(&MemberRef::Id(id), &mut fx);
        self.leader_effects(leader, fx);
        answer
    }

    /// The node that is the active leader with the highest ballot, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive && self.nodes[*i].leader.is_active())
            .max_by_key(|i| self.nodes[*i].leader.ballot())
    }

    /// Stops a node: it loses every message and never ticks again, until
    /// [`Sim::restart`] or [`Sim::restart_empty`]. A durable node's disk
    /// loses or tears what was not synced, and may be damaged
    /// ([`SimDurability`]).
    pub fn crash(&mut self, node: usize) {
        self.nodes[node].alive = false;
        // The others' links from it close (unless cut off, or the close is lost).
        let peer = self.nodes[node].id;
        for to in 0..self.nodes.len() {
            if to != node && self.nodes[to].alive {
                let to_id = self.nodes[to].id;
                self.transmit(Endpoint::Node(node), Endpoint::Node(to), || {
                    Event::PeerLost { to, to_id, peer }
                });
            }
        }
        if let (Some(disk), Some(durability)) =
            (self.nodes[node].disk.as_mut(), self.config.durable.as_ref())
        {
            disk.crash(&mut self.rng, durability);
        }
    }

    /// Restarts a crashed node with nothing: a new id at the same address,
    /// which asks the group to add it and catches up from a snapshot, as a
    /// memory-mode replica restarted with `-b` does (a durable one given an
    /// empty data dir).
    pub fn restart_empty(&mut self, node: usize) {
        assert!(!self.nodes[node].alive, "restart a crashed node");
        let id = self.next_node_id;
        self.next_node_id += 1;
        let fresh = self.empty_node(id, node);
        let n = &mut self.nodes[node];
        let incarnation = n.incarnation;
        *n = fresh;
        n.incarnation = incarnation;
        self.start_incarnation(node);
    }

    /// A new node that asks the group to add it (`concoord replica -b`);
    /// returns its index.
    pub fn add_node(&mut self) -> usize {
        let id = self.next_node_id;
        self.next_node_id += 1;
        let node = self.nodes.len();
        let fresh = self.empty_node(id, node);
        self.nodes.push(fresh);
        self.start_incarnation(node);
        let offset = self.rng.below(self.config.tick_ms);
        self.schedule(offset, Event::NodeTick(node));
        node
    }

    /// A node with no state, joining.
    fn empty_node(&mut self, id: NodeId, index: usize) -> SimNode {
        let object = concoord_objects::builtin(&self.config.object)
            .expect("the simulated object is a built-in");
        let replica = Replica::joining(id, object, Vec::new())
            .with_types(Arc::new(Types::builtins()), sim_limits(&self.config));
        let leader = Leader::new(
            id,
            ConfigHistory::genesis(Vec::new()),
            self.config.leader.clone(),
            self.rng.next_u64(),
        );
        let mut node = SimNode::new(id, Acceptor::new(id), leader, replica);
        node.joining = true;
        node.join_target = (index + 1) % self.nodes.len().max(1);
        if self.config.durable.is_some() {
            let member = MemberFile {
                node: id,
                group: 0,
                addr: format!("sim-{index}"),
            };
            node.disk = Some(SimDisk::new(member, Ballot::ZERO));
            node.acceptor = std::mem::take(&mut node.acceptor).journaled();
        }
        node
    }

    /// Brings node `node`'s roles (just built) up: a new incarnation, and
    /// the replica tells the other roles where it stands.
    fn start_incarnation(&mut self, node: usize) {
        let now = self.now_ms;
        let n = &mut self.nodes[node];
        n.incarnation += 1;
        n.alive = true;
        n.removed = false;
        n.was_member = false;
        n.refused = None;
        n.held.clear();
        n.connections.clear();
        n.next_join_ms = now;
        n.last_disk_snapshot = n.replica.executed();
        n.replica.trace = Some(ReplicaTrace::default());
        let mut fx = Effects::default();
        n.replica.announce(&mut fx);
        self.apply_effects(node, fx);
    }

    pub fn trace(&self, node: usize) -> &ReplicaTrace {
        self.nodes[node]
            .replica
            .trace
            .as_ref()
            .expect("simulated replicas trace")
    }
}
