//! A mutual-exclusion checker for `Lock`, `RLock`, `Semaphore(permits)` and
//! `BoundedSemaphore(permits)` histories: never more holders than permits.
//!
//! # What is provable from real-time intervals
//!
//! An operation takes effect at one instant within `[invoke, return]`
//! (`info`: within `[invoke, ∞)`, or never; `fail`: never). So at time `t`:
//!
//! - an `acquire` that returned `true` at or before `t` **must** have taken
//!   its permit by `t`; one still running, `info`, or answered `false` /
//!   with an error **may or may not** have (false and errors: certainly not);
//! - a `release` **may** have returned its permit(s) by `t` exactly if it
//!   was invoked at or before `t` and did not certainly fail (`fail`, or the
//!   object raised, e.g. `release unlocked lock`): a holder holds at the
//!   latest from its acquire's `ok` and may stop holding as soon as it
//!   *invokes* release.
//!
//! A violation is reported only when it is certain, i.e. when even the most
//! favourable placement of every operation within its interval exceeds the
//! permits. The checker never reports a history that some correct object
//! could have produced (no false alarms); it may miss violations that only
//! a full linearizability search would find (for `Lock` and semaphores use
//! [`crate::linearizability::Semaphore`] for that).
//!
//! ## Lock, Semaphore, BoundedSemaphore: counting permits
//!
//! None of these tracks owners: *any* client may release (as in Python), so
//! a release by one client may end another's hold. The checker therefore
//! counts permits, not clients. With `A(t1, t2]` the acquires that must
//! have taken effect in the window `(t1, t2]` (invoked after `t1`, `true` by
//! `t2`) and `R(t1, t2]` the permits released by releases that may have
//! taken effect in it (invoked by `t2`, not returned before `t1`), the free
//! permits obey `free(t2) = free(t1) − taken + returned ≥ 0`, so
//! `A − R ≤ free(t1)`. For a `Lock` and a `BoundedSemaphore`,
//! `free(t1) ≤ permits` at every `t1`, so **every** window must satisfy
//! `A − R ≤ permits`. Windows matter because the count from the beginning
//! carries slack forever: an `info` acquire (not counted) whose release
//! returned (counted) would excuse one overlap at any later time, while a
//! window starting after that release returned does not count it. (An
//! `info` release has no end, so it is counted in every later window: it
//! may free someone's permit at any time, as a Lock may be released by
//! anyone.)
//! For an unbounded `Semaphore`, releases can raise `free` above the
//! initial value, so only the window from the beginning is used
//! (`free(−∞) = permits`). All windows are checked at once with a sweep
//! over time and a segment tree over window starts (`O(n log n)`).
//!
//! ## RLock: counting holds per client
//!
//! An RLock is owned: only the owner's `release` has an effect (anyone
//! else's raises), and the owner's recursion count equals its effective
//! acquires minus its effective releases. So for client `c` and every
//! window, `count_c(t2) ≥ count_c(t1) + A_c − R_c ≥ A_c − R_c`, counting
//! only `c`'s own operations. Client `c` *must* own the lock at `t2` if some
//! window gives `A_c − R_c > 0`. Two clients that must both own it at the
//! same time are a certain violation.
//!
//! ## Sessions
//!
//! A `SessionEnd` event for a client (see [`History::session_end`]) means
//! whatever it held may be released from then on: it counts as an `info`
//! release, invoked then, of everything the client may hold (for an RLock,
//! its client's holds can no longer be proven after it).
//!
//! ## Equal timestamps
//!
//! Events at the same time are treated as concurrent in the favourable
//! direction: a release invoked at `t` may precede an acquire returning at
//! `t`.

use crate::history::{Completion, History, Operation, Time};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The object whose history is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MutexKind {
    /// `threading.Lock`: one permit, anyone may release.
    Lock,
    /// `threading.RLock`: one owner, re-entrant, only the owner releases.
    RLock,
    /// `threading.Semaphore(permits)`: releases may exceed the initial value.
    Semaphore(u64),
    /// `threading.BoundedSemaphore(permits)`.
    BoundedSemaphore(u64),
}

