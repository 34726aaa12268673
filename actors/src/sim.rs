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

/// A seeded xorshift64* generator: the only randomness in a simulation.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        SimRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The shape of a simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub clients: usize,
    pub ops_per_client: u64,
    pub object: String,
    pub method: String,
    /// Percent of operations that read (`getvalue`) instead of calling `method`.
    pub read_percent: u64,
    /// Spread operations over this many named objects of type `object`
    /// (`obj0`, `obj1`, ...) besides the default one; 0 uses only the default.
    pub named_objects: u64,
    pub tick_ms: u64,
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    pub client_timeout_ms: u64,
    pub leader: LeaderConfig,
    /// Session clients, after the `clients` Counter clients.
    pub sessions: Option<SessionWorkload>,
    /// How calls of read-only methods are served.
    pub reads: SimReads,
    /// Durable mode for the founding nodes (`-w`): a simulated disk each.
    pub durable: Option<SimDurability>,
}

/// Durable nodes, their simulated disks and what a crash does to them.
#[derive(Clone, Debug)]
pub struct SimDurability {
    /// A sync takes 1 to this many simulated ms.
    pub sync_ms_max: u64,
    /// Executed slots between snapshots written to the disk.
    pub snapshot_every: Slot,
    /// Percent of crashes that keep part of the unsynced writes (a torn
    /// last write, possibly cut inside a record); the others lose them all.
    pub torn_percent: u64,
    /// Percent of crashes that also damage a synced record followed by
    /// another (opt-in): recovery must refuse such a disk.
    pub corrupt_percent: u64,
    /// Broken on purpose (tests that must catch it): Promise and Accepted
    /// leave before their records are synced.
    pub broken_ack_before_sync: bool,
    /// Broken on purpose: recovery takes damage in the middle of the log
    /// for a torn tail and serves from the records before it.
    pub broken_trust_damage: bool,
}

impl Default for SimDurability {
    fn default() -> Self {
        SimDurability {
            sync_ms_max: 4,
            snapshot_every: 40,
            torn_percent: 50,
            corrupt_percent: 0,
            broken_ack_before_sync: false,
            broken_trust_damage: false,
        }
    }
}

/// A durable node's simulated disk: the real record and snapshot encoding
/// in memory, with what a crash may keep of it. Writes land in the newest
/// segment; a sync (a simulated delay) makes everything written before it
/// began durable. A snapshot file is replaced whole once a sync completes
/// (the real one is written aside, fsynced and renamed).
#[derive(Clone, Debug)]
pub struct SimDisk {
    member: MemberFile,
    /// Log segments, oldest first; each restart begins a new one.
    segments: Vec<Vec<u8>>,
    /// Bytes of the newest segment that are durable.
    synced: usize,
    /// A sync in flight covers the newest segment up to here.
    syncing: Option<usize>,
    snapshot: Option<Vec<u8>>,
    snapshot_pending: Option<Vec<u8>>,
    /// What crashes did to it, for reports.
    pub damage: Vec<String>,
}

impl SimDisk {
    fn new(member: MemberFile, promised: Ballot) -> Self {
        let mut disk = SimDisk {
            member,
            segments: Vec::new(),
            synced: 0,
            syncing: None,
            snapshot: None,
            snapshot_pending: None,
            damage: Vec::new(),
        };
        disk.new_segment(promised);
        disk
    }

    /// As the real writer starts: a new segment that repeats the promise, synced.
    fn new_segment(&mut self, promised: Ballot) {
        let mut bytes = crate::storage::files::segment_header(self.member.node);
        crate::storage::files::encode_record(&Record::Promise(promised), &mut bytes);
        self.synced = bytes.len();
        self.segments.push(bytes);
    }

    fn appended(&self) -> usize {
        self.segments.last().map_or(0, Vec::len)
    }

    fn append(&mut self, records: &[Record]) {
        let last = self.segments.last_mut().expect("a disk has a segment");
        for record in records {
            crate::storage::files::encode_record(record, last);
        }
    }

    fn root(node: usize) -> PathBuf {
        PathBuf::from(format!("sim-{node}"))
    }

    /// The node crashed: unsynced writes are lost or torn, and maybe a
    /// synced record is damaged. Returns what happened.
    fn crash(&mut self, rng: &mut SimRng, durability: &SimDurability) {
        self.syncing = None;
        self.snapshot_pending = None;
        let synced = self.synced;
        let last = self.segments.last_mut().expect("a disk has a segment");
        let unsynced = last.len() - synced;
        if unsynced > 0 {
            let keep = if rng.chance(durability.torn_percent) {
                rng.below(unsynced as u64 + 1) as usize
            } else {
                0
            };
            last.truncate(synced + keep);
            self.damage
                .push(format!("kept {keep} of {unsynced} unsynced bytes"));
        }
        if durability.corrupt_percent > 0 && rng.chance(durability.corrupt_percent) {
            // A record followed by another, so recovery can tell it from a
            // torn last write: one bit of its payload flipped, or of its
            // length field (which may then point past the end of the file,
            // where a torn write would end).
            let mut records = Vec::new();
            for (k, segment) in self.segments.iter().enumerate() {
                records.extend(
                    crate::storage::files::record_frames(segment)
                        .into_iter()
                        .map(|(at, header, len)| (k, at, header, len)),
                );
            }
            let newest = self.segments.len() - 1;
            let followed: Vec<_> = records
                .windows(2)
                .filter(|w| w[0].0 != newest || w[1].0 == newest)
                .map(|w| w[0])
                .filter(|(_, _, _, len)| *len > 0)
                .collect();
            if !followed.is_empty() {
                let (k, at, header, len) = followed[rng.below(followed.len() as u64) as usize];
                let (byte, what) = if rng.chance(50) {
                    (at + rng.below(4) as usize, "length field")
                } else {
                    (at + header + rng.below(len as u64) as usize, "payload")
                };
                self.segments[k][byte] ^= 1 << rng.below(8);
                self.damage.push(format!(
                    "flipped a bit of segment {k} at byte {byte} (a record's {what})"
                ));
            }
        }
    }

