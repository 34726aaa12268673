//! A thread-safe history recorder for tests: what each client invoked, when,
//! and how it ended.
//!
//! A [`History`] is a list of [`Event`]s, each stamped with a monotonic time
//! in nanoseconds since the recorder started (or since whatever origin a
//! custom clock uses, e.g. a simulator's virtual clock). Every operation has
//! an *invoke* event and at most one completion:
//!
//! | completion | meaning | linearizability checker |
//! |---|---|---|
//! | `ok` ([`PendingOp::ok`]) | it took effect and returned a value | must fit |
//! | `ok` with an error ([`PendingOp::err`]) | it took effect and the *object* raised (`Empty`, `RuntimeError: release unlocked lock`, …) | must fit |
//! | `fail` ([`PendingOp::fail`]) | it certainly did **not** take effect (refused, never sent) | dropped |
//! | `info` ([`PendingOp::info`]) | unknown: timeout, `Unavailable`, crashed client | may take effect at any time after its invocation, or never |
//!
//! An operation with no completion at all (the history ended first) counts
//! as `info`. A [`PendingOp`] dropped without completion records `info`.
//!
//! How to map `concoord::ClientError` (kept out of this module on purpose, so
//! the recorder does not depend on the network code): `Object(e)` →
//! [`PendingOp::err`] with `e.kind`; `UnknownMethod` / `BadArguments` →
//! `err` too (the object refused the arguments; checkers treat these two
//! kinds as "no effect"); `Refused` → [`PendingOp::fail`] (the group never
//! accepted the command); `Unavailable` and `Invalid` → [`PendingOp::info`]
//! (it may have been ordered; the reply was lost or unreadable).
//! [`PendingOp::finish_error`] does exactly this from the error's kind string.
//!
//! Operations are object-agnostic: a method name, positional arguments and a
//! result, all as [`rmpv::Value`] (see [`value`] and [`from_json`] to build them).
//!
//! ```
//! use concoord_check::history::History;
//! let history = History::new();
//! let op = history.invoke("c1", "increment", vec![]);
//! op.ok(());
//! let op = history.invoke("c2", "getvalue", vec![]);
//! op.ok(1);
//! assert_eq!(history.operations().len(), 2);
//! ```
//!
//! By hand, with explicit times (tests of the checkers):
//!
//! ```
//! use concoord_check::history::{History, Operation};
//! let h = History::from_operations(vec![
//!     Operation::ok("a", "setvalue", vec![1.into()], (), 0, 10),
//!     Operation::ok("b", "getvalue", vec![], 1, 20, 30),
//!     Operation::info("c", "setvalue", vec![2.into()], 5),
//! ]);
//! assert_eq!(h.operations().len(), 3);
//! ```
//!
//! From a simulation: [`History::with_clock`] takes the simulator's clock
//! (see [`ms`] to turn simulated milliseconds into the nanoseconds stored
//! here), or use the `*_at` variants to stamp each event explicitly.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A time stamp: nanoseconds since the history's origin.
pub type Time = u64;

/// Simulated milliseconds as a [`Time`] (nanoseconds).
pub fn ms(millis: u64) -> Time {
    millis.saturating_mul(1_000_000)
}

/// Any serializable value as an argument or result value.
///
/// Panics if `v` cannot be represented (it can: any `Serialize` type maps
/// to a MessagePack value).
pub fn value<T: Serialize>(v: T) -> rmpv::Value {
    rmpv::ext::to_value(v).expect("any Serialize value maps to MessagePack")
}

/// A JSON value as an argument or result value.
pub fn from_json(v: &serde_json::Value) -> rmpv::Value {
    value(v)
}

/// A value as JSON (for reports and dumps).
pub fn to_json(v: &rmpv::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_else(|_| serde_json::Value::String(format!("{v}")))
}

/// Identifies one operation within a history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId(pub u64);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// An error the object raised (the operation took effect and returned it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorValue {
    pub kind: String,
    pub message: String,
}

/// What a completed operation returned: a value or the object's error.
pub type Return = Result<rmpv::Value, ErrorValue>;

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub time: Time,
    pub client: String,
    pub op: OpId,
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    /// The client sent the call.
    Invoke {
        method: String,
        args: Vec<rmpv::Value>,
    },
    /// It took effect and returned (a value or the object's error).
    Ok { result: Return },
    /// It certainly did not take effect.
    Fail { error: String },
    /// Unknown whether it took effect (and when).
    Info { reason: String },
    /// The client's session is gone (crashed, expired): whatever it held may
    /// be released from now on. Not tied to an operation (`op` is unused).
    SessionEnd,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Completion {
    /// Took effect and returned at `at`.
    Ok { result: Return, at: Time },
    /// Certainly did not take effect.
    Fail { error: String, at: Time },
    /// Unknown; `at` is when the client gave up (`None`: never completed).
    Info { reason: String, at: Option<Time> },
}

