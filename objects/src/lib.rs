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
mod command;
mod counter;
mod error;
mod object;
mod registry;
mod value;

pub use args::{encode_args, encode_value, Args};
pub use command::{ClientId, CommandId};
pub use counter::Counter;
pub use error::ObjectError;
pub use object::{
    reply, CallContext, Hosted, Outcome, ReplicatedObject, Reply, StateMachine, INIT_METHOD,
};
pub use registry::{builtin, builtin_names};
pub use value::Value;

pub use rmpv;