    /// Reads the disk back with the real recovery code; a torn tail is cut
    /// off here too, as the real recovery cuts it on disk.
    fn recover(
        &mut self,
        node: usize,
        trust_damage: bool,
    ) -> Result<crate::storage::Recovered, StorageError> {
        let root = Self::root(node);
        let snapshot = match &self.snapshot {
            Some(bytes) => Some(crate::storage::files::decode_snapshot_file(
                &root.join("snap"),
                bytes,
                &self.member,
            )?),
            None => None,
        };
        if trust_damage {
            // The broken recovery: whatever fails its checksum ends the log.
            for k in 0..self.segments.len() {
                if let Some(bad) = first_bad_record(&self.segments[k]) {
                    self.segments[k].truncate(bad);
                    self.segments.truncate(k + 1);
                    break;
                }
            }
        }
        let paths: Vec<(u64, PathBuf)> = (0..self.segments.len())
            .map(|k| (k as u64, root.join(format!("wal/{k}.wal"))))
            .collect();
        let segments = &self.segments;
        let (recovered, cut) = crate::storage::files::recover_from(
            self.member.clone(),
            snapshot,
            paths.clone(),
            |path| {
                let k = paths
                    .iter()
                    .position(|(_, p)| p == path)
                    .expect("a path recover_from was given");
                Ok(segments[k].clone())
            },
        )?;
        if let Some((path, good)) = cut {
            let k = paths
                .iter()
                .position(|(_, p)| *p == path)
                .expect("a path recover_from was given");
            self.segments[k].truncate(good);
        }
        Ok(recovered)
    }
}

/// Where the first record that fails a checksum starts, if one does.
fn first_bad_record(segment: &[u8]) -> Option<usize> {
    use crate::storage::files::RECORD_HEADER_BYTES as H;
    let mut at = crate::storage::files::SEGMENT_HEADER_BYTES;
    while at + H <= segment.len() {
        let word =
            |i: usize| u32::from_le_bytes(segment[at + i..at + i + 4].try_into().expect("4 bytes"));
        let len = word(0) as usize;
        if crc32fast::hash(&segment[at..at + 8]) != word(8)
            || at + H + len > segment.len()
            || crc32fast::hash(&segment[at + H..at + H + len]) != word(4)
        {
            return Some(at);
        }
        at += H + len;
    }
    None
}

/// How a simulated node serves calls of read-only methods (`getvalue`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimReads {
    /// Through the log, as every other call.
    Log,
    /// The leader's read index ([`Leader::on_read`]), as real nodes do.
    ReadIndex,
    /// Allowed to be stale: whichever node a client reaches answers from
    /// its own replica at once ([`Replica::stale_read`]).
    Stale,
    /// Deliberately broken, for tests that must catch it: a node that
    /// believes it leads answers from its replica at once, with no read
    /// index round. A deposed leader that has not noticed answers stale.
    Unconfirmed,
}

/// The Lock session clients take turns on.
pub const SESSION_LOCK: &str = "lock";
/// The Semaphore session clients take permits of.
pub const SESSION_SEMAPHORE: &str = "sem";
/// The shortest session TTL a simulated group accepts: simulated time is
/// cheap only while runs are short, so sessions there live for under a second.
pub const SIM_SESSION_TTL_MIN_MS: u64 = 100;

/// Clients that open a session and use a Lock ([`SESSION_LOCK`]) and a
/// Semaphore ([`SESSION_SEMAPHORE`]) as an application would: acquire
/// (fenced), hold a while, release, `rounds` times; then they stop talking,
/// so their sessions end by expiry too.
#[derive(Clone, Debug)]
pub struct SessionWorkload {
    pub clients: usize,
    pub ttl_ms: u64,
    pub rounds: u64,
    /// A holder releases after a random time up to this.
    pub hold_ms_max: u64,
    /// The Semaphore's permits (the first session client creates it so).
    pub permits: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            nodes: 3,
            clients: 4,
            ops_per_client: 20,
            object: "Counter".into(),
            method: "increment".into(),
            read_percent: 0,
            named_objects: 0,
            tick_ms: 10,
            delay_min_ms: 1,
            delay_max_ms: 6,
            client_timeout_ms: 400,
            leader: LeaderConfig::default(),
            sessions: None,
            reads: SimReads::Log,
            durable: None,
        }
    }
}

/// A party on the simulated network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    Node(usize),
    Client(usize),
}

/// Faults of the network, changed by a test while the run goes on.
#[derive(Clone, Debug, Default)]
pub struct NetFaults {
    pub drop_percent: u64,
    pub duplicate_percent: u64,
    /// Pairs that cannot reach each other (both directions are listed).
    pub blocked: BTreeSet<(Endpoint, Endpoint)>,
}

enum Event {
    /// Peer frames carry the addressee's id: a node restarted with a new
    /// id ignores its predecessor's mail.
    Peer {
        from_id: NodeId,
        to: usize,
        to_id: NodeId,
        msg: PeerMsg,
    },
    /// A newcomer asks a node to add it to the group (`-b`).
    Join {
        from: usize,
        to: usize,
        member: Member,
    },
    /// The asked node does not lead: where the leader is, if it knows.
    JoinHint {
        node: usize,
        leader: Option<usize>,
    },
    /// A durable node's sync of its disk up to `upto` completed.
    DiskSynced {
        node: usize,
        incarnation: u64,
        upto: usize,
    },
    /// A durable node's leader's Prepares to other nodes, queued behind its
    /// own acceptor's promise (as the real leader hands them to its acceptor).
    WhenDurable {
        node: usize,
        incarnation: u64,
        sends: Vec<(NodeId, PeerMsg)>,
    },
    /// A removed node stops, its grace period over.
    Stop {
        node: usize,
        incarnation: u64,
    },
    /// The active leader heard a session client's keep-alive and says so.
    KeepAliveAck {
        client: usize,
        node: usize,
    },
    Request {
        client: usize,
        node: usize,
        command: Command,
    },
    Response {
        client: usize,
        node: usize,
        id: CommandId,
        answer: Answer,
    },
    NodeTick(usize),
    ClientTick(usize),
    /// A session client's keep-alive.
    KeepAlive {
        client: usize,
        node: usize,
    },
    /// Where a keep-alive's receiver says the leader is (`None`: try
    /// another node, as after a refused connection).
    Hint {
        client: usize,
        to: Option<usize>,
    },
}

#[derive(Clone, Debug)]
enum Answer {
    Reply(Reply),
    Redirect(Option<NodeId>),
    /// The call waits in an object's queue (only session clients' calls do).
    Parked,
}

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

/// One simulated closed-loop client: one command outstanding at a time.
#[derive(Debug)]
pub struct SimClient {
    /// A session client's state; `None` for a Counter client.
    pub session: Option<SessionClient>,
    /// Stopped for good ([`Sim::crash_client`]).
    pub crashed: bool,
    pub id: ClientId,
    pub acked: u64,
    /// Acknowledged calls of the configured (writing) method.
    pub acked_writes: u64,
    pub issued: u64,
    pub ops: u64,
    /// Only ever talks to this node (to observe a minority side).
    pub pinned: Option<usize>,
    /// This client's own share of reads, instead of the run's.
    pub read_percent: Option<u64>,
    /// The node it sends to.
    pub target: usize,
    outstanding: Option<Outstanding>,
    pub resends: u64,
}

impl SimClient {
    /// Done with its work: a Counter client all its operations answered, a
    /// session client its rounds done or its session gone, or it crashed.
    pub fn finished(&self) -> bool {
        if self.crashed {
            return true;
        }
        match &self.session {
            Some(s) => matches!(s.phase, SessionPhase::Done | SessionPhase::Expired),
            None => self.acked == self.ops,
        }
    }

