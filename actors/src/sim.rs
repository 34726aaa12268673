//! A deterministic simulator: the protocol structs of every node, clients,
//! and a faulty network (loss, duplication, delay and reordering, partitions,
//! crashes), driven by one seeded event queue and simulated time. The same
//! seed replays the same run exactly.

use crate::config::{ConfigHistory, Member};
use crate::leader::{LeaderConfig, NotAccepted};
use crate::message::{Command, Effects, PeerMsg, Role};
use crate::replica::ReplicaTrace;
use crate::{Acceptor, Leader, NodeId, Replica};
use concoord_objects::{encode_args, ClientId, CommandId, Reply};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

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
        }
    }
}

/// A party on the simulated network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    Node(usize),
    Client(usize),
}

/// Faults of the network, changed by a test while the run goes on.
#[derive(Clone, Debug, Default)]
pub struct NetFaults {
    pub drop_percent: u64,
    pub duplicate_percent: u64,
    /// Pairs that cannot reach each other (both directions are listed).
    pub blocked: BTreeSet<(Endpoint, Endpoint)>,
}

enum Event {
    Peer {
        from: usize,
        to: usize,
        msg: PeerMsg,
    },
    Request {
        client: usize,
        node: usize,
        command: Command,
    },
    Response {
        client: usize,
        node: usize,
        id: CommandId,
        answer: Answer,
    },
    NodeTick(usize),
    ClientTick(usize),
}

#[derive(Clone, Debug)]
enum Answer {
    Reply(Reply),
    Redirect(Option<NodeId>),
}

/// One simulated node: the three roles and the client connections waiting for replies.
pub struct SimNode {
    pub id: NodeId,
    pub acceptor: Acceptor,
    pub leader: Leader,
    pub replica: Replica,
    pub alive: bool,
    connections: BTreeMap<CommandId, BTreeSet<usize>>,
}

/// One simulated closed-loop client: one command outstanding at a time.
#[derive(Debug)]
pub struct SimClient {
    pub id: ClientId,
    pub acked: u64,
    /// Acknowledged calls of the configured (writing) method.
    pub acked_writes: u64,
    pub issued: u64,
    pub ops: u64,
    /// Only ever talks to this node (to observe a minority side).
    pub pinned: Option<usize>,
    target: usize,
    outstanding: Option<Outstanding>,
    pub resends: u64,
}

#[derive(Debug, Clone)]
struct Outstanding {
    id: CommandId,
    target: concoord_objects::Target,
    method: String,
    /// Index of this operation in [`Sim::ops`].
    op: usize,
    first_sent_ms: u64,
    last_sent_ms: u64,
}

/// A reply a client received: who answered, when, and for what.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub at_ms: u64,
    pub client: usize,
    pub node: usize,
    pub id: CommandId,
    pub first_sent_ms: u64,
    pub reply: Reply,
}

/// One client operation as a history records it (simulated milliseconds).
#[derive(Clone, Debug)]
pub struct SimOp {
    pub client: usize,
    /// The object's name ("" for the default one).
    pub object: String,
    pub method: String,
    pub invoke_ms: u64,
    /// When and what it returned; `None` if it never did (outcome unknown).
    pub completed: Option<(u64, Reply)>,
}

/// The simulation.
pub struct Sim {
    pub config: SimConfig,
    pub now_ms: u64,
    rng: SimRng,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    next_event: u64,
    pub nodes: Vec<SimNode>,
    pub clients: Vec<SimClient>,
    pub net: NetFaults,
    pub deliveries: Vec<Delivery>,
    pub events_processed: u64,
    /// Every operation clients issued, in invocation order.
    pub ops: Vec<SimOp>,
}

fn node_id(index: usize) -> NodeId {
    index as NodeId + 1
}

