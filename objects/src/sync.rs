//! The threading library as state a user type embeds (ConCoord's `DLock`,
//! `DRLock`, `DSemaphore`, `DBoundedSemaphore`, `DCondition`, `DBarrier`,
//! and `DEvent` beyond it), with Python's `threading` semantics.
//!
//! A method of a `#[concoord::object]` type takes the calling command
//! (`cmd: &mut CallContext<'_>`, ConCoord's `_concoord_command`), passes it
//! to the primitives, and returns `Blocking<T>`: a blocking call that cannot
//! proceed parks the command in the primitive's FIFO wait queue, keyed by its
//! command id, so a client that reconnects and resends is attached to the
//! same wait.
//!
//! **A parked call runs again from the top** when the primitive wakes it
//! (a release, a notify, a set): a continuation by re-run, the replicated
//! form of Python's `while not ready: cond.wait()`. So decide whether to
//! park before changing anything else, as that loop does. A timed call whose
//! deadline passes runs once more with [`CallContext::deadline_passed`]:
//! every blocking call then answers as timed out (false) instead of parking,
//! and takes the command out of its queue, so a timeout never leaks a permit.
//!
//! ```
//! use concoord_objects::sync::DSemaphore;
//! use concoord_objects::{ready, Blocking, CallContext, ObjectError};
//!
//! #[derive(Default)]
//! struct Slots { semaphore: DSemaphore }
//!
//! impl Slots {
//!     fn acquire(&mut self, cmd: &mut CallContext<'_>) -> Result<Blocking<bool>, ObjectError> {
//!         let got = ready!(self.semaphore.acquire(cmd, true, None)?);
//!         Ok(Blocking::Ready(got))
//!     }
//! }
//! ```

use crate::wait_queue::WaitQueue;
use crate::{Blocking, CallContext, ClientId, CommandId, ObjectError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

type Parks<T> = Result<Blocking<T>, ObjectError>;

/// Python's timeout rules: NaN and negative timeouts are errors, a timeout
/// on a non-blocking call too. Returns whether the call may park.
fn may_park(blocking: bool, timeout: Option<f64>) -> Result<bool, ObjectError> {
    match timeout {
        Some(t) if t.is_nan() => Err(ObjectError::value("Invalid value NaN (not a number)")),
        Some(_) if !blocking => Err(ObjectError::value(
            "can't specify a timeout for a non-blocking call",
        )),
        Some(t) if t < 0.0 => Err(ObjectError::value(
            "timeout value must be a non-negative number",
        )),
        Some(t) => Ok(t > 0.0),
        None => Ok(blocking),
    }
}

/// Parks the caller unless its deadline passed; then it leaves the queue and
/// the call answers `timed_out`.
fn park_or_time_out<T, D>(
    queue: &mut WaitQueue<D>,
    cmd: &CallContext<'_>,
    data: D,
    may_park: bool,
    timed_out: T,
) -> Blocking<T> {
    if may_park && !cmd.deadline_passed() {
        queue.push(cmd.id, data);
        Blocking::Parked
    } else {
        queue.remove(cmd.id);
        Blocking::Ready(timed_out)
    }
}

/// Takes the longest-waiting call that still waits, dropping entries of
/// calls answered meanwhile by a run that took another path.
fn pop_waiting<D>(queue: &mut WaitQueue<D>, cmd: &CallContext<'_>) -> Option<(CommandId, D)> {
    while let Some((id, data)) = queue.pop() {
        if id != cmd.id && cmd.is_waiting(id) {
            return Some((id, data));
        }
    }
    None
}

/// Forgets results kept for calls that no longer wait.
fn prune<V>(kept: &mut BTreeMap<CommandId, V>, cmd: &CallContext<'_>) {
    kept.retain(|id, _| *id == cmd.id || cmd.is_waiting(*id));
}

/// Python's `threading.Lock` (ConCoord's `DLock`). Any caller may release it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DLock {
    locked: bool,
    waiters: WaitQueue,
}

impl DLock {
    pub fn new() -> Self {
        Self::default()
    }

