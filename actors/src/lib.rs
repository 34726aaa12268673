//! concoord's consensus and networking: Multi-Paxos after "Paxos Made
//! Moderately Complex", as plain protocol structs ([`Acceptor`], [`Leader`],
//! [`Replica`]: messages in, [`Effects`] out) with thin actix actors around them.

pub use concoord_client as client;
pub use concoord_proto::{ballot, config, message, wire};
pub use concoord_proto::{
    Ballot, Batch, Command, ConfigHistory, Effects, Member, NodeId, PeerMsg, Slot, WINDOW_SLOTS,
};

pub mod acceptor;
mod id_hash;
pub mod leader;
pub mod memnet;
pub mod metrics;
pub mod node;
pub mod replica;
pub mod sim;
pub mod spin;
pub mod storage;
pub mod tcp;

pub use acceptor::Acceptor;
pub use leader::{Leader, LeaderConfig, LeaderState, NotAccepted};
pub use replica::Replica;
