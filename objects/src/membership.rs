use crate::util::Key;
use crate::{reply, Args, CallContext, ObjectError, Outcome, ReplicatedObject};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// ConCoord's Membership: a set of members. `add(member)` (no-op if
/// present), `remove(member)` (`KeyError` for a non-member), and
/// `get_members()` (ConCoord only printed the set) listing them in a
/// deterministic order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    members: BTreeSet<Key>,
}

impl Membership {
    fn dispatch(&mut self, method: &str, args: &Args) -> Result<Outcome, ObjectError> {
        match method {
            "add" => {
                args.at_most(1)?;
                self.members.insert(Key::arg(args, 0, "member")?);
                Ok(reply(&()))
            }
            "remove" => {
                args.at_most(1)?;
                let member = Key::arg(args, 0, "member")?;
                if !self.members.remove(&member) {
                    return Err(member.missing());
                }
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

    fn call(&mut self, method: &str, args: &Args, _ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
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
}
