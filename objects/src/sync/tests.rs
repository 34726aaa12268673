//! The primitives driven as a replica drives a user type: a parked call is
//! kept, run again (mode Woken) when a primitive asks, and run once more
//! with its deadline passed on a cancel.

use super::*;
use crate::{ready, RunMode};
use std::collections::{BTreeSet, VecDeque};

type Answer = Result<i64, ObjectError>;

/// Calls a test machine understands.
#[derive(Clone, Debug)]
enum Op {
    Acquire(Option<f64>),
    Release,
    Put(i64),
    Get(Option<f64>),
    Wait(Option<f64>),
    Set,
    Clear,
}

trait Machine {
    fn run(&mut self, op: &Op, cmd: &mut CallContext<'_>) -> Result<Blocking<i64>, ObjectError>;
}

/// What the replica does, in miniature.
struct Driver<M> {
    machine: M,
    parked: BTreeMap<CommandId, Op>,
    answers: Vec<(CommandId, Answer)>,
    seq: u64,
}

impl<M: Machine> Driver<M> {
    fn new(machine: M) -> Self {
        Driver {
            machine,
            parked: BTreeMap::new(),
            answers: Vec::new(),
            seq: 0,
        }
    }

    fn run(&mut self, id: CommandId, op: &Op, mode: RunMode) {
        let mut wakes = Vec::new();
        let parked: BTreeSet<CommandId> = self.parked.keys().copied().collect();
        let waiting = |w: CommandId| parked.contains(&w);
        let mut cmd = CallContext::new(id, 0, &mut wakes)
            .with_mode(mode)
            .with_waiting(&waiting);
        let out = self.machine.run(op, &mut cmd);
        let reruns = cmd.take_reruns();
        drop(cmd);
        assert!(wakes.is_empty(), "primitives re-run, they do not answer");
        match out {
            Ok(Blocking::Parked) => {
                self.parked.insert(id, op.clone());
            }
            Ok(Blocking::Ready(v)) => self.answer(id, Ok(v)),
            Err(e) => self.answer(id, Err(e)),
        }
        let mut queue: VecDeque<CommandId> = reruns.into();
        while let Some(w) = queue.pop_front() {
            let Some(op) = self.parked.get(&w).cloned() else {
                continue;
            };
            let mut wakes = Vec::new();
            let parked: BTreeSet<CommandId> = self.parked.keys().copied().collect();
            let waiting = |x: CommandId| parked.contains(&x);
            let mut cmd = CallContext::new(w, 0, &mut wakes)
                .with_mode(RunMode::Woken)
                .with_waiting(&waiting);
            let out = self.machine.run(&op, &mut cmd);
            queue.extend(cmd.take_reruns());
            drop(cmd);
            match out {
                Ok(Blocking::Parked) => {}
                Ok(Blocking::Ready(v)) => self.answer(w, Ok(v)),
                Err(e) => self.answer(w, Err(e)),
            }
        }
    }

    fn answer(&mut self, id: CommandId, answer: Answer) {
        self.parked.remove(&id);
        self.answers.push((id, answer));
    }

    /// A new call from `client`; its id.
    fn call(&mut self, client: u64, op: Op) -> CommandId {
        self.seq += 1;
        let id = CommandId::new(client, self.seq);
        self.run(id, &op, RunMode::First);
        id
    }

    fn cancel(&mut self, id: CommandId) {
        if let Some(op) = self.parked.get(&id).cloned() {
            self.run(id, &op, RunMode::DeadlinePassed);
        }
    }

    fn answer_of(&self, id: CommandId) -> Option<&Answer> {
        self.answers.iter().find(|(a, _)| *a == id).map(|(_, r)| r)
    }

    fn value_of(&self, id: CommandId) -> i64 {
        match self.answer_of(id) {
            Some(Ok(v)) => *v,
            other => panic!("{id}: {other:?}"),
        }
    }