/// An operation: its invocation paired with its completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub id: OpId,
    pub client: String,
    pub method: String,
    pub args: Vec<rmpv::Value>,
    pub invoke: Time,
    pub completion: Completion,
    /// A read the client allowed to be stale (`--stale`): served by one
    /// replica from its own state, which may be behind. Linearizability
    /// checkers leave such reads out (they may see any earlier state, so
    /// they constrain nothing); every other operation is checked as usual.
    #[serde(default)]
    pub stale: bool,
}

impl Operation {
    fn new(
        client: impl Into<String>,
        method: &str,
        args: Vec<rmpv::Value>,
        invoke: Time,
        completion: Completion,
    ) -> Operation {
        Operation {
            id: OpId(u64::MAX),
            client: client.into(),
            method: method.to_string(),
            args,
            invoke,
            completion,
            stale: false,
        }
    }

    /// Marks this operation a read allowed to be stale ([`Operation::stale`]).
    pub fn allow_stale(mut self) -> Operation {
        self.stale = true;
        self
    }

    /// A completed operation that returned `result` (ids are assigned by
    /// [`History::from_operations`]).
    pub fn ok(
        client: impl Into<String>,
        method: &str,
        args: Vec<rmpv::Value>,
        result: impl Serialize,
        invoke: Time,
        ret: Time,
    ) -> Operation {
        let result = Ok(value(result));
        Operation::new(
            client,
            method,
            args,
            invoke,
            Completion::Ok { result, at: ret },
        )
    }

    /// A completed operation on which the object raised `kind`.
    pub fn err(
        client: impl Into<String>,
        method: &str,
        args: Vec<rmpv::Value>,
        kind: &str,
        invoke: Time,
        ret: Time,
    ) -> Operation {
        let result = Err(ErrorValue {
            kind: kind.to_string(),
            message: String::new(),
        });
        Operation::new(
            client,
            method,
            args,
            invoke,
            Completion::Ok { result, at: ret },
        )
    }

    /// An operation that certainly did not take effect.
    pub fn fail(
        client: impl Into<String>,
        method: &str,
        args: Vec<rmpv::Value>,
        invoke: Time,
        at: Time,
    ) -> Operation {
        let completion = Completion::Fail {
            error: "failed".into(),
            at,
        };
        Operation::new(client, method, args, invoke, completion)
    }

    /// An operation whose outcome is unknown.
    pub fn info(
        client: impl Into<String>,
        method: &str,
        args: Vec<rmpv::Value>,
        invoke: Time,
    ) -> Operation {
        let completion = Completion::Info {
            reason: "unknown".into(),
            at: None,
        };
        Operation::new(client, method, args, invoke, completion)
    }

    /// The return value, for an operation that completed with one.
    pub fn result(&self) -> Option<&Return> {
        match &self.completion {
            Completion::Ok { result, .. } => Some(result),
            _ => None,
        }
    }

    /// When it returned, for `ok` and `fail`; `None` for `info`.
    pub fn returned(&self) -> Option<Time> {
        match &self.completion {
            Completion::Ok { at, .. } | Completion::Fail { at, .. } => Some(*at),
            Completion::Info { .. } => None,
        }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self.completion, Completion::Ok { .. })
    }

    pub fn is_fail(&self) -> bool {
        matches!(self.completion, Completion::Fail { .. })
    }

    pub fn is_info(&self) -> bool {
        matches!(self.completion, Completion::Info { .. })
    }
}

fn show_args(args: &[rmpv::Value]) -> String {
    let parts: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    parts.join(", ")
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}({})",
            self.id,
            self.client,
            self.method,
            show_args(&self.args)
        )?;
        match &self.completion {
            Completion::Ok { result: Ok(v), at } => {
                write!(f, " -> {v} [{}, {}]", self.invoke, at)
            }
            Completion::Ok { result: Err(e), at } => {
                write!(f, " -> raised {} [{}, {}]", e.kind, self.invoke, at)
            }
            Completion::Fail { error, at } => {
                write!(f, " -> fail ({error}) [{}, {}]", self.invoke, at)
            }
            Completion::Info { reason, .. } => {
                write!(f, " -> info ({reason}) [{}, ∞)", self.invoke)
            }
        }
    }
}

type Clock = Arc<dyn Fn() -> Time + Send + Sync>;

