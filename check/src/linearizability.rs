//! A linearizability checker for one object: the Wing–Gong search with
//! Lowe's memoization, as in Porcupine.
//!
//! # What is checked
//!
//! A history is linearizable for a sequential [`Model`] if every operation
//! can be given a point in time within its real-time interval
//! `[invoke, return]` such that executing the operations one by one at those
//! points, from the model's initial state, yields the recorded outputs.
//!
//! - `ok` operations (including those on which the *object* raised, e.g.
//!   `Empty`) must be placed, with their recorded output.
//! - `fail` operations certainly did not take effect: they are removed. So
//!   are operations the object rejected as `UnknownMethod` or `BadArguments`
//!   (it raised before touching its state).
//! - `info` operations (and never-completed ones) may take effect at any time
//!   after their invocation, with any output the model allows, **or never**:
//!   they have no return deadline and may be left out.
//! - Equal timestamps count as concurrent (never as "before"), so clock
//!   granularity cannot produce false alarms.
//!
//! # The search
//!
//! Call and return entries go in one list ordered by time. Scanning from the
//! head, a call entry whose operation the model accepts in the current state
//! is *lifted* (linearized next) and the scan restarts; reaching a return
//! entry means that operation should have been linearized already, so the
//! search backtracks. A set of `(linearized operations, model state)` pairs
//! already explored prunes repeated work. Two `info` operations with the same
//! method and arguments are interchangeable, so only the earliest-invoked
//! unlinearized one of such a group is ever tried (this stops `k` identical
//! timed-out increments from producing `2^k` subsets).
//!
//! The problem is NP-complete; the search is bounded by [`Options`]
//! (steps, wall-clock time, cache memory) and answers
//! [`CheckResult::Unknown`] when a bound is hit.
//!
//! On an illegal history the checker also finds the *smallest failing
//! prefix* (the earliest time `T` such that the operations invoked by `T`,
//! with those still running at `T` counted as `info`, are already not
//! linearizable) and reports the operation that returned at `T`, the
//! operations concurrent with it and the tail of the longest partial
//! linearization of that prefix.

use crate::history::{Completion, History, Operation, Return, Time};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Interned values: model states hold small ids instead of
/// [`rmpv::Value`]s (which are neither `Eq` nor `Hash`). Two values are the
/// same if their MessagePack encodings are.
#[derive(Debug, Default)]
pub struct Values {
    ids: HashMap<Vec<u8>, u32>,
    values: Vec<rmpv::Value>,
}

impl Values {
    /// The id of `v`.
    pub fn intern(&mut self, v: &rmpv::Value) -> u32 {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, v).expect("writing to a Vec cannot fail");
        if let Some(&id) = self.ids.get(&bytes) {
            return id;
        }
        let id = self.values.len() as u32;
        self.ids.insert(bytes, id);
        self.values.push(v.clone());
        id
    }

    /// The value with id `id`.
    pub fn get(&self, id: u32) -> &rmpv::Value {
        &self.values[id as usize]
    }
}

/// A sequential specification of an object.
pub trait Model {
    /// The object's state; must be cheap to clone and hash.
    type State: Clone + Eq + Hash + fmt::Debug;
    /// An operation compiled for [`Model::step`]: input and (if known) output.
    type Op: Clone + fmt::Debug;

    /// A name for reports.
    fn name(&self) -> String;

    /// The initial state.
    fn init(&self, values: &mut Values) -> Self::State;

    /// Compiles `op`. `output` is `None` when it is unknown (`info`).
    /// `Err` when the model does not know the method or the argument shape
    /// (the check then answers [`CheckResult::Unknown`]).
    fn compile(
        &self,
        op: &Operation,
        output: Option<&Return>,
        values: &mut Values,
    ) -> Result<Self::Op, String>;

    /// Applies `op` to `state`: the new state, or `None` if the operation's
    /// recorded output is impossible in `state`. With an unknown output,
    /// whatever the object would return is accepted.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    /// Whether `op` leaves the state unchanged in every state where it fits
    /// (reads, and operations whose recorded output says they had no
    /// effect, such as `get` raising `Empty`). Such operations are
    /// linearized as soon as they fit, without trying alternatives, and
    /// `info` ones are dropped. `false` is always safe.
    fn is_read_only(&self, op: &Self::Op) -> bool {
        let _ = op;
        false
    }

    /// Which of `ops` (compiled; `info[i]` tells which are info) may be left
    /// out because a linearization never needs them: if one exists with
    /// the operation, one exists without it. Default: none.
    fn unneeded_info(&self, ops: &[Self::Op], info: &[bool]) -> Vec<bool> {
        let _ = info;
        vec![false; ops.len()]
    }

