//! Explicit-state model checking of concoord's protocol roles.
//!
//! [`PaxosModel`] is a [`stateright`] model whose states hold the real
//! [`Acceptor`], [`Leader`] and [`Replica`] of every node (with its client
//! table) — not a re-statement of the protocol — and whose actions are what
//! the world may do next:
//!
//! - deliver any message in flight (the network is a multiset, so any
//!   order is possible), drop one, or duplicate one;
//! - fire a node's timers ([`Leader::tick`] with its clock moved far ahead:
//!   heartbeats, retries, and for a follower the election timeout, so a
//!   leader change is one or two such steps away);
//! - crash a node (for good, as a node without a data dir);
//! - a client sends its call, or resends it, to a node that believes it
//!   leads (a node that does not answers with a redirect, which changes
//!   nothing in the group, so the model leaves those sends out).
//!
//! Abstracted: time (only the timer steps move a node's clock, each by
//! [`TIMER_STEP_MS`]); messages a node sends to itself (to its own roles)
//! are handled at once, as the node's local mailbox delivers them without
//! loss; client connections are reliable (a reply reaches its caller if the
//! node that took the call executes it). The first leader is elected in the
//! initial state, so every explored step starts from a working group.
//!
//! Bounds ([`Bounds`]): timer steps, crashes, drops and duplicates for the
//! whole run, sends per call, and the highest ballot round a node may ask
//! for. With them the reachable state space is finite; but every order of
//! the messages in flight is a state of its own, so the fault runs are
//! also cut at a depth (number of steps) to stay affordable. Drops and
//! crashes add nothing to safety (a dropped message is one never
//! delivered, a crashed node one never scheduled again): they are there
//! for liveness.
//!
//! Properties: a slot is chosen (accepted by a majority at one ballot) and
//! decided with one value only; replicas execute the same prefix; a command
//! id runs on the object at most once per replica; the history clients saw
//! is linearizable (checked with `concoord-check` against a Counter); and,
//! with [`Bounds::liveness`], every call is eventually answered.
//!
//! [`Bounds::rewrite_promise`] lets a test break the protocol on purpose,
//! to show the checker catches it.

use concoord_actors::leader::LeaderConfig;
use concoord_actors::message::{Decision, Effects, PeerMsg, Promise, Role};
use concoord_actors::replica::ReplicaTrace;
use concoord_actors::{
    Acceptor, Ballot, Batch, Command, ConfigHistory, Leader, Member, NodeId, Replica, Slot,
};
use concoord_check::history::{value, Operation};
use concoord_check::linearizability::{check_operations, Counter, Options};
use concoord_objects::{encode_args, ClientId, CommandId, Reply, Target, Types};
use stateright::{Model, Property};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

/// How far one timer step moves a node's clock: past any election timeout
/// (at most twice [`LeaderConfig::election_timeout_ms`]) and retry.
pub const TIMER_STEP_MS: u64 = 10_000;

/// A call of a client's script on the group's Counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Increment,
    Read,
}

impl Op {
    fn method(self) -> &'static str {
        match self {
            Op::Increment => "increment",
            Op::Read => "getvalue",
        }
    }
}

/// The size of the explored world.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// Nodes of the group (ids 1..=nodes); node 1 leads at the start.
    pub nodes: usize,
    /// Each client's calls, made one after another.
    pub clients: Vec<Vec<Op>>,
    /// Timer steps (over all nodes).
    pub timer_steps: u8,
    /// Whether a node that leads takes timer steps too (heartbeats,
    /// held-back commits, retries); followers always may.
    pub leader_timers: bool,
    pub crashes: u8,
    pub drops: u8,
    pub duplicates: u8,
    /// Sends of one call (the first and its resends).
    pub sends_per_call: u8,
    /// No node asks for a ballot above this round (node 1 leads with 1).
    pub max_round: u64,
    /// Check that every call is eventually answered. Meaningful only where
    /// the bounds cannot starve a call (no drops, no timers); only
    /// followers crash then.
    pub liveness: bool,
    /// Rewrites every `Promise` before its leader reads it. Tests break
    /// the protocol with it on purpose (a leader that skips the value
    /// recovery of phase 1) to see the checker catch it; the roles carry
    /// no hook for this.
    pub rewrite_promise: Option<fn(&mut Promise)>,
}