impl MutexKind {
    /// How many may hold at once.
    pub fn permits(self) -> u64 {
        match self {
            MutexKind::Lock | MutexKind::RLock => 1,
            MutexKind::Semaphore(p) | MutexKind::BoundedSemaphore(p) => p,
        }
    }
}

/// One certain violation.
#[derive(Clone, Debug)]
pub struct MutexViolation {
    /// From when it is certain…
    pub from: Time,
    /// …until when (`None`: the end of the history).
    pub until: Option<Time>,
    /// Permits the object has.
    pub permits: u64,
    /// How many permits / owners were certainly taken at `from`.
    pub held: u64,
    /// For Lock/Semaphore: the start of the window the count is over
    /// (`None`: the beginning of the history).
    pub window_start: Option<Time>,
    /// The clients holding (RLock: proven owners; otherwise the clients of
    /// the counted acquires that had not invoked a release of their own).
    pub holders: Vec<String>,
    /// The acquires counted as certainly effective.
    pub acquires: Vec<Operation>,
    /// The releases that may have taken effect (already subtracted).
    pub releases: Vec<Operation>,
    pub explanation: String,
}

impl fmt::Display for MutexViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation)
    }
}

/// The verdict with some counts.
#[derive(Clone, Debug)]
pub struct MutexReport {
    pub kind: MutexKind,
    /// Acquires answered `true`.
    pub acquired: usize,
    /// Acquires with an unknown outcome.
    pub info_acquires: usize,
    /// Releases that may have taken effect.
    pub releases: usize,
    /// Certain violations, in time order (each a maximal episode).
    pub violations: Vec<MutexViolation>,
}

impl MutexReport {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for MutexReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: {} acquired, {} unknown acquires, {} releases, {} violations",
            self.kind,
            self.acquired,
            self.info_acquires,
            self.releases,
            self.violations.len()
        )?;
        for v in &self.violations {
            write!(f, "\n{v}")?;
        }
        Ok(())
    }
}

/// Checks the acquires and releases in `history` (other methods are ignored).
pub fn check(kind: MutexKind, history: &History) -> MutexReport {
    check_operations(kind, &history.operations(), &history.session_ends())
}

/// Checks `ops` with `session_ends` (`(client, time)`).
pub fn check_operations(
    kind: MutexKind,
    ops: &[Operation],
    session_ends: &[(String, Time)],
) -> MutexReport {
    let mut acquires = Vec::new();
    let mut releases = Vec::new();
    let mut info_acquires = 0;
    for op in ops {
        match op.method.as_str() {
            "acquire" => match &op.completion {
                Completion::Ok { result: Ok(v), at } if v.as_bool() == Some(true) => {
                    acquires.push(Acq {
                        op: op.clone(),
                        ok: (*at).max(op.invoke),
                    })
                }
                Completion::Info { .. } => info_acquires += 1,
                _ => {}
            },
            "release" => {
                let end = match &op.completion {
                    Completion::Ok { result: Ok(_), at } => Some((*at).max(op.invoke)),
                    Completion::Info { .. } => None,
                    _ => continue,
                };
                let n = match op.args.first() {
                    None => 1,
                    Some(v) => v
                        .as_u64()
                        .or_else(|| v.as_f64().map(|f| f.max(1.0).ceil() as u64))
                        .unwrap_or(u32::MAX as u64)
                        .max(1),
                };
                releases.push(Rel {
                    op: op.clone(),
                    inv: op.invoke,
                    end,
                    n: n.min(i64::MAX as u64 / 4) as i64,
                    virtual_for: None,
                });
            }
            _ => {}
        }
    }
    let released = releases.len();
    // A gone session may release all it may hold, from then on.
    for (client, at) in session_ends {
        let n = if kind == MutexKind::RLock {
            i64::MAX / 4
        } else {
            let taken: i64 = ops
                .iter()
                .filter(|o| &o.client == client && o.method == "acquire" && o.invoke <= *at)
                .filter(|o| match &o.completion {
                    Completion::Ok { result: Ok(v), .. } => v.as_bool() == Some(true),
                    Completion::Info { .. } => true,
                    _ => false,
                })
                .count() as i64;
            let given: i64 = releases
                .iter()
                .filter(|r| &r.op.client == client && r.inv <= *at)
                .map(|r| r.n)
                .sum();
            taken - given
        };
        if n > 0 {
            let mut op = Operation::info(client.clone(), "release", vec![], *at);
            op.completion = Completion::Info {
                reason: "session gone".into(),
                at: None,
            };
            releases.push(Rel {
                op,
                inv: *at,
                end: None,
                n,
                virtual_for: Some(client.clone()),
            });
        }
    }
    let violations = match kind {
        MutexKind::RLock => check_owned(&acquires, &releases),
        MutexKind::Lock | MutexKind::BoundedSemaphore(_) => {
            check_permits(kind.permits(), true, &acquires, &releases)
        }
        MutexKind::Semaphore(p) => check_permits(p, false, &acquires, &releases),
    };
    MutexReport {
        kind,
        acquired: acquires.len(),
        info_acquires,
        releases: released,
        violations,
    }
}

