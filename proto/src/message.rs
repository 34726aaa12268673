//! The messages of the protocol, one type per Paxos phase, and the commands
//! the log orders.

use crate::config::{ConfigHistory, Member};
use crate::{Ballot, NodeId, Slot};
use bytes::Bytes;
pub use concoord_objects::Target;
use concoord_objects::{ClientId, CommandId, Reply, StoreSnapshot};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

/// The error kind a call gets when its cancel was ordered before it.
pub const CANCELLED_KIND: &str = "Cancelled";
/// The error kind of a removal that names no member of the group.
pub const NO_SUCH_MEMBER_KIND: &str = "NoSuchMember";
/// The error kind of a removal of the group's only member.
pub const LAST_MEMBER_KIND: &str = "LastMember";

/// One entry of a batch: what clients and operators ask the group to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// A method call. `ack_below`: the client has every reply below this
    /// sequence number, so the client table may forget them.
    Call {
        id: CommandId,
        /// Which object: the default one, or a named one (and its type).
        target: Target,
        method: String,
        #[serde(with = "serde_bytes_vec")]
        args: Vec<u8>,
        ack_below: u64,
    },
    /// The caller's deadline passed: cancel `id` if it is still parked.
    Cancel { id: CommandId },
    /// Add a member (replacing any old member at the same address).
    AddMember(Member),
    /// Remove a member.
    RemoveMember(NodeId),
    /// Fills a slot a new leader found empty.
    Noop,
    /// The leader heard nothing from this client's session within its TTL:
    /// the session ends here, the same on every replica, and what it held
    /// is released.
    ExpireSession { client: ClientId },
}

impl Command {
    /// The command id whose caller waits for this command's outcome.
    pub fn id(&self) -> Option<CommandId> {
        match self {
            Command::Call { id, .. } | Command::Cancel { id } => Some(*id),
            _ => None,
        }
    }

    /// Rough wire size, for bounding batches.
    pub fn size_hint(&self) -> usize {
        match self {
            Command::Call {
                target,
                method,
                args,
                ..
            } => 32 + target.name.len() + target.type_name.len() + method.len() + args.len(),
            Command::AddMember(m) => 16 + m.addr.len(),
            _ => 16,
        }
    }
}

/// The commands decided in one slot, shared between the roles of a node.
pub type Batch = Arc<Commands>;

/// A slot's commands and, once first asked for, their MessagePack encoding
/// (the array a `Vec<Command>` encodes to). A leader sends one batch to
/// every follower and a durable acceptor logs it: all of them reuse one
/// encoding instead of encoding the commands again each. On the wire it is
/// a bin holding that encoding; a decoded batch keeps the bytes it came in.
/// Equality and `Debug` see only the commands.
#[derive(Clone, Default)]
pub struct Commands {
    commands: Vec<Command>,
    encoded: OnceLock<Bytes>,
}

impl Commands {
    /// The MessagePack encoding of the commands, made on the first call.
    pub fn encoded(&self) -> &Bytes {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        self.encoded.get_or_init(|| {
            // Encoded in a buffer each thread reuses, then copied out at its
            // exact size: a Vec grown while encoding reallocates several
            // times, and the profile showed those large, long-lived blocks
            // faulting in fresh pages.
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                scratch.clear();
                rmp_serde::encode::write(&mut *scratch, &self.commands)
                    .expect("commands serialize");
                let bytes = Bytes::copy_from_slice(&scratch);
                // A rare huge batch does not pin its size in every thread.
                scratch.clear();
                scratch.shrink_to(1 << 20);
                bytes
            })
        })
    }
}

impl From<Vec<Command>> for Commands {
    fn from(commands: Vec<Command>) -> Self {
        Commands {
            commands,
            encoded: OnceLock::new(),
        }
    }
}

impl std::ops::Deref for Commands {
    type Target = Vec<Command>;
    fn deref(&self) -> &Vec<Command> {
        &self.commands
    }
}