struct Inner {
    events: Vec<Event>,
    next_op: u64,
}

/// A thread-safe, cheap-to-clone event log (clones share it).
#[derive(Clone)]
pub struct History {
    inner: Arc<Mutex<Inner>>,
    clock: Clock,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("events", &self.len())
            .finish()
    }
}

impl History {
    /// A recorder whose clock is real monotonic time since now.
    pub fn new() -> History {
        let start = Instant::now();
        History::with_clock(move || start.elapsed().as_nanos() as Time)
    }

    /// A recorder reading `clock` (nanoseconds; e.g. a simulator's virtual
    /// time, `move || ms(sim.now_ms())`). It must not go backwards.
    pub fn with_clock(clock: impl Fn() -> Time + Send + Sync + 'static) -> History {
        History {
            inner: Arc::new(Mutex::new(Inner {
                events: Vec::new(),
                next_op: 0,
            })),
            clock: Arc::new(clock),
        }
    }

    /// A history of hand-made operations (ids are assigned in order). Its
    /// clock stays at 0; use the `*_at` methods to add more.
    pub fn from_operations(ops: Vec<Operation>) -> History {
        let history = History::with_clock(|| 0);
        for op in ops {
            history.push_operation(op);
        }
        history
    }

    /// A history of recorded events (e.g. read back from [`History::to_json`]).
    pub fn from_events(events: Vec<Event>) -> History {
        let history = History::with_clock(|| 0);
        {
            let mut inner = history.lock();
            inner.next_op = events.iter().map(|e| e.op.0 + 1).max().unwrap_or(0);
            inner.events = events;
        }
        history
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the history from the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The clock's current reading.
    pub fn now(&self) -> Time {
        (self.clock)()
    }

    fn record(&self, client: String, op: Option<OpId>, kind: EventKind, at: Option<Time>) -> OpId {
        let mut inner = self.lock();
        // Read the clock under the lock so the log's order is its time order.
        let time = at.unwrap_or_else(|| (self.clock)());
        let op = op.unwrap_or_else(|| {
            inner.next_op += 1;
            OpId(inner.next_op - 1)
        });
        inner.events.push(Event {
            time,
            client,
            op,
            kind,
        });
        op
    }

    /// Records that `client` invokes `method(args)` now.
    pub fn invoke(
        &self,
        client: impl fmt::Display,
        method: &str,
        args: Vec<rmpv::Value>,
    ) -> PendingOp {
        self.invoke_inner(client.to_string(), method, args, None)
    }

    /// [`History::invoke`] at an explicit time.
    pub fn invoke_at(
        &self,
        client: impl fmt::Display,
        method: &str,
        args: Vec<rmpv::Value>,
        at: Time,
    ) -> PendingOp {
        self.invoke_inner(client.to_string(), method, args, Some(at))
    }

    fn invoke_inner(
        &self,
        client: String,
        method: &str,
        args: Vec<rmpv::Value>,
        at: Option<Time>,
    ) -> PendingOp {
        let kind = EventKind::Invoke {
            method: method.to_string(),
            args,
        };
        let id = self.record(client.clone(), None, kind, at);
        PendingOp {
            history: self.clone(),
            id,
            client,
            done: false,
        }
    }

    /// Records a completion of operation `op` by `client` (the raw form of
    /// [`PendingOp`]'s methods; `at: None` reads the clock).
    pub fn complete(&self, client: impl fmt::Display, op: OpId, kind: EventKind, at: Option<Time>) {
        self.record(client.to_string(), Some(op), kind, at);
    }

    /// Marks `client`'s session as gone now: whatever it held may be
    /// released from here on (used by the mutual-exclusion checker).
    pub fn session_end(&self, client: impl fmt::Display) {
        self.record(client.to_string(), None, EventKind::SessionEnd, None);
    }

    /// [`History::session_end`] at an explicit time.
    pub fn session_end_at(&self, client: impl fmt::Display, at: Time) {
        self.record(client.to_string(), None, EventKind::SessionEnd, Some(at));
    }

    /// Adds a whole operation (invoke and completion events).
    pub fn push_operation(&self, op: Operation) -> OpId {
        let pending = self.invoke_at(op.client, &op.method, op.args, op.invoke);
        let id = pending.id;
        match op.completion {
            Completion::Ok { result, at } => pending.finish_at(EventKind::Ok { result }, at),
            Completion::Fail { error, at } => pending.finish_at(EventKind::Fail { error }, at),
            Completion::Info { reason, at } => match at {
                Some(at) => pending.finish_at(EventKind::Info { reason }, at),
                None => pending.forget(),
            },
        }
        id
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the events, in recording order.
    pub fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    /// The operations, ordered by invocation time (then id). An operation
    /// never completed is `Info { at: None }`; a second completion of the
    /// same operation is ignored.
    pub fn operations(&self) -> Vec<Operation> {
        let events = self.events();
        let mut ops: BTreeMap<OpId, Operation> = BTreeMap::new();
        for e in &events {
            match &e.kind {
                EventKind::Invoke { method, args } => {
                    ops.insert(
                        e.op,
                        Operation {
                            id: e.op,
                            client: e.client.clone(),
                            method: method.clone(),
                            args: args.clone(),
                            invoke: e.time,
                            completion: Completion::Info {
                                reason: "never completed".into(),
                                at: None,
                            },
                            stale: false,
                        },
                    );
                }
                EventKind::SessionEnd => {}
                kind => {
                    let Some(op) = ops.get_mut(&e.op) else {
                        continue;
                    };
                    if !matches!(op.completion, Completion::Info { at: None, .. }) {
                        continue;
                    }
                    op.completion = match kind {
                        EventKind::Ok { result } => Completion::Ok {
                            result: result.clone(),
                            at: e.time,
                        },
                        EventKind::Fail { error } => Completion::Fail {
                            error: error.clone(),
                            at: e.time,
                        },
                        EventKind::Info { reason } => Completion::Info {
                            reason: reason.clone(),
                            at: Some(e.time),
                        },
                        EventKind::Invoke { .. } | EventKind::SessionEnd => unreachable!(),
                    };
                }
            }
        }
        let mut ops: Vec<Operation> = ops.into_values().collect();
        ops.sort_by_key(|op| (op.invoke, op.id));
        ops
    }

    /// `(client, time)` of every session end, in recording order.
    pub fn session_ends(&self) -> Vec<(String, Time)> {
        self.lock()
            .events
            .iter()
            .filter(|e| e.kind == EventKind::SessionEnd)
            .map(|e| (e.client.clone(), e.time))
            .collect()
    }

    /// The events as JSON (one object per event), for dumping a failing run.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.events()).expect("events serialize")
    }

    /// Reads [`History::to_json`] back.
    pub fn from_json(text: &str) -> Result<History, serde_json::Error> {
        Ok(History::from_events(serde_json::from_str(text)?))
    }
}

/// An invoked operation awaiting its completion. Dropping it without
/// completing records `info` ("dropped"): a client that panicked or was
/// cancelled left the outcome unknown.
pub struct PendingOp {
    history: History,
    id: OpId,
    client: String,
    done: bool,
}

impl fmt::Debug for PendingOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PendingOp({} {})", self.id, self.client)
    }
}

