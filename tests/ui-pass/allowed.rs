//! A false positive let through with a reason, and a struct whose fields pass.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A logical clock: part of the replicated state, not the machine's clock.
#[derive(Default, Serialize, Deserialize)]
pub struct Lamport(u64);

impl Lamport {
    fn now(&self) -> u64 {
        self.0
    }
}

#[concoord::object]
#[derive(Default, Serialize, Deserialize)]
pub struct Names {
    ids: BTreeMap<String, u64>,
    clock: Lamport,
}

#[concoord::object]
impl Names {
    #[concoord(allow(nondeterminism = "Lamport::now reads the replicated logical clock"))]
    pub fn stamp(&self) -> u64 {
        Lamport::now(&self.clock)
    }

    pub fn add(&mut self, name: String) -> u64 {
        self.clock.0 += 1;
        self.ids.insert(name, self.clock.0);
        self.clock.0
    }
}

fn main() {
    assert_eq!(<Names as concoord::ReplicatedObject>::NAME, "Names");
}
