//! The TenCounter of ConCoord's walk-through: an ordinary type that counts in
//! steps of ten. `#[concoord::object]` makes it a replicated object; nothing
//! else in this file knows about replication.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A counter that increments and decrements by ten.
///
/// `Default` is what replicas build when they go live (ConCoord's `__init__`
/// called without arguments); its state must serialize for snapshots.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TenCounter {
    value: i64,
}

#[concoord::object]
impl TenCounter {
    /// ConCoord's `__init__(self, value=0)`: `concoord_init(value)` re-runs it
    /// on the replicated state.
    pub fn new(value: Option<i64>) -> Self {
        TenCounter {
            value: value.unwrap_or(0),
        }
    }

    pub fn decrement(&mut self) {
        // Wrapping: an overflow must not panic a replica.
        self.value = self.value.wrapping_sub(10);
    }

    pub fn increment(&mut self) {
        self.value = self.value.wrapping_add(10);
    }

    /// `&self`: a read-only method.
    pub fn getvalue(&self) -> i64 {
        self.value
    }
}

/// ConCoord's `__str__`.
impl fmt::Display for TenCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "The counter value is {}", self.value)
    }
}