impl PartialEq for Commands {
    fn eq(&self, other: &Self) -> bool {
        self.commands == other.commands
    }
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.commands.fmt(f)
    }
}

impl Serialize for Commands {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.encoded())
    }
}

impl<'de> Deserialize<'de> for Commands {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Commands;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a bin holding encoded commands")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Commands, E> {
                let commands = rmp_serde::from_slice(v).map_err(E::custom)?;
                Ok(Commands {
                    commands,
                    encoded: OnceLock::from(Bytes::copy_from_slice(v)),
                })
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Commands, E> {
                let commands = rmp_serde::from_slice(&v).map_err(E::custom)?;
                Ok(Commands {
                    commands,
                    encoded: OnceLock::from(Bytes::from(v)),
                })
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// A [`Batch`] as the plain array of its commands (the write-ahead log's
/// format, older than the wire's bin).
pub mod batch_as_seq {
    use super::{Batch, Command};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(batch: &Batch, s: S) -> Result<S::Ok, S::Error> {
        batch[..].serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Batch, D::Error> {
        Ok(Arc::new(Vec::<Command>::deserialize(d)?.into()))
    }
}

/// Phase 1a: leader → acceptors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prepare {
    pub ballot: Ballot,
    /// Report accepted values from this slot on.
    pub from_slot: Slot,
}

/// Phase 1b: acceptor → leader. `ballot` is the acceptor's promise: if it is
/// not the prepared ballot the leader has been preempted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Promise {
    pub ballot: Ballot,
    pub accepted: Vec<(Slot, Ballot, Batch)>,
    /// Slots below this were decided and executed on the acceptor's node and
    /// forgotten by the acceptor.
    pub trimmed_below: Slot,
}

/// Phase 2a: leader → acceptors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accept {
    pub ballot: Ballot,
    pub slot: Slot,
    pub batch: Batch,
}

/// Phase 2b: acceptor → leader; a ballot above the leader's preempts it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    pub ballot: Ballot,
    pub slot: Slot,
}

/// Chosen values, for an acceptor that accepted them at `ballot` (or above):
/// it hands its copies to its node's replica, so a batch crosses the network
/// once. The leader holds these back until its next message to that acceptor,
/// so telling a follower costs no wake-up of its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    pub ballot: Ballot,
    pub slots: Vec<Slot>,
}

/// A chosen value: leader → replicas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub slot: Slot,
    pub batch: Batch,
}

/// The active leader is alive: leader → every member's leader.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub ballot: Ballot,
    /// The leader's replica has executed every slot below this.
    pub executed: Slot,
}

/// A follower took the leader's heartbeat: the leader hears it is still
/// reachable (check-quorum: a leader that hears no majority steps down).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    pub ballot: Ballot,
}

/// Before it raises its ballot, a member that hears no leader asks whether
/// it could win (Raft's PreVote): the ballot it would prepare with, which
/// nobody adopts. Members that heard a live leader within the election
/// timeout refuse, so a member returning from a partition or a pause never
/// deposes a leader the others still hear.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreVote {
    pub ballot: Ballot,
}

/// The answer to a [`PreVote`] for `ballot`. `executed`: the answering
/// node's replica has executed every slot below this (a lagging asker
/// catches up from it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreVoteReply {
    pub ballot: Ballot,
    pub granted: bool,
    pub executed: Slot,
}

/// A replica's request for what it missed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CatchUpRequest {
    pub from_slot: Slot,
    /// A newcomer has no state at all and needs a snapshot first.
    pub needs_snapshot: bool,
}

/// Consecutive decisions for a lagging replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CatchUp {
    pub decisions: Vec<(Slot, Batch)>,
}

/// One client's entry in the replicated client table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub ack_below: u64,
    pub results: std::collections::BTreeMap<u64, CommandState>,
    /// Every parked command's call: the object it waits in (to route its
    /// cancel and answer it when the object goes), and, for an object that
    /// answers by running calls again, the method and arguments.
    pub parked_calls: std::collections::BTreeMap<u64, ParkedCall>,
}