    /// What a session client believes it holds.
    pub fn holding(&self) -> Option<&str> {
        match &self.session.as_ref()?.phase {
            SessionPhase::Holding { object, .. } => Some(object),
            _ => None,
        }
    }
}

/// A session client's view of its session.
#[derive(Clone, Debug)]
pub struct SessionClient {
    pub phase: SessionPhase,
    pub rounds_left: u64,
    /// Every grant it was answered: (object, token).
    pub grants: Vec<(String, u64)>,
    /// Answers no correct group gives this workload.
    pub unexpected: Vec<String>,
    /// When it last sent anything: keep-alives go out a third of a TTL after.
    last_sent_ms: u64,
    /// When it last heard from the node it talks to: after half a TTL of
    /// silence it tries another (the real client does; the leader answers
    /// every keep-alive, so silence means the connection is cut).
    last_heard_ms: u64,
}

/// Where a session client is in its work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionPhase {
    /// The first session client creates the Semaphore with its permits
    /// (outside any session, so no expiry can leave it uncreated).
    CreatingSemaphore,
    /// `concoord_open_session` not answered yet.
    Opening,
    /// Between rounds.
    Idle,
    Acquiring(String),
    Holding {
        object: String,
        token: u64,
        until_ms: u64,
    },
    Releasing(String),
    /// Its rounds are done: it falls silent and its session expires.
    Done,
    /// The group answered SessionExpired.
    Expired,
}

#[derive(Debug, Clone)]
struct Outstanding {
    id: CommandId,
    target: concoord_objects::Target,
    method: String,
    args: Vec<u8>,
    /// Index of this operation in [`Sim::ops`] (Counter clients only).
    op: Option<usize>,
    /// The group said it waits: it stays with that node, as the real
    /// client stays on its connection, until told to go elsewhere. (It still
    /// resends there: the wake-up may be lost on this network, not on TCP.)
    parked: bool,
    first_sent_ms: u64,
    last_sent_ms: u64,
}

/// A reply a client received: who answered, when, and for what.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub at_ms: u64,
    pub client: usize,
    pub node: usize,
    pub id: CommandId,
    pub first_sent_ms: u64,
    pub reply: Reply,
}

