use serde::{Deserialize, Serialize};
use std::fmt;

/// A client's identity, chosen at random by the client runtime when it starts.
pub type ClientId = u64;

/// Identifies one command for its whole life: every resend of a call reuses it,
/// and the replicas' client table makes it take effect once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CommandId {
    pub client: ClientId,
    pub seq: u64,
}

impl CommandId {
    pub fn new(client: ClientId, seq: u64) -> Self {
        CommandId { client, seq }
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}:{}", self.client, self.seq)
    }
}
