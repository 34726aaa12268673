//! concoord: turn an ordinary Rust type into a fault-tolerant replicated
//! object. A group of replicas keeps identical copies; clients call methods
//! through a proxy; Multi-Paxos orders every call.
//!
//! This crate is the facade: it re-exports the object model
//! ([`objects`]) and the consensus runtime ([`actors`]), and holds the
//! `concoord` command line.
//!
//! ```no_run
//! # async fn demo() -> Result<(), concoord::ClientError> {
//! let counter = concoord::Client::new("127.0.0.1:14000,127.0.0.1:14001", Default::default())?;
//! counter.call::<_, ()>("increment", ()).await?;
//! let value: i64 = counter.call("getvalue", ()).await?;
//! # Ok(()) }
//! ```

pub mod bench;
pub mod data;
pub mod json;
#[cfg(feature = "server")]
pub mod local;
pub mod netlog;
#[cfg(feature = "server")]
pub mod threading;

#[cfg(feature = "server")]
pub use concoord_actors as actors;
pub use concoord_client as client;
pub use concoord_objects as objects;
pub use concoord_proto as proto;

#[cfg(feature = "server")]
pub use concoord_actors::tcp::{start_replica, ReplicaOptions, RunningReplica, StartError};
pub use concoord_client::{BlockingClient, Client, ClientError, ClientOptions};
pub use concoord_objects::{
    builtin, Args, CallContext, CommandId, ObjectError, Outcome, ReplicatedObject,
};
#[cfg(feature = "server")]
pub use local::LocalReplica;