/// One client operation as a history records it (simulated milliseconds).
#[derive(Clone, Debug)]
pub struct SimOp {
    pub client: usize,
    /// The object's name ("" for the default one).
    pub object: String,
    pub method: String,
    pub invoke_ms: u64,
    /// When and what it returned; `None` if it never did (outcome unknown).
    pub completed: Option<(u64, Reply)>,
    /// A read sent allowing a stale answer ([`SimReads::Stale`]).
    pub stale: bool,
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

/// One command of the replicated order, as [`Sim::replicated_order`] executed it.
#[derive(Clone, Debug)]
pub struct Executed {
    pub slot: Slot,
    pub command: Command,
    /// Every answer executing it gave, in order: its own reply (unless it
    /// parked) and the wake-ups it caused (grants handed on, expired waits).
    pub replies: Vec<(CommandId, Reply)>,
    /// `(name, type, state)` of every named object right after it.
    pub named: Vec<(String, String, Vec<u8>)>,
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

/// Where a session client's call on `object` goes ("" is the session's own
/// call, on the default object).
fn session_target(object: &str) -> concoord_objects::Target {
    match object {
        "" => concoord_objects::Target::default(),
        SESSION_LOCK => concoord_objects::Target::named(object, "Lock"),
        _ => concoord_objects::Target::named(object, "Semaphore"),
    }
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

type HeldSends = (usize, Vec<(NodeId, PeerMsg)>, Vec<(Slot, Ballot)>);

/// A replica's snapshot as the file a durable node writes.
fn snapshot_file(replica: &Replica, node: NodeId) -> Vec<u8> {
    crate::storage::files::snapshot_file_bytes(&crate::storage::encode_snapshot(
        replica.group(),
        node,
        &replica.snapshot(),
    ))
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

fn decode_reply(reply: &[u8]) -> rmpv::Value {
    rmpv::decode::read_value(&mut &reply[..]).unwrap_or(rmpv::Value::Nil)
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

    fn schedule(&mut self, after_ms: u64, event: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.queue.push(Reverse((self.now_ms + after_ms, id)));
        self.events.insert(id, event);
    }

    fn delay(&mut self) -> u64 {
        let span = self.config.delay_max_ms - self.config.delay_min_ms + 1;
        self.config.delay_min_ms + self.rng.below(span)
    }

    /// Sends over the faulty network: maybe dropped, maybe twice, each copy delayed.
    fn transmit(&mut self, from: Endpoint, to: Endpoint, event: impl Fn() -> Event) {
        if from == to {
            let e = event();
            self.schedule(0, e);
            return;
        }
        if self.net.blocked.contains(&(from, to)) || self.rng.chance(self.net.drop_percent) {
            return;
        }
        let copies = if self.rng.chance(self.net.duplicate_percent) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let d = self.delay();
            let e = event();
            self.schedule(d, e);
        }
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

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::NodeTick(i) => {
                if self.nodes[i].alive {
                    let mut fx = Effects::default();
                    let now = self.now_ms;
                    self.nodes[i].leader.tick(now, &mut fx);
                    self.leader_effects(i, fx);
                    if self.nodes[i].joining {
                        self.join_tick(i);
                    }
                }
                let t = self.config.tick_ms;
                self.schedule(t, Event::NodeTick(i));
            }
            Event::ClientTick(c) => {
                match &self.clients[c] {
                    client if client.crashed => {}
                    client if client.session.is_some() => self.session_tick(c),
                    _ => self.client_tick(c),
                }
                let t = self.config.tick_ms;
                self.schedule(t, Event::ClientTick(c));
            }
            Event::Peer {
                from_id,
                to,
                to_id,
                msg,
            } => {
                if !self.nodes[to].alive || self.nodes[to].id != to_id {
                    return;
                }
                self.record_decisions(&msg);
                if self.nodes[to].disk.is_some() {
                    return self.deliver_durable(to, from_id, msg);
                }
                let mut fx = Effects::default();
                let node = &mut self.nodes[to];
                let roles = msg.roles();
                for role in roles {
                    let m = msg.clone();
                    match role {
                        Role::Acceptor => node.acceptor.handle(from_id, m, &mut fx),
                        Role::Leader => node.leader.handle(from_id, m, &mut fx),
                        Role::Replica => node.replica.handle(from_id, m, &mut fx),
                    }
                }
                self.apply_effects(to, fx);
            }
            Event::Request {
                client,
                node,
                command,
            } => {
                if !self.nodes[node].alive {
                    return;
                }
                let id = command.id().expect("clients send calls");
                let mut fx = Effects::default();
                let reads = self.config.reads;
                let read = reads != SimReads::Log
                    && matches!(&command, Command::Call { target, method, .. }
                        if self.routing.may_read(target, method));
                let n = &mut self.nodes[node];
                let taken = match reads {
                    _ if !read => n.leader.on_request(command, &mut fx),
                    SimReads::Log | SimReads::ReadIndex => n.leader.on_read(command, &mut fx),
                    SimReads::Stale => {
                        n.replica.stale_read(command, &mut fx);
                        Ok(())
                    }
                    SimReads::Unconfirmed if n.leader.is_active() => {
                        n.replica.stale_read(command, &mut fx);
                        Ok(())
                    }
                    SimReads::Unconfirmed => Err(NotAccepted::NotLeader(n.leader.leader_hint())),
                };
                match taken {
                    Ok(()) => {
                        self.nodes[node]
                            .connections
                            .entry(id)
                            .or_default()
                            .insert(client);
                    }
                    Err(NotAccepted::NotLeader(hint)) => {
                        self.transmit(Endpoint::Node(node), Endpoint::Client(client), || {
                            Event::Response {
                                client,
                                node,
                                id,
                                answer: Answer::Redirect(hint),
                            }
                        })
                    }
                    Err(NotAccepted::Busy) => {}
                }
                self.leader_effects(node, fx);
            }
            Event::Response {
                client,
                node,
                id,
                answer,
            } => {
                let c = &mut self.clients[client];
                if !c.crashed {
                    if let Some(s) = c.session.as_mut().filter(|_| c.target == node) {
                        s.last_heard_ms = self.now_ms;
                    }
                    self.client_response(client, node, id, answer)
                }
            }
            Event::KeepAlive { client, node } => self.on_keep_alive(client, node),
            Event::KeepAliveAck { client, node } => {
                let c = &mut self.clients[client];
                if c.target == node {
                    if let Some(s) = c.session.as_mut() {
                        s.last_heard_ms = self.now_ms;
                    }
                }
            }
            Event::Join { from, to, member } => {
                if !self.nodes[to].alive {
                    return;
                }
                let mut fx = Effects::default();
                let taken = self.nodes[to]
                    .leader
                    .on_request(Command::AddMember(member), &mut fx);
                self.leader_effects(to, fx);
                if let Err(NotAccepted::NotLeader(hint)) = taken {
                    let leader = hint.and_then(|h| self.nodes.iter().position(|n| n.id == h));
                    self.transmit(Endpoint::Node(to), Endpoint::Node(from), || {
                        Event::JoinHint { node: from, leader }
                    });
                }
            }
            Event::JoinHint { node, leader } => {
                let n = &mut self.nodes[node];
                if let Some(leader) = leader.filter(|l| *l != node) {
                    if n.joining && n.alive {
                        n.join_target = leader;
                        n.next_join_ms = self.now_ms;
                    }
                }
            }
            Event::DiskSynced {
                node,
                incarnation,
                upto,
            } => {
                let n = &mut self.nodes[node];
                if !n.alive || n.incarnation != incarnation {
                    return;
                }
                let disk = n.disk.as_mut().expect("only durable nodes sync");
                disk.synced = disk.synced.max(upto);
                disk.syncing = None;
                if let Some(snapshot) = disk.snapshot_pending.take() {
                    disk.snapshot = Some(snapshot);
                }
                let synced = disk.synced;
                loop {
                    let n = &mut self.nodes[node];
                    if !n.alive || !n.held.front().is_some_and(|(seq, ..)| *seq <= synced) {
                        break;
                    }
                    let (_, sends, claims) = n.held.pop_front().expect("front checked");
                    self.send_now(node, sends, claims);
                }
                if self.nodes[node].alive {
                    self.schedule_sync(node);
                }
            }
            Event::Stop { node, incarnation } => {
                let n = &mut self.nodes[node];
                if n.incarnation == incarnation {
                    n.alive = false;
                }
            }
            Event::WhenDurable {
                node,
                incarnation,
                sends,
            } => {
                let n = &self.nodes[node];
                if n.alive && n.incarnation == incarnation {
                    self.send_when_durable(node, sends);
                }
            }
            Event::Hint { client, to } => {
                let c = &mut self.clients[client];
                if !c.crashed && c.pinned.is_none() {
                    c.target = to.unwrap_or((c.target + 1) % self.nodes.len());
                    if let Some(s) = c.session.as_mut() {
                        s.last_heard_ms = self.now_ms;
                    }
                    // A new connection: the real client resends parked calls on it.
                    if let Some(o) = c.outstanding.as_mut().filter(|o| o.parked) {
                        o.parked = false;
                        self.send_outstanding(client);
                    }
                }
            }
        }
    }

    /// A keep-alive reaches `node`: its active leader notes the session is
    /// alive; any other node tells where the leader is, and a crashed one
    /// refuses the connection (the client tries another).
    fn on_keep_alive(&mut self, client: usize, node: usize) {
        let to = if !self.nodes[node].alive {
            None
        } else if self.nodes[node].leader.is_active() {
            let id = self.clients[client].id;
            self.nodes[node].leader.touch(id);
            // The leader answers every keep-alive (`Frame::KeepAlive`).
            self.transmit(Endpoint::Node(node), Endpoint::Client(client), || {
                Event::KeepAliveAck { client, node }
            });
            return;
        } else {
            let hint = self.nodes[node].leader.leader_hint();
            match hint.and_then(|h| self.nodes.iter().position(|n| n.id == h)) {
                Some(to) => Some(to),
                None => return,
            }
        };
        self.transmit(Endpoint::Node(node), Endpoint::Client(client), || {
            Event::Hint { client, to }
        });
    }

    /// Keeps every decided batch seen, so the order can be replayed later.
    fn record_decisions(&mut self, msg: &PeerMsg) {
        let mut record = |slot: Slot, batch: &Batch| match self.decided.get(&slot) {
            Some(known) if known != batch => self.decided_conflicts.push(slot),
            Some(_) => {}
            None => {
                self.decided.insert(slot, batch.clone());
            }
        };
        match msg {
            PeerMsg::Decision(d) => record(d.slot, &d.batch),
            PeerMsg::CatchUp(c) => {
                for (slot, batch) in &c.decisions {
                    record(*slot, batch);
                }
            }
            _ => {}
        }
    }

    fn apply_effects(&mut self, node: usize, mut fx: Effects) {
        // Reads the replica could not serve go through the log, as a node's
        // shell submits them (their clients wait on this node already).
        for command in std::mem::take(&mut fx.to_log) {
            let mut more = Effects::default();
            let _ = self.nodes[node].leader.on_request(command, &mut more);
            self.leader_effects(node, more);
        }
        let me = self.nodes[node].id;
        for (to, msg) in fx.sends {
            if let (true, PeerMsg::Progress(p)) = (to == me, &msg) {
                self.note_membership(node, p);
            }
            let Some(to_index) = self.nodes.iter().position(|n| n.id == to) else {
                continue;
            };
            self.transmit(Endpoint::Node(node), Endpoint::Node(to_index), || {
                Event::Peer {
                    from_id: me,
                    to: to_index,
                    to_id: to,
                    msg: msg.clone(),
                }
            });
        }
        // Only session clients' calls park; nothing changes for other runs.
        for id in &fx.parked {
            let id = *id;
            let waiting: Vec<usize> = self.nodes[node]
                .connections
                .get(&id)
                .map(|w| w.iter().copied().collect())
                .unwrap_or_default();
            for client in waiting {
                self.transmit(Endpoint::Node(node), Endpoint::Client(client), || {
                    Event::Response {
                        client,
                        node,
                        id,
                        answer: Answer::Parked,
                    }
                });
            }
        }
        for (id, reply) in fx.replies {
            if let Some(waiting) = self.nodes[node].connections.remove(&id) {
                for client in waiting {
                    let reply = reply.clone();
                    self.transmit(Endpoint::Node(node), Endpoint::Client(client), || {
                        Event::Response {
                            client,
                            node,
                            id,
                            answer: Answer::Reply(reply.clone()),
                        }
                    });
                }
            }
        }
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
            self.schedule(
                crate::node::REMOVED_GRACE_MS,
                Event::Stop { node, incarnation },
            );
        }
    }

