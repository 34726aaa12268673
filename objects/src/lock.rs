use crate::util::{lock_acquire_args, Fence};
use crate::wait_queue::WaitQueue;
use crate::{
    reply, Args, CallContext, ClientId, CommandId, ObjectError, Outcome, ReplicatedObject, Reply,
};
use serde::{Deserialize, Serialize};

/// Python's `threading.Lock` across machines (ConCoord's `DLock`):
/// `acquire(blocking=True, timeout=-1) -> bool`, `release()`, `locked()`.
///
/// As in Python, any client may release it. A release with waiters hands the
/// lock straight to the longest-waiting one, so the lock never looks free
/// while someone is parked (no barging past the queue).
///
/// Fencing: every grant carries a token that only grows
/// (`acquire_fenced(...) -> token | null`, `fence() -> token | null` of the
/// holder), for writes a stale holder must not make (`Value.set_fenced`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Lock {
    locked: bool,
    /// Parked acquires; `true` for `acquire_fenced` (answered its token).
    waiters: WaitQueue<bool>,
    fence: Fence,
    /// The holder's token.
    token: Option<u64>,
    /// The client that took it (its session's end releases it).
    holder: Option<ClientId>,
}

impl Lock {
    /// Grants the lock at this call's slot; what the grantee is answered.
    fn grant(&mut self, to: ClientId, fenced: bool, ctx: &CallContext<'_>) -> rmpv::Value {
        self.locked = true;
        self.holder = Some(to);
        let token = self.fence.next(ctx.slot);
        self.token = Some(token);
        granted(fenced, token)
    }

