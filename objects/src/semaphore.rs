use crate::lock::{granted, not_granted};
use crate::util::{flag, may_wait, opt_timeout, Fence};
use crate::wait_queue::WaitQueue;
use crate::{
    reply, Args, CallContext, ClientId, CommandId, ObjectError, Outcome, ReplicatedObject, Reply,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The counter and wait queue behind both semaphores.
///
/// `release` hands permits straight to parked commands (FIFO), so `value`
/// is only ever positive while nobody is parked: a newcomer cannot take a
/// permit meant for a waiter, and a cancelled waiter holds none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Core {
    value: u64,
    initial: u64,
    /// Parked acquires; `true` for `acquire_fenced` (answered its token).
    waiters: WaitQueue<bool>,
    /// Every permit granted gets a token from here.
    #[serde(default)]
    fence: Fence,
    /// Permits each client holds (taken, not given back by it): what its
    /// session's end returns.
    #[serde(default)]
    held: BTreeMap<ClientId, u64>,
}

impl Core {
    fn new(args: &Args) -> Result<Core, ObjectError> {
        args.at_most(1)?;
        let value: i64 = args.get_or(0, "value", 1)?;
        let value = u64::try_from(value)
            .map_err(|_| ObjectError::value("semaphore initial value must be >= 0"))?;
        Ok(Core {
            value,
            initial: value,
            waiters: WaitQueue::default(),
            fence: Fence::default(),
            held: BTreeMap::new(),
        })
    }

    fn dispatch(
        &mut self,
        name: &str,
        bounded: bool,
        method: &str,
        args: &Args,
        ctx: &mut CallContext<'_>,
    ) -> Result<Outcome, ObjectError> {
        match method {
            // Python: acquire(blocking=True, timeout=None)
            "acquire" | "acquire_fenced" => {
                let fenced = method == "acquire_fenced";
                args.at_most(2)?;
                let blocking = flag(args, 0, "blocking", true)?;
                let timeout = opt_timeout(args, 1)?;
                if !blocking && timeout.is_some() {
                    return Err(ObjectError::value(
                        "can't specify timeout for non-blocking acquire",
                    ));
                }
                if self.value > 0 {
                    self.value -= 1;
                    *self.held.entry(ctx.client()).or_default() += 1;
                    let token = self.fence.next(ctx.slot);
                    Ok(reply(&granted(fenced, token)))
                } else if blocking && may_wait(timeout) {
                    self.waiters.push(ctx.id, fenced);
                    Ok(Outcome::Park)
                } else {
                    Ok(reply(&not_granted(fenced)))
                }
            }
            "release" => {
                args.at_most(1)?;
                let n: i64 = args.get_or(0, "n", 1)?;
                if n < 1 {
                    return Err(ObjectError::value("n must be one or more"));
                }
                let n = n as u64;
                // Python checks the bound before any waiter takes a permit.
                let total = self.value.checked_add(n).ok_or_else(|| {
                    ObjectError::new("OverflowError", "semaphore value too large")
                })?;
                if bounded && total > self.initial {
                    return Err(ObjectError::value("Semaphore released too many times"));
                }
                // Permits given back by a client that holds some are its own.
                if let Some(mine) = self.held.get_mut(&ctx.client()) {
                    *mine = mine.saturating_sub(n);
                    if *mine == 0 {
                        self.held.remove(&ctx.client());
                    }
                }
                let woken = self.hand_to_waiters(n, ctx);
                self.value = total - woken;
                Ok(reply(&()))
            }
            _ => Err(ObjectError::unknown_method(name, method)),
        }
    }

    /// Gives back the permits a client whose session ended still held.
    fn session_ended(&mut self, client: ClientId, ctx: &mut CallContext<'_>) {
        let Some(n) = self.held.remove(&client) else {
            return;
        };
        let mut back = n;
        // A bounded semaphore never goes above its initial value, even if
        // someone else already released on the client's behalf.
        if let Some(room) = self.initial.checked_sub(self.value) {
            back = back.min(room.max(self.waiters.len() as u64));
        }
        let woken = self.hand_to_waiters(back, ctx);
        self.value = self.value.saturating_add(back - woken);
    }

    /// Hands up to `n` permits straight to the longest waiters (FIFO);
    /// returns how many went.
    fn hand_to_waiters(&mut self, n: u64, ctx: &mut CallContext<'_>) -> u64 {
        let woken = n.min(self.waiters.len() as u64);
        for _ in 0..woken {
            let (id, fenced) = self.waiters.pop().expect("counted above");
            *self.held.entry(id.client).or_default() += 1;
            let token = self.fence.next(ctx.slot);
            ctx.wake_with(id, &granted(fenced, token));
        }
        woken
    }

    fn cancel(&mut self, id: CommandId) -> Option<Reply> {
        self.waiters
            .remove(id)
            .map(|fenced| Ok(crate::encode_value(&not_granted(fenced))))
    }
}

