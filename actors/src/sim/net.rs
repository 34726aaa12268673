//! The faulty network: endpoints, the events it carries, loss, duplication
//! and delay, partitions and one-way cuts, and delivery to the nodes' roles.

use super::*;

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

pub(super) enum Event {
    /// Peer frames carry the addressee's id: a node restarted with a new
    /// id ignores its predecessor's mail.
    Peer {
        from_id: NodeId,
        to: usize,
        to_id: NodeId,
        msg: PeerMsg,
    },
    /// A crashed peer's link closed, as a real transport sees it: the
    /// node's leader stops counting on it (`Leader::peer_lost`).
    PeerLost {
        to: usize,
        to_id: NodeId,
        peer: NodeId,
    },
    /// A newcomer asks a node to add it to the group (`-b`).
    Join {
        from: usize,
        to: usize,
        member: Member,
    },
    /// The asked node does not lead: where the leader is, if it knows.
    JoinHint {
        node: usize,
        leader: Option<usize>,
    },
    /// A durable node's sync of its disk up to `upto` completed.
    DiskSynced {
        node: usize,
        incarnation: u64,
        upto: usize,
    },
    /// A durable node's leader's Prepares to other nodes, queued behind its
    /// own acceptor's promise (as the real leader hands them to its acceptor).
    WhenDurable {
        node: usize,
        incarnation: u64,
        sends: Vec<(NodeId, PeerMsg)>,
    },
    /// A removed node asks the new membership whether it has learned the
    /// removal (`NodeHandle::serve_until_left`); it stops once a majority
    /// has, and its grace is over.
    LeavingTick {
        node: usize,
        incarnation: u64,
        removed_at_ms: u64,
    },
    /// The active leader heard a session client's keep-alive and says so.
    KeepAliveAck {
        client: usize,
        node: usize,
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
    /// A session client's keep-alive.
    KeepAlive {
        client: usize,
        node: usize,
    },
    /// Where a keep-alive's receiver says the leader is (`None`: try
    /// another node, as after a refused connection).
    Hint {
        client: usize,
        to: Option<usize>,
    },
}

#[derive(Clone, Debug)]
pub(super) enum Answer {
    Reply(Reply),
    Redirect(Option<NodeId>),
    /// The call waits in an object's queue (only session clients' calls do).
    Parked,
}

impl Sim {
    pub(super) fn schedule(&mut self, after_ms: u64, event: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.queue.push(Reverse((self.now_ms + after_ms, id)));
        self.events.insert(id, event);
    }

    pub(super) fn delay(&mut self) -> u64 {
        let span = self.config.delay_max_ms - self.config.delay_min_ms + 1;
        self.config.delay_min_ms + self.rng.below(span)
    }