    /// Shows a state in reports.
    fn show(&self, state: &Self::State, values: &Values) -> String {
        let _ = values;
        format!("{state:?}")
    }
}

/// Bounds on the search.
#[derive(Clone, Debug)]
pub struct Options {
    /// Model steps tried before giving up.
    pub max_steps: u64,
    /// Wall-clock limit (per search; finding the smallest failing prefix of
    /// an illegal history runs a few more searches).
    pub timeout: Option<Duration>,
    /// Approximate memory for the explored-configurations cache.
    pub max_cache_bytes: usize,
    /// Find the smallest failing prefix and a partial linearization for an
    /// illegal history.
    pub explain: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_steps: 50_000_000,
            timeout: Some(Duration::from_secs(60)),
            max_cache_bytes: 512 << 20,
            explain: true,
        }
    }
}

/// The verdict.
#[derive(Clone, Debug)]
pub enum CheckResult {
    /// A linearization exists.
    Ok,
    /// None exists.
    Illegal(Box<Illegal>),
    /// The search hit a bound, or the model does not understand an operation.
    Unknown(String),
}

impl CheckResult {
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    pub fn is_illegal(&self) -> bool {
        matches!(self, CheckResult::Illegal(_))
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, CheckResult::Unknown(_))
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => write!(f, "linearizable"),
            CheckResult::Illegal(i) => write!(f, "{i}"),
            CheckResult::Unknown(why) => write!(f, "unknown: {why}"),
        }
    }
}

/// Why a history is not linearizable.
#[derive(Clone, Debug)]
pub struct Illegal {
    pub model: String,
    /// The smallest failing prefix: operations invoked at or before this
    /// time, those returning later counted as `info`.
    pub prefix_end: Time,
    /// Operations in that prefix.
    pub prefix_len: usize,
    /// The operation(s) returning at `prefix_end`: one of them cannot be
    /// linearized together with everything before.
    pub failing: Vec<Operation>,
    /// Operations in the prefix concurrent with the failing ones.
    pub concurrent: Vec<Operation>,
    /// Length of the longest partial linearization of the prefix found.
    pub linearized_len: usize,
    /// Its last few steps, each with the model state after it.
    pub linearized_tail: Vec<(Operation, String)>,
    /// The operation that had to come next there but could not.
    pub blocked: Option<Operation>,
    /// All of the above, readable.
    pub explanation: String,
}

impl fmt::Display for Illegal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation)
    }
}

/// Checks the operations of `history` against `model`.
pub fn check<M: Model>(model: &M, history: &History, options: &Options) -> CheckResult {
    check_operations(model, &history.operations(), options)
}

/// Checks `ops` (as [`History::operations`] returns them; any order).
///
/// Reads marked stale ([`Operation::stale`]) are left out: they may see any
/// earlier state, so they constrain nothing.
pub fn check_operations<M: Model>(model: &M, ops: &[Operation], options: &Options) -> CheckResult {
    let ops: Vec<Operation> = ops
        .iter()
        .filter(|op| takes_part(op) && !op.stale)
        .cloned()
        .collect();
    match search(model, &ops, options, false) {
        Outcome::Ok => CheckResult::Ok,
        Outcome::Unknown(why) => CheckResult::Unknown(why),
        Outcome::Illegal(_) if !options.explain => CheckResult::Illegal(Box::new(Illegal {
            model: model.name(),
            prefix_end: ops.iter().filter_map(|o| o.returned()).max().unwrap_or(0),
            prefix_len: ops.len(),
            failing: Vec::new(),
            concurrent: Vec::new(),
            linearized_len: 0,
            linearized_tail: Vec::new(),
            blocked: None,
            explanation: format!(
                "not linearizable as {} ({} operations)",
                model.name(),
                ops.len()
            ),
        })),
        Outcome::Illegal(_) => CheckResult::Illegal(Box::new(explain(model, &ops, options))),
    }
}

/// Checks a history of one of the built-in objects by its name (`Counter`,
/// `Value`, `Queue`, `Lock`, `Semaphore`, `BoundedSemaphore`) with default
/// construction arguments.
pub fn check_object(object: &str, ops: &[Operation], options: &Options) -> CheckResult {
    match object {
        "Counter" => check_operations(&Counter::default(), ops, options),
        "Value" => check_operations(&Register::default(), ops, options),
        "Queue" => check_operations(&Queue::default(), ops, options),
        "Lock" => check_operations(&Semaphore::lock(), ops, options),
        "Semaphore" => check_operations(&Semaphore::new(1, false), ops, options),
        "BoundedSemaphore" => check_operations(&Semaphore::new(1, true), ops, options),
        other => CheckResult::Unknown(format!("no linearizability model for {other}")),
    }
}

