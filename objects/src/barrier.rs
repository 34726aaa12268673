use crate::util::{may_wait, opt_timeout};
use crate::wait_queue::WaitQueue;
use crate::{reply, Args, CallContext, CommandId, ObjectError, Outcome, ReplicatedObject, Reply};
use serde::{Deserialize, Serialize};

fn broken_error() -> ObjectError {
    ObjectError::new("BrokenBarrierError", "barrier is broken")
}

/// Python's `threading.Barrier(parties)` across machines: `wait(timeout=None)
/// -> index`, `reset()`, `abort()`, `parties()`, `n_waiting()`, `broken()`.
///
/// `wait` returns the caller's arrival index in the current cycle
/// (0..parties-1, distinct per caller, as CPython's). A wait that times out
/// breaks the barrier, as in Python. Parties that arrive while the barrier is
/// broken get BrokenBarrierError until `reset`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Barrier {
    parties: u64,
    /// Parked arrivals of the current cycle; a waiter's index is its position
    /// (positions never shift: a departure other than the release breaks the cycle).
    waiting: WaitQueue,
    broken: bool,
}

impl Default for Barrier {
    /// ConCoord's barrier defaults to one party.
    fn default() -> Self {
        Barrier {
            parties: 1,
            waiting: WaitQueue::default(),
            broken: false,
        }
    }
}

impl Barrier {
    /// Answers every parked waiter with BrokenBarrierError, in arrival order.
    fn fail_waiters(&mut self, ctx: &mut CallContext<'_>) {
        for (id, ()) in self.waiting.drain() {
            ctx.wake(id, Err(broken_error()));
        }
    }