    /// Sends over the faulty network: maybe dropped, maybe twice, each copy delayed.
    pub(super) fn transmit(&mut self, from: Endpoint, to: Endpoint, event: impl Fn() -> Event) {
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

    pub(super) fn dispatch(&mut self, event: Event) {
        match event {
            Event::NodeTick(i) => {
                if self.nodes[i].alive {
                    let mut fx = Effects::default();
                    let now = self.now_ms;
                    self.nodes[i].leader.tick(now, &mut fx);
                    self.leader_effects(i, fx);
                    if self.nodes[i].joining {
                        self.join_tick(i);
                    }
                }
                let t = self.config.tick_ms;
                self.schedule(t, Event::NodeTick(i));
            }
            Event::ClientTick(c) => {
                match &self.clients[c] {
                    client if client.crashed => {}
                    client if client.session.is_some() => self.session_tick(c),
                    _ => self.client_tick(c),
                }
                let t = self.config.tick_ms;
                self.schedule(t, Event::ClientTick(c));
            }
            Event::Peer {
                from_id,
                to,
                to_id,
                msg,
            } => {
                if !self.nodes[to].alive || self.nodes[to].id != to_id {
                    return;
                }
                self.record_decisions(&msg);
                if self.nodes[to].disk.is_some() {
                    return self.deliver_durable(to, from_id, msg);
                }
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
            Event::PeerLost { to, to_id, peer } => {
                if self.nodes[to].alive && self.nodes[to].id == to_id {
                    let mut fx = Effects::default();
                    self.nodes[to].leader.peer_lost(peer, &mut fx);
                    self.leader_effects(to, fx);
                }
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
                let reads = self.config.reads;
                let read = reads != SimReads::Log
                    && matches!(&command, Command::Call { target, method, .. }
                        if self.routing.may_read(target, method));
                let n = &mut self.nodes[node];
                let taken = match reads {
                    _ if !read => n.leader.on_request(command, &mut fx),
                    SimReads::Log | SimReads::ReadIndex => n.leader.on_read(command, &mut fx),
                    SimReads::Stale => {
                        n.replica.stale_read(command, &mut fx);
                        Ok(())
                    }
                    SimReads::Unconfirmed if n.leader.is_active() => {
                        n.replica.stale_read(command, &mut fx);
                        Ok(())
                    }
                    SimReads::Unconfirmed => Err(NotAccepted::NotLeader(n.leader.leader_hint())),
                    SimReads::FollowerUnconfirmed if n.leader.is_active() => {
                        n.leader.on_read(command, &mut fx)
                    }
                    SimReads::FollowerUnconfirmed => {
                        n.replica.stale_read(command, &mut fx);
                        Ok(())
                    }
                };
                match taken {
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
                self.leader_effects(node, fx);
            }
            Event::Response {
                client,
                node,
                id,
                answer,
            } => {
                let c = &mut self.clients[client];
                if !c.crashed {
                    if let Some(s) = c.session.as_mut().filter(|_| c.target == node) {
                        s.last_heard_ms = self.now_ms;
                    }
                    self.client_response(client, node, id, answer)
                }
            }
            Event::KeepAlive { client, node } => self.on_keep_alive(client, node),
            Event::KeepAliveAck { client, node } => {
                let c = &mut self.clients[client];
                if c.target == node {
                    if let Some(s) = c.session.as_mut() {
                        s.last_heard_ms = self.now_ms;
                    }
                }
            }
            Event::Join { from, to, member } => {
                if !self.nodes[to].alive {
                    return;
                }
                let mut fx = Effects::default();
                let taken = self.nodes[to]
                    .leader
                    .on_request(Command::AddMember(member), &mut fx);
                self.leader_effects(to, fx);
                if let Err(NotAccepted::NotLeader(hint)) = taken {
                    let leader = hint.and_then(|h| self.nodes.iter().position(|n| n.id == h));
                    self.transmit(Endpoint::Node(to), Endpoint::Node(from), || {
                        Event::JoinHint { node: from, leader }
                    });
                }
            }
            Event::JoinHint { node, leader } => {
                let n = &mut self.nodes[node];
                if let Some(leader) = leader.filter(|l| *l != node) {
                    if n.joining && n.alive {
                        n.join_target = leader;
                        n.next_join_ms = self.now_ms;
                    }
                }
            }
            Event::DiskSynced {
                node,
                incarnation,
                upto,
            } => {
                let n = &mut self.nodes[node];
                if !n.alive || n.incarnation != incarnation {
                    return;
                }
                let disk = n.disk.as_mut().expect("only durable nodes sync");
                disk.synced = disk.synced.max(upto);
                disk.syncing = None;
                if let Some(snapshot) = disk.snapshot_pending.take() {
                    disk.snapshot = Some(snapshot);
                }
                let synced = disk.synced;
                loop {
                    let n = &mut self.nodes[node];
                    if !n.alive || !n.held.front().is_some_and(|(seq, ..)| *seq <= synced) {
                        break;
                    }
                    let (_, sends, claims) = n.held.pop_front().expect("front checked");
                    self.send_now(node, sends, claims);
                }
                if self.nodes[node].alive {
                    self.schedule_sync(node);
                }
            }
            Event::LeavingTick {
                node,
                incarnation,
                removed_at_ms,
            } => self.leaving_tick(node, incarnation, removed_at_ms),
            Event::WhenDurable {
                node,
                incarnation,
                sends,
            } => {
                let n = &self.nodes[node];
                if n.alive && n.incarnation == incarnation {
                    self.send_when_durable(node, sends);
                }
            }
            Event::Hint { client, to } => {
                let c = &mut self.clients[client];
                if !c.crashed && c.pinned.is_none() {
                    c.target = to.unwrap_or((c.target + 1) % self.nodes.len());
                    if let Some(s) = c.session.as_mut() {
                        s.last_heard_ms = self.now_ms;
                    }
                    // A new connection: the real client resends parked calls on it.
                    if let Some(o) = c.outstanding.as_mut().filter(|o| o.parked) {
                        o.parked = false;
                        self.send_outstanding(client);
                    }
                }
            }
        }
    }

    /// A keep-alive reaches `node`: its active leader notes the session is
    /// alive; any other node tells where the leader is, and a crashed one
    /// refuses the connection (the client tries another).
    pub(super) fn on_keep_alive(&mut self, client: usize, node: usize) {
        let to = if !self.nodes[node].alive {
            None
        } else if self.nodes[node].leader.is_active() {
            let id = self.clients[client].id;
            self.nodes[node].leader.touch(id);
            // The leader answers every keep-alive (`Frame::KeepAlive`).
            self.transmit(Endpoint::Node(node), Endpoint::Client(client), || {
                Event::KeepAliveAck { client, node }
            });
            return;
        } else {
            let hint = self.nodes[node].leader.leader_hint();
            match hint.and_then(|h| self.nodes.iter().position(|n| n.id == h)) {
                Some(to) => Some(to),
                None => return,
            }
        };
        self.transmit(Endpoint::Node(node), Endpoint::Client(client), || {
            Event::Hint { client, to }
        });
    }

    pub(super) fn apply_effects(&mut self, node: usize, mut fx: Effects) {
        // Reads the replica could not serve go through the log, as a node's
        // shell submits them (their clients wait on this node already).
        for command in std::mem::take(&mut fx.to_log) {
            let mut more = Effects::default();
            let _ = self.nodes[node].leader.on_request(command, &mut more);
            self.leader_effects(node, more);
        }
        let me = self.nodes[node].id;
        for (to, msg) in fx.sends {
            if let (true, PeerMsg::Progress(p)) = (to == me, &msg) {
                self.note_membership(node, p);
            }
            let Some(to_index) = self.nodes.iter().position(|n| n.id == to) else {
                continue;
            };
            self.transmit(Endpoint::Node(node), Endpoint::Node(to_index), || {
                Event::Peer {
                    from_id: me,
                    to: to_index,
                    to_id: to,
                    msg: msg.clone(),
                }
            });
        }
        // Only session clients' calls park; nothing changes for other runs.
        for id in &fx.parked {
            let id = *id;
            let waiting: Vec<usize> = self.nodes[node]
                .connections
                .get(&id)
                .map(|w| w.iter().copied().collect())
                .unwrap_or_default();
            for client in waiting {
                self.transmit(Endpoint::Node(node), Endpoint::Client(client), || {
                    Event::Response {
                        client,
                        node,
                        id,
                        answer: Answer::Parked,
                    }
                });
            }
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

    /// Cuts a client off from every node until [`Sim::heal`].
    pub fn isolate_client(&mut self, c: usize) {
        for n in 0..self.nodes.len() {
            self.block(Endpoint::Client(c), Endpoint::Node(n));
        }
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

    /// One-way: messages from every other node to `node` are lost, while
    /// its own still arrive (clients are not touched).
    pub fn deafen(&mut self, node: usize) {
        for b in 0..self.nodes.len() {
            if b != node {
                self.net
                    .blocked
                    .insert((Endpoint::Node(b), Endpoint::Node(node)));
            }
        }
    }

    pub(super) fn block(&mut self, a: Endpoint, b: Endpoint) {
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
}
