use crate::util::Key;
use crate::{reply, Args, CallContext, ClientId, ObjectError, Outcome, ReplicatedObject};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// ConCoord's Membership: a set of members. `add(member)` (no-op if
/// present), `remove(member)` (`KeyError` for a non-member), and
/// `get_members()` (ConCoord only printed the set) listing them in a
/// deterministic order.
///
/// `add_ephemeral(member)` adds a member that leaves with the caller's
/// session (ZooKeeper's ephemeral nodes): a "who is alive" list that needs
/// no pinging.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    members: BTreeSet<Key>,
    /// Ephemeral members and the client whose session they go with.
    #[serde(default)]
    ephemeral: BTreeMap<Key, ClientId>,
}

impl Membership {
    fn dispatch(
        &mut self,
        method: &str,
        args: &Args,
        ctx: &CallContext<'_>,
    ) -> Result<Outcome, ObjectError> {
        match method {
            "add" => {
                args.at_most(1)?;
                let member = Key::arg(args, 0, "member")?;
                // Added for good now: no longer tied to a session.
                self.ephemeral.remove(&member);
                self.members.insert(member);
                Ok(reply(&()))
            }
            "add_ephemeral" => {
                args.at_most(1)?;
                let member = Key::arg(args, 0, "member")?;
                self.ephemeral.insert(member.clone(), ctx.client());
                self.members.insert(member);
                Ok(reply(&()))
            }
            "remove" => {
                args.at_most(1)?;
                let member = Key::arg(args, 0, "member")?;
                if !self.members.remove(&member) {
                    return Err(member.missing());
                }
                self.ephemeral.remove(&member);
                Ok(reply(&()))
            }
            "get_members" => {
                args.at_most(0)?;
                Ok(reply(&self.members))
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }
}

impl ReplicatedObject for Membership {
    const NAME: &'static str = "Membership";

    fn call(&mut self, method: &str, args: &Args, ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args, ctx)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    /// Ephemeral members leave with their session.
    fn session_ended(&mut self, client: ClientId, _ctx: &mut CallContext<'_>) {
        let gone: Vec<Key> = self
            .ephemeral
            .iter()
            .filter(|(_, owner)| **owner == client)
            .map(|(member, _)| member.clone())
            .collect();
        for member in gone {
            self.ephemeral.remove(&member);
            self.members.remove(&member);
        }
    }

    fn is_read_only(method: &str) -> bool {
        method == "get_members"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use rmpv::Value as V;

    #[test]
    fn add_remove_list() {
        let mut h = Harness::<Membership>::new();
        h.ok::<()>(1, "add", &[v("b")]);
        h.ok::<()>(1, "add", &[v("a")]);
        h.ok::<()>(1, "add", &[v("b")]);
        h.ok::<()>(1, "add", &[v(3)]);
        assert_eq!(
            h.ok::<Vec<V>>(1, "get_members", &[]),
            vec![v(3), v("a"), v("b")]
        );
        h.round_trip();
        h.ok::<()>(1, "remove", &[v("a")]);
        let e = h.err(1, "remove", &[v("a")]);
        assert_eq!((e.kind.as_str(), e.message.as_str()), ("KeyError", "'a'"));
        assert_eq!(h.ok::<Vec<V>>(1, "get_members", &[]), vec![v(3), v("b")]);
        assert_eq!(h.err(1, "add", &[]).kind, ObjectError::BAD_ARGUMENTS);
        assert_eq!(h.err(1, "add", &[V::Map(vec![])]).kind, "TypeError");
        assert_eq!(h.err(1, "members", &[]).kind, ObjectError::UNKNOWN_METHOD);
    }

    #[test]
    fn ephemeral_members_leave_with_their_session() {
        let mut h = Harness::<Membership>::new();
        h.ok::<()>(1, "add_ephemeral", &[v("n1")]);
        h.ok::<()>(2, "add_ephemeral", &[v("n2")]);
        h.ok::<()>(1, "add", &[v("static")]);
        h.ok::<()>(1, "add_ephemeral", &[v("kept")]);
        h.ok::<()>(3, "add", &[v("kept")]); // made permanent by a plain add
        let mut wakes = Vec::new();
        let mut ctx = CallContext::new(id(0, 0), 9, &mut wakes);
        h.hosted.object.session_ended(1, &mut ctx);
        assert_eq!(
            h.ok::<Vec<V>>(2, "get_members", &[]),
            vec![v("kept"), v("n2"), v("static")]
        );
        h.round_trip();
    }
}