impl PendingOp {
    pub fn id(&self) -> OpId {
        self.id
    }

    pub fn client(&self) -> &str {
        &self.client
    }

    fn finish(mut self, kind: EventKind, at: Option<Time>) {
        self.done = true;
        self.history.complete(&self.client, self.id, kind, at);
    }

    fn finish_at(self, kind: EventKind, at: Time) {
        self.finish(kind, Some(at))
    }

    /// Leaves the operation without completion (counts as `info`), without
    /// recording anything.
    pub fn forget(mut self) {
        self.done = true;
    }

    /// It took effect and returned `result`.
    pub fn ok(self, result: impl Serialize) {
        self.finish(
            EventKind::Ok {
                result: Ok(value(result)),
            },
            None,
        )
    }

    /// [`PendingOp::ok`] at an explicit time.
    pub fn ok_at(self, result: impl Serialize, at: Time) {
        self.finish_at(
            EventKind::Ok {
                result: Ok(value(result)),
            },
            at,
        )
    }

    /// It took effect and the object raised `kind: message`.
    pub fn err(self, kind: &str, message: &str) {
        self.err_inner(kind, message, None)
    }

    /// [`PendingOp::err`] at an explicit time.
    pub fn err_at(self, kind: &str, message: &str, at: Time) {
        self.err_inner(kind, message, Some(at))
    }

    fn err_inner(self, kind: &str, message: &str, at: Option<Time>) {
        let result = Err(ErrorValue {
            kind: kind.to_string(),
            message: message.to_string(),
        });
        self.finish(EventKind::Ok { result }, at)
    }

    /// It certainly did not take effect.
    pub fn fail(self, error: impl fmt::Display) {
        self.finish(
            EventKind::Fail {
                error: error.to_string(),
            },
            None,
        )
    }

    /// [`PendingOp::fail`] at an explicit time.
    pub fn fail_at(self, error: impl fmt::Display, at: Time) {
        let error = error.to_string();
        self.finish_at(EventKind::Fail { error }, at)
    }

