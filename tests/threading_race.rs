//! Timeouts racing releases (issue 6): a replica's view of the log.
//!
//! Clients' acquires (timed, untimed, non-blocking), their cancels (the
//! deadline passing), resends of the same command id (a reconnect, before or
//! after the grant) and releases are put in flight and ordered in a seeded
//! random interleaving, several commands per slot, then fed to a
//! `concoord_actors::Replica` through `on_decision`, exactly as a replica sees
//! them after Paxos has ordered them. After every slot:
//! - the permits held (grants answered `true`, not yet released) never exceed
//!   the object's permits, and held + free == permits (no permit lost or made);
//! - every reply for one command id is the same reply (a resend gets the same
//!   grant, never a second one).
//!
//! Once everyone has released or been cancelled, nothing is parked and
//! `acquire(false)` succeeds exactly `permits` times.
//!
//! `CONCOORD_SIM_SEEDS=N` runs N seeds (default 200); `CONCOORD_SIM_SEED=S`
//! runs only seed S (to reproduce a failure).

use concoord::actors::config::{ConfigHistory, Member};
use concoord::actors::message::{Command, Decision, Effects};
use concoord::actors::replica::{Replica, CANCELLED_KIND};
use concoord::objects::rmpv::Value as V;
use concoord::objects::{encode_args, CommandId, ObjectError, Reply};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Runs `concoord_init`.
const INIT_CLIENT: u64 = 1;
/// Counts the free permits at the end with `acquire(false)`.
const PROBE_CLIENT: u64 = 7;

/// splitmix64: small, seedable, good enough to pick interleavings.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Lock,
    Semaphore,
    BoundedSemaphore,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Lock => "Lock",
            Kind::Semaphore => "Semaphore",
            Kind::BoundedSemaphore => "BoundedSemaphore",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum State {
    Idle,
    /// An acquire is outstanding; `cancellable` if it was timed.
    Acquiring {
        seq: u64,
        cancellable: bool,
        cancel_sent: bool,
    },
    /// Holds a permit granted to `acquire_seq`.
    Holding {
        acquire_seq: u64,
    },
    /// A release is outstanding (the permit still counts as held).
    Releasing {
        seq: u64,
    },
}

struct ClientModel {
    id: u64,
    next_seq: u64,
    state: State,
    /// Every Call this client sent, by seq (to resend the same bytes).
    sent: BTreeMap<u64, Command>,
}

impl ClientModel {
    fn call(&mut self, method: &str, args: Vec<u8>) -> Command {
        let seq = self.next_seq;
        self.next_seq += 1;
        // One command outstanding at a time: every reply below `seq` is in.
        let command = Command::Call {
            id: CommandId::new(self.id, seq),
            target: Default::default(),
            method: method.to_string(),
            args,
            ack_below: seq,
        };
        self.sent.insert(seq, command.clone());
        command
    }
}

struct World {
    seed: u64,
    kind: Kind,
    permits: u64,
    replica: Replica,
    slot: u64,
    clients: Vec<ClientModel>,
    /// In flight, not yet ordered (duplicates allowed).
    pool: Vec<Command>,
    /// The first reply seen for each command id.
    answers: BTreeMap<CommandId, Reply>,
    /// Grants (`true`) answered and not yet released.
    held: u64,
    grants: u64,
    timeouts: u64,
    cancelled_before_ordered: u64,
}

fn is_true(reply: &Reply) -> Option<bool> {
    match reply {
        Ok(bytes) => rmp_serde::from_slice::<bool>(bytes).ok(),
        Err(_) => None,
    }
}

