//! Checks of a replicated order: the grants, releases and session ends of
//! one Lock or Semaphore exactly as the group executed them, one after the
//! other (a simulation replays its decided log to get them).
//!
//! Unlike [`crate::mutex`], which bounds what real-time intervals
//! allow, nothing here is uncertain: every step happened at one position of
//! the order. So the checks are exact, and per session:
//!
//! - mutual exclusion: a grant never finds every permit held by live
//!   sessions (a Lock: never two holders); a session's end releases what it
//!   held, as a release would. The same steps also go through
//!   [`crate::mutex::check_operations`] (positions as times, session
//!   ends as its session ends), as a second opinion;
//! - fencing: the tokens of successive grants strictly increase;
//! - conservation: after every command, the permits the object itself
//!   counts free plus those held by live sessions equal its permits: none
//!   lost (a session's end that gave nothing back), none doubled;
//! - no grant to a session that ended, and no release by a session that
//!   holds nothing. The second is stricter than Python (anyone may release
//!   a Lock) and fits workloads that release only what they took, as the
//!   simulated clients do: there a successful release of nothing means the
//!   client and the order disagree about who holds.

use super::mutex::{self, MutexKind};
use crate::history::Operation;
use std::collections::{BTreeMap, BTreeSet};

/// One step of the order, for one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `session` got the lock, or one permit; with the grant's token when
    /// it asked for one.
    Grant { session: String, token: Option<u64> },
    /// A release by `session` took effect.
    Release { session: String },
    /// `session` ended (expired): what it held goes back.
    SessionEnd { session: String },
    /// After a command: the permits the object itself counts free (a Lock:
    /// 1 unlocked, 0 locked).
    Free(u64),
}

/// What [`check`] found.
#[derive(Clone, Debug, Default)]
pub struct OrderReport {
    pub grants: usize,
    pub releases: usize,
    /// Sessions whose end gave back something they held, in order.
    pub ended_holding: Vec<String>,
    /// Each violation with the position of its step; empty when the order
    /// is correct.
    pub violations: Vec<String>,
}

impl OrderReport {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks the steps of one Lock, Semaphore or BoundedSemaphore (`kind`
/// gives the permits). An RLock's re-entrant holds are not modelled: it is
/// reported as a violation rather than passed unchecked.
pub fn check(kind: MutexKind, steps: &[Step]) -> OrderReport {
    let mut report = OrderReport::default();
    if kind == MutexKind::RLock {
        report
            .violations
            .push("RLock orders are not checked here".into());
        return report;
    }
    let permits = kind.permits();
    let mut held: BTreeMap<&str, u64> = BTreeMap::new();
    let mut ended: BTreeSet<&str> = BTreeSet::new();
    let mut last_token: Option<(usize, u64)> = None;
    let mut violations = Vec::new();
    for (at, step) in steps.iter().enumerate() {
        let holding: u64 = held.values().sum();
        match step {
            Step::Grant { session, token } => {
                report.grants += 1;
                if ended.contains(session.as_str()) {
                    violations.push(format!(
                        "step {at}: granted to {session}, whose session ended"
                    ));
                }
                if holding >= permits {
                    let holders: Vec<&&str> = held.keys().collect();
                    violations.push(format!(
                        "step {at}: granted to {session} while {holders:?} hold all {permits} permit(s)"
                    ));
                }
                if let Some(token) = token {
                    if let Some((prev_at, prev)) = last_token {
                        if *token <= prev {
                            violations.push(format!(
                                "step {at}: token {token} for {session} is not above {prev} (step {prev_at})"
                            ));
                        }
                    }
                    last_token = Some((at, *token));
                }
                *held.entry(session).or_default() += 1;
            }
            Step::Release { session } => {
                report.releases += 1;
                match held.get_mut(session.as_str()) {
                    Some(n) if *n > 1 => *n -= 1,
                    Some(_) => {
                        held.remove(session.as_str());
                    }
                    None => {
                        violations.push(format!("step {at}: {session} released, holding nothing"))
                    }
                }
            }
            Step::SessionEnd { session } => {
                if held.remove(session.as_str()).is_some() {
                    report.ended_holding.push(session.clone());
                }
                ended.insert(session);
            }
            Step::Free(free) => {
                if free + holding != permits {
                    violations.push(format!(
                        "step {at}: {free} free + {holding} held by live sessions is not {permits} ({})",
                        if free + holding < permits { "lost" } else { "doubled" }
                    ));
                }
            }
        }
    }
    violations.extend(second_opinion(kind, steps));
    report.violations = violations;
    report
}

/// The same steps through the real-time mutual-exclusion checker, each at
/// its position: it must agree there is no overlap.
fn second_opinion(kind: MutexKind, steps: &[Step]) -> Vec<String> {
    let mut ops = Vec::new();
    let mut session_ends = Vec::new();
    for (at, step) in steps.iter().enumerate() {
        let t = at as u64;
        match step {
            Step::Grant { session, .. } => ops.push(Operation::ok(
                session.clone(),
                "acquire",
                vec![],
                true,
                t,
                t,
            )),
            Step::Release { session } => {
                ops.push(Operation::ok(session.clone(), "release", vec![], (), t, t))
            }
            Step::SessionEnd { session } => session_ends.push((session.clone(), t)),
            Step::Free(_) => {}
        }
    }
    mutex::check_operations(kind, &ops, &session_ends)
        .violations
        .iter()
        .map(|v| format!("mutex checker: {v}"))
        .collect()
}