/// Whether `op` can have affected the object.
fn takes_part(op: &Operation) -> bool {
    match &op.completion {
        Completion::Fail { .. } => false,
        Completion::Ok { result: Err(e), .. } => {
            e.kind != "UnknownMethod" && e.kind != "BadArguments"
        }
        _ => true,
    }
}

/// The operations of the prefix ending at `t`: invoked at or before `t`;
/// those completing after `t` become `info`.
fn prefix(ops: &[Operation], t: Time) -> Vec<Operation> {
    ops.iter()
        .filter(|op| op.invoke <= t)
        .map(|op| match op.returned() {
            Some(r) if r > t => {
                let mut op = op.clone();
                op.completion = Completion::Info {
                    reason: "running at the end of the prefix".into(),
                    at: None,
                };
                op
            }
            _ => op.clone(),
        })
        .collect()
}

fn explain<M: Model>(model: &M, ops: &[Operation], options: &Options) -> Illegal {
    // Smallest T whose prefix is already illegal. The whole history is; a
    // prefix whose check is Unknown counts as not (yet) illegal.
    let mut times: Vec<Time> = ops.iter().filter_map(|o| o.returned()).collect();
    times.sort_unstable();
    times.dedup();
    let (mut lo, mut hi) = (0usize, times.len().saturating_sub(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if matches!(
            search(model, &prefix(ops, times[mid]), options, false),
            Outcome::Illegal(_)
        ) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let end = times.get(hi).copied().unwrap_or(0);
    let ops = prefix(ops, end);
    let detail = match search(model, &ops, options, true) {
        Outcome::Illegal(detail) => detail,
        _ => None,
    };
    let failing: Vec<Operation> = ops
        .iter()
        .filter(|o| o.returned() == Some(end))
        .cloned()
        .collect();
    let start = failing.iter().map(|o| o.invoke).min().unwrap_or(end);
    let concurrent: Vec<Operation> = ops
        .iter()
        .filter(|o| o.returned() != Some(end))
        .filter(|o| o.invoke <= end && !matches!(o.returned(), Some(r) if r < start))
        .cloned()
        .collect();
    let detail = detail.unwrap_or_default();
    let mut text = format!(
        "not linearizable as {}: the smallest failing prefix ends at t={} ({} operations)\n",
        model.name(),
        end,
        ops.len()
    );
    for op in &failing {
        text += &format!("  cannot linearize: {op}\n");
    }
    if !concurrent.is_empty() {
        text += "  concurrent with it:\n";
        for op in concurrent.iter().take(20) {
            text += &format!("    {op}\n");
        }
        if concurrent.len() > 20 {
            text += &format!("    … and {} more\n", concurrent.len() - 20);
        }
    }
    text += &format!(
        "  longest partial linearization: {} operations, ending with:\n",
        detail.depth
    );
    if detail.tail.is_empty() {
        text += "    (none)\n";
    }
    for (op, state) in &detail.tail {
        text += &format!("    {op}  => {state}\n");
    }
    if let Some(op) = &detail.blocked {
        text += &format!("  after which this had to come next and could not: {op}\n");
    }
    Illegal {
        model: model.name(),
        prefix_end: end,
        prefix_len: ops.len(),
        failing,
        concurrent,
        linearized_len: detail.depth,
        linearized_tail: detail.tail,
        blocked: detail.blocked,
        explanation: text,
    }
}

#[derive(Default)]
struct Detail {
    depth: usize,
    tail: Vec<(Operation, String)>,
    blocked: Option<Operation>,
}

enum Outcome {
    Ok,
    Illegal(Option<Detail>),
    Unknown(String),
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;
const TAIL_KEPT: usize = 12;

struct Node {
    op: usize,
    /// For a call entry of a completed operation: its return entry.
    ret: usize,
    is_call: bool,
}

/// The explored-configurations key: the linearized set, with leading full
/// and trailing empty words trimmed, and the state.
type Key<S> = (u32, Box<[u64]>, S);

fn key<S>(bits: &[u64], state: S) -> Key<S> {
    let lead = bits.iter().take_while(|w| **w == u64::MAX).count();
    let end = bits
        .iter()
        .rposition(|w| *w != 0)
        .map_or(0, |i| i + 1)
        .max(lead);
    (lead as u32, bits[lead..end].into(), state)
}

/// Searches with two candidate orders in turn (half the budget each): both
/// are complete, and each copes with histories the other finds hard.
fn search<M: Model>(model: &M, ops: &[Operation], options: &Options, explain: bool) -> Outcome {
    let half = Options {
        max_steps: options.max_steps / 2,
        timeout: options.timeout.map(|t| t / 2),
        ..options.clone()
    };
    match search_ordered(model, ops, &half, explain, false) {
        Outcome::Unknown(first) => match search_ordered(model, ops, &half, explain, true) {
            Outcome::Unknown(second) => Outcome::Unknown(format!("{first}; then {second}")),
            done => done,
        },
        done => done,
    }
}

fn search_ordered<M: Model>(
    model: &M,
    ops: &[Operation],
    options: &Options,
    explain: bool,
    info_last: bool,
) -> Outcome {
    let started = Instant::now();
    let mut values = Values::default();
    let mut compiled = Vec::with_capacity(ops.len());
    let mut keep = Vec::with_capacity(ops.len());
    for op in ops {
        let output = op.result();
        match model.compile(op, output, &mut values) {
            // An info operation that never changes the state has nothing
            // to check and nothing to affect: leave it out.
            Ok(c) if op.is_info() && model.is_read_only(&c) => {}
            Ok(c) => {
                compiled.push(c);
                keep.push(op.clone());
            }
            Err(why) => return Outcome::Unknown(format!("{}: {why} in {op}", model.name())),
        }
    }
    let info: Vec<bool> = keep.iter().map(|op| op.is_info()).collect();
    let unneeded = model.unneeded_info(&compiled, &info);
    let (keep, compiled): (Vec<Operation>, Vec<M::Op>) = keep
        .into_iter()
        .zip(compiled)
        .zip(unneeded)
        .filter(|((op, _), unneeded)| !(*unneeded && op.is_info()))
        .map(|(pair, _)| pair)
        .unzip();
    let ops = &keep[..];
    // Candidates are tried read-only completed operations first (forced:
    // see below), then the others by earliest deadline: the return time,
    // or for an info operation the time its client gave up (it most likely
    // took effect before that, if at all; never-completed ones go last).
    // The order only steers the search; every candidate is tried.
    // (The alternative order tries info operations only after all others.)
    let class: Vec<u8> = (0..ops.len())
        .map(
            |i| match (ops[i].is_info(), model.is_read_only(&compiled[i])) {
                (true, _) if info_last => 2,
                (false, true) => 0,
                _ => 1,
            },
        )
        .collect();
    let deadline: Vec<Time> = ops
        .iter()
        .map(|op| match &op.completion {
            Completion::Ok { at, .. } | Completion::Fail { at, .. } => *at,
            Completion::Info { at, .. } => at.unwrap_or(Time::MAX),
        })
        .collect();
    let order_key = |i: usize| (class[i], deadline[i], ops[i].invoke, i);
    // Interchangeable info operations: the previous one with the same
    // method and arguments.
    let mut prev_twin = vec![NIL; ops.len()];
    {
        let mut order: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].is_info()).collect();
        order.sort_by_key(|&i| (ops[i].invoke, i));
        let mut last: HashMap<(String, Vec<u8>), usize> = HashMap::new();
        for i in order {
            let mut args = Vec::new();
            rmpv::encode::write_value(&mut args, &rmpv::Value::Array(ops[i].args.clone()))
                .expect("writing to a Vec cannot fail");
            if let Some(prev) = last.insert((ops[i].method.clone(), args), i) {
                prev_twin[i] = prev;
            }
        }
    }

    // The entry list: calls at invocation, returns at return; on equal
    // times calls first (equal times are concurrent).
    let mut entries: Vec<(Time, bool, usize)> = Vec::with_capacity(2 * ops.len());
    for (i, op) in ops.iter().enumerate() {
        entries.push((op.invoke, false, i));
        if let Some(r) = op.returned() {
            entries.push((r.max(op.invoke), true, i));
        }
    }
    entries.sort_unstable();
    let mut nodes = vec![Node {
        op: NIL,
        ret: NIL,
        is_call: false,
    }];
    let mut call_node = vec![NIL; ops.len()];
    for &(_, is_return, i) in &entries {
        let n = nodes.len();
        if is_return {
            nodes[call_node[i]].ret = n;
        } else {
            call_node[i] = n;
        }
        nodes.push(Node {
            op: i,
            ret: NIL,
            is_call: !is_return,
        });
    }
    let count = nodes.len();
    let mut next: Vec<usize> = (1..=count)
        .map(|i| if i == count { NIL } else { i })
        .collect();
    let mut prev: Vec<usize> = (0..count).map(|i| i.wrapping_sub(1)).collect();
    prev[0] = NIL;
    let mut returns_left = entries.iter().filter(|e| e.1).count();

    fn unlink(next: &mut [usize], prev: &mut [usize], x: usize) {
        next[prev[x]] = next[x];
        if next[x] != NIL {
            prev[next[x]] = prev[x];
        }
    }
    fn relink(next: &mut [usize], prev: &mut [usize], x: usize) {
        next[prev[x]] = x;
        if next[x] != NIL {
            prev[next[x]] = x;
        }
    }

    let words = ops.len().div_ceil(64);
    let mut bits = vec![0u64; words];
    let is_set = |bits: &[u64], i: usize| bits[i / 64] & (1 << (i % 64)) != 0;
    let mut cache: HashSet<Key<M::State>> = HashSet::new();
    let mut cache_bytes = 0usize;
    let state_size = std::mem::size_of::<M::State>();
    let mut stack: Vec<Frame<M::State>> = Vec::new();
    let mut state = model.init(&mut values);
    let mut steps = 0u64;
    let mut best = Detail::default();
    let mut window: Vec<usize> = Vec::new();
    // Where to resume in the current configuration's candidate order.
    let mut pos = 0usize;

    loop {
        if returns_left == 0 {
            return Outcome::Ok;
        }
        // The candidates: calls before the first return entry (an operation
        // returning earlier must be linearized first), in trial order.
        window.clear();
        let mut entry = next[HEAD];
        while entry != NIL && nodes[entry].is_call {
            let i = nodes[entry].op;
            let twin = prev_twin[i];
            if twin == NIL || is_set(&bits, twin) {
                window.push(i);
            }
            entry = next[entry];
        }
        window.sort_unstable_by_key(|&i| order_key(i));

        let mut lifted = false;
        for (k, &i) in window.iter().enumerate().skip(pos) {
            steps += 1;
            if steps > options.max_steps {
                return Outcome::Unknown(format!("gave up after {} steps", options.max_steps));
            }
            if steps % 1024 == 0 {
                if let Some(limit) = options.timeout {
                    if started.elapsed() > limit {
                        return Outcome::Unknown(format!("gave up after {limit:?}"));
                    }
                }
            }
            let Some(new_state) = model.step(&state, &compiled[i]) else {
                continue;
            };
            bits[i / 64] |= 1 << (i % 64);
            let k2 = key(&bits, new_state.clone());
            let bytes = k2.1.len() * 8 + state_size + 48;
            if !cache.insert(k2) {
                bits[i / 64] &= !(1 << (i % 64));
                if class[i] == 0 {
                    // Forced (below) and already explored: this
                    // configuration fails too.
                    break;
                }
                continue;
            }
            cache_bytes += bytes;
            if cache_bytes > options.max_cache_bytes {
                return Outcome::Unknown(format!(
                    "gave up at the cache limit of {} bytes",
                    options.max_cache_bytes
                ));
            }
            let old = std::mem::replace(&mut state, new_state);
            let call = call_node[i];
            let ret = nodes[call].ret;
            unlink(&mut next, &mut prev, call);
            if ret != NIL {
                unlink(&mut next, &mut prev, ret);
                returns_left -= 1;
            }
            // A read-only operation that fits now can be linearized now:
            // any linearization placing it later can move it here (it
            // changes no state, and every operation that must precede it
            // already did). So the choice is forced: if it fails, so does
            // this configuration.
            stack.push(Frame {
                call,
                old,
                pos: k,
                forced: class[i] == 0,
            });
            if explain && stack.len() > best.depth {
                best = record(model, ops, &nodes, &next, &stack, &state, &values);
            }
            lifted = true;
            break;
        }
        if lifted {
            pos = 0;
            continue;
        }
        // Backtrack to the latest unforced choice.
        loop {
            let Some(frame) = stack.pop() else {
                return Outcome::Illegal(explain.then_some(best));
            };
            state = frame.old;
            let i = nodes[frame.call].op;
            bits[i / 64] &= !(1 << (i % 64));
            let ret = nodes[frame.call].ret;
            if ret != NIL {
                relink(&mut next, &mut prev, ret);
                returns_left += 1;
            }
            relink(&mut next, &mut prev, frame.call);
            if !frame.forced {
                pos = frame.pos + 1;
                break;
            }
        }
    }
}

struct Frame<S> {
    call: usize,
    old: S,
    pos: usize,
    forced: bool,
}

fn record<M: Model>(
    model: &M,
    ops: &[Operation],
    nodes: &[Node],
    next: &[usize],
    stack: &[Frame<M::State>],
    state: &M::State,
    values: &Values,
) -> Detail {
    let from = stack.len().saturating_sub(TAIL_KEPT);
    let tail = (from..stack.len())
        .map(|k| {
            let after = stack.get(k + 1).map_or(state, |f| &f.old);
            (
                ops[nodes[stack[k].call].op].clone(),
                model.show(after, values),
            )
        })
        .collect();
    let mut entry = next[HEAD];
    while entry != NIL && nodes[entry].is_call {
        entry = next[entry];
    }
    Detail {
        depth: stack.len(),
        tail,
        blocked: (entry != NIL).then(|| ops[nodes[entry].op].clone()),
    }
}

// ---------------------------------------------------------------------------
// Models of the built-in objects.

fn no_args(op: &Operation) -> Result<(), String> {
    if op.args.is_empty() {
        Ok(())
    } else {
        Err(format!("{} takes no arguments", op.method))
    }
}

fn one_arg(op: &Operation) -> Result<&rmpv::Value, String> {
    match op.args.as_slice() {
        [v] => Ok(v),
        _ => Err(format!("{} takes one argument", op.method)),
    }
}

/// A recorded output compiled against expectations: unknown, the expected
/// kind of value, or one the object can never return.
#[derive(Clone, Debug, PartialEq)]
pub enum Out<T> {
    Unknown,
    Is(T),
    Impossible,
}

impl<T: PartialEq> Out<T> {
    fn matches(&self, actual: &T) -> bool {
        match self {
            Out::Unknown => true,
            Out::Is(v) => v == actual,
            Out::Impossible => false,
        }
    }
}

/// A value output (`Ok(v)` parsed by `parse`).
fn out<T>(output: Option<&Return>, parse: impl FnOnce(&rmpv::Value) -> Option<T>) -> Out<T> {
    match output {
        None => Out::Unknown,
        Some(Ok(v)) => parse(v).map_or(Out::Impossible, Out::Is),
        Some(Err(_)) => Out::Impossible,
    }
}

/// An output of an operation that returns nothing: any value will do, an
/// error of `kind` (any error if `kind` is empty) means "raised", any other
/// error is impossible.
fn unit_out(output: Option<&Return>, kind: &str) -> Out<bool> {
    match output {
        None => Out::Unknown,
        Some(Ok(_)) => Out::Is(false),
        Some(Err(e)) if e.kind == kind || kind.is_empty() => Out::Is(true),
        Some(Err(_)) => Out::Impossible,
    }
}

/// ConCoord's `Counter`: `increment`, `decrement`, `getvalue`.
#[derive(Clone, Debug, Default)]
pub struct Counter {
    pub initial: i64,
}

#[derive(Clone, Debug)]
pub enum CounterOp {
    /// The delta, and whether the recorded output is possible (neither
    /// `increment` nor `decrement` ever raises).
    Add(i64, bool),
    Read(Out<i64>),
}

impl Model for Counter {
    type State = i64;
    type Op = CounterOp;

    fn name(&self) -> String {
        "Counter".into()
    }

    fn init(&self, _: &mut Values) -> i64 {
        self.initial
    }

    fn compile(
        &self,
        op: &Operation,
        output: Option<&Return>,
        _: &mut Values,
    ) -> Result<CounterOp, String> {
        no_args(op)?;
        let possible = !matches!(output, Some(Err(_)));
        Ok(match op.method.as_str() {
            "increment" => CounterOp::Add(1, possible),
            "decrement" => CounterOp::Add(-1, possible),
            "getvalue" => CounterOp::Read(out(output, |v| v.as_i64())),
            m => return Err(format!("unknown method {m}")),
        })
    }

    fn is_read_only(&self, op: &CounterOp) -> bool {
        matches!(op, CounterOp::Read(_))
    }

    fn step(&self, state: &i64, op: &CounterOp) -> Option<i64> {
        match op {
            CounterOp::Add(d, possible) => possible.then(|| state.wrapping_add(*d)),
            CounterOp::Read(out) => out.matches(state).then_some(*state),
        }
    }
}

/// The `Value` register: `getvalue`, `setvalue(v)`.
#[derive(Clone, Debug)]
pub struct Register {
    pub initial: rmpv::Value,
}

impl Default for Register {
    /// Starts as nil, as the object does.
    fn default() -> Self {
        Register {
            initial: rmpv::Value::Nil,
        }
    }
}

#[derive(Clone, Debug)]
pub enum RegisterOp {
    /// The value, and whether the recorded output is possible (`setvalue`
    /// never raises).
    Write(u32, bool),
    Read(Out<u32>),
}

impl Model for Register {
    type State = u32;
    type Op = RegisterOp;

    fn name(&self) -> String {
        "Value".into()
    }

    fn init(&self, values: &mut Values) -> u32 {
        values.intern(&self.initial)
    }

    fn compile(
        &self,
        op: &Operation,
        output: Option<&Return>,
        values: &mut Values,
    ) -> Result<RegisterOp, String> {
        Ok(match op.method.as_str() {
            "setvalue" => {
                let v = values.intern(one_arg(op)?);
                RegisterOp::Write(v, !matches!(output, Some(Err(_))))
            }
            "getvalue" => {
                no_args(op)?;
                RegisterOp::Read(out(output, |v| Some(values.intern(v))))
            }
            m => return Err(format!("unknown method {m}")),
        })
    }

    fn is_read_only(&self, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Read(_))
    }

    /// An info write of a value no completed read returned: with it, the
    /// next operation after it is a write or nothing (a read would return
    /// its value), so it can be dropped.
    fn unneeded_info(&self, ops: &[RegisterOp], info: &[bool]) -> Vec<bool> {
        let read: HashSet<u32> = ops
            .iter()
            .filter_map(|op| match op {
                RegisterOp::Read(Out::Is(v)) => Some(*v),
                _ => None,
            })
            .collect();
        ops.iter()
            .zip(info)
            .map(|(op, info)| *info && matches!(op, RegisterOp::Write(v, _) if !read.contains(v)))
            .collect()
    }

    fn step(&self, state: &u32, op: &RegisterOp) -> Option<u32> {
        match op {
            RegisterOp::Write(v, possible) => possible.then_some(*v),
            RegisterOp::Read(out) => out.matches(state).then_some(*state),
        }
    }

    fn show(&self, state: &u32, values: &Values) -> String {
        values.get(*state).to_string()
    }
}