impl Bounds {
    /// Three nodes, a client's increment and read, a leader change
    /// (two timer steps), a duplicate: the safety check CI runs (to a depth
    /// of 10 steps there). No drops and no crashes: for
    /// safety they add nothing (a dropped message is one never delivered,
    /// a crashed node one never scheduled again, and both are among the
    /// explored runs already); they matter to liveness.
    pub fn faults() -> Bounds {
        Bounds {
            nodes: 3,
            clients: vec![vec![Op::Increment, Op::Read]],
            timer_steps: 2,
            leader_timers: true,
            crashes: 0,
            drops: 0,
            duplicates: 1,
            sends_per_call: 1,
            max_round: 2,
            liveness: false,
            rewrite_promise: None,
        }
    }

    /// A stable leader, a follower that may crash, a duplicate: every call
    /// must be answered.
    pub fn stable_leader() -> Bounds {
        Bounds {
            nodes: 3,
            clients: vec![vec![Op::Increment, Op::Read]],
            timer_steps: 0,
            leader_timers: false,
            crashes: 1,
            drops: 0,
            duplicates: 1,
            sends_per_call: 1,
            max_round: 1,
            liveness: true,
            rewrite_promise: None,
        }
    }
}

/// A message in flight.
#[derive(Clone)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: PeerMsg,
    /// `msg` as printed: orders the network canonically and fingerprints it.
    key: String,
}

impl Envelope {
    fn new(from: NodeId, to: NodeId, msg: PeerMsg) -> Self {
        let key = format!("{msg:?}");
        Envelope { from, to, msg, key }
    }

    fn order(&self) -> (NodeId, NodeId, &str) {
        (self.to, self.from, &self.key)
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}: {}", self.from, self.to, self.key)
    }
}

/// A node's replica, behind a mutex only because a state must be `Sync`
/// and an object (`Box<dyn StateMachine>`) is only `Send`.
pub struct ReplicaCell {
    replica: Mutex<Replica>,
    types: Arc<Types>,
}

impl ReplicaCell {
    fn get(&self) -> std::sync::MutexGuard<'_, Replica> {
        self.replica
            .lock()
            .expect("no checker thread panics holding it")
    }
}

impl Clone for ReplicaCell {
    fn clone(&self) -> Self {
        let object = concoord_objects::builtin("Counter").expect("Counter is a built-in");
        let copy = self.get().fork(object, self.types.clone());
        ReplicaCell {
            replica: Mutex::new(copy),
            types: self.types.clone(),
        }
    }
}

/// One node: its three roles, its clock, and the calls it took from clients.
#[derive(Clone)]
pub struct Node {
    pub id: NodeId,
    pub alive: bool,
    pub now_ms: u64,
    pub acceptor: Acceptor,
    pub leader: Leader,
    pub replica: ReplicaCell,
    /// Calls this node took; their replies go back to the caller from here.
    connections: BTreeSet<CommandId>,
    /// A digest of everything above, kept up to date after every change.
    fingerprint: u64,
}

impl Node {
    fn refresh(&mut self) {
        let mut h = DefaultHasher::new();
        (self.id, self.alive, self.now_ms, &self.connections).hash(&mut h);
        // Printed into one buffer, hashed in one write: many small writes
        // into the hasher cost more than the printing.
        let mut printed = String::with_capacity(4096);
        write!(
            printed,
            "{:?}{:?}{:?}",
            self.acceptor,
            self.leader,
            *self.replica.get()
        )
        .expect("printing into a String cannot fail");
        printed.hash(&mut h);
        self.fingerprint = h.finish();
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let replica = self.replica.get();
        write!(
            f,
            "node {} {}: {:?} ballot {} next slot {}, acceptor promised {}, replica executed {}",
            self.id,
            if self.alive { "up" } else { "crashed" },
            self.leader.state(),
            self.leader.ballot(),
            self.leader.next_slot(),
            self.acceptor.promised(),
            replica.executed(),
        )
    }
}

/// A client: its next call, and the one it waits for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    pub id: ClientId,
    /// Calls of its script made so far.
    pub issued: usize,
    /// The call waiting for its answer, and how often it was sent.
    pub waiting: Option<(CommandId, u8)>,
}