impl Sim {
    /// A founded group of `config.nodes` members and its clients, all idle at time 0.
    pub fn new(config: SimConfig) -> Self {
        let members: Vec<Member> = (0..config.nodes)
            .map(|i| Member {
                id: node_id(i),
                addr: format!("sim-{i}"),
            })
            .collect();
        let mut rng = SimRng::new(config.seed);
        let nodes = (0..config.nodes)
            .map(|i| {
                let configs = ConfigHistory::genesis(members.clone());
                let object = concoord_objects::builtin(&config.object)
                    .expect("the simulated object is a built-in");
                let mut replica = Replica::founding(node_id(i), object, configs.clone());
                replica.trace = Some(ReplicaTrace::default());
                SimNode {
                    id: node_id(i),
                    acceptor: Acceptor::new(node_id(i)),
                    leader: Leader::new(node_id(i), configs, config.leader.clone(), rng.next_u64()),
                    replica,
                    alive: true,
                    connections: BTreeMap::new(),
                }
            })
            .collect();
        let clients = (0..config.clients)
            .map(|i| SimClient {
                id: 0x1000 + i as u64,
                acked: 0,
                acked_writes: 0,
                issued: 0,
                ops: config.ops_per_client,
                pinned: None,
                target: i % config.nodes,
                outstanding: None,
                resends: 0,
            })
            .collect();
        let mut sim = Sim {
            config,
            now_ms: 0,
            rng,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            next_event: 0,
            nodes,
            clients,
            net: NetFaults::default(),
            deliveries: Vec::new(),
            events_processed: 0,
            ops: Vec::new(),
        };
        for i in 0..sim.nodes.len() {
            let offset = sim.rng.below(sim.config.tick_ms);
            sim.schedule(offset, Event::NodeTick(i));
        }
        for i in 0..sim.clients.len() {
            let offset = sim.rng.below(sim.config.tick_ms);
            sim.schedule(offset, Event::ClientTick(i));
        }
        sim
    }

    fn schedule(&mut self, after_ms: u64, event: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.queue.push(Reverse((self.now_ms + after_ms, id)));
        self.events.insert(id, event);
    }

    fn delay(&mut self) -> u64 {
        let span = self.config.delay_max_ms - self.config.delay_min_ms + 1;
        self.config.delay_min_ms + self.rng.below(span)
    }