#[derive(Clone, Debug)]
struct Acq {
    op: Operation,
    ok: Time,
}

#[derive(Clone, Debug)]
struct Rel {
    op: Operation,
    inv: Time,
    /// Return time; `None` for info (may take effect any time after `inv`).
    end: Option<Time>,
    n: i64,
    virtual_for: Option<String>,
}

/// For every time `t2` (each distinct event time, after all its events),
/// the maximum over window starts of `A(t1, t2] − R(t1, t2]`, and the
/// best window start (`None`: the beginning). With `windowed == false` only
/// the window from the beginning counts.
fn sweep(acqs: &[Acq], rels: &[Rel], windowed: bool) -> Vec<(Time, i64, Option<Time>)> {
    let mut times: Vec<Time> = acqs
        .iter()
        .flat_map(|a| [a.op.invoke, a.ok])
        .chain(rels.iter().flat_map(|r| [Some(r.inv), r.end]).flatten())
        .collect();
    times.sort_unstable();
    times.dedup();
    let idx = |t: Time| times.binary_search(&t).expect("every event time is listed");
    // Window start i: 0 = -∞, k + 1 = just before times[k].
    let m = times.len();
    let mut tree = MaxTree::new(m + 1);
    let mut changes: BTreeMap<Time, Vec<(usize, i64)>> = BTreeMap::new();
    for a in acqs {
        let last = if windowed { idx(a.op.invoke) + 1 } else { 0 };
        changes.entry(a.ok).or_default().push((last, 1));
    }
    for r in rels {
        let last = if !windowed {
            0
        } else {
            r.end.map_or(m, |e| idx(e) + 1)
        };
        changes.entry(r.inv).or_default().push((last, -r.n));
    }
    let mut out = Vec::with_capacity(changes.len());
    for (t, list) in changes {
        for (last, delta) in list {
            tree.add(0, last, delta);
        }
        let (value, at) = tree.top();
        out.push((t, value, at.checked_sub(1).map(|k| times[k])));
    }
    out
}

fn check_permits(permits: u64, windowed: bool, acqs: &[Acq], rels: &[Rel]) -> Vec<MutexViolation> {
    let permits_i = permits.min(i64::MAX as u64) as i64;
    let points = sweep(acqs, rels, windowed);
    let mut violations: Vec<MutexViolation> = Vec::new();
    let mut open = false;
    for (t, value, start) in points {
        if value > permits_i {
            if !open {
                violations.push(permits_violation(permits, t, value, start, acqs, rels));
                open = true;
            }
        } else if open {
            open = false;
            if let Some(v) = violations.last_mut() {
                v.until = Some(t);
                v.explanation += &format!("\n  it lasts until t={t}");
            }
        }
    }
    violations
}