/// What a client saw, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seen {
    Invoke {
        client: usize,
        op: Op,
    },
    /// The reply's MessagePack bytes, or the error's kind.
    Return {
        client: usize,
        reply: Result<Vec<u8>, String>,
    },
}

/// A state of the whole world.
#[derive(Clone)]
pub struct State {
    pub nodes: Vec<Arc<Node>>,
    /// Messages in flight, in a canonical order (a multiset).
    pub net: Vec<Envelope>,
    pub clients: Vec<Client>,
    pub history: Vec<Seen>,
    /// Every vote an acceptor cast: (slot, ballot, acceptor, batch digest).
    pub votes: BTreeSet<(Slot, Ballot, NodeId, u64)>,
    /// Every decision a replica was handed, by slot (batch digest).
    pub decided: BTreeMap<Slot, u64>,
    /// Slots a replica was handed a decision for that differs from an earlier one.
    pub conflicting_decisions: Vec<Slot>,
    /// Whether `history` has a linearization (worked out when it grows).
    pub linearizable: bool,
    pub timer_steps: u8,
    pub crashes: u8,
    pub drops: u8,
    pub duplicates: u8,
}

impl State {
    fn fingerprint_into<H: Hasher>(&self, h: &mut H) {
        for node in &self.nodes {
            node.fingerprint.hash(h);
        }
        for e in &self.net {
            e.order().hash(h);
        }
        self.clients.hash(h);
        self.history.hash(h);
        self.votes.hash(h);
        self.decided.hash(h);
        self.conflicting_decisions.hash(h);
        (self.timer_steps, self.crashes, self.drops, self.duplicates).hash(h);
    }

    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.fingerprint_into(&mut h);
        h.finish()
    }

    /// Values chosen per slot: a majority of the nodes voted for it at one ballot.
    pub fn chosen(&self) -> BTreeMap<Slot, BTreeSet<u64>> {
        let mut counts: BTreeMap<(Slot, Ballot, u64), usize> = BTreeMap::new();
        for (slot, ballot, _, digest) in &self.votes {
            *counts.entry((*slot, *ballot, *digest)).or_default() += 1;
        }
        let mut chosen: BTreeMap<Slot, BTreeSet<u64>> = BTreeMap::new();
        for ((slot, _, digest), n) in counts {
            if n > self.nodes.len() / 2 {
                chosen.entry(slot).or_default().insert(digest);
            }
        }
        chosen
    }

    /// Each replica's trace: per slot executed, a digest of its batch, and
    /// the command ids that ran on the object.
    pub fn traces(&self) -> Vec<ReplicaTrace> {
        self.nodes
            .iter()
            .map(|n| n.replica.get().trace.clone().expect("model replicas trace"))
            .collect()
    }

    /// Every client call answered.
    pub fn all_answered(&self, bounds: &Bounds) -> bool {
        self.clients
            .iter()
            .zip(&bounds.clients)
            .all(|(c, script)| c.issued == script.len() && c.waiting.is_none())
    }
}

impl Hash for State {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.fingerprint_into(h);
    }
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint() == other.fingerprint()
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("nodes", &self.nodes)
            .field("net", &self.net)
            .field("clients", &self.clients)
            .field("history", &self.history)
            .field("chosen", &self.chosen())
            .field("decided", &self.decided)
            .finish()
    }
}

/// What may happen next.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Deliver the message at this index of [`State::net`].
    Deliver(usize),
    Drop(usize),
    Duplicate(usize),
    /// Node (index) fires its timers.
    Timers(usize),
    Crash(usize),
    /// Client (index) sends its next call, or resends the one it waits
    /// for, to node (index).
    Send {
        client: usize,
        node: usize,
    },
}

/// The model: its bounds and the types replicas create objects of.
pub struct PaxosModel {
    pub bounds: Bounds,
    types: Arc<Types>,
}

fn node_id(index: usize) -> NodeId {
    index as NodeId + 1
}

fn digest(batch: &Batch) -> u64 {
    let mut h = DefaultHasher::new();
    format!("{batch:?}").hash(&mut h);
    h.finish()
}

impl PaxosModel {
    pub fn new(bounds: Bounds) -> Self {
        PaxosModel {
            bounds,
            types: Arc::new(Types::builtins()),
        }
    }

    fn members(&self) -> Vec<Member> {
        (0..self.bounds.nodes)
            .map(|i| Member {
                id: node_id(i),
                addr: format!("model-{i}"),
            })
            .collect()
    }