    fn dispatch(
        &mut self,
        method: &str,
        args: &Args,
        ctx: &mut CallContext<'_>,
    ) -> Result<Outcome, ObjectError> {
        match method {
            "acquire" | "acquire_fenced" => {
                let fenced = method == "acquire_fenced";
                let may_park = lock_acquire_args(args)?;
                if !self.locked {
                    Ok(reply(&self.grant(ctx.client(), fenced, ctx)))
                } else if may_park {
                    self.waiters.push(ctx.id, fenced);
                    Ok(Outcome::Park)
                } else {
                    Ok(reply(&not_granted(fenced)))
                }
            }
            "fence" => {
                args.at_most(0)?;
                Ok(reply(&self.token.filter(|_| self.locked)))
            }
            "release" => {
                args.at_most(0)?;
                if !self.locked {
                    return Err(ObjectError::runtime("release unlocked lock"));
                }
                self.release(ctx);
                Ok(reply(&()))
            }
            "locked" => {
                args.at_most(0)?;
                Ok(reply(&self.locked))
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }
}

impl Lock {
    /// Hands the lock to the longest waiter, or frees it.
    fn release(&mut self, ctx: &mut CallContext<'_>) {
        match self.waiters.pop() {
            Some((next, fenced)) => {
                let answer = self.grant(next.client, fenced, ctx);
                ctx.wake_with(next, &answer);
            }
            None => {
                self.locked = false;
                self.token = None;
                self.holder = None;
            }
        }
    }
}

impl ReplicatedObject for Lock {
    /// A holder whose session expired releases, as it would have.
    fn session_ended(&mut self, client: ClientId, ctx: &mut CallContext<'_>) {
        if self.locked && self.holder == Some(client) {
            self.release(ctx);
        }
    }

    /// Python's repr, without the address: `<locked Lock, waiting=1>`.
    fn describe(&self) -> String {
        let state = if self.locked { "locked" } else { "unlocked" };
        format!("<{state} Lock, waiting={}>", self.waiters.len())
    }

    const NAME: &'static str = "Lock";

    fn call(&mut self, method: &str, args: &Args, ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args, ctx)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    fn cancel(&mut self, id: CommandId, _ctx: &mut CallContext<'_>) -> Option<Reply> {
        self.waiters
            .remove(id)
            .map(|fenced| Ok(crate::encode_value(&not_granted(fenced))))
    }

    fn parked(&self) -> Vec<CommandId> {
        self.waiters.ids().collect()
    }

    fn is_read_only(method: &str) -> bool {
        matches!(method, "locked" | "fence")
    }
}

/// What a granted acquire returns: True, or the grant's token for
/// `acquire_fenced`.
pub(crate) fn granted(fenced: bool, token: u64) -> rmpv::Value {
    if fenced {
        rmpv::Value::from(token)
    } else {
        rmpv::Value::Boolean(true)
    }
}

/// What an acquire that did not get the lock returns: False, or null for
/// `acquire_fenced`.
pub(crate) fn not_granted(fenced: bool) -> rmpv::Value {
    if fenced {
        rmpv::Value::Nil
    } else {
        rmpv::Value::Boolean(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    #[test]
    fn acquire_release_locked() {
        let mut h = Harness::<Lock>::new();
        assert!(!h.ok::<bool>(1, "locked", &[]));
        assert!(h.ok::<bool>(1, "acquire", &[]));
        assert!(h.ok::<bool>(1, "locked", &[]));
        // Non-blocking and zero-timeout attempts fail at once.
        assert!(!h.ok::<bool>(2, "acquire", &[v(false)]));
        assert!(!h.ok::<bool>(2, "acquire", &[v(0)]));
        assert!(!h.ok::<bool>(2, "acquire", &[v(true), v(0)]));
        // Any client may release a Lock, as any Python thread may.
        h.ok::<()>(2, "release", &[]);
        assert!(!h.ok::<bool>(1, "locked", &[]));
    }

    #[test]
    fn errors() {
        let mut h = Harness::<Lock>::new();
        let e = h.err(1, "release", &[]);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("RuntimeError", "release unlocked lock")
        );
        let e = h.err(1, "acquire", &[v(false), v(1.0)]);
        assert_eq!(e.message, "can't specify a timeout for a non-blocking call");
        let e = h.err(1, "acquire", &[v(true), v(-2)]);
        assert_eq!(e.message, "timeout value must be a non-negative number");
        assert_eq!(
            h.err(1, "acquire", &[v(true), v(1), v(3)]).kind,
            ObjectError::BAD_ARGUMENTS
        );
        assert_eq!(
            h.err(1, "acquire", &[v("x")]).kind,
            ObjectError::BAD_ARGUMENTS
        );
        assert_eq!(h.err(1, "locked", &[v(1)]).kind, ObjectError::BAD_ARGUMENTS);
        assert_eq!(
            h.err(1, "frobnicate", &[]).kind,
            ObjectError::UNKNOWN_METHOD
        );
    }

    #[test]
    fn release_wakes_waiters_in_fifo_order() {
        let mut h = Harness::<Lock>::new();
        assert!(h.ok::<bool>(1, "acquire", &[]));
        let (a, b, c) = (id(2, 1), id(3, 1), id(4, 1));
        assert!(parked(&h.call_id(a, "acquire", &[]).0));
        assert!(parked(&h.call_id(b, "acquire", &[v(true), v(5)]).0));
        assert!(parked(&h.call_id(c, "acquire", &[]).0));
        // A resent parked command is not queued twice.
        assert!(parked(&h.call_id(a, "acquire", &[]).0));
        assert_eq!(h.parked(), vec![a, b, c]);
        h.round_trip();
        for next in [a, b, c] {
            let (out, wakes) = h.call_as(9, "release", &[]);
            assert_eq!(value::<()>(out), ());
            assert_eq!(woke::<bool>(wakes), vec![(next, true)]);
            assert!(h.ok::<bool>(9, "locked", &[]), "handed over, never free");
        }
        h.ok::<()>(9, "release", &[]);
        assert!(!h.ok::<bool>(9, "locked", &[]));
    }

    #[test]
    fn cancel_removes_the_waiter_and_never_grants_it() {
        let mut h = Harness::<Lock>::new();
        assert!(h.ok::<bool>(1, "acquire", &[]));
        let (a, b) = (id(2, 1), id(3, 1));
        assert!(parked(&h.call_id(a, "acquire", &[v(true), v(0.5)]).0));
        assert!(parked(&h.call_id(b, "acquire", &[]).0));
        let (r, wakes) = h.cancel(a);
        assert!(!cancelled::<bool>(r));
        assert!(wakes.is_empty());
        assert_eq!(h.cancel(a).0, None, "no longer parked");
        let (_, wakes) = h.call_as(1, "release", &[]);
        assert_eq!(woke::<bool>(wakes), vec![(b, true)]);
        // Cancel after the grant was ordered: not parked, the grant stands.
        assert_eq!(h.cancel(b).0, None);
        assert!(h.ok::<bool>(1, "locked", &[]));
    }

    #[test]
    fn fenced_grants_carry_growing_tokens() {
        let mut h = Harness::<Lock>::new();
        assert_eq!(h.ok::<Option<u64>>(1, "fence", &[]), None);
        let first: u64 = h.ok(1, "acquire_fenced", &[]);
        assert_eq!(h.ok::<Option<u64>>(2, "fence", &[]), Some(first));
        assert_eq!(h.ok::<Option<u64>>(2, "acquire_fenced", &[v(false)]), None);
        let w = id(3, 1);
        assert!(parked(&h.call_id(w, "acquire_fenced", &[]).0));
        let (_, wakes) = h.call_as(1, "release", &[]);
        let handed = woke::<u64>(wakes);
        assert_eq!(handed.len(), 1);
        assert!(handed[0].1 > first, "the next holder's token is higher");
        assert_eq!(h.ok::<Option<u64>>(1, "fence", &[]), Some(handed[0].1));
        // A plain acquire still answers True, and still takes a new token.
        h.ok::<()>(3, "release", &[]);
        assert!(h.ok::<bool>(4, "acquire", &[]));
        assert!(h.ok::<Option<u64>>(4, "fence", &[]).unwrap() > handed[0].1);
        // A timed-out fenced acquire answers null.
        let t = id(5, 1);
        assert!(parked(&h.call_id(t, "acquire_fenced", &[v(true), v(1)]).0));
        assert_eq!(h.cancel(t).0, Some(Ok(crate::encode_value(&()))));
    }

    #[test]
    fn a_holders_session_end_hands_the_lock_on() {
        let mut h = Harness::<Lock>::new();
        let first: u64 = h.ok(1, "acquire_fenced", &[]);
        let w = id(2, 1);
        assert!(parked(&h.call_id(w, "acquire_fenced", &[]).0));
        // Another client's session ending changes nothing.
        let mut wakes = Vec::new();
        let mut ctx = CallContext::new(id(0, 0), 99, &mut wakes);
        h.hosted.object.session_ended(3, &mut ctx);
        assert!(wakes.is_empty());
        let mut ctx = CallContext::new(id(0, 0), 100, &mut wakes);
        h.hosted.object.session_ended(1, &mut ctx);
        let handed = woke::<u64>(wakes);
        assert_eq!(handed.len(), 1);
        assert_eq!(handed[0].0, w);
        assert!(handed[0].1 > first);
        assert_eq!(h.hosted.object.holder, Some(2));
    }

    #[test]
    fn reinit_answers_parked_calls() {
        let mut h = Harness::<Lock>::new();
        assert!(h.ok::<bool>(1, "acquire", &[]));
        let a = id(2, 1);
        assert!(parked(&h.call_id(a, "acquire", &[]).0));
        let (_, wakes) = h.call_as(1, "concoord_init", &[]);
        assert_eq!(wakes.len(), 1);
        assert_eq!(wakes[0].1.as_ref().unwrap_err().kind, "RuntimeError");
        assert!(!h.ok::<bool>(1, "locked", &[]));
    }
}