    /// `acquire(blocking=True, timeout=None) -> bool`.
    pub fn acquire(
        &mut self,
        cmd: &mut CallContext<'_>,
        blocking: bool,
        timeout: Option<f64>,
    ) -> Parks<bool> {
        let may_park = may_park(blocking, timeout)?;
        if !self.locked {
            self.locked = true;
            self.waiters.remove(cmd.id);
            return Ok(Blocking::Ready(true));
        }
        Ok(park_or_time_out(
            &mut self.waiters,
            cmd,
            (),
            may_park,
            false,
        ))
    }

    /// `release()`: RuntimeError when unlocked; wakes the longest waiter.
    pub fn release(&mut self, cmd: &mut CallContext<'_>) -> Result<(), ObjectError> {
        if !self.locked {
            return Err(ObjectError::runtime("release unlocked lock"));
        }
        self.locked = false;
        if let Some((next, ())) = pop_waiting(&mut self.waiters, cmd) {
            cmd.rerun(next);
        }
        Ok(())
    }

    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Calls parked here (stale entries included until they are passed over).
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }
}

impl fmt::Display for DLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.locked { "locked" } else { "unlocked" };
        write!(f, "<{state} Lock, waiting={}>", self.waiters.len())
    }
}

/// Python's `threading.RLock` (ConCoord's `DRLock`): owned by the client
/// that acquired it, re-entrant with a count.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DRLock {
    owner: Option<ClientId>,
    count: u64,
    waiters: WaitQueue,
}

impl DRLock {
    pub fn new() -> Self {
        Self::default()
    }

    /// `acquire(blocking=True, timeout=None) -> bool`; the owner re-enters.
    pub fn acquire(
        &mut self,
        cmd: &mut CallContext<'_>,
        blocking: bool,
        timeout: Option<f64>,
    ) -> Parks<bool> {
        let may_park = may_park(blocking, timeout)?;
        match self.owner {
            None => {
                self.owner = Some(cmd.client());
                self.count = 1;
                self.waiters.remove(cmd.id);
                Ok(Blocking::Ready(true))
            }
            Some(owner) if owner == cmd.client() => {
                self.count = self
                    .count
                    .checked_add(1)
                    .ok_or_else(|| ObjectError::new("OverflowError", "RLock recursion too deep"))?;
                Ok(Blocking::Ready(true))
            }
            Some(_) => Ok(park_or_time_out(
                &mut self.waiters,
                cmd,
                (),
                may_park,
                false,
            )),
        }
    }

    /// `release()`: RuntimeError unless the caller's client owns it.
    pub fn release(&mut self, cmd: &mut CallContext<'_>) -> Result<(), ObjectError> {
        if self.owner != Some(cmd.client()) {
            return Err(ObjectError::runtime("cannot release un-acquired lock"));
        }
        self.count -= 1;
        if self.count == 0 {
            self.free(cmd);
        }
        Ok(())
    }

    fn free(&mut self, cmd: &mut CallContext<'_>) {
        self.owner = None;
        self.count = 0;
        if let Some((next, ())) = pop_waiting(&mut self.waiters, cmd) {
            cmd.rerun(next);
        }
    }

    pub fn locked(&self) -> bool {
        self.owner.is_some()
    }

    pub fn owner(&self) -> Option<ClientId> {
        self.owner
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

impl fmt::Display for DRLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.owner {
            Some(owner) => write!(f, "<locked RLock owner={owner:x} count={}>", self.count),
            None => write!(f, "<unlocked RLock owner=None count=0>"),
        }
    }
}