    fn index_of(&self, id: NodeId) -> usize {
        id as usize - 1
    }

    /// The group with node 1 elected, every message of the election delivered.
    fn initial(&self) -> State {
        let configs = ConfigHistory::genesis(self.members());
        let nodes = (0..self.bounds.nodes)
            .map(|i| {
                let id = node_id(i);
                let object = concoord_objects::builtin("Counter").expect("Counter is a built-in");
                let mut replica = Replica::founding(id, object, configs.clone());
                replica.trace = Some(ReplicaTrace::default());
                let mut node = Node {
                    id,
                    alive: true,
                    now_ms: 0,
                    acceptor: Acceptor::new(id),
                    leader: Leader::new(id, configs.clone(), LeaderConfig::default(), id),
                    replica: ReplicaCell {
                        replica: Mutex::new(replica),
                        types: self.types.clone(),
                    },
                    connections: BTreeSet::new(),
                    fingerprint: 0,
                };
                node.refresh();
                Arc::new(node)
            })
            .collect();
        let mut state = State {
            nodes,
            net: Vec::new(),
            clients: (0..self.bounds.clients.len())
                .map(|c| Client {
                    id: 0x100 + c as ClientId,
                    issued: 0,
                    waiting: None,
                })
                .collect(),
            history: Vec::new(),
            votes: BTreeSet::new(),
            decided: BTreeMap::new(),
            conflicting_decisions: Vec::new(),
            linearizable: true,
            timer_steps: 0,
            crashes: 0,
            drops: 0,
            duplicates: 0,
        };
        self.fire_timers(&mut state, 0);
        while !state.net.is_empty() {
            let e = state.net.remove(0);
            self.deliver(&mut state, e);
        }
        for node in &mut state.nodes {
            Arc::make_mut(node).refresh();
        }
        assert!(
            state.nodes[0].leader.is_active(),
            "node 1 leads in the initial state"
        );
        state
    }

    fn fire_timers(&self, state: &mut State, index: usize) {
        let mut fx = Effects::default();
        {
            let node = Arc::make_mut(&mut state.nodes[index]);
            node.now_ms += TIMER_STEP_MS;
            node.leader.tick(node.now_ms, &mut fx);
            // A follower first notes the deadline passed, and asks for
            // pre-votes only if still no heartbeat came a little later.
            if node.leader.state() == concoord_actors::LeaderState::Follower {
                node.now_ms += node.leader.election_timeout_ms() / 2;
                node.leader.tick(node.now_ms, &mut fx);
            }
        }
        self.carry_out(state, index, fx);
    }

    /// Hands `e` to the roles of its addressee and carries out what they ask.
    fn deliver(&self, state: &mut State, e: Envelope) {
        let index = self.index_of(e.to);
        if !state.nodes[index].alive {
            return;
        }
        let mut msg = e.msg;
        if let (PeerMsg::Promise(p), Some(rewrite)) = (&mut msg, self.bounds.rewrite_promise) {
            rewrite(p);
        }
        let mut fx = Effects::default();
        for role in msg.roles() {
            match role {
                Role::Acceptor => {
                    let node = Arc::make_mut(&mut state.nodes[index]);
                    let accept = match &msg {
                        PeerMsg::Accept(a) => Some((a.slot, a.ballot, a.batch.clone())),
                        _ => None,
                    };
                    node.acceptor.handle(e.from, msg.clone(), &mut fx);
                    if let Some((slot, ballot, batch)) = accept {
                        if node.acceptor.accepted(slot) == Some(&(ballot, batch.clone())) {
                            state.votes.insert((slot, ballot, e.to, digest(&batch)));
                        }
                    }
                }
                Role::Leader => {
                    let node = Arc::make_mut(&mut state.nodes[index]);
                    node.leader.handle(e.from, msg.clone(), &mut fx);
                }
                Role::Replica => {
                    if !self.record_decisions(state, &msg) {
                        continue;
                    }
                    let node = Arc::make_mut(&mut state.nodes[index]);
                    node.replica.get().handle(e.from, msg.clone(), &mut fx);
                }
            }
        }
        self.carry_out(state, index, fx);
    }