/// A parked call kept to run again when it is woken or its deadline passes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParkedCall {
    /// The object it waits in ("" for the default one).
    pub object: String,
    pub method: String,
    #[serde(with = "serde_bytes_vec")]
    pub args: Vec<u8>,
}

/// The layout of [`Snapshot`]: a replica refuses a snapshot of a format it
/// does not know, with an error that names both.
/// 1: the first (object, client table, configs); 2: client records carry
/// parked calls, the snapshot carries named objects and limits; 3: the group;
/// 4: the ids of removed members.
pub const SNAPSHOT_FORMAT: u32 = 4;
/// The oldest [`Snapshot`] format still installed: a format-3 snapshot reads
/// as one with no removed members (the guard against re-adding a removed
/// member then covers only removals after it).
pub const OLDEST_SNAPSHOT_FORMAT: u32 = 3;

/// Where one command stands in the client table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CommandState {
    Parked,
    Done(Reply),
}

/// The whole replicated state at a slot: what a newcomer or a lagging replica
/// installs before applying the decisions after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_FORMAT`] of the sender.
    pub format: u32,
    /// Every slot below this is reflected in the state.
    pub executed: Slot,
    pub object_name: String,
    #[serde(with = "serde_bytes_vec")]
    pub object_state: Vec<u8>,
    pub clients: Vec<(u64, ClientRecord)>,
    pub configs: ConfigHistory,
    /// The named objects and the group's limits.
    pub store: StoreSnapshot,
    /// Live sessions and their TTL (ms), and sessions that expired recently
    /// (their calls get SessionExpired), with the slot they ended in.
    pub sessions: Vec<(ClientId, u64)>,
    pub expired: Vec<(ClientId, Slot)>,
    /// The group: the id of its founding member (a data dir of another
    /// group is refused).
    #[serde(default)]
    pub group: u64,
    /// Members removed from the group: a join that arrives for one of them
    /// after its removal (sent before it learned of it) is ignored.
    #[serde(default)]
    pub removed: Vec<NodeId>,
}

/// One piece of a [`Snapshot`] too large for one frame: the MessagePack
/// bytes of the snapshot, cut into `total` pieces sent in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The snapshot's slot: pieces of different snapshots never mix.
    pub executed: Slot,
    pub index: u32,
    pub total: u32,
    #[serde(with = "serde_bytes_vec")]
    pub bytes: Vec<u8>,
}

/// Everything nodes say to each other, addressed to one role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerMsg {
    Prepare(Prepare),
    Accept(Accept),
    Promise(Promise),
    Accepted(Accepted),
    Heartbeat(Heartbeat),
    PreVote(PreVote),
    PreVoteReply(PreVoteReply),
    Decision(Decision),
    Commit(Commit),
    CatchUpRequest(CatchUpRequest),
    CatchUp(CatchUp),
    Snapshot(Box<Snapshot>),
    SnapshotChunk(SnapshotChunk),
    /// Replica → its own node's leader and acceptor: progress and membership.
    Progress(Progress),
    /// Leader → its own replica: someone has executed up to `executed`.
    CommitPoint {
        source: NodeId,
        executed: Slot,
    },
    /// Leader → every member's acceptor (its own too): does it still lead?
    ReadIndex(ReadIndex),
    /// Acceptor → leader: the answer to a [`ReadIndex`].
    ReadIndexAck(ReadIndexAck),
    /// Leader → its own replica: reads a round confirmed, each with the slot
    /// the replica must have executed before it runs the read.
    ReadAt(ReadAt),
    /// Follower → the leader whose [`Heartbeat`] it took.
    HeartbeatAck(HeartbeatAck),
    /// A removed member → each member of the membership that replaced it:
    /// has it executed every slot below `upto`? The removed member serves
    /// until a majority have: it may hold the only copy of the decisions
    /// that put its removal in force.
    Leaving {
        upto: Slot,
    },
    /// The answer to [`PeerMsg::Leaving`]: every slot below `executed` is
    /// executed here (a newcomer without the group's state needs a snapshot).
    Learned {
        executed: Slot,
        needs_snapshot: bool,
    },
    /// A follower's leader role → the leader: a read index for the reads
    /// that reached the follower before this was sent (etcd's follower
    /// ReadIndex). The follower serves them itself, so the leader carries
    /// one small message per batch of them, not the reads.
    ReadIndexAsk {
        ask: u64,
    },
    /// The leader → the follower that asked: a round of the leader's read
    /// index begun after the ask confirmed it still led, so every write
    /// acknowledged before the ask is below `index`.
    ReadIndexAnswer {
        ask: u64,
        index: Slot,
    },
    /// A follower → the leader: these clients, connected to the follower,
    /// were heard from (a keep-alive or a read), so their sessions live.
    SessionsHeard {
        clients: Vec<concoord_objects::ClientId>,
    },
}