/// The lock a [`DCondition`] is used with.
pub trait ConditionLock {
    /// Whether the calling command may wait or notify (holds the lock).
    fn held_by(&self, cmd: &CallContext<'_>) -> bool;
    /// Releases the lock completely so a waiter can park.
    fn release_for_wait(&mut self, cmd: &mut CallContext<'_>);
}

impl ConditionLock for DLock {
    /// A Lock has no owner: held means locked, as Python can tell.
    fn held_by(&self, _cmd: &CallContext<'_>) -> bool {
        self.locked
    }

    fn release_for_wait(&mut self, cmd: &mut CallContext<'_>) {
        let _ = self.release(cmd);
    }
}

impl ConditionLock for DRLock {
    fn held_by(&self, cmd: &CallContext<'_>) -> bool {
        self.owner == Some(cmd.client())
    }

    fn release_for_wait(&mut self, cmd: &mut CallContext<'_>) {
        self.free(cmd);
    }
}

/// Python's `threading.Condition(lock)` (ConCoord's `DCondition`). The lock
/// is a field of its own ([`DLock`] or [`DRLock`]), passed to each call, so
/// several conditions can share one lock (Python's bounded buffer).
///
/// A notified waiter runs again from the top, where it re-acquires the lock
/// and checks its predicate: the `while not predicate: wait()` loop.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DCondition {
    waiters: WaitQueue,
}

impl DCondition {
    pub fn new() -> Self {
        Self::default()
    }

    /// `wait(timeout=None)`: releases the lock and parks. Returns
    /// `Ready(false)` only when it times out (with the lock held again).
    pub fn wait<L: ConditionLock>(
        &mut self,
        cmd: &mut CallContext<'_>,
        lock: &mut L,
        timeout: Option<f64>,
    ) -> Parks<bool> {
        if !lock.held_by(cmd) {
            return Err(ObjectError::runtime("cannot wait on un-acquired lock"));
        }
        let may_park = may_park(true, timeout)?;
        if !may_park || cmd.deadline_passed() {
            // Timed out with the lock held by this run: Python's wait returns False.
            self.waiters.remove(cmd.id);
            return Ok(Blocking::Ready(false));
        }
        lock.release_for_wait(cmd);
        self.waiters.push(cmd.id, ());
        Ok(Blocking::Parked)
    }

    /// `notify(n=1)`: wakes up to `n` waiters, longest first.
    pub fn notify<L: ConditionLock>(
        &mut self,
        cmd: &mut CallContext<'_>,
        lock: &L,
        n: u64,
    ) -> Result<(), ObjectError> {
        if !lock.held_by(cmd) {
            return Err(ObjectError::runtime("cannot notify on un-acquired lock"));
        }
        for _ in 0..n {
            let Some((id, ())) = pop_waiting(&mut self.waiters, cmd) else {
                break;
            };
            cmd.rerun(id);
        }
        Ok(())
    }

    /// `notify_all()`.
    pub fn notify_all<L: ConditionLock>(
        &mut self,
        cmd: &mut CallContext<'_>,
        lock: &L,
    ) -> Result<(), ObjectError> {
        self.notify(cmd, lock, u64::MAX)
    }

    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }
}

impl fmt::Display for DCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Condition waiting={}>", self.waiters.len())
    }
}

/// Python's `threading.Semaphore(value=1)` (ConCoord's `DSemaphore`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DSemaphore {
    value: u64,
    initial: u64,
    waiters: WaitQueue,
}

impl Default for DSemaphore {
    fn default() -> Self {
        DSemaphore::new(1)
    }
}

impl DSemaphore {
    pub fn new(value: u64) -> Self {
        DSemaphore {
            value,
            initial: value,
            waiters: WaitQueue::default(),
        }
    }

    /// Python's constructor check: a negative value is a ValueError.
    pub fn try_new(value: i64) -> Result<Self, ObjectError> {
        u64::try_from(value)
            .map(DSemaphore::new)
            .map_err(|_| ObjectError::value("semaphore initial value must be >= 0"))
    }

    /// `acquire(blocking=True, timeout=None) -> bool`.
    pub fn acquire(
        &mut self,
        cmd: &mut CallContext<'_>,
        blocking: bool,
        timeout: Option<f64>,
    ) -> Parks<bool> {
        if !blocking && timeout.is_some() {
            return Err(ObjectError::value(
                "can't specify timeout for non-blocking acquire",
            ));
        }
        let may_park = may_park(blocking, timeout)?;
        // Woken calls run right after the call that released, before any
        // other command: the permit goes to the waiter, not to a newcomer.
        if self.value > 0 {
            self.value -= 1;
            self.waiters.remove(cmd.id);
            return Ok(Blocking::Ready(true));
        }
        Ok(park_or_time_out(
            &mut self.waiters,
            cmd,
            (),
            may_park,
            false,
        ))
    }