/// The FIFO `Queue(maxsize)` (0: unbounded): `put`/`put_nowait`/`append`
/// (raises `Full`), `get`/`get_nowait`/`remove` (raises `Empty`),
/// `qsize`/`get_size`, `empty`, `full`, `get_queue`.
#[derive(Clone, Debug, Default)]
pub struct Queue {
    pub maxsize: usize,
}

#[derive(Clone, Debug)]
pub enum QueueOp {
    /// The item and whether it raised `Full`.
    Put(u32, Out<bool>),
    /// The item got, or `None` for `Empty`.
    Get(Out<Option<u32>>),
    Size(Out<usize>),
    Empty(Out<bool>),
    Full(Out<bool>),
    Items(Out<Vec<u32>>),
}

impl Queue {
    fn is_full(&self, q: &VecDeque<u32>) -> bool {
        self.maxsize > 0 && q.len() >= self.maxsize
    }
}

impl Model for Queue {
    type State = VecDeque<u32>;
    type Op = QueueOp;

    fn name(&self) -> String {
        "Queue".into()
    }

    fn init(&self, _: &mut Values) -> VecDeque<u32> {
        VecDeque::new()
    }

    fn compile(
        &self,
        op: &Operation,
        output: Option<&Return>,
        values: &mut Values,
    ) -> Result<QueueOp, String> {
        Ok(match op.method.as_str() {
            "put" | "put_nowait" | "append" => {
                let item = values.intern(one_arg(op)?);
                QueueOp::Put(item, unit_out(output, "Full"))
            }
            "get" | "get_nowait" | "remove" => {
                no_args(op)?;
                QueueOp::Get(match output {
                    None => Out::Unknown,
                    Some(Ok(v)) => Out::Is(Some(values.intern(v))),
                    Some(Err(e)) if e.kind == "Empty" => Out::Is(None),
                    Some(Err(_)) => Out::Impossible,
                })
            }
            "qsize" | "get_size" => {
                no_args(op)?;
                QueueOp::Size(out(output, |v| v.as_u64().map(|n| n as usize)))
            }
            "empty" => {
                no_args(op)?;
                QueueOp::Empty(out(output, |v| v.as_bool()))
            }
            "full" => {
                no_args(op)?;
                QueueOp::Full(out(output, |v| v.as_bool()))
            }
            "get_queue" => {
                no_args(op)?;
                QueueOp::Items(out(output, |v| {
                    v.as_array()
                        .map(|items| items.iter().map(|i| values.intern(i)).collect())
                }))
            }
            m => return Err(format!("unknown method {m}")),
        })
    }