    fn is_parked(&self, id: CommandId) -> bool {
        self.parked.contains_key(&id)
    }
}

/// The seed's Semaphore: a user type around a DSemaphore.
#[derive(Default)]
struct Sem {
    semaphore: DSemaphore,
}

impl Machine for Sem {
    fn run(&mut self, op: &Op, cmd: &mut CallContext<'_>) -> Result<Blocking<i64>, ObjectError> {
        match op {
            Op::Acquire(timeout) => {
                let got = ready!(self.semaphore.acquire(cmd, true, *timeout)?);
                Ok(Blocking::Ready(i64::from(got)))
            }
            Op::Release => self.semaphore.release(cmd, 1).map(|()| Blocking::Ready(0)),
            _ => unreachable!(),
        }
    }
}

#[test]
fn semaphore_parks_fifo_and_wakes_by_rerun() {
    let mut d = Driver::new(Sem {
        semaphore: DSemaphore::new(1),
    });
    let a = d.call(1, Op::Acquire(None));
    assert_eq!(d.value_of(a), 1);
    let b = d.call(2, Op::Acquire(None));
    let c = d.call(3, Op::Acquire(None));
    assert!(d.is_parked(b) && d.is_parked(c));
    assert_eq!(
        d.machine.semaphore.to_string(),
        "<Semaphore: value=0, waiting=2>"
    );
    d.call(1, Op::Release);
    assert_eq!(d.value_of(b), 1, "the longest waiter goes first");
    assert!(d.is_parked(c));
    d.call(2, Op::Release);
    assert_eq!(d.value_of(c), 1);
    assert_eq!(d.machine.semaphore.value(), 0);
}

#[test]
fn semaphore_timeout_leaks_no_permit() {
    let mut d = Driver::new(Sem::default());
    let a = d.call(1, Op::Acquire(None));
    assert_eq!(d.value_of(a), 1);
    let b = d.call(2, Op::Acquire(Some(0.5)));
    assert!(d.is_parked(b));
    d.cancel(b);
    assert_eq!(d.value_of(b), 0, "timed out: False");
    assert_eq!(d.machine.semaphore.waiting(), 0);
    d.call(1, Op::Release);
    assert_eq!(
        d.machine.semaphore.value(),
        1,
        "the permit is back, nobody took it"
    );
    // A cancel ordered after the wake finds nothing parked: the grant stands.
    let c = d.call(3, Op::Acquire(None));
    let e = d.call(4, Op::Acquire(Some(1.0)));
    d.call(3, Op::Release);
    assert_eq!((d.value_of(c), d.value_of(e)), (1, 1));
    d.cancel(e);
    assert_eq!(d.machine.semaphore.value(), 0);
}

#[test]
fn semaphore_argument_errors_as_python() {
    let mut wakes = Vec::new();
    let mut cmd = CallContext::new(CommandId::new(1, 1), 0, &mut wakes);
    let mut s = DSemaphore::new(0);
    let e = s.acquire(&mut cmd, false, Some(1.0)).unwrap_err();
    assert_eq!(e.message, "can't specify timeout for non-blocking acquire");
    assert_eq!(
        s.acquire(&mut cmd, true, Some(f64::NAN)).unwrap_err().kind,
        "ValueError"
    );
    assert_eq!(
        s.acquire(&mut cmd, false, None).unwrap(),
        Blocking::Ready(false)
    );
    assert_eq!(
        s.acquire(&mut cmd, true, Some(0.0)).unwrap(),
        Blocking::Ready(false)
    );
    assert_eq!(s.release(&mut cmd, 0).unwrap_err().kind, "ValueError");
    let mut b = DBoundedSemaphore::new(1);
    assert_eq!(
        b.release(&mut cmd, 1).unwrap_err().message,
        "Semaphore released too many times"
    );
    assert_eq!(DSemaphore::try_new(-1).unwrap_err().kind, "ValueError");
}

/// Python's textbook bounded buffer: one Lock, two Conditions.
struct Buffer {
    capacity: usize,
    items: VecDeque<i64>,
    mutex: DLock,
    not_full: DCondition,
    not_empty: DCondition,
}

impl Buffer {
    fn new(capacity: usize) -> Self {
        Buffer {
            capacity,
            items: VecDeque::new(),
            mutex: DLock::new(),
            not_full: DCondition::new(),
            not_empty: DCondition::new(),
        }
    }
}

impl Machine for Buffer {
    fn run(&mut self, op: &Op, cmd: &mut CallContext<'_>) -> Result<Blocking<i64>, ObjectError> {
        ready!(self.mutex.acquire(cmd, true, None)?);
        match op {
            Op::Put(item) => {
                while self.items.len() >= self.capacity {
                    ready!(self.not_full.wait(cmd, &mut self.mutex, None)?);
                }
                self.items.push_back(*item);
                self.not_empty.notify(cmd, &self.mutex, 1)?;
                self.mutex.release(cmd)?;
                Ok(Blocking::Ready(0))
            }
            Op::Get(timeout) => {
                while self.items.is_empty() {
                    if !ready!(self.not_empty.wait(cmd, &mut self.mutex, *timeout)?) {
                        self.mutex.release(cmd)?;
                        return Ok(Blocking::Ready(-1));
                    }
                }
                let item = self.items.pop_front().expect("checked above");
                self.not_full.notify(cmd, &self.mutex, 1)?;
                self.mutex.release(cmd)?;
                Ok(Blocking::Ready(item))
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn bounded_buffer_from_a_lock_and_two_conditions() {
    let mut d = Driver::new(Buffer::new(2));
    let getters: Vec<_> = (1..=3).map(|c| d.call(c, Op::Get(None))).collect();
    assert!(getters.iter().all(|g| d.is_parked(*g)));
    assert!(!d.machine.mutex.locked(), "a waiter gives the lock back");
    for item in 10..13 {
        let p = d.call(9, Op::Put(item));
        assert_eq!(d.value_of(p), 0);
    }
    let got: Vec<i64> = getters.iter().map(|g| d.value_of(*g)).collect();
    assert_eq!(
        got,
        vec![10, 11, 12],
        "each item once, in order, FIFO getters"
    );
    // Producers block when full and are let in as consumers take items.
    let puts: Vec<_> = (20..25).map(|i| d.call(7, Op::Put(i))).collect();
    assert_eq!(puts.iter().filter(|p| d.is_parked(**p)).count(), 3);
    let mut taken = Vec::new();
    for _ in 0..5 {
        let g = d.call(8, Op::Get(None));
        taken.push(d.value_of(g));
    }
    assert_eq!(taken, vec![20, 21, 22, 23, 24]);
    assert!(puts.iter().all(|p| !d.is_parked(*p)));
    assert!(!d.machine.mutex.locked());
}

#[test]
fn condition_wait_times_out_without_leaking() {
    let mut d = Driver::new(Buffer::new(1));
    let g = d.call(1, Op::Get(Some(0.2)));
    assert!(d.is_parked(g));
    d.cancel(g);
    assert_eq!(d.value_of(g), -1);
    assert_eq!(d.machine.not_empty.waiting(), 0);
    assert!(!d.machine.mutex.locked());
    // The item goes to the next getter, not to the one that timed out.
    let p = d.call(2, Op::Put(5));
    assert_eq!(d.value_of(p), 0);
    let h = d.call(3, Op::Get(None));
    assert_eq!(d.value_of(h), 5);
}

#[test]
fn stale_waiters_are_passed_over() {
    // A timed-out getter whose run took another path (an item had arrived)
    // stays queued; the next notify must skip it and reach a live waiter.
    let mut d = Driver::new(Buffer::new(4));
    let g1 = d.call(1, Op::Get(Some(1.0)));
    let g2 = d.call(2, Op::Get(None));
    // Put without notify, as if another primitive had let an item in.
    d.machine.items.push_back(42);
    d.cancel(g1);
    assert_eq!(d.value_of(g1), 42);
    assert_eq!(d.machine.not_empty.waiting(), 2, "g1's entry is stale");
    let p = d.call(3, Op::Put(7));
    assert_eq!(d.value_of(p), 0);
    assert_eq!(d.value_of(g2), 7, "notify passed over the stale entry");
}

#[test]
fn condition_needs_its_lock() {
    let mut wakes = Vec::new();
    let mut cmd = CallContext::new(CommandId::new(1, 1), 0, &mut wakes);
    let mut lock = DLock::new();
    let mut cond = DCondition::new();
    let e = cond.wait(&mut cmd, &mut lock, None).unwrap_err();
    assert_eq!(
        (e.kind.as_str(), e.message.as_str()),
        ("RuntimeError", "cannot wait on un-acquired lock")
    );
    let e = cond.notify(&mut cmd, &lock, 1).unwrap_err();
    assert_eq!(e.message, "cannot notify on un-acquired lock");
    assert_eq!(
        lock.release(&mut cmd).unwrap_err().message,
        "release unlocked lock"
    );
    // An RLock condition checks the owner.
    let mut rlock = DRLock::new();
    assert_eq!(
        rlock.acquire(&mut cmd, true, None).unwrap(),
        Blocking::Ready(true)
    );
    let mut other_wakes = Vec::new();
    let mut other = CallContext::new(CommandId::new(2, 1), 0, &mut other_wakes);
    assert_eq!(
        cond.wait(&mut other, &mut rlock, None).unwrap_err().kind,
        "RuntimeError"
    );
    assert_eq!(rlock.release(&mut other).unwrap_err().kind, "RuntimeError");
}

/// A Lock and an RLock used directly.
#[derive(Default)]
struct Locks {
    lock: DLock,
    rlock: DRLock,
    use_rlock: bool,
}

impl Machine for Locks {
    fn run(&mut self, op: &Op, cmd: &mut CallContext<'_>) -> Result<Blocking<i64>, ObjectError> {
        match (op, self.use_rlock) {
            (Op::Acquire(t), false) => Ok(self.lock.acquire(cmd, true, *t)?.map(i64::from)),
            (Op::Release, false) => self.lock.release(cmd).map(|()| Blocking::Ready(0)),
            (Op::Acquire(t), true) => Ok(self.rlock.acquire(cmd, true, *t)?.map(i64::from)),
            (Op::Release, true) => self.rlock.release(cmd).map(|()| Blocking::Ready(0)),
            _ => unreachable!(),
        }
    }
}

#[test]
fn lock_hands_over_in_fifo_order_and_cancel_removes() {
    let mut d = Driver::new(Locks::default());
    let a = d.call(1, Op::Acquire(None));
    assert_eq!(d.value_of(a), 1);
    let b = d.call(2, Op::Acquire(Some(1.0)));
    let c = d.call(3, Op::Acquire(None));
    d.cancel(b);
    assert_eq!(d.value_of(b), 0);
    d.call(1, Op::Release);
    assert_eq!(d.value_of(c), 1);
    assert!(d.machine.lock.locked());
    assert_eq!(d.machine.lock.to_string(), "<locked Lock, waiting=0>");
}

#[test]
fn rlock_reenters_for_its_owner_only() {
    let mut d = Driver::new(Locks {
        use_rlock: true,
        ..Locks::default()
    });
    let a1 = d.call(1, Op::Acquire(None));
    let a2 = d.call(1, Op::Acquire(None));
    assert_eq!((d.value_of(a1), d.value_of(a2)), (1, 1));
    assert_eq!(d.machine.rlock.count(), 2);
    let b = d.call(2, Op::Acquire(None));
    assert!(d.is_parked(b));
    d.call(1, Op::Release);
    assert!(d.is_parked(b), "one level still held");
    d.call(1, Op::Release);
    assert_eq!(d.value_of(b), 1);
    assert_eq!(d.machine.rlock.owner(), Some(2));
}

/// An Event and a Barrier(3).
struct Gates {
    event: DEvent,
    barrier: DBarrier,
}

impl Machine for Gates {
    fn run(&mut self, op: &Op, cmd: &mut CallContext<'_>) -> Result<Blocking<i64>, ObjectError> {
        match op {
            Op::Wait(t) => Ok(self.event.wait(cmd, *t)?.map(i64::from)),
            Op::Set => {
                self.event.set(cmd);
                Ok(Blocking::Ready(0))
            }
            Op::Clear => {
                self.event.clear();
                Ok(Blocking::Ready(0))
            }
            Op::Get(t) => Ok(self.barrier.wait(cmd, *t)?.map(|i| i as i64)),
            Op::Release => {
                self.barrier.reset(cmd);
                Ok(Blocking::Ready(0))
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn event_wakes_every_waiter_even_if_cleared_at_once() {
    let mut d = Driver::new(Gates {
        event: DEvent::new(),
        barrier: DBarrier::new(3),
    });
    let ws: Vec<_> = (1..=3).map(|c| d.call(c, Op::Wait(None))).collect();
    let timed = d.call(4, Op::Wait(Some(1.0)));
    d.cancel(timed);
    assert_eq!(d.value_of(timed), 0);
    d.call(9, Op::Set);
    assert!(ws.iter().all(|w| d.value_of(*w) == 1));
    d.call(9, Op::Clear);
    let late = d.call(5, Op::Wait(Some(0.0)));
    assert_eq!(d.value_of(late), 0);
}

#[test]
fn barrier_releases_with_indices_and_breaks_on_timeout() {
    let mut d = Driver::new(Gates {
        event: DEvent::new(),
        barrier: DBarrier::new(3),
    });
    let a = d.call(1, Op::Get(None));
    let b = d.call(2, Op::Get(None));
    let c = d.call(3, Op::Get(None));
    assert_eq!(
        (d.value_of(a), d.value_of(b), d.value_of(c)),
        (0, 1, 2),
        "arrival indices"
    );
    let x = d.call(1, Op::Get(None));
    let y = d.call(2, Op::Get(Some(0.5)));
    d.cancel(y);
    for id in [x, y] {
        assert_eq!(
            d.answer_of(id).unwrap().as_ref().unwrap_err().kind,
            "BrokenBarrierError"
        );
    }
    assert!(d.machine.barrier.broken());
    let z = d.call(3, Op::Get(None));
    assert!(d.answer_of(z).unwrap().is_err(), "broken until reset");
    d.call(9, Op::Release);
    assert!(!d.machine.barrier.broken());
    assert_eq!(DBarrier::try_new(0).unwrap_err().kind, "ValueError");
}
