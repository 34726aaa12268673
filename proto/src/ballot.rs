use serde::{Deserialize, Serialize};
use std::fmt;

/// A node's identity in a group. Random per process start, so a replica that
/// restarts without its state joins as a new member and never speaks for the
/// promises its previous incarnation made.
pub type NodeId = u64;

/// A log position.
pub type Slot = u64;

/// A Paxos ballot: rounds order ballots, the node id breaks ties.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    pub round: u64,
    pub node: NodeId,
}

impl Ballot {
    pub const ZERO: Ballot = Ballot { round: 0, node: 0 };

    pub fn new(round: u64, node: NodeId) -> Self {
        Ballot { round, node }
    }

    /// The smallest ballot of `node` that is above `self`.
    pub fn next_for(self, node: NodeId) -> Ballot {
        Ballot {
            round: self.round + 1,
            node,
        }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:x}", self.round, self.node)
    }
}