    /// Carries out a leader's effects. A durable node records the decisions
    /// it hands its own replica, and its Prepares to other nodes wait until
    /// its own acceptor's promise is on disk (`LeaderActor::carry_out`).
    fn leader_effects(&mut self, node: usize, mut fx: Effects) {
        if self.nodes[node].disk.is_none() {
            return self.apply_effects(node, fx);
        }
        let n = &mut self.nodes[node];
        let (me, ballot) = (n.id, n.leader.ballot());
        let chosen: Vec<Record> = fx
            .sends
            .iter()
            .filter_map(|(to, msg)| match msg {
                PeerMsg::Decision(d) if *to == me => Some(Record::Chosen {
                    slot: d.slot,
                    ballot,
                }),
                _ => None,
            })
            .collect();
        if !chosen.is_empty() {
            n.disk.as_mut().expect("durable").append(&chosen);
            self.schedule_sync(node);
        }
        let (prepares, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut fx.sends)
            .into_iter()
            .partition(|(to, msg)| *to != me && matches!(msg, PeerMsg::Prepare(_)));
        fx.sends = rest;
        // The Prepare to its own acceptor goes first: this event comes after it.
        self.apply_effects(node, fx);
        if !prepares.is_empty() {
            let incarnation = self.nodes[node].incarnation;
            self.schedule(
                0,
                Event::WhenDurable {
                    node,
                    incarnation,
                    sends: prepares,
                },
            );
        }
    }

    /// A peer message for a durable node, role by role as its actors take it.
    fn deliver_durable(&mut self, to: usize, from_id: NodeId, msg: PeerMsg) {
        for role in msg.roles() {
            if !self.nodes[to].alive {
                return;
            }
            let m = msg.clone();
            let mut fx = Effects::default();
            match role {
                Role::Acceptor => {
                    let n = &mut self.nodes[to];
                    n.acceptor.handle(from_id, m, &mut fx);
                    let records = n.acceptor.take_journal();
                    if !records.is_empty() {
                        n.disk.as_mut().expect("durable").append(&records);
                        self.schedule_sync(to);
                    }
                    let n = &self.nodes[to];
                    // What its Accepted replies acknowledge, as of now.
                    let claims = fx
                        .sends
                        .iter()
                        .filter_map(|(_, msg)| match msg {
                            PeerMsg::Accepted(a)
                                if n.acceptor
                                    .accepted_ballot(a.slot)
                                    .is_some_and(|b| b >= a.ballot) =>
                            {
                                Some((a.slot, a.ballot))
                            }
                            _ => None,
                        })
                        .collect();
                    let sends = std::mem::take(&mut fx.sends);
                    self.send_when_durable_claiming(to, sends, claims);
                    self.apply_effects(to, fx);
                }
                Role::Leader => {
                    self.nodes[to].leader.handle(from_id, m, &mut fx);
                    self.leader_effects(to, fx);
                }
                Role::Replica => {
                    let records = self.decisions_to_record(to, from_id, &m);
                    if !records.is_empty() {
                        let n = &mut self.nodes[to];
                        n.disk.as_mut().expect("durable").append(&records);
                        self.schedule_sync(to);
                    }
                    self.nodes[to].replica.handle(from_id, m, &mut fx);
                    self.apply_effects(to, fx);
                    self.snapshot_to_disk(to);
                }
            }
        }
    }

    /// Decisions that reached a durable replica whole from another node: its
    /// log keeps them, as the real replica's does.
    fn decisions_to_record(&self, node: usize, from: NodeId, msg: &PeerMsg) -> Vec<Record> {
        let n = &self.nodes[node];
        crate::storage::decisions_to_record(n.id, from, n.replica.executed(), msg)
    }

    /// A snapshot to the disk when one arrived from the group or enough
    /// slots ran since the last (`ReplicaActor::snapshot_to_disk`).
    fn snapshot_to_disk(&mut self, node: usize) {
        let every = self
            .config
            .durable
            .as_ref()
            .map_or(Slot::MAX, |d| d.snapshot_every.max(1));
        let n = &mut self.nodes[node];
        let installed = n.replica.take_installed_snapshot();
        let executed = n.replica.executed();
        if !installed && executed < n.last_disk_snapshot.saturating_add(every) {
            return;
        }
        n.last_disk_snapshot = executed;
        let file = snapshot_file(&n.replica, n.id);
        let group = n.replica.group();
        let disk = n.disk.as_mut().expect("durable");
        // A joiner learns its group with its first snapshot.
        disk.member.group = group;
        disk.snapshot_pending = Some(file);
        self.schedule_sync(node);
    }

    /// Starts a sync of everything written so far, unless one runs.
    fn schedule_sync(&mut self, node: usize) {
        let max = self.config.durable.as_ref().map_or(1, |d| d.sync_ms_max);
        let n = &mut self.nodes[node];
        let incarnation = n.incarnation;
        let Some(disk) = n.disk.as_mut() else {
            return;
        };
        let upto = disk.appended();
        if disk.syncing.is_some() || (upto <= disk.synced && disk.snapshot_pending.is_none()) {
            return;
        }
        disk.syncing = Some(upto);
        let delay = 1 + self.rng.below(max.max(1));
        self.schedule(
            delay,
            Event::DiskSynced {
                node,
                incarnation,
                upto,
            },
        );
    }

    fn send_when_durable(&mut self, node: usize, sends: Vec<(NodeId, PeerMsg)>) {
        self.send_when_durable_claiming(node, sends, Vec::new());
    }

