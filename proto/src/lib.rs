//! concoord's protocol data, shared by replicas and clients: ballots,
//! membership, the Paxos messages and the wire format. Data and codecs only;
//! the consensus logic lives in `concoord-actors`, so a client build does not
//! compile it.

pub mod ballot;
pub mod config;
pub mod message;
pub mod wire;

pub use ballot::{Ballot, NodeId, Slot};
pub use config::{ConfigHistory, Member, WINDOW_SLOTS};
pub use message::{Batch, Command, Commands, Effects, PeerMsg};

/// A random non-zero id for a node or a client (never used inside objects).
pub fn fresh_id() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish() | 1
}