    /// Notes the decisions `msg` carries; false if one contradicts an
    /// earlier decision (the replica would stop on its assertion: the
    /// model records the conflict instead and withholds the message).
    fn record_decisions(&self, state: &mut State, msg: &PeerMsg) -> bool {
        let decisions: Vec<(Slot, &Batch)> = match msg {
            PeerMsg::Decision(Decision { slot, batch }) => vec![(*slot, batch)],
            PeerMsg::CatchUp(c) => c.decisions.iter().map(|(s, b)| (*s, b)).collect(),
            _ => return true,
        };
        let mut consistent = true;
        for (slot, batch) in decisions {
            let d = digest(batch);
            match state.decided.get(&slot) {
                Some(known) if *known != d => {
                    state.conflicting_decisions.push(slot);
                    consistent = false;
                }
                Some(_) => {}
                None => {
                    state.decided.insert(slot, d);
                }
            }
        }
        consistent
    }

    /// Carries out a node's effects: messages to itself are handled at once,
    /// others go in flight; replies go to the clients that wait on this node.
    fn carry_out(&self, state: &mut State, index: usize, fx: Effects) {
        let me = node_id(index);
        let mut local = Vec::new();
        for (to, msg) in fx.sends {
            let e = Envelope::new(me, to, msg);
            if to == me {
                local.push(e);
            } else if state.nodes[self.index_of(to)].alive {
                let at = state.net.partition_point(|x| x.order() <= e.order());
                state.net.insert(at, e);
            }
        }
        for (id, reply) in fx.replies {
            let node = Arc::make_mut(&mut state.nodes[index]);
            if node.connections.remove(&id) {
                self.answer(state, id, reply);
            }
        }
        for e in local {
            self.deliver(state, e);
        }
    }

    fn answer(&self, state: &mut State, id: CommandId, reply: Reply) {
        let Some(c) = state.clients.iter().position(|c| c.id == id.client) else {
            return;
        };
        if state.clients[c].waiting.map(|(w, _)| w) != Some(id) {
            return; // answered already
        }
        state.clients[c].waiting = None;
        state.history.push(Seen::Return {
            client: c,
            reply: reply.map_err(|e| e.kind),
        });
        state.linearizable = self.linearizable(&state.history);
    }

    /// The history as `concoord-check` operations, with its position as time.
    fn linearizable(&self, history: &[Seen]) -> bool {
        let mut open: BTreeMap<usize, (Op, u64)> = BTreeMap::new();
        let mut ops = Vec::new();
        for (t, seen) in history.iter().enumerate() {
            let t = t as u64;
            match seen {
                Seen::Invoke { client, op } => {
                    open.insert(*client, (*op, t));
                }
                Seen::Return { client, reply } => {
                    let (op, invoked) = open.remove(client).expect("a return follows its invoke");
                    let name = format!("c{client}");
                    ops.push(match reply {
                        Ok(bytes) => {
                            let v = rmpv::decode::read_value(&mut &bytes[..])
                                .unwrap_or(rmpv::Value::Nil);
                            Operation::ok(name, op.method(), vec![], value(v), invoked, t)
                        }
                        Err(kind) => Operation::err(name, op.method(), vec![], kind, invoked, t),
                    });
                }
            }
        }
        for (client, (op, invoked)) in open {
            ops.push(Operation::info(
                format!("c{client}"),
                op.method(),
                vec![],
                invoked,
            ));
        }
        let options = Options {
            timeout: None,
            explain: false,
            ..Options::default()
        };
        check_operations(&Counter::default(), &ops, &options).is_ok()
    }

    fn step(&self, state: &mut State, action: Action) {
        match action {
            Action::Deliver(i) => {
                let e = state.net.remove(i);
                self.deliver(state, e);
            }
            Action::Drop(i) => {
                state.net.remove(i);
                state.drops += 1;
            }
            Action::Duplicate(i) => {
                let e = state.net[i].clone();
                state.net.insert(i, e);
                state.duplicates += 1;
            }
            Action::Timers(n) => {
                state.timer_steps += 1;
                self.fire_timers(state, n);
            }
            Action::Crash(n) => {
                state.crashes += 1;
                let id = node_id(n);
                let node = Arc::make_mut(&mut state.nodes[n]);
                node.alive = false;
                state.net.retain(|e| e.to != id);
            }
            Action::Send { client, node } => self.send(state, client, node),
        }
    }

