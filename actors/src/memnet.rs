//! An in-memory network for real actors in one process: the same [`Transport`]
//! seam as TCP, with seeded loss, duplication, delay (hence reordering),
//! partitions and crashes.

use crate::message::{Command, PeerMsg};
use crate::node::{ConnectionEvents, NodeHandle, Transport};
use crate::sim::SimRng;
use crate::NodeId;
use actix::prelude::*;
use concoord_objects::{CommandId, Reply};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Faults {
    drop_percent: u64,
    duplicate_percent: u64,
    max_delay_ms: u64,
    blocked: BTreeSet<(NodeId, NodeId)>,
    crashed: BTreeSet<NodeId>,
}

/// The network: every node registered here can reach every other one, subject to faults.
pub struct MemNetwork {
    nodes: Mutex<BTreeMap<NodeId, NodeHandle>>,
    faults: Mutex<Faults>,
    rng: Mutex<SimRng>,
}

impl MemNetwork {
    pub fn new(seed: u64) -> Arc<MemNetwork> {
        Arc::new(MemNetwork {
            nodes: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Faults::default()),
            rng: Mutex::new(SimRng::new(seed)),
        })
    }

    /// The transport a node on this network sends through.
    pub fn transport(self: &Arc<Self>) -> Arc<dyn Transport> {
        Arc::new(MemTransport(self.clone()))
    }

    pub fn register(&self, node: NodeHandle) {
        self.nodes
            .lock()
            .expect("nodes lock")
            .insert(node.id(), node);
    }

    pub fn node(&self, id: NodeId) -> Option<NodeHandle> {
        self.nodes.lock().expect("nodes lock").get(&id).cloned()
    }

    /// Loss and duplication in percent, and a maximum delay (random per message).
    pub fn set_faults(&self, drop_percent: u64, duplicate_percent: u64, max_delay_ms: u64) {
        let mut f = self.faults.lock().expect("faults lock");
        f.drop_percent = drop_percent;
        f.duplicate_percent = duplicate_percent;
        f.max_delay_ms = max_delay_ms;
    }

    /// Cuts `side` off from every other node.
    pub fn partition(&self, side: &[NodeId]) {
        let ids: Vec<NodeId> = self
            .nodes
            .lock()
            .expect("nodes lock")
            .keys()
            .copied()
            .collect();
        let mut f = self.faults.lock().expect("faults lock");
        for a in side {
            for b in &ids {
                if !side.contains(b) {
                    f.blocked.insert((*a, *b));
                    f.blocked.insert((*b, *a));
                }
            }
        }
    }

    pub fn heal(&self) {
        self.faults.lock().expect("faults lock").blocked.clear();
    }

    /// Stops a node's actors; messages to and from it are lost.
    pub fn crash(&self, id: NodeId) {
        self.faults.lock().expect("faults lock").crashed.insert(id);
        if let Some(node) = self.node(id) {
            node.stop();
        }
    }

    pub fn is_crashed(&self, id: NodeId) -> bool {
        self.faults
            .lock()
            .expect("faults lock")
            .crashed
            .contains(&id)
    }

    fn route(&self, from: NodeId, to: NodeId, msg: PeerMsg) {
        let (copies, delays) = {
            let f = self.faults.lock().expect("faults lock");
            if f.crashed.contains(&from)
                || f.crashed.contains(&to)
                || f.blocked.contains(&(from, to))
            {
                return;
            }
            let mut rng = self.rng.lock().expect("rng lock");
            if rng.chance(f.drop_percent) {
                return;
            }
            let copies = if rng.chance(f.duplicate_percent) {
                2
            } else {
                1
            };
            let delays: Vec<u64> = (0..copies).map(|_| rng.below(f.max_delay_ms + 1)).collect();
            (copies, delays)
        };
        let Some(node) = self.node(to) else { return };
        for delay in delays.into_iter().take(copies) {
            let msg = msg.clone();
            let node = node.clone();
            if delay == 0 {
                node.deliver(from, msg);
            } else {
                actix::spawn(async move {
                    actix::clock::sleep(Duration::from_millis(delay)).await;
                    node.deliver(from, msg);
                });
            }
        }
    }
}

struct MemTransport(Arc<MemNetwork>);

impl Transport for MemTransport {
    fn send(&self, from: NodeId, to: NodeId, msg: PeerMsg) {
        self.0.route(from, to, msg);
    }
}