    fn is_read_only(&self, op: &QueueOp) -> bool {
        match op {
            QueueOp::Put(_, out) => *out == Out::Is(true),
            QueueOp::Get(out) => *out == Out::Is(None),
            QueueOp::Size(_) | QueueOp::Empty(_) | QueueOp::Full(_) | QueueOp::Items(_) => true,
        }
    }

    fn step(&self, q: &VecDeque<u32>, op: &QueueOp) -> Option<VecDeque<u32>> {
        match op {
            QueueOp::Put(item, out) => {
                let full = self.is_full(q);
                if !out.matches(&full) {
                    return None;
                }
                let mut q = q.clone();
                if !full {
                    q.push_back(*item);
                }
                Some(q)
            }
            QueueOp::Get(out) => {
                if !out.matches(&q.front().copied()) {
                    return None;
                }
                let mut q = q.clone();
                q.pop_front();
                Some(q)
            }
            QueueOp::Size(out) => out.matches(&q.len()).then(|| q.clone()),
            QueueOp::Empty(out) => out.matches(&q.is_empty()).then(|| q.clone()),
            QueueOp::Full(out) => out.matches(&self.is_full(q)).then(|| q.clone()),
            QueueOp::Items(out) => {
                let items: Vec<u32> = q.iter().copied().collect();
                out.matches(&items).then(|| q.clone())
            }
        }
    }

