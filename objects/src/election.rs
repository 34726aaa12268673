use crate::util::{opt_timeout, Fence};
use crate::wait_queue::WaitQueue;
use crate::{
    reply, Args, CallContext, ClientId, CommandId, ObjectError, Outcome, ReplicatedObject, Reply,
};
use serde::{Deserialize, Serialize};

/// Leader election on sessions and fencing, the recipe ZooKeeper and etcd
/// users build: `campaign(value)` parks until this client leads and returns
/// its fencing token; `leader()` is `[value, token]` or null; `resign()`;
/// `observe([token[, timeout]])` parks until the leadership differs from
/// `token` and returns the new `[value, token]` (null: nobody leads).
/// A leader whose session expires is replaced by the next campaigner (FIFO).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Election {
    /// The leading client, its value and its token.
    leader: Option<(ClientId, rmpv::Value, u64)>,
    /// Parked campaigns with their values.
    campaigners: WaitQueue<rmpv::Value>,
    /// Parked observers with the token they saw (None: nobody led).
    observers: WaitQueue<Option<u64>>,
    fence: Fence,
}

impl Election {
    fn current(&self) -> Option<(rmpv::Value, u64)> {
        self.leader.as_ref().map(|(_, v, t)| (v.clone(), *t))
    }

    fn token(&self) -> Option<u64> {
        self.leader.as_ref().map(|(_, _, t)| *t)
    }

    /// Ends the current leadership and hands it to the next campaigner;
    /// every observer learns of the change.
    fn step_down(&mut self, ctx: &mut CallContext<'_>) {
        self.leader = None;
        if let Some((id, value)) = self.campaigners.pop() {
            let token = self.fence.next(ctx.slot);
            self.leader = Some((id.client, value, token));
            ctx.wake_with(id, &token);
        }
        let current = self.current();
        for (id, _) in self.observers.drain() {
            ctx.wake_with(id, &current);
        }
    }

    fn dispatch(
        &mut self,
        method: &str,
        args: &Args,
        ctx: &mut CallContext<'_>,
    ) -> Result<Outcome, ObjectError> {
        match method {
            "campaign" => {
                args.at_most(1)?;
                let value = args.get_or(0, "value", rmpv::Value::Nil)?;
                match &mut self.leader {
                    None => {
                        let token = self.fence.next(ctx.slot);
                        self.leader = Some((ctx.client(), value, token));
                        let current = self.current();
                        for (id, _) in self.observers.drain() {
                            ctx.wake_with(id, &current);
                        }
                        Ok(reply(&token))
                    }
                    // Leading already: the value is updated, the token kept.
                    Some((owner, v, token)) if *owner == ctx.client() => {
                        *v = value;
                        Ok(reply(token))
                    }
                    Some(_) => {
                        self.campaigners.push(ctx.id, value);
                        Ok(Outcome::Park)
                    }
                }
            }
            "leader" => {
                args.at_most(0)?;
                Ok(reply(&self.current()))
            }
            "resign" => {
                args.at_most(0)?;
                match &self.leader {
                    Some((owner, _, _)) if *owner == ctx.client() => {
                        self.step_down(ctx);
                        Ok(reply(&()))
                    }
                    _ => Err(ObjectError::runtime(
                        "resign by a client that does not lead",
                    )),
                }
            }
            "observe" => {
                args.at_most(2)?;
                let seen: Option<u64> = args.get_opt(0, "token")?;
                let timeout = opt_timeout(args, 1)?;
                if self.token() != seen {
                    return Ok(reply(&self.current()));
                }
                if timeout.is_some_and(|t| t <= 0.0) {
                    return Ok(reply(&self.current()));
                }
                self.observers.push(ctx.id, seen);
                Ok(Outcome::Park)
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }
}

impl ReplicatedObject for Election {
    const NAME: &'static str = "Election";

    fn call(&mut self, method: &str, args: &Args, ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args, ctx)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    /// A campaign that gives up answers null; an observer that times out
    /// answers the leadership as it stands.
    fn cancel(&mut self, id: CommandId, _ctx: &mut CallContext<'_>) -> Option<Reply> {
        if self.campaigners.remove(id).is_some() {
            return Some(Ok(crate::encode_value(&())));
        }
        self.observers
            .remove(id)
            .map(|_| Ok(crate::encode_value(&self.current())))
    }

    fn parked(&self) -> Vec<CommandId> {
        self.campaigners.ids().chain(self.observers.ids()).collect()
    }

    /// A leader whose session expired steps down for the next campaigner.
    fn session_ended(&mut self, client: ClientId, ctx: &mut CallContext<'_>) {
        if self
            .leader
            .as_ref()
            .is_some_and(|(owner, _, _)| *owner == client)
        {
            self.step_down(ctx);
        }
    }

    fn is_read_only(method: &str) -> bool {
        method == "leader"
    }

    fn describe(&self) -> String {
        match &self.leader {
            Some((owner, value, token)) => format!(
                "<Election: leader {owner:x} ({}) token={token}, campaigning={}>",
                crate::util::py_repr(value),
                self.campaigners.len()
            ),
            None => format!(
                "<Election: no leader, campaigning={}>",
                self.campaigners.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    type Led = Option<(String, u64)>;

    #[test]
    fn campaigners_lead_in_turn_and_observers_see_each_change_once() {
        let mut h = Harness::<Election>::new();
        assert_eq!(h.ok::<Led>(9, "leader", &[]), None);
        let first: u64 = h.ok(1, "campaign", &[v("a")]);
        assert_eq!(h.ok::<Led>(9, "leader", &[]), Some(("a".into(), first)));
        let b = id(2, 1);
        assert!(parked(&h.call_id(b, "campaign", &[v("b")]).0));
        let o = id(3, 1);
        assert!(parked(&h.call_id(o, "observe", &[v(first)]).0));
        // Observing a token that is not the current one answers at once.
        assert_eq!(
            h.ok::<Led>(3, "observe", &[v(first - 1)]),
            Some(("a".into(), first))
        );
        assert_eq!(h.err(2, "resign", &[]).kind, "RuntimeError");
        // The leader's session ends: b leads, with a higher token; o sees it.
        let mut wakes = Vec::new();
        let mut ctx = CallContext::new(id(0, 0), 500, &mut wakes);
        h.hosted.object.session_ended(1, &mut ctx);
        assert_eq!(wakes.len(), 2);
        let second: u64 = rmp_serde::from_slice(wakes[0].1.as_ref().unwrap()).unwrap();
        assert_eq!(wakes[0].0, b);
        assert!(second > first);
        let seen: Led = rmp_serde::from_slice(wakes[1].1.as_ref().unwrap()).unwrap();
        assert_eq!(seen, Some(("b".into(), second)));
        // Resigning with nobody waiting leaves no leader.
        h.ok::<()>(2, "resign", &[]);
        assert_eq!(h.ok::<Led>(9, "leader", &[]), None);
        // A campaign that gives up answers null.
        h.ok::<u64>(4, "campaign", &[v("d")]);
        let e = id(5, 1);
        assert!(parked(&h.call_id(e, "campaign", &[v("e")]).0));
        assert_eq!(h.cancel(e).0, Some(Ok(crate::encode_value(&()))));
        h.round_trip();
    }
}