fn permits_violation(
    permits: u64,
    t: Time,
    value: i64,
    start: Option<Time>,
    acqs: &[Acq],
    rels: &[Rel],
) -> MutexViolation {
    let after_start = |x: Time| start.is_none_or_ge(x);
    let acquires: Vec<Operation> = acqs
        .iter()
        .filter(|a| a.ok <= t && after_start(a.op.invoke))
        .map(|a| a.op.clone())
        .collect();
    let counted: Vec<&Rel> = rels
        .iter()
        .filter(|r| r.inv <= t && r.end.is_none_or_ge_opt(start))
        .collect();
    // Apparent holders: counted acquirers without a release of their own
    // invoked between their acquire and t.
    let mut holders = BTreeSet::new();
    for a in acqs
        .iter()
        .filter(|a| a.ok <= t && after_start(a.op.invoke))
    {
        let released = rels
            .iter()
            .any(|r| r.op.client == a.op.client && r.inv >= a.op.invoke && r.inv <= t);
        if !released {
            holders.insert(a.op.client.clone());
        }
    }
    let from = match start {
        None => "the beginning".to_string(),
        Some(s) => format!("t={s}"),
    };
    let returned: i64 = counted.iter().map(|r| r.n).sum();
    let mut text = format!(
        "mutual exclusion violated at t={t}: between {from} and t={t}, {} acquires certainly took a permit \
         and releases can have returned at most {returned}, so {value} permits were taken at once \
         (only {permits} exist); holders: {}\n  acquires:",
        acquires.len(),
        holders.iter().cloned().collect::<Vec<_>>().join(", "),
    );
    for op in acquires.iter().take(20) {
        text += &format!("\n    {op}");
    }
    if !counted.is_empty() {
        text += "\n  releases that may have taken effect:";
        for r in counted.iter().take(20) {
            match &r.virtual_for {
                Some(c) => text += &format!("\n    session of {c} gone at t={}", r.inv),
                None => text += &format!("\n    {}", r.op),
            }
        }
    }
    MutexViolation {
        from: t,
        until: None,
        permits,
        held: value.max(0) as u64,
        window_start: start,
        holders: holders.into_iter().collect(),
        acquires,
        releases: counted.iter().map(|r| r.op.clone()).collect(),
        explanation: text,
    }
}

/// Small helpers for "x is at or after the window start".
trait AtOrAfter {
    fn is_none_or_ge(&self, x: Time) -> bool;
}

impl AtOrAfter for Option<Time> {
    fn is_none_or_ge(&self, x: Time) -> bool {
        match self {
            None => true,
            Some(s) => x >= *s,
        }
    }
}

trait EndsInWindow {
    fn is_none_or_ge_opt(&self, start: Option<Time>) -> bool;
}

impl EndsInWindow for Option<Time> {
    /// A release ending at `self` (`None`: never) may take effect in a
    /// window starting at `start`.
    fn is_none_or_ge_opt(&self, start: Option<Time>) -> bool {
        match (self, start) {
            (None, _) | (_, None) => true,
            (Some(end), Some(s)) => *end >= s,
        }
    }
}