    fn send(&self, state: &mut State, c: usize, index: usize) {
        let client = &mut state.clients[c];
        let id = match client.waiting {
            Some((id, sends)) => {
                client.waiting = Some((id, sends + 1));
                id
            }
            None => {
                let op = self.bounds.clients[c][client.issued];
                client.issued += 1;
                let id = CommandId::new(client.id, client.issued as u64);
                client.waiting = Some((id, 1));
                state.history.push(Seen::Invoke { client: c, op });
                state.linearizable = self.linearizable(&state.history);
                id
            }
        };
        let op = self.bounds.clients[c][id.seq as usize - 1];
        let command = Command::Call {
            id,
            target: Target::default(),
            method: op.method().to_string(),
            args: encode_args::<i64>(&[]),
            ack_below: id.seq,
        };
        let mut fx = Effects::default();
        let node = Arc::make_mut(&mut state.nodes[index]);
        if node.leader.on_request(command, &mut fx).is_ok() {
            node.connections.insert(id);
        }
        self.carry_out(state, index, fx);
    }
}

impl Model for PaxosModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![self.initial()]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        let b = &self.bounds;
        for (i, e) in state.net.iter().enumerate() {
            // Copies of one message lead to the same states.
            if i > 0 && state.net[i - 1].order() == e.order() {
                continue;
            }
            actions.push(Action::Deliver(i));
            if state.drops < b.drops {
                actions.push(Action::Drop(i));
            }
            if state.duplicates < b.duplicates {
                actions.push(Action::Duplicate(i));
            }
        }
        for (n, node) in state.nodes.iter().enumerate() {
            if !node.alive {
                continue;
            }
            let may_time_out = if node.leader.is_active() {
                b.leader_timers
            } else {
                node.leader.ballot().round < b.max_round
            };
            if state.timer_steps < b.timer_steps && may_time_out {
                actions.push(Action::Timers(n));
            }
            // Checking liveness, only a follower may crash: no call can be
            // answered once the only leader is gone and no timer may fire.
            if state.crashes < b.crashes && !(b.liveness && node.leader.is_active()) {
                actions.push(Action::Crash(n));
            }
        }
        for (c, client) in state.clients.iter().enumerate() {
            let can_send = match client.waiting {
                Some((_, sends)) => sends < b.sends_per_call,
                None => client.issued < b.clients[c].len(),
            };
            if !can_send {
                continue;
            }
            for (n, node) in state.nodes.iter().enumerate() {
                if node.alive && node.leader.is_active() {
                    actions.push(Action::Send { client: c, node: n });
                }
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut state = last.clone();
        self.step(&mut state, action);
        // Nodes the step changed were copied (`Arc::make_mut`): only those
        // need their fingerprint again.
        for (node, before) in state.nodes.iter_mut().zip(&last.nodes) {
            if !Arc::ptr_eq(node, before) {
                Arc::make_mut(node).refresh();
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always("agreement", |_, s: &State| {
                s.conflicting_decisions.is_empty() && s.chosen().values().all(|v| v.len() == 1)
            }),
            Property::always("prefix consistency", |_, s: &State| {
                let traces = s.traces();
                traces.iter().all(|a| {
                    traces.iter().all(|b| {
                        a.slot_digests
                            .iter()
                            .all(|(slot, d)| !matches!(b.slot_digests.get(slot), Some(e) if e != d))
                    })
                })
            }),
            Property::always("each command id runs at most once", |_, s: &State| {
                s.traces().iter().all(|t| {
                    let distinct: BTreeSet<_> = t.applied.iter().collect();
                    distinct.len() == t.applied.len()
                })
            }),
            Property::always("linearizable", |_, s: &State| s.linearizable),
            Property::sometimes("every call answered", |m: &PaxosModel, s: &State| {
                s.all_answered(&m.bounds)
            }),
        ];
        if self.bounds.timer_steps > 0 {
            properties.push(Property::sometimes(
                "another leader elected",
                |_, s: &State| {
                    s.nodes
                        .iter()
                        .any(|n| n.leader.is_active() && n.leader.ballot().round > 1)
                },
            ));
        }
        if self.bounds.liveness {
            properties.push(Property::eventually(
                "every call answered eventually",
                |m: &PaxosModel, s: &State| s.all_answered(&m.bounds),
            ));
        }
        properties
    }
}