    /// Sends now, or once everything written so far is synced
    /// (`AcceptorActor::send_when_durable`). Decisions for the local replica
    /// and read-index answers acknowledge nothing and go at once.
    fn send_when_durable_claiming(
        &mut self,
        node: usize,
        sends: Vec<(NodeId, PeerMsg)>,
        claims: Vec<(Slot, Ballot)>,
    ) {
        let broken = self
            .config
            .durable
            .as_ref()
            .is_some_and(|d| d.broken_ack_before_sync);
        let n = &self.nodes[node];
        let disk = n.disk.as_ref().expect("durable");
        let appended = disk.appended();
        if broken || (n.held.is_empty() && appended <= disk.synced) {
            return self.send_now(node, sends, claims);
        }
        let (now, later): (Vec<_>, Vec<_>) = sends
            .into_iter()
            .partition(|(_, msg)| matches!(msg, PeerMsg::Decision(_) | PeerMsg::ReadIndexAck(_)));
        self.send_now(node, now, Vec::new());
        if !later.is_empty() || !claims.is_empty() {
            self.nodes[node].held.push_back((appended, later, claims));
        }
    }

    /// Messages leave a durable node: what they acknowledge is noted, for
    /// the check that a restart remembers it.
    fn send_now(
        &mut self,
        node: usize,
        sends: Vec<(NodeId, PeerMsg)>,
        claims: Vec<(Slot, Ballot)>,
    ) {
        let n = &mut self.nodes[node];
        for (to, msg) in &sends {
            if *to == n.id {
                continue;
            }
            match msg {
                PeerMsg::Promise(p) => n.acked_promise = n.acked_promise.max(p.ballot),
                PeerMsg::Accepted(a) => n.acked_promise = n.acked_promise.max(a.ballot),
                _ => {}
            }
        }
        for (slot, ballot) in claims {
            let known = n.acked_accepts.entry(slot).or_insert(ballot);
            *known = (*known).max(ballot);
        }
        self.apply_effects(
            node,
            Effects {
                sends,
                ..Effects::default()
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

    fn client_tick(&mut self, c: usize) {
        let now = self.now_ms;
        let timeout = self.config.client_timeout_ms;
        let client = &mut self.clients[c];
        match &client.outstanding {
            None if client.issued < client.ops => {
                client.issued += 1;
                let id = CommandId::new(client.id, client.issued);
                let read_percent = client.read_percent.unwrap_or(self.config.read_percent);
                let method = if read_percent > 0 && self.rng.chance(read_percent) {
                    "getvalue".to_string()
                } else {
                    self.config.method.clone()
                };
                // One in named+1 goes to the default object, the rest to a named one.
                let named = self.config.named_objects;
                // (No draw without named objects: earlier seeds replay as they did.)
                let pick = if named == 0 {
                    0
                } else {
                    self.rng.below(named + 1)
                };
                let target = match pick {
                    0 => concoord_objects::Target::default(),
                    n => concoord_objects::Target::named(
                        format!("obj{}", n - 1),
                        self.config.object.clone(),
                    ),
                };
                self.ops.push(SimOp {
                    client: c,
                    object: target.name.clone(),
                    method: method.clone(),
                    invoke_ms: now,
                    completed: None,
                    stale: self.config.reads == SimReads::Stale && method == "getvalue",
                });
                let client = &mut self.clients[c];
                client.outstanding = Some(Outstanding {
                    id,
                    target,
                    method,
                    args: encode_args::<i64>(&[]),
                    op: Some(self.ops.len() - 1),
                    parked: false,
                    first_sent_ms: now,
                    last_sent_ms: now,
                });
                self.send_outstanding(c);
            }
            Some(o) if now >= o.last_sent_ms + timeout => {
                client.resends += 1;
                if client.pinned.is_none() {
                    client.target = (client.target + 1) % self.nodes.len();
                }
                self.send_outstanding(c);
            }
            _ => {}
        }
    }

    /// A session client's turn: resend what is unanswered, else start its
    /// next call; and keep its session alive while it has one.
    fn session_tick(&mut self, c: usize) {
        let now = self.now_ms;
        let timeout = self.config.client_timeout_ms;
        let workload = self
            .config
            .sessions
            .clone()
            .expect("session clients have a workload");
        let nodes = self.nodes.len();
        let client = &mut self.clients[c];
        let mut next = None;
        if let Some(o) = &client.outstanding {
            if now >= o.last_sent_ms + timeout {
                client.resends += 1;
                if !o.parked && client.pinned.is_none() {
                    client.target = (client.target + 1) % nodes;
                }
                self.send_outstanding(c);
            }
        } else {
            let s = client.session.as_mut().expect("a session client");
            next = match s.phase.clone() {
                SessionPhase::CreatingSemaphore => Some((
                    SESSION_SEMAPHORE.to_string(),
                    INIT_METHOD,
                    encode_args(&[workload.permits]),
                )),
                SessionPhase::Opening => Some((
                    String::new(),
                    OPEN_SESSION_METHOD,
                    encode_args(&[workload.ttl_ms]),
                )),
                SessionPhase::Idle if s.rounds_left == 0 => {
                    s.phase = SessionPhase::Done;
                    None
                }
                // The others wait until the Semaphore exists with its permits.
                SessionPhase::Idle if self.semaphore_ready => {
                    let object = if self.rng.chance(50) {
                        SESSION_LOCK
                    } else {
                        SESSION_SEMAPHORE
                    };
                    s.phase = SessionPhase::Acquiring(object.to_string());
                    Some((
                        object.to_string(),
                        "acquire_fenced",
                        encode_args::<u64>(&[]),
                    ))
                }
                SessionPhase::Holding {
                    object, until_ms, ..
                } if now >= until_ms => {
                    s.phase = SessionPhase::Releasing(object.clone());
                    Some((object, "release", encode_args::<u64>(&[])))
                }
                _ => None,
            };
        }
        if let Some((object, method, args)) = next {
            self.issue(c, session_target(&object), method, args);
        }
        let client = &mut self.clients[c];
        let s = client.session.as_mut().expect("a session client");
        let has_session = !matches!(
            s.phase,
            SessionPhase::CreatingSemaphore
                | SessionPhase::Opening
                | SessionPhase::Done
                | SessionPhase::Expired
        );
        // As the real client: another node when its own was silent for half a TTL.
        if has_session && client.pinned.is_none() && now >= s.last_heard_ms + workload.ttl_ms / 2 {
            s.last_heard_ms = now;
            client.target = (client.target + 1) % nodes;
            // A new connection: the real client resends parked calls on it.
            if let Some(o) = client.outstanding.as_mut().filter(|o| o.parked) {
                o.parked = false;
                self.send_outstanding(c);
            }
        }
        let client = &mut self.clients[c];
        let s = client.session.as_mut().expect("a session client");
        // As the real client: a keep-alive when nothing went out for a third of the TTL.
        if has_session && now >= s.last_sent_ms + workload.ttl_ms / 3 {
            s.last_sent_ms = now;
            let node = client.target;
            self.transmit(Endpoint::Client(c), Endpoint::Node(node), || {
                Event::KeepAlive { client: c, node }
            });
        }
    }

    /// Sends a session client's next call.
    fn issue(&mut self, c: usize, target: concoord_objects::Target, method: &str, args: Vec<u8>) {
        let now = self.now_ms;
        let client = &mut self.clients[c];
        client.issued += 1;
        client.outstanding = Some(Outstanding {
            id: CommandId::new(client.id, client.issued),
            target,
            method: method.to_string(),
            args,
            op: None,
            parked: false,
            first_sent_ms: now,
            last_sent_ms: now,
        });
        self.send_outstanding(c);
    }

    /// A session client's call was answered: its next phase.
    fn session_answered(&mut self, c: usize, reply: &Reply) {
        let now = self.now_ms;
        let hold_ms_max = self.config.sessions.as_ref().map_or(0, |w| w.hold_ms_max);
        let s = self.clients[c].session.as_mut().expect("a session client");
        let value = reply.as_ref().ok().map(|bytes| decode_reply(bytes));
        let expired = matches!(reply, Err(e) if e.kind == SESSION_EXPIRED_KIND);
        s.phase = match (s.phase.clone(), value) {
            (_, None) if expired => SessionPhase::Expired,
            (SessionPhase::CreatingSemaphore, Some(_)) => {
                self.semaphore_ready = true;
                SessionPhase::Opening
            }
            (SessionPhase::Opening, Some(_)) => SessionPhase::Idle,
            (SessionPhase::Acquiring(object), Some(v)) if v.as_u64().is_some() => {
                let token = v.as_u64().expect("matched above");
                s.grants.push((object.clone(), token));
                SessionPhase::Holding {
                    object,
                    token,
                    until_ms: now + self.rng.below(hold_ms_max + 1),
                }
            }
            (SessionPhase::Releasing(_), Some(_)) => {
                s.rounds_left -= 1;
                SessionPhase::Idle
            }
            (phase, _) => {
                s.unexpected
                    .push(format!("{phase:?} was answered {reply:?}"));
                SessionPhase::Done
            }
        };
    }

    fn send_outstanding(&mut self, c: usize) {
        let now = self.now_ms;
        let client = &mut self.clients[c];
        let Some(o) = &mut client.outstanding else {
            return;
        };
        o.last_sent_ms = now;
        let command = Command::Call {
            id: o.id,
            target: o.target.clone(),
            method: o.method.clone(),
            args: o.args.clone(),
            ack_below: o.id.seq,
        };
        if let Some(s) = &mut client.session {
            s.last_sent_ms = now;
        }
        let node = client.target;
        self.transmit(Endpoint::Client(c), Endpoint::Node(node), || {
            Event::Request {
                client: c,
                node,
                command: command.clone(),
            }
        });
    }

    fn client_response(&mut self, c: usize, node: usize, id: CommandId, answer: Answer) {
        let now = self.now_ms;
        let nodes = self.nodes.len();
        let client = &mut self.clients[c];
        let Some(o) = client.outstanding.clone() else {
            return;
        };
        if o.id != id {
            return; // a late duplicate of an earlier reply
        }
        match answer {
            Answer::Reply(reply) => {
                client.acked += 1;
                if client.session.is_none() && o.method == self.config.method {
                    client.acked_writes += 1;
                }
                client.outstanding = None;
                if let Some(op) = o.op {
                    self.ops[op].completed = Some((now, reply.clone()));
                }
                if self.clients[c].session.is_some() {
                    // The answer came over a connection that works: stay on it.
                    if self.clients[c].pinned.is_none() {
                        self.clients[c].target = node;
                    }
                    self.session_answered(c, &reply);
                }
                self.deliveries.push(Delivery {
                    at_ms: now,
                    client: c,
                    node,
                    id,
                    first_sent_ms: o.first_sent_ms,
                    reply,
                });
            }
            Answer::Parked => {
                if let Some(o) = client.outstanding.as_mut() {
                    o.parked = true;
                }
            }
            Answer::Redirect(hint) => {
                if client.pinned.is_some() {
                    return;
                }
                let hinted = hint.and_then(|h| self.nodes.iter().position(|n| n.id == h));
                let next = hinted.unwrap_or((client.target + 1) % nodes);
                if next != client.target {
                    client.target = next;
                    if hinted.is_some() {
                        self.send_outstanding(c);
                    } else if let Some(o) = &mut client.outstanding {
                        // Nobody knows a leader yet: try the next node on the
                        // next tick, as the real client backs off (with zero
                        // network delay, resending at once never lets time pass).
                        o.last_sent_ms = now.saturating_sub(self.config.client_timeout_ms);
                    }
                }
            }
        }
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

    /// The decided log seen so far, replayed command by command on an
    /// observer replica up to the slot live replicas executed: each command
    /// with what it answered and the named objects' states after it. Noops
    /// are left out. Fails if a slot was seen decided twice differently or
    /// not at all, if a batch's commands answer differently alone than
    /// together, or if the observer ends in another state than a live
    /// replica that executed as far.
    pub fn replicated_order(&self) -> Result<Vec<Executed>, String> {
        if let Some(slot) = self.decided_conflicts.first() {
            return Err(format!(
                "slot {slot} was decided with two different batches"
            ));
        }
        let upto = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive)
            .map(|i| self.nodes[i].replica.executed())
            .max()
            .unwrap_or(0);
        let mut base = fresh_replica(
            &self.config,
            OBSERVER,
            ConfigHistory::genesis(members(self.config.nodes)),
        );
        let mut order = Vec::new();
        for slot in 0..upto {
            let batch = self.decided.get(&slot).ok_or_else(|| {
                format!("slot {slot} was executed but its decision was never seen")
            })?;
            if batch.iter().all(|c| *c == Command::Noop) {
                base.on_decision(
                    Decision {
                        slot,
                        batch: batch.clone(),
                    },
                    &mut Effects::default(),
                );
                continue;
            }
            // Each command's own effects: run the batch's prefixes on copies,
            // the whole batch on the observer itself.
            let mut before: Vec<(CommandId, Reply)> = Vec::new();
            for k in 1..=batch.len() {
                let mut fx = Effects::default();
                let after = if k == batch.len() {
                    base.on_decision(
                        Decision {
                            slot,
                            batch: batch.clone(),
                        },
                        &mut fx,
                    );
                    base.snapshot()
                } else {
                    let mut copy = self.copy_replica(&base)?;
                    let prefix = Arc::new(batch[..k].to_vec());
                    copy.on_decision(
                        Decision {
                            slot,
                            batch: prefix,
                        },
                        &mut fx,
                    );
                    copy.snapshot()
                };
                if !fx.replies.starts_with(&before) {
                    return Err(format!(
                        "slot {slot}: its first {} command(s) answer differently alone than with the next",
                        k - 1
                    ));
                }
                let command = batch[k - 1].clone();
                if command != Command::Noop {
                    order.push(Executed {
                        slot,
                        command,
                        replies: fx.replies[before.len()..].to_vec(),
                        named: after
                            .store
                            .named
                            .into_iter()
                            .map(|(name, type_name, state)| (name, type_name, state.0))
                            .collect(),
                    });
                }
                before = fx.replies;
            }
        }
        if base.executed() != upto {
            return Err(format!(
                "the observer executed to slot {}, not {upto}",
                base.executed()
            ));
        }
        let mine = base.snapshot();
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.alive || node.replica.executed() != upto {
                continue;
            }
            let theirs = node.replica.snapshot();
            let same = mine.object_state == theirs.object_state
                && mine.store == theirs.store
                && mine.clients == theirs.clients
                && mine.sessions == theirs.sessions
                && mine.expired == theirs.expired;
            if !same {
                return Err(format!(
                    "the order replayed to slot {upto} ends in another state than node {i}'s"
                ));
            }
        }
        Ok(order)
    }

    /// A copy of `of` made the way a lagging replica catches up: by snapshot.
    fn copy_replica(&self, of: &Replica) -> Result<Replica, String> {
        let object = concoord_objects::builtin(&self.config.object)
            .expect("the simulated object is a built-in");
        let limits = of.snapshot().store.limits;
        let mut copy = Replica::joining(OBSERVER, object, Vec::new())
            .with_types(Arc::new(Types::builtins()), limits);
        let mut fx = Effects::default();
        copy.handle(
            OBSERVER,
            PeerMsg::Snapshot(Box::new(of.snapshot())),
            &mut fx,
        );
        if !copy.has_state() || copy.executed() != of.executed() {
            return Err(format!(
                "a snapshot at slot {} did not install on a fresh replica",
                of.executed()
            ));
        }
        Ok(copy)
    }

    // ----- faults -----

    /// Stops a client for good, whatever it was doing: it never sends again,
    /// so its session is left to expire.
    pub fn crash_client(&mut self, c: usize) {
        self.clients[c].crashed = true;
    }

    /// Cuts a client off from every node until [`Sim::heal`].
    pub fn isolate_client(&mut self, c: usize) {
        for n in 0..self.nodes.len() {
            self.block(Endpoint::Client(c), Endpoint::Node(n));
        }
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
        if let (Some(disk), Some(durability)) =
            (self.nodes[node].disk.as_mut(), self.config.durable.as_ref())
        {
            disk.crash(&mut self.rng, durability);
        }
    }

    /// Restarts a crashed durable node from its disk, through the real
    /// recovery code (`recover_from`, `roles_from`). Refused, and the node
    /// stays down, when recovery finds damage, as the real node refuses to
    /// start. A restart that forgot a promise or an accepted value the node
    /// had acknowledged is noted in [`Sim::durability_violations`].
    pub fn restart(&mut self, node: usize) -> Result<(), String> {
        let durability = self
            .config
            .durable
            .clone()
            .expect("only durable nodes restart with their state");
        assert!(!self.nodes[node].alive, "restart a crashed node");
        let object = concoord_objects::builtin(&self.config.object)
            .expect("the simulated object is a built-in");
        let options = crate::node::NodeOptions {
            leader: self.config.leader.clone(),
            seed: self.rng.next_u64(),
            limits: sim_limits(&self.config),
            ..crate::node::NodeOptions::default()
        };
        let n = &mut self.nodes[node];
        let disk = n.disk.as_mut().expect("a durable node");
        let recovered = disk
            .recover(node, durability.broken_trust_damage)
            .and_then(|recovered| {
                let promised = recovered.promised;
                let snapshot_slot = recovered.snapshot_slot();
                if promised < n.acked_promise {
                    self.durability_violations.push(format!(
                        "node {node} restarted promising {promised}, below the {} it acknowledged",
                        n.acked_promise
                    ));
                }
                for (slot, ballot) in &n.acked_accepts {
                    let kept = recovered.accepted.get(slot).map(|(b, _)| *b);
                    if *slot >= snapshot_slot && !kept.is_some_and(|b| b >= *ballot) {
                        self.durability_violations.push(format!(
                            "node {node} restarted with slot {slot} accepted at {kept:?}, though it acknowledged accepting it at {ballot}"
                        ));
                    }
                }
                crate::storage::open::roles_from(
                    recovered,
                    &SimDisk::root(node),
                    object,
                    &options,
                )
            });
        let roles = match recovered {
            Ok(roles) => roles,
            Err(e) => {
                n.refused = Some(e.to_string());
                return Err(e.to_string());
            }
        };
        disk.new_segment(roles.promised);
        n.id = roles.me.id;
        n.acceptor = roles.acceptor.journaled();
        n.leader = roles.leader;
        n.replica = roles.replica;
        n.joining = roles.needs_join;
        self.start_incarnation(node);
        Ok(())
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

    /// Cuts `side` off from every other node and from every client not pinned to it.
    pub fn partition(&mut self, side: &[usize]) {
        for &a in side {
            for b in 0..self.nodes.len() {
                if !side.contains(&b) {
                    self.block(Endpoint::Node(a), Endpoint::Node(b));
                }
            }
            let outside: Vec<usize> = (0..self.clients.len())
                .filter(|c| !self.clients[*c].pinned.is_some_and(|p| side.contains(&p)))
                .collect();
            for c in outside {
                self.block(Endpoint::Node(a), Endpoint::Client(c));
            }
        }
    }

    /// One-way: messages from every other node to `node` are lost, while
    /// its own still arrive (clients are not touched).
    pub fn deafen(&mut self, node: usize) {
        for b in 0..self.nodes.len() {
            if b != node {
                self.net
                    .blocked
                    .insert((Endpoint::Node(b), Endpoint::Node(node)));
            }
        }
    }

    fn block(&mut self, a: Endpoint, b: Endpoint) {
        self.net.blocked.insert((a, b));
        self.net.blocked.insert((b, a));
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.net.blocked.clear();
    }

    /// Whether `node` can reach a majority of the nodes (itself included).
    pub fn in_majority(&self, node: usize) -> bool {
        let reachable = (0..self.nodes.len())
            .filter(|&b| {
                self.nodes[b].alive
                    && !self
                        .net
                        .blocked
                        .contains(&(Endpoint::Node(node), Endpoint::Node(b)))
            })
            .count();
        reachable > self.nodes.len() / 2
    }

    pub fn trace(&self, node: usize) -> &ReplicaTrace {
        self.nodes[node]
            .replica
            .trace
            .as_ref()
            .expect("simulated replicas trace")
    }
}