/// Collects replies for in-process callers (what a ClientConnection does for TCP).
pub struct ReplyCollector {
    waiting: BTreeMap<CommandId, tokio::sync::oneshot::Sender<Reply>>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Expect(CommandId, tokio::sync::oneshot::Sender<Reply>);

impl Actor for ReplyCollector {
    type Context = Context<Self>;
}

impl Handler<ConnectionEvents> for ReplyCollector {
    type Result = ();
    fn handle(&mut self, m: ConnectionEvents, _: &mut Context<Self>) {
        for m in m.0 {
            let crate::node::ConnectionEvent::Reply(reply) = m.event else {
                continue;
            };
            if let Some(tx) = self.waiting.remove(&m.id) {
                let _ = tx.send(reply);
            }
        }
    }
}

impl Handler<Expect> for ReplyCollector {
    type Result = ();
    fn handle(&mut self, m: Expect, _: &mut Context<Self>) {
        self.waiting.insert(m.0, m.1);
    }
}

/// An in-process client of nodes on a [`MemNetwork`]: finds the leader,
/// resends the same command id after `resend_after`, gives up at `deadline`.
pub struct MemClient {
    net: Arc<MemNetwork>,
    nodes: Vec<NodeId>,
    id: u64,
    seq: u64,
    collector: Addr<ReplyCollector>,
    target: usize,
    pub resend_after: Duration,
    pub resends: u64,
}

impl MemClient {
    pub fn new(net: Arc<MemNetwork>, nodes: Vec<NodeId>, id: u64) -> MemClient {
        MemClient {
            net,
            nodes,
            id,
            seq: 0,
            collector: ReplyCollector {
                waiting: BTreeMap::new(),
            }
            .start(),
            target: 0,
            resend_after: Duration::from_millis(200),
            resends: 0,
        }
    }

    /// Calls `method`; `None` if no answer came before `deadline`.
    pub async fn call(&mut self, method: &str, args: Vec<u8>, deadline: Duration) -> Option<Reply> {
        self.seq += 1;
        let id = CommandId::new(self.id, self.seq);
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        self.collector.send(Expect(id, tx)).await.ok()?;
        let until = tokio::time::Instant::now() + deadline;
        let mut opened = Vec::new();
        let reply = self
            .call_with(id, method, &args, until, &mut opened, &mut rx)
            .await;
        for (node, key) in opened {
            node.close_connection(key);
        }
        reply
    }

    async fn call_with(
        &mut self,
        id: CommandId,
        method: &str,
        args: &[u8],
        until: tokio::time::Instant,
        opened: &mut Vec<(NodeHandle, crate::node::ConnectionKey)>,
        rx: &mut tokio::sync::oneshot::Receiver<Reply>,
    ) -> Option<Reply> {
        loop {
            let node_id = self.nodes[self.target % self.nodes.len()];
            if let Some(node) = self
                .net
                .node(node_id)
                .filter(|_| !self.net.is_crashed(node_id))
            {
                let command = Command::Call {
                    id,
                    target: Default::default(),
                    method: method.to_string(),
                    args: args.to_vec(),
                    ack_below: self.seq,
                };
                let key = node.open_connection(self.collector.clone().recipient());
                opened.push((node.clone(), key));
                match node.submit(command, Some(key)).await {
                    Ok(()) => {}
                    Err(crate::NotAccepted::NotLeader(Some(hint))) => {
                        match self.nodes.iter().position(|n| *n == hint) {
                            Some(i) if i != self.target % self.nodes.len() => self.target = i,
                            _ => self.target += 1,
                        }
                        // Not submitted anywhere yet: follow the hint after a breath.
                        actix::clock::sleep(Duration::from_millis(5)).await;
                        if tokio::time::Instant::now() >= until {
                            return None;
                        }
                        continue;
                    }
                    Err(_) => self.target += 1,
                }
            } else {
                self.target += 1;
            }
            let wait = self
                .resend_after
                .min(until.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, &mut *rx).await {
                Ok(Ok(reply)) => return Some(reply),
                Ok(Err(_)) => return None,
                Err(_) if tokio::time::Instant::now() >= until => return None,
                Err(_) => {
                    self.resends += 1;
                    self.target += 1;
                }
            }
        }
    }
}