impl Default for Core {
    fn default() -> Self {
        Core {
            value: 1,
            initial: 1,
            waiters: WaitQueue::default(),
            fence: Fence::default(),
            held: BTreeMap::new(),
        }
    }
}

/// Python's `threading.Semaphore(value=1)` across machines (ConCoord's
/// `DSemaphore`): `acquire(blocking=True, timeout=None) -> bool`, `release(n=1)`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Semaphore {
    core: Core,
}

/// Python's `threading.BoundedSemaphore(value=1)`: a [`Semaphore`] whose
/// `release` refuses to go above the initial value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BoundedSemaphore {
    core: Core,
}

macro_rules! semaphore_object {
    ($ty:ident, $name:literal, $bounded:expr) => {
        impl ReplicatedObject for $ty {
            const NAME: &'static str = $name;

            fn call(&mut self, method: &str, args: &Args, ctx: &mut CallContext<'_>) -> Outcome {
                self.core
                    .dispatch(Self::NAME, $bounded, method, args, ctx)
                    .unwrap_or_else(|e| Outcome::Reply(Err(e)))
            }

            fn init(args: &Args) -> Result<Self, ObjectError> {
                Ok($ty {
                    core: Core::new(args)?,
                })
            }

            fn cancel(&mut self, id: CommandId, _ctx: &mut CallContext<'_>) -> Option<Reply> {
                self.core.cancel(id)
            }

            fn session_ended(&mut self, client: ClientId, ctx: &mut CallContext<'_>) {
                self.core.session_ended(client, ctx)
            }

            fn parked(&self) -> Vec<CommandId> {
                self.core.waiters.ids().collect()
            }

            /// Python's repr, without the address: `<Semaphore: value=3, waiting=0>`
            /// (a BoundedSemaphore shows `value/initial`).
            fn describe(&self) -> String {
                let c = &self.core;
                if $bounded {
                    format!(
                        "<{}: value={}/{}, waiting={}>",
                        $name,
                        c.value,
                        c.initial,
                        c.waiters.len()
                    )
                } else {
                    format!(
                        "<{}: value={}, waiting={}>",
                        $name,
                        c.value,
                        c.waiters.len()
                    )
                }
            }
        }
    };
}

