//! Prometheus metrics of one node, served as text on `/metrics` of the
//! replica's HTTP endpoint (`--http ADDR`, alias `--metrics`).
//! Off unless asked for; when on, the hot path only bumps atomics, and the
//! protocol structs' own counters are copied in on each scrape.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Everything a node reports.
pub struct NodeMetrics {
    registry: Mutex<Registry>,
    pub commands_committed: Counter,
    pub slots_decided: Counter,
    pub batch_commands: Histogram,
    pub commit_latency_seconds: Histogram,
    pub leader_changes: Counter,
    pub leader_step_downs: Counter,
    pub follower_reads: Counter,
    pub thrifty_slots: Counter,
    pub ballot_round: Gauge,
    pub is_leader: Gauge,
    pub parked_commands: Gauge,
    pub connected_clients: Gauge,
    pub snapshot_bytes: Histogram,
    pub executed_slot: Gauge,
    last_slots: AtomicU64,
    last_commands: AtomicU64,
    last_changes: AtomicU64,
    last_step_downs: AtomicU64,
    last_follower_reads: AtomicU64,
    last_thrifty_slots: AtomicU64,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        let m = NodeMetrics {
            registry: Mutex::new(Registry::with_prefix("concoord")),
            commands_committed: Counter::default(),
            slots_decided: Counter::default(),
            batch_commands: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commit_latency_seconds: Histogram::new(exponential_buckets(0.000_025, 2.0, 16)),
            leader_changes: Counter::default(),
            leader_step_downs: Counter::default(),
            follower_reads: Counter::default(),
            thrifty_slots: Counter::default(),
            ballot_round: Gauge::default(),
            is_leader: Gauge::default(),
            parked_commands: Gauge::default(),
            connected_clients: Gauge::default(),
            snapshot_bytes: Histogram::new(exponential_buckets(256.0, 4.0, 12)),
            executed_slot: Gauge::default(),
            last_slots: AtomicU64::new(0),
            last_commands: AtomicU64::new(0),
            last_changes: AtomicU64::new(0),
            last_step_downs: AtomicU64::new(0),
            last_follower_reads: AtomicU64::new(0),
            last_thrifty_slots: AtomicU64::new(0),
        };
        {
            let mut r = m.registry.lock().expect("registry lock");
            r.register(
                "commands_committed",
                "Commands decided by this node while it led",
                m.commands_committed.clone(),
            );
            r.register(
                "slots_decided",
                "Log slots decided by this node while it led",
                m.slots_decided.clone(),
            );
            r.register(
                "batch_commands",
                "Commands per decided slot",
                m.batch_commands.clone(),
            );
            r.register(
                "commit_latency_seconds",
                "From a client's call reaching this node to its reply leaving it",
                m.commit_latency_seconds.clone(),
            );
            r.register(
                "leader_changes",
                "Times this node became the active leader",
                m.leader_changes.clone(),
            );
            r.register(
                "leader_step_downs",
                "Times this node stopped leading because no majority answered it (check-quorum)",
                m.leader_step_downs.clone(),
            );
            r.register(
                "follower_reads",
                "Linearizable reads this node took as a follower, to serve with a read index from the leader",
                m.follower_reads.clone(),
            );
            r.register(
                "thrifty_slots",
                "Slots this node proposed to a bare majority only (--thrifty)",
                m.thrifty_slots.clone(),
            );
            r.register(
                "ballot_round",
                "Round of the highest ballot this node has seen",
                m.ballot_round.clone(),
            );
            r.register(
                "is_leader",
                "1 while this node is the active leader",
                m.is_leader.clone(),
            );
            r.register(
                "parked_commands",
                "Commands waiting in the object's queues",
                m.parked_commands.clone(),
            );
            r.register(
                "connected_clients",
                "Open client connections",
                m.connected_clients.clone(),
            );
            r.register(
                "snapshot_bytes",
                "Sizes of snapshots sent to other replicas",
                m.snapshot_bytes.clone(),
            );
            r.register(
                "executed_slot",
                "Every slot below this has been executed here",
                m.executed_slot.clone(),
            );
        }
        m
    }
}

impl NodeMetrics {
    /// Copies a leader's running totals into the counters (they only grow).
    pub fn observe_leader(&self, stats: &crate::leader::LeaderStats, changes: u64) {
        let slots = self.last_slots.swap(stats.slots_decided, Ordering::Relaxed);
        self.slots_decided
            .inc_by(stats.slots_decided.saturating_sub(slots));
        let commands = self
            .last_commands
            .swap(stats.commands_decided, Ordering::Relaxed);
        self.commands_committed
            .inc_by(stats.commands_decided.saturating_sub(commands));
        let before = self.last_changes.swap(changes, Ordering::Relaxed);
        self.leader_changes.inc_by(changes.saturating_sub(before));
        let before = self
            .last_step_downs
            .swap(stats.step_downs, Ordering::Relaxed);
        self.leader_step_downs
            .inc_by(stats.step_downs.saturating_sub(before));
        let before = self
            .last_follower_reads
            .swap(stats.follower_reads, Ordering::Relaxed);
        self.follower_reads
            .inc_by(stats.follower_reads.saturating_sub(before));
        let before = self
            .last_thrifty_slots
            .swap(stats.thrifty_slots, Ordering::Relaxed);
        self.thrifty_slots
            .inc_by(stats.thrifty_slots.saturating_sub(before));
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("registry lock");
        encode(&mut out, &registry).expect("writing into a String cannot fail");
        out
    }
}