    /// `release(n=1)`: adds `n` permits and wakes up to `n` waiters.
    pub fn release(&mut self, cmd: &mut CallContext<'_>, n: u64) -> Result<(), ObjectError> {
        self.release_checked(cmd, n, false)
    }

    fn release_checked(
        &mut self,
        cmd: &mut CallContext<'_>,
        n: u64,
        bounded: bool,
    ) -> Result<(), ObjectError> {
        if n < 1 {
            return Err(ObjectError::value("n must be one or more"));
        }
        let total = self
            .value
            .checked_add(n)
            .ok_or_else(|| ObjectError::new("OverflowError", "semaphore value too large"))?;
        if bounded && total > self.initial {
            return Err(ObjectError::value("Semaphore released too many times"));
        }
        self.value = total;
        for _ in 0..n {
            let Some((id, ())) = pop_waiting(&mut self.waiters, cmd) else {
                break;
            };
            cmd.rerun(id);
        }
        Ok(())
    }

    /// The permits free now (Python's `_value`).
    pub fn value(&self) -> u64 {
        self.value
    }

    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }
}

impl fmt::Display for DSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<Semaphore: value={}, waiting={}>",
            self.value,
            self.waiters.len()
        )
    }
}

/// Python's `threading.BoundedSemaphore(value=1)` (ConCoord's
/// `DBoundedSemaphore`): `release` above the initial value is a ValueError.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DBoundedSemaphore {
    inner: DSemaphore,
}

impl DBoundedSemaphore {
    pub fn new(value: u64) -> Self {
        DBoundedSemaphore {
            inner: DSemaphore::new(value),
        }
    }

    pub fn try_new(value: i64) -> Result<Self, ObjectError> {
        DSemaphore::try_new(value).map(|inner| DBoundedSemaphore { inner })
    }

    pub fn acquire(
        &mut self,
        cmd: &mut CallContext<'_>,
        blocking: bool,
        timeout: Option<f64>,
    ) -> Parks<bool> {
        self.inner.acquire(cmd, blocking, timeout)
    }

    pub fn release(&mut self, cmd: &mut CallContext<'_>, n: u64) -> Result<(), ObjectError> {
        self.inner.release_checked(cmd, n, true)
    }

    pub fn value(&self) -> u64 {
        self.inner.value
    }

    pub fn waiting(&self) -> usize {
        self.inner.waiting()
    }
}

impl fmt::Display for DBoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<BoundedSemaphore: value={}/{}, waiting={}>",
            self.inner.value,
            self.inner.initial,
            self.inner.waiters.len()
        )
    }
}

/// Python's `threading.Event`: `set`, `clear`, `is_set`, `wait(timeout) -> bool`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DEvent {
    flag: bool,
    waiters: WaitQueue,
    /// Woken by a `set`: their `wait` returns True even if cleared since.
    released: BTreeMap<CommandId, ()>,
}

impl DEvent {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn wait(&mut self, cmd: &mut CallContext<'_>, timeout: Option<f64>) -> Parks<bool> {
        let may_park = may_park(true, timeout)?;
        prune(&mut self.released, cmd);
        if self.released.remove(&cmd.id).is_some() || self.flag {
            self.waiters.remove(cmd.id);
            return Ok(Blocking::Ready(true));
        }
        Ok(park_or_time_out(
            &mut self.waiters,
            cmd,
            (),
            may_park,
            false,
        ))
    }

    pub fn set(&mut self, cmd: &mut CallContext<'_>) {
        self.flag = true;
        while let Some((id, ())) = pop_waiting(&mut self.waiters, cmd) {
            self.released.insert(id, ());
            cmd.rerun(id);
        }
    }

    pub fn clear(&mut self) {
        self.flag = false;
    }

    pub fn is_set(&self) -> bool {
        self.flag
    }
}

impl fmt::Display for DEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.flag { "set" } else { "unset" };
        write!(f, "<Event: {state}, waiting={}>", self.waiters.len())
    }
}