    fn show(&self, q: &VecDeque<u32>, values: &Values) -> String {
        let items: Vec<String> = q.iter().map(|i| values.get(*i).to_string()).collect();
        format!("[{}]", items.join(", "))
    }
}

/// `Lock`, `Semaphore(permits)` and `BoundedSemaphore(permits)` as a
/// sequential object: the state is the number of free permits. `acquire`
/// returning `true` takes one (a parked acquire is granted at some point
/// within its interval); `false` has no effect (non-blocking failure or a
/// timed-out wait); `release(n)` returns permits, and raises (no effect)
/// when a bounded semaphore would exceed its initial value or a Lock is not
/// locked. `locked()` reads a Lock. Per-client ownership (RLock) is not
/// modelled: use [`crate::mutex`] for RLock.
#[derive(Clone, Debug)]
pub struct Semaphore {
    pub permits: u64,
    pub bounded: bool,
}

impl Semaphore {
    pub fn new(permits: u64, bounded: bool) -> Semaphore {
        Semaphore { permits, bounded }
    }

    /// A Lock: one permit; releasing an unlocked Lock raises.
    pub fn lock() -> Semaphore {
        Semaphore::new(1, true)
    }
}

#[derive(Clone, Debug)]
pub enum SemaphoreOp {
    /// `Is(true)`: acquired.
    Acquire(Out<bool>),
    /// `n` and whether it raised.
    Release(u64, Out<bool>),
    Locked(Out<bool>),
}

