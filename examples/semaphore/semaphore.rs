//! The Semaphore of the seed's "Synchronization & Threading" walk-through: a
//! user type that holds a semaphore from the threading library and passes
//! the calling command to it, so that a client that disconnects and
//! reconnects leaves the group in a safe state.
//!
//! ConCoord's Python:
//!
//! ```python
//! from concoord.threadingobject.dsemaphore import DSemaphore
//! class Semaphore:
//!     def __init__(self, count=1):
//!         self.semaphore = DSemaphore(count)
//!     def acquire(self, _concoord_command):
//!         return self.semaphore.acquire(_concoord_command)
//!     def release(self, _concoord_command):
//!         return self.semaphore.release(_concoord_command)
//!     def __str__(self):
//!         return str(self.semaphore)
//! ```

use concoord::sync::DSemaphore;
use concoord::{Blocking, CallContext, ObjectError};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Semaphore {
    semaphore: DSemaphore,
}

#[concoord::object]
impl Semaphore {
    /// `__init__(self, count=1)`; `concoord_init(count)` re-runs it.
    pub fn new(count: Option<i64>) -> Result<Self, ObjectError> {
        Ok(Semaphore {
            semaphore: DSemaphore::try_new(count.unwrap_or(1))?,
        })
    }

    /// `cmd` is ConCoord's `_concoord_command`: the semaphore parks the call
    /// under its id. The proxy leaves it out: `s.acquire(None)` waits as long
    /// as it takes, `s.acquire(Some(0.5))` at most half a second (false then).
    pub fn acquire(
        &mut self,
        cmd: &mut CallContext<'_>,
        timeout: Option<f64>,
    ) -> Result<Blocking<bool>, ObjectError> {
        self.semaphore.acquire(cmd, true, timeout)
    }

    pub fn release(&mut self, cmd: &mut CallContext<'_>) -> Result<(), ObjectError> {
        self.semaphore.release(cmd, 1)
    }
}

/// `__str__`: what `concoord_str` (the seed's `>>> s`) shows.
impl fmt::Display for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.semaphore.fmt(f)
    }
}