/// One round of a leader's read index (etcd's ReadIndex): the leader asks
/// every member's acceptor for its promise. Answers from a majority, none
/// above the leader's ballot, show that no other leader had been elected
/// when they were given, so every write acknowledged before the round
/// began is below the commit point the leader saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadIndex {
    pub ballot: Ballot,
    pub round: u64,
}

/// An acceptor's answer to [`ReadIndex`]: the ballot it has promised now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadIndexAck {
    pub promised: Ballot,
    pub round: u64,
}

/// Reads a read-index round confirmed: each runs on the replica once it
/// has executed every slot below its index, without entering the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadAt {
    pub reads: Vec<(Slot, Command)>,
}

/// What the local replica tells its node's other roles after executing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub executed: Slot,
    pub configs: ConfigHistory,
    /// Sessions opened (with their TTL in ms) and ended since the last
    /// Progress; with `all_sessions`, the whole table (after a snapshot).
    pub sessions_opened: Vec<(ClientId, u64)>,
    pub sessions_ended: Vec<ClientId>,
    pub all_sessions: bool,
}

/// The reserved method a client runtime opens (or renews the TTL of) its
/// session with: `concoord_open_session(ttl_ms)`.
pub const OPEN_SESSION_METHOD: &str = "concoord_open_session";
/// The error kind of a call on a session that expired.
pub const SESSION_EXPIRED_KIND: &str = "SessionExpired";

/// The role a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Acceptor,
    Leader,
    Replica,
}

impl PeerMsg {
    /// The roles that handle this message on the receiving node.
    pub fn roles(&self) -> &'static [Role] {
        match self {
            PeerMsg::Prepare(_) | PeerMsg::Accept(_) | PeerMsg::Commit(_) => &[Role::Acceptor],
            PeerMsg::Promise(_)
            | PeerMsg::Accepted(_)
            | PeerMsg::Heartbeat(_)
            | PeerMsg::PreVote(_)
            | PeerMsg::PreVoteReply(_)
            | PeerMsg::ReadIndexAck(_)
            | PeerMsg::ReadIndexAsk { .. }
            | PeerMsg::ReadIndexAnswer { .. }
            | PeerMsg::SessionsHeard { .. }
            | PeerMsg::HeartbeatAck(_) => &[Role::Leader],
            PeerMsg::ReadIndex(_) => &[Role::Acceptor],
            PeerMsg::Decision(_)
            | PeerMsg::CatchUpRequest(_)
            | PeerMsg::CatchUp(_)
            | PeerMsg::Snapshot(_)
            | PeerMsg::SnapshotChunk(_)
            | PeerMsg::CommitPoint { .. }
            | PeerMsg::ReadAt(_)
            | PeerMsg::Leaving { .. }
            | PeerMsg::Learned { .. } => &[Role::Replica],
            PeerMsg::Progress(_) => &[Role::Leader, Role::Acceptor],
        }
    }
}

