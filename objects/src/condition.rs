use crate::rlock::{Grant, Reentrant};
use crate::util::{may_wait, opt_timeout};
use crate::wait_queue::WaitQueue;
use crate::{
    reply, Args, CallContext, ClientId, CommandId, ObjectError, Outcome, ReplicatedObject, Reply,
};
use serde::{Deserialize, Serialize};

/// Python's `threading.Condition()` across machines (ConCoord's
/// `DCondition`), with its own re-entrant lock as Python's default RLock:
/// `acquire`, `release`, `wait(timeout=None) -> bool`, `notify(n=1)`,
/// `notify_all()` (and ConCoord's `notifyAll`).
///
/// `wait` releases every level the caller holds and parks; `notify` moves
/// waiters to the lock's queue, and a waiter is answered only once it owns
/// the lock again, with its old recursion count, exactly as Python's wait
/// returns only after re-acquiring.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    lock: Reentrant,
    /// Waiting for a notify, with the recursion count to restore.
    waiters: WaitQueue<u64>,
}

impl Condition {
    fn dispatch(
        &mut self,
        method: &str,
        args: &Args,
        ctx: &mut CallContext<'_>,
    ) -> Result<Outcome, ObjectError> {
        match method {
            "acquire" => self.lock.acquire(args, false, ctx),
            "release" => {
                args.at_most(0)?;
                self.lock.release(ctx)?;
                Ok(reply(&()))
            }
            "wait" => {
                args.at_most(1)?;
                let timeout = opt_timeout(args, 0)?;
                if !self.lock.is_owned_by(ctx.client()) {
                    return Err(ObjectError::runtime("cannot wait on un-acquired lock"));
                }
                let count = self.lock.release_all(ctx);
                if may_wait(timeout) {
                    self.waiters.push(ctx.id, count);
                    return Ok(Outcome::Park);
                }
                // wait(0): times out at once, then re-acquires before returning False.
                Ok(self.reacquire(ctx.id, count, false))
            }
            "notify" => {
                args.at_most(1)?;
                let n: u64 = args.get_or(0, "n", 1)?;
                self.notify(n, ctx)?;
                Ok(reply(&()))
            }
            "notify_all" | "notifyAll" => {
                args.at_most(0)?;
                self.notify(u64::MAX, ctx)?;
                Ok(reply(&()))
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }

    fn notify(&mut self, n: u64, ctx: &CallContext<'_>) -> Result<(), ObjectError> {
        if !self.lock.is_owned_by(ctx.client()) {
            return Err(ObjectError::runtime("cannot notify on un-acquired lock"));
        }
        for _ in 0..n {
            let Some((id, count)) = self.waiters.pop() else {
                break;
            };
            // The notifier holds the lock, so this always queues.
            let granted = self.lock.enqueue(id, Self::reacquiring(count, true));
            debug_assert!(granted.is_none());
        }
        Ok(())
    }

    fn reacquiring(count: u64, result: bool) -> Grant {
        Grant {
            count,
            result,
            cancellable: false,
            fenced: false,
        }
    }

    /// Queues a finished waiter for the lock; answers now if the lock is free.
    fn reacquire(&mut self, id: CommandId, count: u64, result: bool) -> Outcome {
        match self.lock.enqueue(id, Self::reacquiring(count, result)) {
            Some(reply) => Outcome::Reply(reply),
            None => Outcome::Park,
        }
    }
}

impl ReplicatedObject for Condition {
    /// Its lock is released as after the owner's last release; its waits are
    /// cancelled by the replica like any parked call of the session.
    fn session_ended(&mut self, client: ClientId, ctx: &mut CallContext<'_>) {
        self.waiters.remove_client(client);
        self.lock.session_ended(client, ctx);
    }

    fn describe(&self) -> String {
        format!(
            "<Condition({}), waiting={}>",
            self.lock.describe("RLock"),
            self.waiters.len()
        )
    }

    const NAME: &'static str = "Condition";

    fn call(&mut self, method: &str, args: &Args, ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args, ctx)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    /// A timed-out `wait` still has to re-acquire the lock before it returns
    /// False: if the lock is free it is granted now and answered here; if not,
    /// it moves to the lock's queue, this returns `None` and the reply (False)
    /// comes through a later wake, when it gets the lock. A timed-out
    /// `acquire` is answered False at once.
    fn cancel(&mut self, id: CommandId, _ctx: &mut CallContext<'_>) -> Option<Reply> {
        match self.waiters.remove(id) {
            Some(count) => match self.reacquire(id, count, false) {
                Outcome::Reply(reply) => Some(reply),
                Outcome::Park => None,
            },
            None => self.lock.cancel(id),
        }
    }

    fn parked(&self) -> Vec<CommandId> {
        self.lock.parked().chain(self.waiters.ids()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    #[test]
    fn a_waiters_session_end_never_leaves_it_the_lock() {
        let mut h = Harness::<Condition>::new();
        let w = id(1, 1);
        assert!(h.ok::<bool>(1, "acquire", &[]));
        assert!(parked(&h.call_id(w, "wait", &[v(5.0)]).0));
        assert!(h.ok::<bool>(2, "acquire", &[]));
        // The replica cancels the dead session's wait (it moves to the lock's
        // queue to re-acquire), then ends the session.
        assert_eq!(h.cancel(w).0, None);
        let mut wakes = Vec::new();
        let mut ctx = CallContext::new(id(0, 0), 77, &mut wakes);
        h.hosted.object.session_ended(1, &mut ctx);
        assert!(wakes.is_empty());
        let (_, wakes) = h.call_as(2, "release", &[]);
        assert!(wakes.is_empty(), "nothing handed to the gone session");
        assert!(h.ok::<bool>(3, "acquire", &[v(false)]), "the lock is free");
    }

    #[test]
    fn wait_and_notify_need_the_lock() {
        let mut h = Harness::<Condition>::new();
        let e = h.err(1, "wait", &[]);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("RuntimeError", "cannot wait on un-acquired lock")
        );
        let e = h.err(1, "notify", &[]);
        assert_eq!(e.message, "cannot notify on un-acquired lock");
        assert_eq!(
            h.err(1, "notifyAll", &[]).message,
            "cannot notify on un-acquired lock"
        );
        assert_eq!(
            h.err(1, "release", &[]).message,
            "cannot release un-acquired lock"
        );
        assert!(h.ok::<bool>(1, "acquire", &[]));
        assert_eq!(h.err(2, "notify_all", &[]).kind, "RuntimeError");
        assert_eq!(
            h.err(1, "notify", &[v(-1)]).kind,
            ObjectError::BAD_ARGUMENTS
        );
        assert_eq!(
            h.err(1, "wait", &[v(1), v(2)]).kind,
            ObjectError::BAD_ARGUMENTS
        );
        assert_eq!(
            h.err(1, "notify_everyone", &[]).kind,
            ObjectError::UNKNOWN_METHOD
        );
        h.ok::<()>(1, "notify", &[]); // nobody waiting: a no-op
    }

    #[test]
    fn notified_waiter_returns_after_reacquiring_with_its_count() {
        let mut h = Harness::<Condition>::new();
        let w = id(1, 10);
        assert!(h.ok::<bool>(1, "acquire", &[]));
        assert!(h.ok::<bool>(1, "acquire", &[]));
        let (out, wakes) = h.call_id(w, "wait", &[]);
        assert!(parked(&out) && wakes.is_empty());
        // The lock is fully released while client 1 waits.
        assert!(h.ok::<bool>(2, "acquire", &[v(false)]));
        h.round_trip();
        h.ok::<()>(2, "notify", &[]);
        assert_eq!(
            h.parked(),
            vec![w],
            "moved to the lock queue, not yet answered"
        );
        let (_, wakes) = h.call_as(2, "release", &[]);
        assert_eq!(woke::<bool>(wakes), vec![(w, true)]);
        // Client 1 holds two levels again.
        h.ok::<()>(1, "release", &[]);
        assert!(!h.ok::<bool>(2, "acquire", &[v(false)]));
        h.ok::<()>(1, "release", &[]);
        assert!(h.ok::<bool>(2, "acquire", &[v(false)]));
    }

    #[test]
    fn notify_n_and_notify_all_in_fifo_order() {
        let mut h = Harness::<Condition>::new();
        let ws: Vec<_> = (1..=4).map(|c| id(c, 1)).collect();
        for &w in &ws {
            assert!(h.ok::<bool>(w.client, "acquire", &[]));
            assert!(parked(&h.call_id(w, "wait", &[]).0));
        }
        assert!(h.ok::<bool>(9, "acquire", &[]));
        let queued = id(8, 1);
        assert!(parked(&h.call_id(queued, "acquire", &[]).0));
        h.ok::<()>(9, "notify", &[v(2)]);
        h.ok::<()>(9, "notifyAll", &[]);
        h.round_trip();
        // Lock queue: the plain acquirer first, then the waiters in wait order.
        let mut order = Vec::new();
        let mut holder = 9;
        loop {
            let (_, wakes) = h.call_as(holder, "release", &[]);
            let Some(&(next, ref r)) = wakes.first() else {
                break;
            };
            assert_eq!(wakes.len(), 1);
            assert_eq!(r, &Ok(crate::encode_value(&true)));
            order.push(next);
            holder = next.client;
        }
        let mut expected = vec![queued];
        expected.extend(&ws);
        assert_eq!(order, expected);
        assert!(h.parked().is_empty());
    }

    #[test]
    fn timed_out_waiter_reacquires_before_answering_false() {
        let mut h = Harness::<Condition>::new();
        let w = id(1, 5);
        assert!(h.ok::<bool>(1, "acquire", &[]));
        assert!(parked(&h.call_id(w, "wait", &[v(0.5)]).0));
        assert!(h.ok::<bool>(2, "acquire", &[]));
        // Lock busy: the cancel moves it to the lock queue; no reply yet.
        let (r, wakes) = h.cancel(w);
        assert_eq!(r, None);
        assert!(wakes.is_empty());
        assert_eq!(h.parked(), vec![w]);
        // A second cancel does not answer it either (re-acquire has no timeout).
        assert_eq!(h.cancel(w).0, None);
        // A later notify cannot reach it any more.
        h.ok::<()>(2, "notify", &[]);
        let (_, wakes) = h.call_as(2, "release", &[]);
        assert_eq!(woke::<bool>(wakes), vec![(w, false)]);
        h.ok::<()>(1, "release", &[]);

        // Lock free at cancel time: granted and answered False right away.
        let w2 = id(1, 6);
        assert!(h.ok::<bool>(1, "acquire", &[]));
        assert!(parked(&h.call_id(w2, "wait", &[v(1)]).0));
        assert!(!cancelled::<bool>(h.cancel(w2).0));
        assert!(
            !h.ok::<bool>(2, "acquire", &[v(false)]),
            "client 1 owns it again"
        );
        h.ok::<()>(1, "release", &[]);
    }

    #[test]
    fn wait_zero_times_out_immediately() {
        let mut h = Harness::<Condition>::new();
        assert!(h.ok::<bool>(1, "acquire", &[]));
        assert!(!h.ok::<bool>(1, "wait", &[v(0)]));
        h.ok::<()>(1, "release", &[]);
        // With another client queued for the lock, wait(0) lets it in first.
        assert!(h.ok::<bool>(1, "acquire", &[]));
        let other = id(2, 1);
        assert!(parked(&h.call_id(other, "acquire", &[]).0));
        let w = id(1, 99);
        let (out, wakes) = h.call_id(w, "wait", &[v(0)]);
        assert!(parked(&out));
        assert_eq!(woke::<bool>(wakes), vec![(other, true)]);
        let (_, wakes) = h.call_as(2, "release", &[]);
        assert_eq!(woke::<bool>(wakes), vec![(w, false)]);
    }

    #[test]
    fn timed_out_acquire_is_cancelled() {
        let mut h = Harness::<Condition>::new();
        assert!(h.ok::<bool>(1, "acquire", &[]));
        let a = id(2, 1);
        assert!(parked(&h.call_id(a, "acquire", &[v(true), v(2)]).0));
        assert!(!cancelled::<bool>(h.cancel(a).0));
        let (_, wakes) = h.call_as(1, "release", &[]);
        assert!(wakes.is_empty());
    }
}
