//! concoord's consensus and networking: Multi-Paxos after "Paxos Made
//! Moderately Complex", as plain protocol structs ([`Acceptor`], [`Leader`],
//! [`Replica`]: messages in, [`Effects`] out) with thin actix actors around them.

pub mod acceptor;
pub mod ballot;
pub mod client;
pub mod config;
pub mod leader;
pub mod memnet;
pub mod message;
pub mod node;
pub mod replica;
pub mod sim;
pub mod tcp;
pub mod wire;

pub use acceptor::Acceptor;
pub use ballot::{Ballot, NodeId, Slot};
pub use config::{ConfigHistory, Member, WINDOW_SLOTS};
pub use leader::{Leader, LeaderConfig, LeaderState, NotAccepted};
pub use message::{Batch, Command, Effects, PeerMsg};
pub use replica::Replica;