fn arg_values(values: &[V]) -> Vec<u8> {
    encode_args(values)
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed);
        let kind = match rng.below(3) {
            0 => Kind::Lock,
            1 => Kind::Semaphore,
            _ => Kind::BoundedSemaphore,
        };
        let permits = if kind == Kind::Lock {
            1
        } else {
            1 + rng.below(4)
        };
        let object = concoord::builtin(kind.name()).expect("a built-in object");
        let configs = ConfigHistory::genesis(vec![Member {
            id: 1,
            addr: "mem-1".into(),
        }]);
        let replica = Replica::founding(1, object, configs);
        let n_clients = 2 + rng.below(5);
        let clients = (0..n_clients)
            .map(|i| ClientModel {
                id: 100 + i,
                next_seq: 1,
                state: State::Idle,
                sent: BTreeMap::new(),
            })
            .collect();
        let mut world = World {
            seed,
            kind,
            permits,
            replica,
            slot: 0,
            clients,
            pool: Vec::new(),
            answers: BTreeMap::new(),
            held: 0,
            grants: 0,
            timeouts: 0,
            cancelled_before_ordered: 0,
        };
        if kind != Kind::Lock {
            let init = Command::Call {
                id: CommandId::new(INIT_CLIENT, 1),
                target: Default::default(),
                method: "concoord_init".into(),
                args: encode_args(&[permits]),
                ack_below: 1,
            };
            world.decide(vec![init]);
            assert_eq!(
                world.answers.get(&CommandId::new(INIT_CLIENT, 1)),
                Some(&Ok(concoord::objects::encode_value(&()))),
                "concoord_init({permits})"
            );
        }
        world.check();
        world
    }

    fn ctx(&self) -> String {
        format!(
            "seed {} ({:?}, {} permit(s), {} clients, slot {})",
            self.seed,
            self.kind,
            self.permits,
            self.clients.len(),
            self.slot
        )
    }

    /// Orders `batch` in the next slot and processes the replies.
    fn decide(&mut self, batch: Vec<Command>) {
        let mut fx = Effects::default();
        self.replica.on_decision(
            Decision {
                slot: self.slot,
                batch: Arc::new(batch.into()),
            },
            &mut fx,
        );
        self.slot += 1;
        assert_eq!(self.replica.executed(), self.slot, "{}", self.ctx());
        for (id, reply) in fx.replies {
            self.on_reply(id, reply);
        }
        self.check();
    }

    fn on_reply(&mut self, id: CommandId, reply: Reply) {
        let ctx = self.ctx();
        if let Some(first) = self.answers.get(&id) {
            assert_eq!(
                first, &reply,
                "{ctx}: command {id} answered twice with different replies"
            );
            return; // a resend: the same answer, already counted
        }
        self.answers.insert(id, reply.clone());
        if id.client == PROBE_CLIENT && is_true(&reply) == Some(true) {
            self.held += 1; // taken for good
        }
        if id.client == INIT_CLIENT || id.client == PROBE_CLIENT {
            return; // not a modelled client
        }
        let Some(c) = self.clients.iter_mut().find(|c| c.id == id.client) else {
            panic!("{ctx}: a reply for unknown client {id}");
        };
        match c.state.clone() {
            State::Acquiring {
                seq, cancellable, ..
            } if seq == id.seq => match (&reply, is_true(&reply)) {
                (_, Some(true)) => {
                    c.state = State::Holding { acquire_seq: seq };
                    self.held += 1;
                    self.grants += 1;
                }
                (_, Some(false)) => {
                    c.state = State::Idle;
                    self.timeouts += 1;
                }
                (Err(e), _) if e.kind == CANCELLED_KIND => {
                    assert!(cancellable, "{ctx}: an untimed acquire {id} was cancelled");
                    c.state = State::Idle;
                    self.cancelled_before_ordered += 1;
                }
                _ => panic!("{ctx}: acquire {id} answered {reply:?}"),
            },
            State::Releasing { seq } if seq == id.seq => {
                assert_eq!(
                    reply,
                    Ok(concoord::objects::encode_value(&())),
                    "{ctx}: release {id} by a holder failed"
                );
                c.state = State::Idle;
                self.held -= 1;
            }
            other => panic!("{ctx}: reply {reply:?} for {id}, but the client is {other:?}"),
        }
    }

    /// The object's free permits, read from its replicated state.
    fn free_permits(&self) -> u64 {
        let snapshot = self.replica.snapshot();
        let state: V = rmp_serde::from_slice(&snapshot.object_state).expect("object state");
        // Field `index` of a struct encoded as an array (rmp_serde's default) or a map.
        fn field<'a>(v: &'a V, index: usize, name: &str) -> &'a V {
            match v {
                V::Array(a) => &a[index],
                V::Map(m) => {
                    &m.iter()
                        .find(|(k, _)| k.as_str() == Some(name))
                        .unwrap_or_else(|| panic!("no field {name} in {v}"))
                        .1
                }
                other => panic!("not a struct: {other}"),
            }
        }
        match self.kind {
            // Lock { locked, waiters }
            Kind::Lock => {
                let locked = field(&state, 0, "locked")
                    .as_bool()
                    .expect("Lock.locked is a bool");
                u64::from(!locked)
            }
            // Semaphore { core: Core { value, initial, waiters } }
            Kind::Semaphore | Kind::BoundedSemaphore => field(field(&state, 0, "core"), 0, "value")
                .as_u64()
                .expect("Core.value is an integer"),
        }
    }

    fn check(&self) {
        let ctx = self.ctx();
        assert!(
            self.held <= self.permits,
            "{ctx}: {} permits held, only {} exist",
            self.held,
            self.permits
        );
        let free = self.free_permits();
        assert_eq!(
            free + self.held,
            self.permits,
            "{ctx}: free {free} + held {} != permits (a permit was lost or made)",
            self.held
        );
        if free > 0 {
            // Permits are handed straight to waiters, so none may wait while one is free,
            // except calls parked and not yet answered because they are only just queued.
            let waiting_uncancelled = self.replica.parked_count();
            assert_eq!(
                waiting_uncancelled, 0,
                "{ctx}: {free} permit(s) free while {waiting_uncancelled} call(s) wait"
            );
        }
    }

    /// One client takes its next step, putting a command in flight.
    fn client_step(&mut self, rng: &mut Rng, winding_down: bool) {
        let i = rng.below(self.clients.len() as u64) as usize;
        let c = &mut self.clients[i];
        let mut out = Vec::new();
        match c.state.clone() {
            State::Idle if !winding_down => {
                let (args, cancellable, blocking) = match rng.below(10) {
                    // acquire(False)
                    0 => (arg_values(&[V::Boolean(false)]), false, false),
                    // acquire(True, 0): try once
                    1 => (arg_values(&[V::Boolean(true), V::from(0)]), false, false),
                    // acquire(): untimed
                    2 | 3 => (arg_values(&[]), false, true),
                    // acquire(True, t): timed
                    _ => {
                        let t = 0.01 + rng.below(100) as f64 / 100.0;
                        (arg_values(&[V::Boolean(true), V::F64(t)]), true, true)
                    }
                };
                let command = c.call("acquire", args);
                let seq = command.id().expect("a call").seq;
                c.state = State::Acquiring {
                    seq,
                    cancellable: cancellable && blocking,
                    cancel_sent: false,
                };
                out.push(command);
            }
            State::Idle => {}
            State::Acquiring {
                seq,
                cancellable,
                cancel_sent,
            } => {
                let id = CommandId::new(c.id, seq);
                if cancellable && (winding_down || rng.chance(50)) {
                    // The deadline passed (again, if the first cancel's answer was lost).
                    out.push(Command::Cancel { id });
                    c.state = State::Acquiring {
                        seq,
                        cancellable,
                        cancel_sent: true,
                    };
                } else if !cancel_sent || rng.chance(30) {
                    // A reconnect: the same call again, maybe through another replica.
                    out.push(c.sent[&seq].clone());
                }
            }
            State::Holding { acquire_seq } => {
                if rng.chance(25) {
                    // The grant's answer was lost: resend the granted call.
                    out.push(c.sent[&acquire_seq].clone());
                }
                if winding_down || rng.chance(60) {
                    let n = if self.kind == Kind::Lock {
                        arg_values(&[])
                    } else {
                        arg_values(&[V::from(1)])
                    };
                    let command = c.call("release", n);
                    let seq = command.id().expect("a call").seq;
                    c.state = State::Releasing { seq };
                    out.push(command);
                }
            }
            State::Releasing { seq } => {
                if rng.chance(30) {
                    out.push(c.sent[&seq].clone());
                }
            }
        }
        // A late duplicate of some old command of this client.
        if rng.chance(5) && !c.sent.is_empty() {
            let k = rng.below(c.sent.len() as u64) as usize;
            let old = c.sent.values().nth(k).expect("in range").clone();
            out.push(old);
        }
        self.pool.extend(out);
    }

    /// Orders a random handful of in-flight commands in one slot.
    fn order_step(&mut self, rng: &mut Rng) {
        if self.pool.is_empty() {
            return;
        }
        let n = 1 + rng.below(3.min(self.pool.len() as u64));
        let mut batch = Vec::new();
        for _ in 0..n {
            let k = rng.below(self.pool.len() as u64) as usize;
            batch.push(self.pool.swap_remove(k));
        }
        // Sometimes a command is lost instead (the client will resend it).
        if rng.chance(5) {
            batch.pop();
            if batch.is_empty() {
                return;
            }
        }
        self.decide(batch);
    }

    fn all_idle(&self) -> bool {
        self.clients.iter().all(|c| c.state == State::Idle)
    }

    fn run(&mut self, steps: usize) {
        let mut rng = Rng(self.seed ^ 0x5eed);
        for _ in 0..steps {
            if rng.chance(55) {
                self.client_step(&mut rng, false);
            } else {
                self.order_step(&mut rng);
            }
        }
        // Wind down: holders release, timed waiters give up, untimed ones get
        // their grant and release; no new acquires.
        let mut rounds = 0;
        while !self.all_idle() {
            rounds += 1;
            assert!(
                rounds < 100_000,
                "{}: never settled: {:?}",
                self.ctx(),
                self.clients.iter().map(|c| &c.state).collect::<Vec<_>>()
            );
            if rng.chance(50) || self.pool.is_empty() {
                self.client_step(&mut rng, true);
            } else {
                self.order_step(&mut rng);
            }
        }
        // Stragglers still in flight: order them all; none may change anything.
        while !self.pool.is_empty() {
            self.order_step(&mut rng);
        }
        assert!(self.all_idle(), "{}", self.ctx());
        assert_eq!(self.held, 0, "{}", self.ctx());
        assert_eq!(
            self.replica.parked_count(),
            0,
            "{}: calls still parked",
            self.ctx()
        );
        assert_eq!(
            self.free_permits(),
            self.permits,
            "{}: permits lost",
            self.ctx()
        );
        // Every permit can be taken, and no more.
        let mut taken = 0;
        for seq in 1..=self.permits + 1 {
            let id = CommandId::new(PROBE_CLIENT, seq);
            self.decide(vec![Command::Call {
                id,
                target: Default::default(),
                method: "acquire".into(),
                args: arg_values(&[V::Boolean(false)]),
                ack_below: seq,
            }]);
            if is_true(&self.answers[&id]) == Some(true) {
                taken += 1;
            }
        }
        assert_eq!(
            taken,
            self.permits,
            "{}: acquire(false) succeeded {taken} times",
            self.ctx()
        );
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(one) = std::env::var("CONCOORD_SIM_SEED") {
        return vec![one.parse().expect("CONCOORD_SIM_SEED is a number")];
    }
    let n: u64 = std::env::var("CONCOORD_SIM_SEEDS")
        .ok()
        .map(|s| s.parse().expect("CONCOORD_SIM_SEEDS is a number"))
        .unwrap_or(200);
    (0..n).collect()
}