    /// Outcome unknown (timeout, unavailable, crash).
    pub fn info(self) {
        self.info_because("unknown")
    }

    /// [`PendingOp::info`] with a reason.
    pub fn info_because(self, reason: impl fmt::Display) {
        let reason = reason.to_string();
        self.finish(EventKind::Info { reason }, None)
    }

    /// [`PendingOp::info_because`] at an explicit time.
    pub fn info_at(self, reason: impl fmt::Display, at: Time) {
        let reason = reason.to_string();
        self.finish_at(EventKind::Info { reason }, at)
    }

    /// Completes from a call's outcome, classifying an error by its kind as
    /// `concoord`'s client reports it (`concoord::ClientError::kind`):
    /// `Unavailable` and `Invalid` → info; `Refused` → fail; anything else is
    /// the object's error → [`PendingOp::err`].
    pub fn finish_error(self, kind: &str, message: &str) {
        match kind {
            "Unavailable" | "Invalid" => self.info_because(format!("{kind}: {message}")),
            "Refused" => self.fail(format!("{kind}: {message}")),
            _ => self.err(kind, message),
        }
    }
}

impl Drop for PendingOp {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            let kind = EventKind::Info {
                reason: "dropped".into(),
            };
            self.history.complete(&self.client, self.id, kind, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_pairs_operations() {
        let h = History::new();
        let a = h.invoke("a", "setvalue", vec![value(1)]);
        let b = h.invoke(7, "getvalue", vec![]);
        a.ok(());
        b.info_because("timeout");
        let c = h.invoke("a", "get", vec![]);
        c.err("Empty", "queue is empty");
        let d = h.invoke("b", "put", vec![value("x")]);
        d.fail("refused");
        drop(h.invoke("z", "getvalue", vec![]));
        let e = h.invoke("b", "qsize", vec![]);
        e.forget();
        h.session_end("z");

        let events = h.events();
        assert!(events.windows(2).all(|w| w[0].time <= w[1].time));
        let ops = h.operations();
        assert_eq!(ops.len(), 6);
        assert_eq!(ops[0].result(), Some(&Ok(rmpv::Value::Nil)));
        assert_eq!(ops[1].client, "7");
        assert!(
            matches!(&ops[1].completion, Completion::Info { reason, at: Some(_) } if reason == "timeout")
        );
        assert_eq!(ops[2].result().unwrap().as_ref().unwrap_err().kind, "Empty");
        assert!(ops[3].is_fail());
        assert!(
            matches!(&ops[4].completion, Completion::Info { reason, .. } if reason == "dropped")
        );
        assert!(matches!(
            &ops[5].completion,
            Completion::Info { at: None, .. }
        ));
        assert_eq!(h.session_ends().len(), 1);

        let back = History::from_json(&h.to_json()).unwrap();
        assert_eq!(back.operations(), ops);
    }

    #[test]
    fn clones_share_and_threads_record() {
        let h = History::new();
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        h.invoke(i, "increment", vec![]).ok(());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let ops = h.operations();
        assert_eq!(ops.len(), 400);
        assert!(ops.iter().all(|o| o.returned().unwrap() >= o.invoke));
    }

    #[test]
    fn simulated_clock_and_explicit_times() {
        let now = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let clock = now.clone();
        let h = History::with_clock(move || ms(clock.load(std::sync::atomic::Ordering::SeqCst)));
        let op = h.invoke("a", "increment", vec![]);
        now.store(5, std::sync::atomic::Ordering::SeqCst);
        op.ok(());
        h.invoke_at("b", "getvalue", vec![], ms(6)).ok_at(1, ms(9));
        let ops = h.operations();
        assert_eq!((ops[0].invoke, ops[0].returned()), (0, Some(5_000_000)));
        assert_eq!((ops[1].invoke, ops[1].returned()), (ms(6), Some(ms(9))));
    }

    #[test]
    fn classifies_client_errors() {
        let h = History::with_clock(|| 0);
        h.invoke("a", "x", vec![])
            .finish_error("Unavailable", "no quorum");
        h.invoke("a", "x", vec![])
            .finish_error("Refused", "bad token");
        h.invoke("a", "x", vec![])
            .finish_error("RuntimeError", "boom");
        let ops = h.operations();
        assert!(ops[0].is_info());
        assert!(ops[1].is_fail());
        assert!(ops[2].is_ok());
        let json = from_json(&serde_json::json!({"k": [1, "two"]}));
        assert_eq!(to_json(&json), serde_json::json!({"k": [1, "two"]}));
    }
}
