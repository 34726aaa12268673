//! Simulated clients: closed-loop Counter clients and session clients on a
//! Lock and a Semaphore ([`SessionWorkload`]), and the history they record.

use super::*;

/// The Lock session clients take turns on.
pub const SESSION_LOCK: &str = "lock";
/// The Semaphore session clients take permits of.
pub const SESSION_SEMAPHORE: &str = "sem";
/// The shortest session TTL a simulated group accepts: simulated time is
/// cheap only while runs are short, so sessions there live for under a second.
pub const SIM_SESSION_TTL_MIN_MS: u64 = 100;

/// Clients that open a session and use a Lock ([`SESSION_LOCK`]) and a
/// Semaphore ([`SESSION_SEMAPHORE`]) as an application would: acquire
/// (fenced), hold a while, release, `rounds` times; then they stop talking,
/// so their sessions end by expiry too.
#[derive(Clone, Debug)]
pub struct SessionWorkload {
    pub clients: usize,
    pub ttl_ms: u64,
    pub rounds: u64,
    /// A holder releases after a random time up to this.
    pub hold_ms_max: u64,
    /// The Semaphore's permits (the first session client creates it so).
    pub permits: u64,
}

/// One simulated closed-loop client: one command outstanding at a time.
#[derive(Debug)]
pub struct SimClient {
    /// A session client's state; `None` for a Counter client.
    pub session: Option<SessionClient>,
    /// Stopped for good ([`Sim::crash_client`]).
    pub crashed: bool,
    pub id: ClientId,
    pub acked: u64,
    /// Acknowledged calls of the configured (writing) method.
    pub acked_writes: u64,
    pub issued: u64,
    pub ops: u64,
    /// Only ever talks to this node (to observe a minority side).
    pub pinned: Option<usize>,
    /// This client's own share of reads, instead of the run's.
    pub read_percent: Option<u64>,
    /// The node it sends to.
    pub target: usize,
    pub(super) outstanding: Option<Outstanding>,
    pub resends: u64,
}

impl SimClient {
    /// Done with its work: a Counter client all its operations answered, a
    /// session client its rounds done or its session gone, or it crashed.
    pub fn finished(&self) -> bool {
        if self.crashed {
            return true;
        }
        match &self.session {
            Some(s) => matches!(s.phase, SessionPhase::Done | SessionPhase::Expired),
            None => self.acked == self.ops,
        }
    }

    /// What a session client believes it holds.
    pub fn holding(&self) -> Option<&str> {
        match &self.session.as_ref()?.phase {
            SessionPhase::Holding { object, .. } => Some(object),
            _ => None,
        }
    }
}

/// A session client's view of its session.
#[derive(Clone, Debug)]
pub struct SessionClient {
    pub phase: SessionPhase,
    pub rounds_left: u64,
    /// Every grant it was answered: (object, token).
    pub grants: Vec<(String, u64)>,
    /// Answers no correct group gives this workload.
    pub unexpected: Vec<String>,
    /// When it last sent anything: keep-alives go out a third of a TTL after.
    pub(super) last_sent_ms: u64,
    /// When it last heard from the node it talks to: after half a TTL of
    /// silence it tries another (the real client does; the leader answers
    /// every keep-alive, so silence means the connection is cut).
    pub(super) last_heard_ms: u64,
}

/// Where a session client is in its work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionPhase {
    /// The first session client creates the Semaphore with its permits
    /// (outside any session, so no expiry can leave it uncreated).
    CreatingSemaphore,
    /// `concoord_open_session` not answered yet.
    Opening,
    /// Between rounds.
    Idle,
    Acquiring(String),
    Holding {
        object: String,
        token: u64,
        until_ms: u64,
    },
    Releasing(String),
    /// Its rounds are done: it falls silent and its session expires.
    Done,
    /// The group answered SessionExpired.
    Expired,
}

#[derive(Debug, Clone)]
pub(super) struct Outstanding {
    pub(super) id: CommandId,
    pub(super) target: concoord_objects::Target,
    pub(super) method: String,
    pub(super) args: Vec<u8>,
    /// Index of this operation in [`Sim::ops`] (Counter clients only).
    pub(super) op: Option<usize>,
    /// The group said it waits: it stays with that node, as the real
    /// client stays on its connection, until told to go elsewhere. (It still
    /// resends there: the wake-up may be lost on this network, not on TCP.)
    pub(super) parked: bool,
    pub(super) first_sent_ms: u64,
    pub(super) last_sent_ms: u64,
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
    /// A read sent allowing a stale answer ([`SimReads::Stale`]).
    pub stale: bool,
}