#[test]
fn timeouts_racing_releases_never_exceed_or_lose_permits() {
    let mut totals = (0u64, 0u64, 0u64);
    for seed in seeds() {
        let outcome = std::panic::catch_unwind(|| {
            let mut world = World::new(seed);
            world.run(400);
            (world.grants, world.timeouts, world.cancelled_before_ordered)
        });
        match outcome {
            Ok((g, t, c)) => {
                totals.0 += g;
                totals.1 += t;
                totals.2 += c;
            }
            Err(panic) => {
                eprintln!(
                    "threading_race: seed {seed} failed; rerun with CONCOORD_SIM_SEED={seed}"
                );
                std::panic::resume_unwind(panic);
            }
        }
    }
    eprintln!(
        "threading_race: {} grants, {} acquires answered false, {} cancelled before ordered",
        totals.0, totals.1, totals.2
    );
    // The interleavings must actually exercise every outcome.
    assert!(totals.0 > 0 && totals.1 > 0, "{totals:?}");
    if seeds().len() >= 50 {
        assert!(totals.2 > 0, "no cancel was ever ordered before its call");
    }
}

/// The replica-level guarantee behind "a resend after the grant gets the same
/// grant": the same command id ordered again (even after the lock moved on)
/// is answered from the client table and never acquires a second time.
#[test]
fn resending_a_granted_acquire_returns_the_same_grant_without_acquiring_twice() {
    let object = concoord::builtin("Lock").expect("built in");
    let configs = ConfigHistory::genesis(vec![Member {
        id: 1,
        addr: "mem-1".into(),
    }]);
    let mut replica = Replica::founding(1, object, configs);
    let mut slot = 0;
    let mut decide = |replica: &mut Replica, batch: Vec<Command>| {
        let mut fx = Effects::default();
        replica.on_decision(
            Decision {
                slot,
                batch: Arc::new(batch.into()),
            },
            &mut fx,
        );
        slot += 1;
        fx
    };
    let call = |client: u64, seq: u64, method: &str, args: Vec<u8>| Command::Call {
        id: CommandId::new(client, seq),
        target: Default::default(),
        method: method.into(),
        args,
        ack_below: seq,
    };
    let t = Ok(concoord::objects::encode_value(&true));
    let f = Ok(concoord::objects::encode_value(&false));
    let unit = Ok(concoord::objects::encode_value(&()));
    let (holder, waiter, other) = (10, 20, 30);
    let waiter_acquire = call(waiter, 1, "acquire", arg_values(&[]));
    let wid = CommandId::new(waiter, 1);

    assert_eq!(
        decide(
            &mut replica,
            vec![call(holder, 1, "acquire", arg_values(&[]))]
        )
        .replies,
        vec![(CommandId::new(holder, 1), t.clone())]
    );
    // The waiter parks; a resend while parked is attached, not queued twice.
    let fx = decide(&mut replica, vec![waiter_acquire.clone()]);
    assert_eq!(fx.parked, vec![wid]);
    let fx = decide(&mut replica, vec![waiter_acquire.clone()]);
    assert_eq!(fx.parked, vec![wid]);
    assert!(fx.replies.is_empty());
    assert_eq!(replica.parked_count(), 1, "queued once");
    // The release hands the lock to the waiter: one grant.
    let fx = decide(
        &mut replica,
        vec![call(holder, 2, "release", arg_values(&[]))],
    );
    assert_eq!(
        fx.replies,
        vec![(CommandId::new(holder, 2), unit.clone()), (wid, t.clone())]
    );
    // Resent after the grant (twice, and after a cancel at its deadline): the same grant.
    for _ in 0..2 {
        let fx = decide(&mut replica, vec![waiter_acquire.clone()]);
        assert_eq!(fx.replies, vec![(wid, t.clone())]);
        assert!(fx.parked.is_empty(), "a granted call must not park again");
    }
    let fx = decide(&mut replica, vec![Command::Cancel { id: wid }]);
    assert_eq!(
        fx.replies,
        vec![(wid, t.clone())],
        "a cancel after the grant keeps it"
    );
    assert_eq!(replica.parked_count(), 0);
    // Held once: another client cannot take it; one release frees it; a second fails.
    let fx = decide(
        &mut replica,
        vec![call(other, 1, "acquire", arg_values(&[V::Boolean(false)]))],
    );
    assert_eq!(fx.replies, vec![(CommandId::new(other, 1), f)]);
    let fx = decide(
        &mut replica,
        vec![call(waiter, 2, "release", arg_values(&[]))],
    );
    assert_eq!(fx.replies, vec![(CommandId::new(waiter, 2), unit)]);
    let fx = decide(
        &mut replica,
        vec![call(other, 2, "locked", arg_values(&[]))],
    );
    assert_eq!(
        fx.replies,
        vec![(
            CommandId::new(other, 2),
            Ok(concoord::objects::encode_value(&false))
        )]
    );
    let fx = decide(
        &mut replica,
        vec![call(other, 3, "release", arg_values(&[]))],
    );
    assert_eq!(
        fx.replies,
        vec![(
            CommandId::new(other, 3),
            Err(ObjectError::new("RuntimeError", "release unlocked lock"))
        )]
    );
    // The old acquire, resent once more after its client moved on (ack_below 3),
    // is forgotten and ignored: it does not take the free lock.
    let fx = decide(
        &mut replica,
        vec![call(waiter, 3, "locked", arg_values(&[]))],
    );
    assert_eq!(fx.replies.len(), 1);
    let fx = decide(&mut replica, vec![waiter_acquire]);
    assert!(fx.replies.is_empty() && fx.parked.is_empty(), "{fx:?}");
    let fx = decide(
        &mut replica,
        vec![call(other, 4, "locked", arg_values(&[]))],
    );
    assert_eq!(
        fx.replies,
        vec![(
            CommandId::new(other, 4),
            Ok(concoord::objects::encode_value(&false))
        )]
    );
}
