//! concoord's object model and built-in replicated objects.
//!
//! Everything here is a pure, deterministic state machine: no IO, no clocks,
//! no randomness, no hash-order iteration. The consensus layer (`concoord-actors`)
//! feeds each replica the same sequence of [`Call`]s, so every replica's copy
//! of an object moves through the same states.
//!
//! ```
//! use concoord_objects::{builtin, CallContext, CommandId, Outcome, encode_args};
//! let mut counter = builtin("Counter").expect("Counter is built in");
//! let mut wakes = Vec::new();
//! let mut ctx = CallContext::new(CommandId::new(1, 1), 0, &mut wakes);
//! counter.apply("increment", &encode_args(&[] as &[i64]), &mut ctx);
//! let mut ctx = CallContext::new(CommandId::new(1, 2), 1, &mut wakes);
//! let Outcome::Reply(Ok(bytes)) = counter.apply("getvalue", &encode_args(&[] as &[i64]), &mut ctx) else { panic!() };
//! assert_eq!(rmp_serde::from_slice::<i64>(&bytes).unwrap(), 1);
//! ```

mod args;
mod bank;
mod barrier;
mod binary_tree;
mod command;
mod condition;
mod counter;
mod election;
mod error;
mod event;
mod job_manager;
mod lock;
mod log;
mod membership;
mod mesh_membership;
mod nameserver_coord;
mod object;
mod queue;
mod registry;
mod rlock;
mod semaphore;
mod stack;
pub mod store;
pub mod sync;
#[cfg(test)]
mod testkit;
mod util;
mod value;
mod wait_queue;

pub use args::{encode_args, encode_value, Args};
pub use bank::Bank;
pub use barrier::Barrier;
pub use binary_tree::BinaryTree;
pub use command::{ClientId, CommandId};
pub use condition::Condition;
pub use counter::Counter;
pub use election::Election;
pub use error::ObjectError;
pub use event::Event;
pub use job_manager::JobManager;
pub use lock::Lock;
pub use log::Log;
pub use membership::Membership;
pub use mesh_membership::MeshMembership;
pub use nameserver_coord::NameserverCoord;
pub use object::{
    describe_state, reply, Blocking, CallContext, Hosted, Outcome, ReplicatedObject, Reply,
    RunMode, StateMachine, INIT_METHOD, STR_METHOD,
};
pub use queue::Queue;
pub use registry::{builtin, builtin_names};
pub use rlock::RLock;
pub use semaphore::{BoundedSemaphore, Semaphore};
pub use stack::Stack;
pub use store::{
    Limits, ObjectInfo, ObjectStore, StoreChange, StoreSnapshot, Target, Types, DELETED,
    DELETE_METHOD, LIMIT_EXCEEDED, NO_SUCH_OBJECT, WRONG_TYPE,
};
pub use util::STALE_TOKEN;
pub use value::Value;
pub use wait_queue::WaitQueue;

pub use rmpv;