    fn dispatch(
        &mut self,
        method: &str,
        args: &Args,
        ctx: &mut CallContext<'_>,
    ) -> Result<Outcome, ObjectError> {
        match method {
            "wait" => {
                args.at_most(1)?;
                let timeout = opt_timeout(args, 0)?;
                if self.broken {
                    return Err(broken_error());
                }
                let index = self.waiting.len() as u64;
                if index + 1 == self.parties {
                    for (i, (id, ())) in self.waiting.drain().into_iter().enumerate() {
                        ctx.wake_with(id, &i);
                    }
                    return Ok(reply(&index));
                }
                if !may_wait(timeout) {
                    // Python: the wait times out, breaks the barrier and raises.
                    self.broken = true;
                    self.fail_waiters(ctx);
                    return Ok(Outcome::Reply(Err(broken_error())));
                }
                self.waiting.push(ctx.id, ());
                Ok(Outcome::Park)
            }
            "reset" => {
                args.at_most(0)?;
                self.fail_waiters(ctx);
                self.broken = false;
                Ok(reply(&()))
            }
            "abort" => {
                args.at_most(0)?;
                self.broken = true;
                self.fail_waiters(ctx);
                Ok(reply(&()))
            }
            "parties" => {
                args.at_most(0)?;
                Ok(reply(&self.parties))
            }
            "n_waiting" => {
                args.at_most(0)?;
                Ok(reply(&self.waiting.len()))
            }
            "broken" => {
                args.at_most(0)?;
                Ok(reply(&self.broken))
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }
}

impl ReplicatedObject for Barrier {
    fn describe(&self) -> String {
        if self.broken {
            "<Barrier: broken>".into()
        } else {
            format!("<Barrier: waiters={}/{}>", self.waiting.len(), self.parties)
        }
    }

    const NAME: &'static str = "Barrier";

    fn call(&mut self, method: &str, args: &Args, ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args, ctx)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    fn init(args: &Args) -> Result<Self, ObjectError> {
        args.at_most(1)?;
        let parties: i64 = args.get(0, "parties")?;
        if parties < 1 {
            return Err(ObjectError::value("parties must be > 0"));
        }
        Ok(Barrier {
            parties: parties as u64,
            ..Barrier::default()
        })
    }

    /// A timed-out wait breaks the barrier (Python's `_break()`): it gets
    /// BrokenBarrierError and so does everyone else parked.
    fn cancel(&mut self, id: CommandId, ctx: &mut CallContext<'_>) -> Option<Reply> {
        self.waiting.remove(id)?;
        self.broken = true;
        self.fail_waiters(ctx);
        Some(Err(broken_error()))
    }

    fn parked(&self) -> Vec<CommandId> {
        self.waiting.ids().collect()
    }

    fn is_read_only(method: &str) -> bool {
        matches!(method, "parties" | "n_waiting" | "broken")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    fn broken(wakes: &Wakes) -> Vec<CommandId> {
        wakes
            .iter()
            .map(|(id, r)| {
                assert_eq!(r.as_ref().unwrap_err().kind, "BrokenBarrierError");
                *id
            })
            .collect()
    }

    #[test]
    fn releases_all_parties_with_distinct_indices() {
        let mut h = Harness::<Barrier>::init(&[v(3)]);
        assert_eq!(h.ok::<u64>(1, "parties", &[]), 3);
        let (a, b) = (id(1, 1), id(2, 1));
        assert!(parked(&h.call_id(a, "wait", &[]).0));
        assert!(parked(&h.call_id(b, "wait", &[v(10)]).0));
        assert_eq!(h.ok::<u64>(1, "n_waiting", &[]), 2);
        h.round_trip();
        let (out, wakes) = h.call_as(3, "wait", &[]);
        assert_eq!(value::<u64>(out), 2);
        assert_eq!(woke::<u64>(wakes), vec![(a, 0), (b, 1)]);
        assert_eq!(h.ok::<u64>(1, "n_waiting", &[]), 0);
        // The barrier is reusable.
        assert!(parked(&h.call_as(1, "wait", &[]).0));
        assert!(!h.ok::<bool>(1, "broken", &[]));
        // One party: never waits.
        let mut one = Harness::<Barrier>::init(&[v(1)]);
        assert_eq!(one.ok::<u64>(1, "wait", &[]), 0);
    }

    #[test]
    fn init_errors() {
        let e = Barrier::init(&Args::from_values(vec![v(0)])).unwrap_err();
        assert_eq!(e.kind, "ValueError");
        assert_eq!(
            Barrier::init(&Args::default()).unwrap_err().kind,
            ObjectError::BAD_ARGUMENTS
        );
        let mut h = Harness::<Barrier>::new();
        assert_eq!(
            h.err(1, "wait", &[v("soon")]).kind,
            ObjectError::BAD_ARGUMENTS
        );
        assert_eq!(
            h.err(1, "parties", &[v(1)]).kind,
            ObjectError::BAD_ARGUMENTS
        );
        assert_eq!(h.err(1, "join", &[]).kind, ObjectError::UNKNOWN_METHOD);
    }

    #[test]
    fn abort_breaks_until_reset() {
        let mut h = Harness::<Barrier>::init(&[v(3)]);
        let (a, b) = (id(1, 1), id(2, 1));
        assert!(parked(&h.call_id(a, "wait", &[]).0));
        assert!(parked(&h.call_id(b, "wait", &[]).0));
        let (_, wakes) = h.call_as(3, "abort", &[]);
        assert_eq!(broken(&wakes), vec![a, b]);
        assert!(h.ok::<bool>(1, "broken", &[]));
        assert_eq!(h.err(1, "wait", &[]).kind, "BrokenBarrierError");
        h.ok::<()>(1, "reset", &[]);
        assert!(!h.ok::<bool>(1, "broken", &[]));
        assert!(parked(&h.call_as(1, "wait", &[]).0));
    }

    #[test]
    fn reset_fails_current_waiters_but_leaves_barrier_usable() {
        let mut h = Harness::<Barrier>::init(&[v(2)]);
        let a = id(1, 1);
        assert!(parked(&h.call_id(a, "wait", &[]).0));
        let (_, wakes) = h.call_as(2, "reset", &[]);
        assert_eq!(broken(&wakes), vec![a]);
        assert!(!h.ok::<bool>(1, "broken", &[]));
        assert_eq!(h.ok::<u64>(1, "n_waiting", &[]), 0);
    }

    #[test]
    fn timeout_breaks_the_barrier() {
        let mut h = Harness::<Barrier>::init(&[v(3)]);
        let (a, b) = (id(1, 1), id(2, 1));
        assert!(parked(&h.call_id(a, "wait", &[]).0));
        assert!(parked(&h.call_id(b, "wait", &[v(1)]).0));
        let (r, wakes) = h.cancel(b);
        assert_eq!(r.unwrap().unwrap_err().kind, "BrokenBarrierError");
        assert_eq!(broken(&wakes), vec![a]);
        assert!(h.ok::<bool>(1, "broken", &[]));
        assert_eq!(h.cancel(b).0, None);
        // wait(0) that cannot complete the barrier breaks it at once too.
        h.ok::<()>(1, "reset", &[]);
        let c = id(3, 1);
        assert!(parked(&h.call_id(c, "wait", &[]).0));
        let (out, wakes) = h.call_as(4, "wait", &[v(0)]);
        assert_eq!(out, Outcome::Reply(Err(broken_error())));
        assert_eq!(broken(&wakes), vec![c]);
    }
}
