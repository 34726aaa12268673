//! The wire protocol: MessagePack frames inside tokio-util's length-delimited
//! codec, opened by a versioned [`Frame::Hello`] that carries the role and the
//! security token.

use crate::config::{Member, MemberRef};
use crate::message::PeerMsg;
use crate::{Ballot, NodeId, Slot};
use bytes::{BufMut, BytesMut};
use concoord_objects::{ClientId, CommandId, ObjectInfo, Reply, Target};
use serde::{Deserialize, Serialize};
use std::fmt;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Bumped on any incompatible change of [`Frame`] or of the peer messages
/// it carries (3: snapshots carry parked calls and a format number; 4: snapshots
/// carry the group; pre-vote, member removal, SessionExpired; 5: `Frame::Read`
/// and the read-index messages `ReadIndex`, `ReadIndexAck`, `ReadAt`;
/// 6: `HeartbeatAck`, for check-quorum; 7: a removed member is never added
/// back, so a group must not mix replicas that do and do not apply that rule;
/// 8: follower reads, `ReadIndexAsk`, `ReadIndexAnswer`, `SessionsHeard`;
/// a batch travels as a bin holding its commands' encoding).
pub const PROTOCOL_VERSION: u32 = 8;
/// Frames above this are refused, and the connection that sent them closed.
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// Who opens a connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HelloRole {
    Peer(Member),
    Client(ClientId),
}

/// One replica's view of itself and its group, for `concoord status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub id: NodeId,
    pub address: String,
    pub role: String,
    pub leader: Option<String>,
    pub ballot: Ballot,
    pub members: Vec<String>,
    pub next_slot: Slot,
    pub executed_slot: Slot,
    pub snapshot_slot: Slot,
    pub clients: usize,
    pub parked: usize,
    pub uptime_s: u64,
    pub object: String,
    /// Live client sessions.
    pub sessions: usize,
}

/// Everything that travels on a connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    Hello {
        version: u32,
        role: HelloRole,
        token: String,
    },
    /// The server took the hello; `members` are the group's addresses.
    Welcome {
        node: NodeId,
        members: Vec<String>,
    },
    /// The server refuses this connection or request; the kind says why.
    Refused {
        kind: String,
        message: String,
    },
    /// A protocol message for node `to` (a restarted replica has a new id and drops
    /// messages meant for its previous incarnation).
    Peer {
        from: NodeId,
        to: NodeId,
        msg: PeerMsg,
    },
    /// A method call (or `concoord_init`). The client has every reply below `ack_below`.
    Call {
        id: CommandId,
        target: Target,
        method: String,
        #[serde(with = "crate::message::serde_bytes_vec")]
        args: Vec<u8>,
        ack_below: u64,
    },
    /// The caller's deadline passed: cancel the parked call `id`.
    Cancel {
        id: CommandId,
    },
    /// The client's session is alive (sent when it has no calls to send);
    /// the leader answers with the same frame.
    KeepAlive,
    /// Answer to a keep-alive: the group ended this client's session (its
    /// locks and permits are released; its calls get SessionExpired).
    SessionExpired,
    Reply {
        id: CommandId,
        reply: Reply,
    },
    /// The call waits in the object's queue; its reply comes when it is woken.
    Parked {
        id: CommandId,
    },
    /// This replica does not lead; try `leader`, or any of `members`.
    Redirect {
        id: CommandId,
        leader: Option<String>,
        members: Vec<String>,
    },
    StatusRequest,
    Status(Box<StatusInfo>),
    /// Lists named objects in name order after `after`, at most `limit`.
    ObjectsRequest {
        after: String,
        limit: u32,
    },
    /// `more`: objects follow the last one listed.
    Objects {
        objects: Vec<ObjectInfo>,
        more: bool,
    },
    /// A new replica asks to be added to the group.
    Join(Member),
    /// The join was ordered; the group will send state.
    Joined {
        members: Vec<String>,
    },
    /// An operator asks the group to remove a member (`concoord admin
    /// remove`, or a replica leaving). A replica that does not lead answers
    /// `Redirect`.
    RemoveMember(MemberRef),
    /// The removal is decided: the member removed and the membership now;
    /// or why it was not (kinds `NoSuchMember`, `LastMember`, `Unavailable`).
    MemberRemoved {
        result: Result<(Member, Vec<String>), concoord_objects::ObjectError>,
    },
    /// An operator asks a durable replica to write a snapshot now
    /// (`concoord admin snapshot`).
    TakeSnapshot,
    /// The snapshot is on disk: the slot it was taken at; or why not (kind
    /// `NotDurable` for a replica without -w).
    SnapshotTaken {
        result: Result<u64, concoord_objects::ObjectError>,
    },
    /// A call the client wants served as a read. `stale: false` is a
    /// linearizable read, as a `Call` of a read-only method gets anyway;
    /// `stale: true` lets whichever replica receives it answer from its own
    /// state at once, which may be behind the group's. Either way a method
    /// that is not read-only (or an object that does not exist yet) goes
    /// through the log as a `Call` would. Answered by `Reply` or `Redirect`.
    Read {
        id: CommandId,
        target: Target,
        method: String,
        #[serde(with = "crate::message::serde_bytes_vec")]
        args: Vec<u8>,
        stale: bool,
    },
}

/// Why bytes from the network could not become a frame.
#[derive(Debug)]
pub enum WireError {
    Io(std::io::Error),
    FrameTooLarge { limit: usize },
    Malformed(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "connection error: {e}"),
            WireError::FrameTooLarge { limit } => {
                write!(f, "frame larger than the {limit}-byte limit")
            }
            WireError::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<std::io::Error> for WireError {
    fn from(e: std::io::Error) -> Self {
        let oversized = e.kind() == std::io::ErrorKind::InvalidData
            && e.get_ref()
                .is_some_and(|inner| inner.is::<tokio_util::codec::LengthDelimitedCodecError>());
        // LengthDelimitedCodec reports an oversized frame this way; other
        // invalid data (a TLS alert from below the codec) stays an IO error.
        if oversized {
            WireError::FrameTooLarge {
                limit: MAX_FRAME_BYTES,
            }
        } else {
            WireError::Io(e)
        }
    }
}

/// Encodes a frame's payload.
pub fn encode_frame(frame: &Frame) -> Vec<u8> {
    rmp_serde::to_vec(frame).expect("frames serialize into a Vec")
}

/// Decodes one frame's payload; never panics on hostile input.
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, WireError> {
    rmp_serde::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Length-delimited MessagePack frames.
pub struct FrameCodec {
    inner: LengthDelimitedCodec,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec {
            inner: LengthDelimitedCodec::builder()
                .max_frame_length(MAX_FRAME_BYTES)
                .new_codec(),
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        match self.inner.decode(src)? {
            Some(bytes) => decode_frame(&bytes).map(Some),
            None => Ok(None),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = WireError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), WireError> {
        // Straight into the output buffer behind a length prefix patched
        // afterwards (the inner codec's format: 4 bytes, big-endian), not
        // through a Vec of its own that would be copied in.
        let start = dst.len();
        dst.put_u32(0);
        rmp_serde::encode::write(&mut (&mut *dst).writer(), &frame)
            .expect("frames serialize into a buffer");
        let len = dst.len() - start - 4;
        if len > MAX_FRAME_BYTES {
            dst.truncate(start);
            // What the inner codec says of a frame too large to send.
            return Err(WireError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "frame size too big",
            )));
        }
        dst[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}
