//! concoord's evidence tools, a library of their own as Jepsen's Knossos and
//! Porcupine are: [`history`] records what clients saw (calls, their
//! intervals and outcomes), and the checkers judge it.
//!
//! Checkers for recorded [histories](crate::history): linearizability of a
//! single replicated object against a sequential [`Model`]
//! ([`linearizability`]), mutual exclusion of Lock / RLock / Semaphore
//! histories ([`mutex`]), and exact checks of a replicated order of grants,
//! releases and session ends ([`order`]).
//!
//! ```
//! use concoord_check::{self as check, linearizability::Counter};
//! use concoord_check::history::{History, Operation};
//! let h = History::from_operations(vec![
//!     Operation::ok("a", "increment", vec![], (), 0, 10),
//!     Operation::ok("b", "getvalue", vec![], 1, 5, 20),
//! ]);
//! assert!(check::linearizability::check(&Counter::default(), &h, &Default::default()).is_ok());
//! let report = check::mutex::check(check::mutex::MutexKind::Lock, &h);
//! assert!(report.is_ok());
//! ```

pub mod history;
pub mod linearizability;
pub mod mutex;
pub mod order;

pub use linearizability::{
    check as check_linearizable, check_object, check_operations, CheckResult, Illegal, Model,
    Options, Values,
};
pub use mutex::{check as check_mutex, MutexKind, MutexReport, MutexViolation};

#[cfg(test)]
mod tests;