fn check_owned(acqs: &[Acq], rels: &[Rel]) -> Vec<MutexViolation> {
    // Per client: the intervals [from, until) in which it must own the lock.
    let mut clients: BTreeSet<&str> = acqs.iter().map(|a| a.op.client.as_str()).collect();
    clients.extend(rels.iter().map(|r| r.op.client.as_str()));
    let mut edges: Vec<(Time, i8, String)> = Vec::new();
    for c in clients {
        let a: Vec<Acq> = acqs.iter().filter(|a| a.op.client == c).cloned().collect();
        if a.is_empty() {
            continue;
        }
        let r: Vec<Rel> = rels.iter().filter(|r| r.op.client == c).cloned().collect();
        let mut holding = false;
        for (t, value, _) in sweep(&a, &r, true) {
            if (value > 0) != holding {
                holding = value > 0;
                edges.push((t, if holding { 1 } else { -1 }, c.to_string()));
            }
        }
    }
    // At equal times, ends first: an owner that invoked release at t may
    // have released before another's acquire returned at t.
    edges.sort_by_key(|e| (e.0, e.1));
    let mut owners: BTreeSet<String> = BTreeSet::new();
    let mut violations: Vec<MutexViolation> = Vec::new();
    let mut open = false;
    let mut i = 0;
    while i < edges.len() {
        let t = edges[i].0;
        while i < edges.len() && edges[i].0 == t {
            let (_, d, c) = &edges[i];
            if *d > 0 {
                owners.insert(c.clone());
            } else {
                owners.remove(c);
            }
            i += 1;
        }
        if owners.len() > 1 {
            if !open {
                open = true;
                let holders: Vec<String> = owners.iter().cloned().collect();
                let acquires: Vec<Operation> = holders
                    .iter()
                    .filter_map(|h| {
                        acqs.iter()
                            .filter(|a| &a.op.client == h && a.ok <= t)
                            .max_by_key(|a| a.ok)
                            .map(|a| a.op.clone())
                    })
                    .collect();
                let mut text = format!(
                    "mutual exclusion violated at t={t}: {} clients must own the RLock at once: {}\n  their latest acquires:",
                    holders.len(),
                    holders.join(", ")
                );
                for op in &acquires {
                    text += &format!("\n    {op}");
                }
                violations.push(MutexViolation {
                    from: t,
                    until: None,
                    permits: 1,
                    held: holders.len() as u64,
                    window_start: None,
                    holders,
                    acquires,
                    releases: Vec::new(),
                    explanation: text,
                });
            }
        } else if open {
            open = false;
            if let Some(v) = violations.last_mut() {
                v.until = Some(t);
                v.explanation += &format!("\n  it lasts until t={t}");
            }
        }
    }
    violations
}

/// Range add over a prefix, global max with its (rightmost) position.
struct MaxTree {
    n: usize,
    max: Vec<i64>,
    arg: Vec<usize>,
    lazy: Vec<i64>,
}

impl MaxTree {
    fn new(n: usize) -> MaxTree {
        let mut tree = MaxTree {
            n,
            max: vec![0; 4 * n.max(1)],
            arg: vec![0; 4 * n.max(1)],
            lazy: vec![0; 4 * n.max(1)],
        };
        tree.build(1, 0, n - 1);
        tree
    }

    fn build(&mut self, node: usize, lo: usize, hi: usize) {
        if lo == hi {
            self.arg[node] = lo;
            return;
        }
        let mid = (lo + hi) / 2;
        self.build(2 * node, lo, mid);
        self.build(2 * node + 1, mid + 1, hi);
        self.pull(node);
    }

    fn pull(&mut self, node: usize) {
        let (l, r) = (2 * node, 2 * node + 1);
        let (ml, mr) = (self.max[l], self.max[r]);
        let (m, a) = if mr >= ml {
            (mr, self.arg[r])
        } else {
            (ml, self.arg[l])
        };
        self.max[node] = m + self.lazy[node];
        self.arg[node] = a;
    }

    /// Adds `delta` to positions `lo..=hi`.
    fn add(&mut self, lo: usize, hi: usize, delta: i64) {
        let hi = hi.min(self.n - 1);
        self.add_in(1, 0, self.n - 1, lo, hi, delta);
    }

    fn add_in(&mut self, node: usize, nlo: usize, nhi: usize, lo: usize, hi: usize, d: i64) {
        if hi < nlo || nhi < lo {
            return;
        }
        if lo <= nlo && nhi <= hi {
            self.max[node] += d;
            self.lazy[node] += d;
            return;
        }
        let mid = (nlo + nhi) / 2;
        self.add_in(2 * node, nlo, mid, lo, hi, d);
        self.add_in(2 * node + 1, mid + 1, nhi, lo, hi, d);
        self.pull(node);
    }

    fn top(&self) -> (i64, usize) {
        (self.max[1], self.arg[1])
    }
}