/// Byte vectors as MessagePack bin, not arrays of integers.
pub mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// What a role asks its node to do.
#[derive(Debug, Default)]
pub struct Effects {
    /// Messages for nodes (possibly this one).
    pub sends: Vec<(NodeId, PeerMsg)>,
    /// Outcomes of commands, for whichever connection waits for them.
    pub replies: Vec<(CommandId, Reply)>,
    /// Commands now waiting in an object's queue (their callers should stop resending).
    pub parked: Vec<CommandId>,
    /// Calls sent as reads that cannot be served without the log (the
    /// method is not read-only, or the object does not exist yet): the node
    /// submits them to its leader as ordinary commands.
    pub to_log: Vec<Command>,
}

impl Effects {
    pub fn send(&mut self, to: NodeId, msg: PeerMsg) {
        self.sends.push((to, msg));
    }

    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.replies.is_empty() && self.to_log.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_frame, encode_frame, Frame, FrameCodec};
    use tokio_util::codec::{Decoder, Encoder};

    fn batch() -> Batch {
        let call = |seq| Command::Call {
            id: CommandId { client: 5, seq },
            target: Target::default(),
            method: "add".into(),
            args: vec![1, 2, 3],
            ack_below: seq,
        };
        Arc::new(vec![call(1), Command::Noop, call(2)].into())
    }

    fn accept_to(to: NodeId, batch: &Batch) -> Frame {
        Frame::Peer {
            from: 1,
            to,
            msg: PeerMsg::Accept(Accept {
                ballot: Ballot::new(3, 1),
                slot: 9,
                batch: batch.clone(),
            }),
        }
    }

    #[test]
    fn a_batch_is_encoded_once_for_every_link() {
        let batch = batch();
        let mut codec = FrameCodec::default();
        let mut wire = bytes::BytesMut::new();
        codec.encode(accept_to(2, &batch), &mut wire).unwrap();
        let cached = batch.encoded().clone();
        codec.encode(accept_to(3, &batch), &mut wire).unwrap();
        // The second link wrote the same buffer, not a new encoding.
        assert_eq!(batch.encoded().as_ptr(), cached.as_ptr());
        assert_eq!(&cached[..], &rmp_serde::to_vec(&batch[..]).unwrap()[..]);
        for to in [2, 3] {
            let frame = codec.decode(&mut wire).unwrap().unwrap();
            assert_eq!(frame, accept_to(to, &batch));
        }
        assert!(wire.is_empty());
    }

    #[test]
    fn a_decoded_accept_equals_the_original_and_keeps_its_encoding() {
        let batch = batch();
        let frame = accept_to(2, &batch);
        let bytes = encode_frame(&frame);
        let decoded = decode_frame(&bytes).unwrap();
        assert_eq!(decoded, frame);
        let Frame::Peer {
            msg: PeerMsg::Accept(accept),
            ..
        } = decoded
        else {
            panic!("not an accept");
        };
        assert_eq!(format!("{:?}", accept.batch), format!("{:?}", batch));
        assert_eq!(accept.batch.encoded(), batch.encoded());
        // Encoded again from its kept bytes, it is the same frame.
        assert_eq!(encode_frame(&accept_to(2, &accept.batch)), bytes);
    }

    #[test]
    fn equality_ignores_whether_the_encoding_was_made() {
        let (a, b) = (batch(), batch());
        a.encoded();
        assert_eq!(a, b);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn a_bin_that_is_not_commands_is_refused() {
        // bin 8 of one byte, 0xc1: a marker MessagePack never uses.
        assert!(rmp_serde::from_slice::<Commands>(&[0xc4, 1, 0xc1]).is_err());
        let not_bin = rmp_serde::to_vec(&Vec::<Command>::new()).unwrap();
        assert!(rmp_serde::from_slice::<Commands>(&not_bin).is_err());
    }
}
