//! The shape of a run: the seeded generator and [`SimConfig`], with how
//! read-only calls are served ([`SimReads`]).

use super::*;

/// A seeded xorshift64* generator: the only randomness in a simulation.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        SimRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The shape of a simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub clients: usize,
    pub ops_per_client: u64,
    pub object: String,
    pub method: String,
    /// Percent of operations that read (`getvalue`) instead of calling `method`.
    pub read_percent: u64,
    /// Spread operations over this many named objects of type `object`
    /// (`obj0`, `obj1`, ...) besides the default one; 0 uses only the default.
    pub named_objects: u64,
    pub tick_ms: u64,
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    pub client_timeout_ms: u64,
    pub leader: LeaderConfig,
    /// Session clients, after the `clients` Counter clients.
    pub sessions: Option<SessionWorkload>,
    /// How calls of read-only methods are served.
    pub reads: SimReads,
    /// Each send of a read goes to a node picked at random, as clients
    /// spread over the members do: with [`SimReads::ReadIndex`] followers
    /// serve them with a read index they ask the leader for.
    pub reads_anywhere: bool,
    /// Durable mode for the founding nodes (`-w`): a simulated disk each.
    pub durable: Option<SimDurability>,
}

/// How a simulated node serves calls of read-only methods (`getvalue`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimReads {
    /// Through the log, as every other call.
    Log,
    /// The leader's read index ([`Leader::on_read`]), as real nodes do.
    ReadIndex,
    /// Allowed to be stale: whichever node a client reaches answers from
    /// its own replica at once ([`Replica::stale_read`]).
    Stale,
    /// Deliberately broken, for tests that must catch it: a node that
    /// believes it leads answers from its replica at once, with no read
    /// index round. A deposed leader that has not noticed answers stale.
    Unconfirmed,
    /// Deliberately broken, for tests that must catch it: the leader
    /// serves reads with its read index, but a follower answers from its
    /// own replica at once, without asking the leader how far to execute.
    FollowerUnconfirmed,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            nodes: 3,
            clients: 4,
            ops_per_client: 20,
            object: "Counter".into(),
            method: "increment".into(),
            read_percent: 0,
            named_objects: 0,
            tick_ms: 10,
            delay_min_ms: 1,
            delay_max_ms: 6,
            client_timeout_ms: 400,
            leader: LeaderConfig::default(),
            sessions: None,
            reads: SimReads::Log,
            reads_anywhere: false,
            durable: None,
        }
    }
}