impl Model for Semaphore {
    type State = u64;
    type Op = SemaphoreOp;

    fn name(&self) -> String {
        format!(
            "{}({})",
            if self.bounded {
                "BoundedSemaphore"
            } else {
                "Semaphore"
            },
            self.permits
        )
    }

    fn init(&self, _: &mut Values) -> u64 {
        self.permits
    }

    fn compile(
        &self,
        op: &Operation,
        output: Option<&Return>,
        _: &mut Values,
    ) -> Result<SemaphoreOp, String> {
        Ok(match op.method.as_str() {
            "acquire" => SemaphoreOp::Acquire(out(output, |v| v.as_bool())),
            "release" => {
                let n = match op.args.first() {
                    None => 1,
                    Some(v) => v.as_u64().filter(|n| *n >= 1).ok_or("release(n): n >= 1")?,
                };
                SemaphoreOp::Release(n, unit_out(output, ""))
            }
            "locked" => {
                no_args(op)?;
                SemaphoreOp::Locked(out(output, |v| v.as_bool()))
            }
            m => return Err(format!("unknown method {m}")),
        })
    }

    fn is_read_only(&self, op: &SemaphoreOp) -> bool {
        match op {
            SemaphoreOp::Acquire(out) => *out == Out::Is(false),
            SemaphoreOp::Release(_, out) => *out == Out::Is(true),
            SemaphoreOp::Locked(_) => true,
        }
    }

    fn step(&self, free: &u64, op: &SemaphoreOp) -> Option<u64> {
        match op {
            SemaphoreOp::Acquire(Out::Is(true)) => free.checked_sub(1),
            SemaphoreOp::Acquire(Out::Is(false)) => Some(*free),
            SemaphoreOp::Acquire(Out::Impossible) => None,
            // Unknown: it takes a permit if one is free; if none is, it
            // returns false or waits, neither of which changes anything. (Not
            // taking one although one was free is the same as never taking
            // effect, which the search tries anyway.)
            SemaphoreOp::Acquire(Out::Unknown) => Some(free.saturating_sub(1)),
            SemaphoreOp::Release(n, out) => {
                let total = free.checked_add(*n)?;
                let raises = self.bounded && total > self.permits;
                out.matches(&raises)
                    .then_some(if raises { *free } else { total })
            }
            SemaphoreOp::Locked(out) => out.matches(&(*free == 0)).then_some(*free),
        }
    }
}