/// Where a session client's call on `object` goes ("" is the session's own
/// call, on the default object).
pub(super) fn session_target(object: &str) -> concoord_objects::Target {
    match object {
        "" => concoord_objects::Target::default(),
        SESSION_LOCK => concoord_objects::Target::named(object, "Lock"),
        _ => concoord_objects::Target::named(object, "Semaphore"),
    }
}

pub(super) fn decode_reply(reply: &[u8]) -> rmpv::Value {
    rmpv::decode::read_value(&mut &reply[..]).unwrap_or(rmpv::Value::Nil)
}

impl Sim {
    pub(super) fn client_tick(&mut self, c: usize) {
        let now = self.now_ms;
        let timeout = self.config.client_timeout_ms;
        let client = &mut self.clients[c];
        match &client.outstanding {
            None if client.issued < client.ops => {
                client.issued += 1;
                let id = CommandId::new(client.id, client.issued);
                let read_percent = client.read_percent.unwrap_or(self.config.read_percent);
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
                    stale: self.config.reads == SimReads::Stale && method == "getvalue",
                });
                let client = &mut self.clients[c];
                client.outstanding = Some(Outstanding {
                    id,
                    target,
                    method,
                    args: encode_args::<i64>(&[]),
                    op: Some(self.ops.len() - 1),
                    parked: false,
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

    /// A session client's turn: resend what is unanswered, else start its
    /// next call; and keep its session alive while it has one.
    pub(super) fn session_tick(&mut self, c: usize) {
        let now = self.now_ms;
        let timeout = self.config.client_timeout_ms;
        let workload = self
            .config
            .sessions
            .clone()
            .expect("session clients have a workload");
        let nodes = self.nodes.len();
        let client = &mut self.clients[c];
        let mut next = None;
        if let Some(o) = &client.outstanding {
            if now >= o.last_sent_ms + timeout {
                client.resends += 1;
                if !o.parked && client.pinned.is_none() {
                    client.target = (client.target + 1) % nodes;
                }
                self.send_outstanding(c);
            }
        } else {
            let s = client.session.as_mut().expect("a session client");
            next = match s.phase.clone() {
                SessionPhase::CreatingSemaphore => Some((
                    SESSION_SEMAPHORE.to_string(),
                    INIT_METHOD,
                    encode_args(&[workload.permits]),
                )),
                SessionPhase::Opening => Some((
                    String::new(),
                    OPEN_SESSION_METHOD,
                    encode_args(&[workload.ttl_ms]),
                )),
                SessionPhase::Idle if s.rounds_left == 0 => {
                    s.phase = SessionPhase::Done;
                    None
                }
                // The others wait until the Semaphore exists with its permits.
                SessionPhase::Idle if self.semaphore_ready => {
                    let object = if self.rng.chance(50) {
                        SESSION_LOCK
                    } else {
                        SESSION_SEMAPHORE
                    };
                    s.phase = SessionPhase::Acquiring(object.to_string());
                    Some((
                        object.to_string(),
                        "acquire_fenced",
                        encode_args::<u64>(&[]),
                    ))
                }
                SessionPhase::Holding {
                    object, until_ms, ..
                } if now >= until_ms => {
                    s.phase = SessionPhase::Releasing(object.clone());
                    Some((object, "release", encode_args::<u64>(&[])))
                }
                _ => None,
            };
        }
        if let Some((object, method, args)) = next {
            self.issue(c, session_target(&object), method, args);
        }
        let client = &mut self.clients[c];
        let s = client.session.as_mut().expect("a session client");
        let has_session = !matches!(
            s.phase,
            SessionPhase::CreatingSemaphore
                | SessionPhase::Opening
                | SessionPhase::Done
                | SessionPhase::Expired
        );
        // As the real client: another node when its own was silent for half a TTL.
        if has_session && client.pinned.is_none() && now >= s.last_heard_ms + workload.ttl_ms / 2 {
            s.last_heard_ms = now;
            client.target = (client.target + 1) % nodes;
            // A new connection: the real client resends parked calls on it.
            if let Some(o) = client.outstanding.as_mut().filter(|o| o.parked) {
                o.parked = false;
                self.send_outstanding(c);
            }
        }
        let client = &mut self.clients[c];
        let s = client.session.as_mut().expect("a session client");
        // As the real client: a keep-alive when nothing went out for a third of the TTL.
        if has_session && now >= s.last_sent_ms + workload.ttl_ms / 3 {
            s.last_sent_ms = now;
            let node = client.target;
            self.transmit(Endpoint::Client(c), Endpoint::Node(node), || {
                Event::KeepAlive { client: c, node }
            });
        }
    }

    /// Sends a session client's next call.
    pub(super) fn issue(
        &mut self,
        c: usize,
        target: concoord_objects::Target,
        method: &str,
        args: Vec<u8>,
    ) {
        let now = self.now_ms;
        let client = &mut self.clients[c];
        client.issued += 1;
        client.outstanding = Some(Outstanding {
            id: CommandId::new(client.id, client.issued),
            target,
            method: method.to_string(),
            args,
            op: None,
            parked: false,
            first_sent_ms: now,
            last_sent_ms: now,
        });
        self.send_outstanding(c);
    }

    /// A session client's call was answered: its next phase.
    pub(super) fn session_answered(&mut self, c: usize, reply: &Reply) {
        let now = self.now_ms;
        let hold_ms_max = self.config.sessions.as_ref().map_or(0, |w| w.hold_ms_max);
        let s = self.clients[c].session.as_mut().expect("a session client");
        let value = reply.as_ref().ok().map(|bytes| decode_reply(bytes));
        let expired = matches!(reply, Err(e) if e.kind == SESSION_EXPIRED_KIND);
        s.phase = match (s.phase.clone(), value) {
            (_, None) if expired => SessionPhase::Expired,
            (SessionPhase::CreatingSemaphore, Some(_)) => {
                self.semaphore_ready = true;
                SessionPhase::Opening
            }
            (SessionPhase::Opening, Some(_)) => SessionPhase::Idle,
            (SessionPhase::Acquiring(object), Some(v)) if v.as_u64().is_some() => {
                let token = v.as_u64().expect("matched above");
                s.grants.push((object.clone(), token));
                SessionPhase::Holding {
                    object,
                    token,
                    until_ms: now + self.rng.below(hold_ms_max + 1),
                }
            }
            (SessionPhase::Releasing(_), Some(_)) => {
                s.rounds_left -= 1;
                SessionPhase::Idle
            }
            (phase, _) => {
                s.unexpected
                    .push(format!("{phase:?} was answered {reply:?}"));
                SessionPhase::Done
            }
        };
    }

    pub(super) fn send_outstanding(&mut self, c: usize) {
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
            args: o.args.clone(),
            ack_below: o.id.seq,
        };
        if let Some(s) = &mut client.session {
            s.last_sent_ms = now;
        }
        let mut node = client.target;
        if self.config.reads_anywhere
            && client.pinned.is_none()
            && self.routing.may_read(&o.target, &o.method)
        {
            node = self.rng.below(self.nodes.len() as u64) as usize;
        }
        self.transmit(Endpoint::Client(c), Endpoint::Node(node), || {
            Event::Request {
                client: c,
                node,
                command: command.clone(),
            }
        });
    }

    pub(super) fn client_response(&mut self, c: usize, node: usize, id: CommandId, answer: Answer) {
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
                if client.session.is_none() && o.method == self.config.method {
                    client.acked_writes += 1;
                }
                client.outstanding = None;
                if let Some(op) = o.op {
                    self.ops[op].completed = Some((now, reply.clone()));
                }
                if self.clients[c].session.is_some() {
                    // The answer came over a connection that works: stay on it.
                    if self.clients[c].pinned.is_none() {
                        self.clients[c].target = node;
                    }
                    self.session_answered(c, &reply);
                }
                self.deliveries.push(Delivery {
                    at_ms: now,
                    client: c,
                    node,
                    id,
                    first_sent_ms: o.first_sent_ms,
                    reply,
                });
            }
            Answer::Parked => {
                if let Some(o) = client.outstanding.as_mut() {
                    o.parked = true;
                }
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

    /// Stops a client for good, whatever it was doing: it never sends again,
    /// so its session is left to expire.
    pub fn crash_client(&mut self, c: usize) {
        self.clients[c].crashed = true;
    }
}