semaphore_object!(Semaphore, "Semaphore", false);
semaphore_object!(BoundedSemaphore, "BoundedSemaphore", true);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use crate::{Hosted, StateMachine};

    #[test]
    fn counts_permits() {
        let mut h = Harness::<Semaphore>::init(&[v(2)]);
        assert!(h.ok::<bool>(1, "acquire", &[]));
        assert!(h.ok::<bool>(2, "acquire", &[]));
        assert!(!h.ok::<bool>(3, "acquire", &[v(false)]));
        assert!(!h.ok::<bool>(3, "acquire", &[v(true), v(0)]));
        assert!(!h.ok::<bool>(3, "acquire", &[v(true), v(-1.0)]));
        // An unbounded semaphore may go above its initial value.
        h.ok::<()>(4, "release", &[v(3)]);
        assert_eq!(h.hosted.object.core.value, 3);
        let def = Harness::<Semaphore>::new();
        assert_eq!(def.hosted.object.core.value, 1);
    }

    #[test]
    fn errors() {
        let mut h = Harness::<Semaphore>::new();
        let e = h.err(1, "release", &[v(0)]);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("ValueError", "n must be one or more")
        );
        let e = h.err(1, "acquire", &[v(false), v(1)]);
        assert_eq!(e.message, "can't specify timeout for non-blocking acquire");
        assert_eq!(
            h.err(1, "acquire", &[v(true), v(f64::NAN)]).kind,
            "ValueError"
        );
        assert_eq!(
            h.err(1, "acquire", &[v(true), v(1), v(1)]).kind,
            ObjectError::BAD_ARGUMENTS
        );
        assert_eq!(h.err(1, "locked", &[]).kind, ObjectError::UNKNOWN_METHOD);
        let mut wakes = Vec::new();
        let mut ctx = CallContext::new(id(1, 1), 0, &mut wakes);
        let bad =
            Hosted::<Semaphore>::default().apply("concoord_init", &encode(&[v(-1)]), &mut ctx);
        assert_eq!(
            bad,
            Outcome::Reply(Err(ObjectError::value(
                "semaphore initial value must be >= 0"
            )))
        );
        let e = Semaphore::init(&Args::from_values(vec![v(1), v(2)])).unwrap_err();
        assert_eq!(e.kind, ObjectError::BAD_ARGUMENTS);
    }

    #[test]
    fn bounded_refuses_release_above_initial() {
        let mut h = Harness::<BoundedSemaphore>::init(&[v(2)]);
        let e = h.err(1, "release", &[]);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("ValueError", "Semaphore released too many times")
        );
        assert!(h.ok::<bool>(1, "acquire", &[]));
        assert_eq!(
            h.err(1, "release", &[v(2)]).message,
            "Semaphore released too many times"
        );
        h.ok::<()>(1, "release", &[]);
        // With waiters parked the bound still counts permits in hand.
        let mut h = Harness::<BoundedSemaphore>::init(&[v(1)]);
        assert!(h.ok::<bool>(1, "acquire", &[]));
        let a = id(2, 1);
        assert!(parked(&h.call_id(a, "acquire", &[]).0));
        assert_eq!(h.err(1, "release", &[v(2)]).kind, "ValueError");
        let (_, wakes) = h.call_as(1, "release", &[]);
        assert_eq!(woke::<bool>(wakes), vec![(a, true)]);
    }

    #[test]
    fn release_n_wakes_up_to_n_fifo() {
        let mut h = Harness::<Semaphore>::init(&[v(0)]);
        let ids: Vec<_> = (1..=4).map(|c| id(c, 1)).collect();
        for &w in &ids {
            assert!(parked(&h.call_id(w, "acquire", &[]).0));
        }
        h.round_trip();
        assert_eq!(h.parked(), ids);
        let (_, wakes) = h.call_as(9, "release", &[v(3)]);
        assert_eq!(
            woke::<bool>(wakes),
            vec![(ids[0], true), (ids[1], true), (ids[2], true)]
        );
        assert_eq!(h.hosted.object.core.value, 0);
        let (_, wakes) = h.call_as(9, "release", &[v(2)]);
        assert_eq!(woke::<bool>(wakes), vec![(ids[3], true)]);
        assert_eq!(h.hosted.object.core.value, 1);
        assert!(h.parked().is_empty());
    }

    #[test]
    fn fenced_permits_carry_growing_tokens() {
        let mut h = Harness::<Semaphore>::init(&[v(2)]);
        let a: u64 = h.ok(1, "acquire_fenced", &[]);
        let b: u64 = h.ok(2, "acquire_fenced", &[]);
        assert!(b > a);
        assert_eq!(h.ok::<Option<u64>>(3, "acquire_fenced", &[v(false)]), None);
        let w = id(4, 1);
        assert!(parked(&h.call_id(w, "acquire_fenced", &[]).0));
        let (_, wakes) = h.call_as(1, "release", &[]);
        let handed = woke::<u64>(wakes);
        assert!(handed[0].1 > b);
        let t = id(5, 1);
        assert!(parked(&h.call_id(t, "acquire_fenced", &[v(true), v(1)]).0));
        assert_eq!(h.cancel(t).0, Some(Ok(crate::encode_value(&()))));
    }

    #[test]
    fn a_sessions_end_gives_its_permits_back() {
        let mut h = Harness::<Semaphore>::init(&[v(2)]);
        assert!(h.ok::<bool>(1, "acquire", &[]));
        assert!(h.ok::<bool>(1, "acquire", &[]));
        let w = id(2, 1);
        assert!(parked(&h.call_id(w, "acquire", &[]).0));
        let mut wakes = Vec::new();
        let mut ctx = CallContext::new(id(0, 0), 50, &mut wakes);
        h.hosted.object.core.session_ended(1, &mut ctx);
        assert_eq!(woke::<bool>(wakes), vec![(w, true)]);
        assert_eq!(h.hosted.object.core.value, 1, "one to the waiter, one back");
        // Given back already: nothing more to return.
        let mut wakes = Vec::new();
        let mut ctx = CallContext::new(id(0, 0), 51, &mut wakes);
        h.hosted.object.core.session_ended(1, &mut ctx);
        assert_eq!(h.hosted.object.core.value, 1);
        // A bounded one never goes above its initial value.
        let mut b = Harness::<BoundedSemaphore>::init(&[v(1)]);
        assert!(b.ok::<bool>(1, "acquire", &[]));
        b.ok::<()>(2, "release", &[]); // released on client 1's behalf
        let mut ctx = CallContext::new(id(0, 0), 52, &mut wakes);
        b.hosted.object.core.session_ended(1, &mut ctx);
        assert_eq!(b.hosted.object.core.value, 1);
    }

    #[test]
    fn cancel_never_leaks_a_permit() {
        let mut h = Harness::<Semaphore>::new();
        assert!(h.ok::<bool>(1, "acquire", &[]));
        let b = id(2, 1);
        assert!(parked(&h.call_id(b, "acquire", &[v(true), v(1.5)]).0));
        let (r, wakes) = h.cancel(b);
        assert!(!cancelled::<bool>(r));
        assert!(wakes.is_empty());
        let (_, wakes) = h.call_as(1, "release", &[]);
        assert!(wakes.is_empty(), "cancelled waiter gets nothing");
        assert_eq!(h.hosted.object.core.value, 1);
        // Cancel that loses the race to a grant: the grant stands.
        assert!(h.ok::<bool>(1, "acquire", &[]));
        let c = id(3, 1);
        assert!(parked(&h.call_id(c, "acquire", &[v(true), v(1)]).0));
        let (_, wakes) = h.call_as(1, "release", &[]);
        assert_eq!(woke::<bool>(wakes), vec![(c, true)]);
        assert_eq!(h.cancel(c).0, None);
        assert_eq!(h.hosted.object.core.value, 0);
    }
}