fn broken_error() -> ObjectError {
    ObjectError::new("BrokenBarrierError", "barrier is broken")
}

/// Python's `threading.Barrier(parties)`: `wait(timeout) -> index`,
/// `reset()`, `abort()`. A wait that times out breaks the barrier, as in Python.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DBarrier {
    parties: u64,
    /// This cycle's arrivals, with their index.
    waiters: WaitQueue<u64>,
    /// Released by the last arrival: the index each one's `wait` returns.
    released: BTreeMap<CommandId, u64>,
    /// Woken by a reset or an abort: their `wait` raises BrokenBarrierError.
    failed: BTreeMap<CommandId, ()>,
    broken: bool,
}

impl Default for DBarrier {
    fn default() -> Self {
        DBarrier::new(1)
    }
}

impl DBarrier {
    /// `Barrier(parties)`; see [`Self::try_new`] for Python's check.
    pub fn new(parties: u64) -> Self {
        DBarrier {
            parties: parties.max(1),
            waiters: WaitQueue::default(),
            released: BTreeMap::new(),
            failed: BTreeMap::new(),
            broken: false,
        }
    }

    pub fn try_new(parties: i64) -> Result<Self, ObjectError> {
        match u64::try_from(parties) {
            Ok(p) if p >= 1 => Ok(DBarrier::new(p)),
            _ => Err(ObjectError::value("parties must be >= 1")),
        }
    }

    pub fn wait(&mut self, cmd: &mut CallContext<'_>, timeout: Option<f64>) -> Parks<u64> {
        let may_park = may_park(true, timeout)?;
        prune(&mut self.released, cmd);
        prune(&mut self.failed, cmd);
        if let Some(index) = self.released.remove(&cmd.id) {
            return Ok(Blocking::Ready(index));
        }
        if self.failed.remove(&cmd.id).is_some() {
            return Err(broken_error());
        }
        if self.broken {
            return Err(broken_error());
        }
        if self.waiters.contains(cmd.id) {
            if cmd.deadline_passed() {
                self.waiters.remove(cmd.id);
                self.break_barrier(cmd);
                return Err(broken_error());
            }
            return Ok(Blocking::Parked);
        }
        let index = self.waiters.len() as u64;
        if index + 1 == self.parties {
            for (id, index) in self.waiters.drain() {
                if cmd.is_waiting(id) {
                    self.released.insert(id, index);
                    cmd.rerun(id);
                }
            }
            return Ok(Blocking::Ready(index));
        }
        if !may_park || cmd.deadline_passed() {
            self.break_barrier(cmd);
            return Err(broken_error());
        }
        self.waiters.push(cmd.id, index);
        Ok(Blocking::Parked)
    }

    fn fail_waiters(&mut self, cmd: &mut CallContext<'_>) {
        for (id, _) in self.waiters.drain() {
            if cmd.is_waiting(id) && id != cmd.id {
                self.failed.insert(id, ());
                cmd.rerun(id);
            }
        }
    }

    fn break_barrier(&mut self, cmd: &mut CallContext<'_>) {
        self.broken = true;
        self.fail_waiters(cmd);
    }

    /// `reset()`: waiters get BrokenBarrierError; the barrier is whole again.
    pub fn reset(&mut self, cmd: &mut CallContext<'_>) {
        self.fail_waiters(cmd);
        self.broken = false;
    }

    /// `abort()`: broken until `reset`.
    pub fn abort(&mut self, cmd: &mut CallContext<'_>) {
        self.break_barrier(cmd);
    }

    pub fn parties(&self) -> u64 {
        self.parties
    }

    pub fn n_waiting(&self) -> u64 {
        self.waiters.len() as u64
    }

    pub fn broken(&self) -> bool {
        self.broken
    }
}

impl fmt::Display for DBarrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.broken {
            write!(f, "<Barrier: broken>")
        } else {
            write!(
                f,
                "<Barrier: waiters={}/{}>",
                self.waiters.len(),
                self.parties
            )
        }
    }
}

#[cfg(test)]
mod tests;