    /// Sends over the faulty network: maybe dropped, maybe twice, each copy delayed.
    fn transmit(&mut self, from: Endpoint, to: Endpoint, event: impl Fn() -> Event) {
        if from == to {
            let e = event();
            self.schedule(0, e);
            return;
        }
        if self.net.blocked.contains(&(from, to)) || self.rng.chance(self.net.drop_percent) {
            return;
        }
        let copies = if self.rng.chance(self.net.duplicate_percent) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let d = self.delay();
            let e = event();
            self.schedule(d, e);
        }
    }

    /// Runs until simulated time `until_ms`.
    pub fn run_until(&mut self, until_ms: u64) {
        while let Some(Reverse((at, id))) = self.queue.peek().copied() {
            if at > until_ms {
                break;
            }
            self.queue.pop();
            self.now_ms = at;
            let event = self
                .events
                .remove(&id)
                .expect("every queued id has an event");
            self.events_processed += 1;
            self.dispatch(event);
        }
        self.now_ms = until_ms;
    }

    /// Runs until every client finished its operations or `deadline_ms` passes;
    /// returns whether they all finished.
    pub fn run_until_done(&mut self, deadline_ms: u64) -> bool {
        while self.now_ms < deadline_ms {
            if self.all_done() {
                return true;
            }
            let step = (self.now_ms + 50).min(deadline_ms);
            self.run_until(step);
        }
        self.all_done()
    }

    pub fn all_done(&self) -> bool {
        self.clients.iter().all(|c| c.acked == c.ops)
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::NodeTick(i) => {
                if self.nodes[i].alive {
                    let mut fx = Effects::default();
                    let now = self.now_ms;
                    self.nodes[i].leader.tick(now, &mut fx);
                    self.apply_effects(i, fx);
                }
                let t = self.config.tick_ms;
                self.schedule(t, Event::NodeTick(i));
            }
            Event::ClientTick(c) => {
                self.client_tick(c);
                let t = self.config.tick_ms;
                self.schedule(t, Event::ClientTick(c));
            }
            Event::Peer { from, to, msg } => {
                if !self.nodes[to].alive {
                    return;
                }
                let from_id = node_id(from);
                let mut fx = Effects::default();
                let node = &mut self.nodes[to];
                let roles = msg.roles();
                for role in roles {
                    let m = msg.clone();
                    match role {
                        Role::Acceptor => node.acceptor.handle(from_id, m, &mut fx),
                        Role::Leader => node.leader.handle(from_id, m, &mut fx),
                        Role::Replica => node.replica.handle(from_id, m, &mut fx),
                    }
                }
                self.apply_effects(to, fx);
            }
            Event::Request {
                client,
                node,
                command,
            } => {
                if !self.nodes[node].alive {
                    return;
                }
                let id = command.id().expect("clients send calls");
                let mut fx = Effects::default();
                match self.nodes[node].leader.on_request(command, &mut fx) {
                    Ok(()) => {
                        self.nodes[node]
                            .connections
                            .entry(id)
                            .or_default()
                            .insert(client);
                    }
                    Err(NotAccepted::NotLeader(hint)) => {
                        self.transmit(Endpoint::Node(node), Endpoint::Client(client), || {
                            Event::Response {
                                client,
                                node,
                                id,
                                answer: Answer::Redirect(hint),
                            }
                        })
                    }
                    Err(NotAccepted::Busy) => {}
                }
                self.apply_effects(node, fx);
            }
            Event::Response {
                client,
                node,
                id,
                answer,
            } => self.client_response(client, node, id, answer),
        }
    }

    fn apply_effects(&mut self, node: usize, fx: Effects) {
        for (to, msg) in fx.sends {
            let Some(to_index) = self.nodes.iter().position(|n| n.id == to) else {
                continue;
            };
            self.transmit(Endpoint::Node(node), Endpoint::Node(to_index), || {
                Event::Peer {
                    from: node,
                    to: to_index,
                    msg: msg.clone(),
                }
            });
        }
        for (id, reply) in fx.replies {
            if let Some(waiting) = self.nodes[node].connections.remove(&id) {
                for client in waiting {
                    let reply = reply.clone();
                    self.transmit(Endpoint::Node(node), Endpoint::Client(client), || {
                        Event::Response {
                            client,
                            node,
                            id,
                            answer: Answer::Reply(reply.clone()),
                        }
                    });
                }
            }
        }
    }

    fn client_tick(&mut self, c: usize) {
        let now = self.now_ms;
        let timeout = self.config.client_timeout_ms;
        let client = &mut self.clients[c];
        match &client.outstanding {
            None if client.issued < client.ops => {
                client.issued += 1;
                let id = CommandId::new(client.id, client.issued);
                let read_percent = self.config.read_percent;
                let method = if read_percent > 0 && self.rng.chance(read_percent) {
                    "getvalue".to_string()
                } else {
                    self.config.method.clone()
                };
                // One in named+1 goes to the default object, the rest to a named one.
                let named = self.config.named_objects;
                // (No draw without named objects: earlier seeds replay as they did.)
                let pick = if named == 0 {
                    0
                } else {
                    self.rng.below(named + 1)
                };
                let target = match pick {
                    0 => concoord_objects::Target::default(),
                    n => concoord_objects::Target::named(
                        format!("obj{}", n - 1),
                        self.config.object.clone(),
                    ),
                };
                self.ops.push(SimOp {
                    client: c,
                    object: target.name.clone(),
                    method: method.clone(),
                    invoke_ms: now,
                    completed: None,
                });
                let client = &mut self.clients[c];
                client.outstanding = Some(Outstanding {
                    id,
                    target,
                    method,
                    op: self.ops.len() - 1,
                    first_sent_ms: now,
                    last_sent_ms: now,
                });
                self.send_outstanding(c);
            }
            Some(o) if now >= o.last_sent_ms + timeout => {
                client.resends += 1;
                if client.pinned.is_none() {
                    client.target = (client.target + 1) % self.nodes.len();
                }
                self.send_outstanding(c);
            }
            _ => {}
        }
    }

    fn send_outstanding(&mut self, c: usize) {
        let now = self.now_ms;
        let client = &mut self.clients[c];
        let Some(o) = &mut client.outstanding else {
            return;
        };
        o.last_sent_ms = now;
        let command = Command::Call {
            id: o.id,
            target: o.target.clone(),
            method: o.method.clone(),
            args: encode_args::<i64>(&[]),
            ack_below: o.id.seq,
        };
        let node = client.target;
        self.transmit(Endpoint::Client(c), Endpoint::Node(node), || {
            Event::Request {
                client: c,
                node,
                command: command.clone(),
            }
        });
    }

    fn client_response(&mut self, c: usize, node: usize, id: CommandId, answer: Answer) {
        let now = self.now_ms;
        let nodes = self.nodes.len();
        let client = &mut self.clients[c];
        let Some(o) = client.outstanding.clone() else {
            return;
        };
        if o.id != id {
            return; // a late duplicate of an earlier reply
        }
        match answer {
            Answer::Reply(reply) => {
                client.acked += 1;
                if o.method == self.config.method {
                    client.acked_writes += 1;
                }
                client.outstanding = None;
                self.ops[o.op].completed = Some((now, reply.clone()));
                self.deliveries.push(Delivery {
                    at_ms: now,
                    client: c,
                    node,
                    id,
                    first_sent_ms: o.first_sent_ms,
                    reply,
                });
            }
            Answer::Redirect(hint) => {
                if client.pinned.is_some() {
                    return;
                }
                let hinted = hint.and_then(|h| self.nodes.iter().position(|n| n.id == h));
                let next = hinted.unwrap_or((client.target + 1) % nodes);
                if next != client.target {
                    client.target = next;
                    if hinted.is_some() {
                        self.send_outstanding(c);
                    } else if let Some(o) = &mut client.outstanding {
                        // Nobody knows a leader yet: try the next node on the
                        // next tick, as the real client backs off (with zero
                        // network delay, resending at once never lets time pass).
                        o.last_sent_ms = now.saturating_sub(self.config.client_timeout_ms);
                    }
                }
            }
        }
    }

    /// Hands a command to a node's leader as a connection would, without a client waiting.
    pub fn submit(&mut self, node: usize, command: Command) -> Result<(), NotAccepted> {
        let mut fx = Effects::default();
        let taken = self.nodes[node].leader.on_request(command, &mut fx);
        self.apply_effects(node, fx);
        taken
    }

    // ----- faults -----

    /// The node that is the active leader with the highest ballot, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive && self.nodes[*i].leader.is_active())
            .max_by_key(|i| self.nodes[*i].leader.ballot())
    }

    /// Stops a node for good: it loses every message and never ticks again.
    pub fn crash(&mut self, node: usize) {
        self.nodes[node].alive = false;
    }

    /// Cuts `side` off from every other node and from every client not pinned to it.
    pub fn partition(&mut self, side: &[usize]) {
        for &a in side {
            for b in 0..self.nodes.len() {
                if !side.contains(&b) {
                    self.block(Endpoint::Node(a), Endpoint::Node(b));
                }
            }
            let outside: Vec<usize> = (0..self.clients.len())
                .filter(|c| !self.clients[*c].pinned.is_some_and(|p| side.contains(&p)))
                .collect();
            for c in outside {
                self.block(Endpoint::Node(a), Endpoint::Client(c));
            }
        }
    }

    fn block(&mut self, a: Endpoint, b: Endpoint) {
        self.net.blocked.insert((a, b));
        self.net.blocked.insert((b, a));
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.net.blocked.clear();
    }

    /// Whether `node` can reach a majority of the nodes (itself included).
    pub fn in_majority(&self, node: usize) -> bool {
        let reachable = (0..self.nodes.len())
            .filter(|&b| {
                self.nodes[b].alive
                    && !self
                        .net
                        .blocked
                        .contains(&(Endpoint::Node(node), Endpoint::Node(b)))
            })
            .count();
        reachable > self.nodes.len() / 2
    }

    pub fn trace(&self, node: usize) -> &ReplicaTrace {
        self.nodes[node]
            .replica
            .trace
            .as_ref()
            .expect("simulated replicas trace")
    }
}
