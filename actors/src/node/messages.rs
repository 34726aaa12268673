//! The messages a node's actors take, and what they answer.

use super::*;

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
pub struct ConnectionKey(pub(crate) u64);

/// A peer message for one of the node's roles.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub from: NodeId,
    pub msg: PeerMsg,
}

/// A peer's link to this node closed: it died or restarts (the leader
/// stops counting on it for Accepts).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerLost(pub NodeId);

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
pub(crate) struct SendWhenDurable(pub(crate) Vec<(NodeId, PeerMsg)>);

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
