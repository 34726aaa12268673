use crate::util::{may_wait, opt_timeout};
use crate::wait_queue::WaitQueue;
use crate::{reply, Args, CallContext, CommandId, ObjectError, Outcome, ReplicatedObject, Reply};
use serde::{Deserialize, Serialize};

/// Python's `threading.Event` across machines (beyond ConCoord): `set()`,
/// `clear()`, `is_set()` (and `isSet`), `wait(timeout=None) -> bool`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    flag: bool,
    waiters: WaitQueue,
}

impl Event {
    fn dispatch(
        &mut self,
        method: &str,
        args: &Args,
        ctx: &mut CallContext<'_>,
    ) -> Result<Outcome, ObjectError> {
        match method {
            "set" => {
                args.at_most(0)?;
                self.flag = true;
                for (id, ()) in self.waiters.drain() {
                    ctx.wake_with(id, &true);
                }
                Ok(reply(&()))
            }
            "clear" => {
                args.at_most(0)?;
                self.flag = false;
                Ok(reply(&()))
            }
            "is_set" | "isSet" => {
                args.at_most(0)?;
                Ok(reply(&self.flag))
            }
            "wait" => {
                args.at_most(1)?;
                let timeout = opt_timeout(args, 0)?;
                if self.flag || !may_wait(timeout) {
                    return Ok(reply(&self.flag));
                }
                self.waiters.push(ctx.id, ());
                Ok(Outcome::Park)
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }
}

impl ReplicatedObject for Event {
    fn describe(&self) -> String {
        let state = if self.flag { "set" } else { "unset" };
        format!("<Event: {state}, waiting={}>", self.waiters.len())
    }

    const NAME: &'static str = "Event";

    fn call(&mut self, method: &str, args: &Args, ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args, ctx)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    /// A timed-out wait returns the flag, which is false while anyone waits.
    fn cancel(&mut self, id: CommandId, _ctx: &mut CallContext<'_>) -> Option<Reply> {
        self.waiters
            .remove(id)
            .map(|()| Ok(crate::encode_value(&self.flag)))
    }

    fn parked(&self) -> Vec<CommandId> {
        self.waiters.ids().collect()
    }

    fn is_read_only(method: &str) -> bool {
        matches!(method, "is_set" | "isSet")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    #[test]
    fn set_wakes_every_waiter_in_order() {
        let mut h = Harness::<Event>::new();
        assert!(!h.ok::<bool>(1, "is_set", &[]));
        assert!(!h.ok::<bool>(1, "wait", &[v(0)]));
        let ws: Vec<_> = (1..=3).map(|c| id(c, 1)).collect();
        for &w in &ws {
            assert!(parked(&h.call_id(w, "wait", &[]).0));
        }
        h.round_trip();
        let (_, wakes) = h.call_as(9, "set", &[]);
        assert_eq!(
            woke::<bool>(wakes),
            ws.iter().map(|&w| (w, true)).collect::<Vec<_>>()
        );
        assert!(h.ok::<bool>(1, "isSet", &[]));
        assert!(h.ok::<bool>(1, "wait", &[]));
        h.ok::<()>(1, "clear", &[]);
        assert!(!h.ok::<bool>(1, "is_set", &[]));
        assert!(parked(&h.call_as(1, "wait", &[v(3)]).0));
    }

    #[test]
    fn cancel_and_errors() {
        let mut h = Harness::<Event>::new();
        let (a, b) = (id(1, 1), id(2, 1));
        assert!(parked(&h.call_id(a, "wait", &[v(1)]).0));
        assert!(parked(&h.call_id(b, "wait", &[]).0));
        assert!(!cancelled::<bool>(h.cancel(a).0));
        assert_eq!(h.cancel(a).0, None);
        let (_, wakes) = h.call_as(3, "set", &[]);
        assert_eq!(woke::<bool>(wakes), vec![(b, true)]);
        assert_eq!(h.err(1, "set", &[v(1)]).kind, ObjectError::BAD_ARGUMENTS);
        assert_eq!(h.err(1, "wait", &[v("x")]).kind, ObjectError::BAD_ARGUMENTS);
        assert_eq!(h.err(1, "toggle", &[]).kind, ObjectError::UNKNOWN_METHOD);
    }
}
