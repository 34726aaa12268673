use crate::util::{py_int, Key};
use crate::wait_queue::WaitQueue;
use crate::{reply, Args, CallContext, CommandId, ObjectError, Outcome, ReplicatedObject, Reply};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One group of a [`MeshMembership`]: an epoch that grows with every view
/// change, members with their failure-report ("strike") counts, and the
/// parked `wait` calls to wake on the next change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Group {
    epoch: u64,
    minsize: i64,
    members: BTreeMap<Key, u64>,
    waiters: WaitQueue,
}

impl Group {
    fn members(&self) -> Vec<&rmpv::Value> {
        self.members.keys().map(|k| &k.0).collect()
    }

    fn state(&self) -> Outcome {
        reply(&(self.members(), self.epoch))
    }

    /// A view change: a new epoch, and every `wait` returns (true, as ConCoord's
    /// `notifyAll` answers its waiters).
    fn change_view(&mut self, ctx: &mut CallContext<'_>) {
        self.epoch += 1;
        for (id, ()) in self.waiters.drain() {
            ctx.wake_with(id, &true);
        }
    }
}

/// ConCoord's MeshMembership: groups of nodes that agree on their view.
///
/// `add_group(g, minsize)` (no-op if it exists), `remove_group(g)`,
/// `get_group_members(g)`, `get_group_epoch(g)`, `get_group_state(g) ->
/// (members, epoch)`, `approve_join(g, node, epoch) -> (joined, epoch)`
/// (joins only if `epoch` is current, which starts a new epoch),
/// `check_member(g, node) -> (is_member, epoch)`, `notify_failure(g, epoch,
/// node) -> (members, epoch)` (a node is removed, starting a new epoch, once
/// reports against it reach half the group; reports for an old epoch are
/// ignored), and `wait(g)`, which parks until the next view change and then
/// returns true. Unknown groups raise `KeyError`.
///
/// Differences from ConCoord (whose code has bugs on these paths):
/// `notify_failure` always returns `(members, epoch)` (ConCoord returned
/// nothing when no view change happened) and a report against a non-member
/// raises `KeyError`; `remove_group` answers the group's parked waits with
/// `KeyError` instead of leaving them parked forever.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeshMembership {
    groups: BTreeMap<Key, Group>,
}

impl MeshMembership {
    fn group(&mut self, args: &Args) -> Result<(Key, &mut Group), ObjectError> {
        let name = Key::arg(args, 0, "gname")?;
        match self.groups.get_mut(&name) {
            Some(group) => Ok((name, group)),
            None => Err(name.missing()),
        }
    }

    fn dispatch(
        &mut self,
        method: &str,
        args: &Args,
        ctx: &mut CallContext<'_>,
    ) -> Result<Outcome, ObjectError> {
        match method {
            "add_group" => {
                args.at_most(2)?;
                let name = Key::arg(args, 0, "gname")?;
                let minsize = py_int(&args.raw(1, "minsize")?, "minsize")?;
                self.groups.entry(name).or_insert_with(|| Group {
                    epoch: 1,
                    minsize,
                    members: BTreeMap::new(),
                    waiters: WaitQueue::default(),
                });
                Ok(reply(&()))
            }
            "remove_group" => {
                args.at_most(1)?;
                let name = Key::arg(args, 0, "gname")?;
                let mut group = self.groups.remove(&name).ok_or_else(|| name.missing())?;
                for (id, ()) in group.waiters.drain() {
                    ctx.wake(id, Err(name.missing()));
                }
                Ok(reply(&()))
            }
            "get_group_members" => {
                args.at_most(1)?;
                let (_, group) = self.group(args)?;
                Ok(reply(&group.members()))
            }
            "get_group_epoch" => {
                args.at_most(1)?;
                let (_, group) = self.group(args)?;
                Ok(reply(&group.epoch))
            }
            "get_group_state" => {
                args.at_most(1)?;
                let (_, group) = self.group(args)?;
                Ok(group.state())
            }
            "approve_join" => {
                args.at_most(3)?;
                let node = Key::arg(args, 1, "node")?;
                let epoch = py_int(&args.raw(2, "epochno")?, "epochno")?;
                let (_, group) = self.group(args)?;
                let joined = u64::try_from(epoch) == Ok(group.epoch);
                if joined {
                    group.members.entry(node).or_insert(0);
                    group.change_view(ctx);
                }
                Ok(reply(&(joined, group.epoch)))
            }
            "check_member" => {
                args.at_most(2)?;
                let node = Key::arg(args, 1, "node")?;
                let (_, group) = self.group(args)?;
                Ok(reply(&(group.members.contains_key(&node), group.epoch)))
            }
            "notify_failure" => {
                args.at_most(3)?;
                let epoch = py_int(&args.raw(1, "epoch")?, "epoch")?;
                let failed = Key::arg(args, 2, "failednode")?;
                let (_, group) = self.group(args)?;
                if u64::try_from(epoch) != Ok(group.epoch) {
                    return Ok(group.state());
                }
                let size = group.members.len() as u64;
                let strikes = group
                    .members
                    .get_mut(&failed)
                    .ok_or_else(|| failed.missing())?;
                *strikes += 1;
                // ConCoord: strikes >= len(members) / 2.0
                if 2 * *strikes >= size {
                    group.members.remove(&failed);
                    group.change_view(ctx);
                }
                Ok(group.state())
            }
            "wait" => {
                args.at_most(1)?;
                let (_, group) = self.group(args)?;
                group.waiters.push(ctx.id, ());
                Ok(Outcome::Park)
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }
}

impl ReplicatedObject for MeshMembership {
    const NAME: &'static str = "MeshMembership";

    fn call(&mut self, method: &str, args: &Args, ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args, ctx)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    /// A timed-out `wait` returns false (no view change seen).
    fn cancel(&mut self, id: CommandId, _ctx: &mut CallContext<'_>) -> Option<Reply> {
        self.groups
            .values_mut()
            .find_map(|group| group.waiters.remove(id))
            .map(|()| Ok(crate::encode_value(&false)))
    }

    fn parked(&self) -> Vec<CommandId> {
        self.groups
            .values()
            .flat_map(|group| group.waiters.ids())
            .collect()
    }

    fn is_read_only(method: &str) -> bool {
        matches!(
            method,
            "get_group_members" | "get_group_epoch" | "get_group_state" | "check_member"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    #[test]
    fn joins_and_failures_change_the_view() {
        let mut h = Harness::<MeshMembership>::new();
        h.ok::<()>(1, "add_group", &[v("g"), v(2)]);
        h.ok::<()>(1, "add_group", &[v("g"), v(5)]); // exists: no-op
        assert_eq!(h.ok::<u64>(1, "get_group_epoch", &[v("g")]), 1);
        assert_eq!(
            h.ok::<(bool, u64)>(1, "approve_join", &[v("g"), v("a"), v(1)]),
            (true, 2)
        );
        assert_eq!(
            h.ok::<(bool, u64)>(1, "approve_join", &[v("g"), v("b"), v(1)]),
            (false, 2)
        );
        assert_eq!(
            h.ok::<(bool, u64)>(1, "approve_join", &[v("g"), v("b"), v(2)]),
            (true, 3)
        );
        assert_eq!(
            h.ok::<(bool, u64)>(1, "approve_join", &[v("g"), v("c"), v("3")]),
            (true, 4)
        );
        assert_eq!(
            h.ok::<Vec<String>>(1, "get_group_members", &[v("g")]),
            ["a", "b", "c"]
        );
        assert_eq!(
            h.ok::<(bool, u64)>(1, "check_member", &[v("g"), v("b")]),
            (true, 4)
        );
        assert_eq!(
            h.ok::<(bool, u64)>(1, "check_member", &[v("g"), v("z")]),
            (false, 4)
        );

        // Parked waiters are woken (true) by the next view change.
        let (w1, w2) = (id(1, 50), id(2, 50));
        assert!(parked(&h.call_id(w1, "wait", &[v("g")]).0));
        assert!(parked(&h.call_id(w2, "wait", &[v("g")]).0));
        h.round_trip();
        // Stale epoch: ignored, current state returned.
        let (members, epoch) =
            h.ok::<(Vec<String>, u64)>(1, "notify_failure", &[v("g"), v(1), v("c")]);
        assert_eq!((members.len(), epoch), (3, 4));
        // One strike of three members: below half.
        let (out, wakes) = h.call_as(1, "notify_failure", &[v("g"), v(4), v("c")]);
        assert!(wakes.is_empty());
        assert_eq!(value::<(Vec<String>, u64)>(out).1, 4);
        // Two strikes >= 3 / 2: c is removed and the epoch moves on.
        let (out, wakes) = h.call_as(2, "notify_failure", &[v("g"), v(4), v("c")]);
        assert_eq!(
            value::<(Vec<String>, u64)>(out),
            (vec!["a".into(), "b".into()], 5)
        );
        assert_eq!(woke::<bool>(wakes), vec![(w1, true), (w2, true)]);
        assert_eq!(
            h.ok::<(Vec<String>, u64)>(1, "get_group_state", &[v("g")])
                .1,
            5
        );
    }

    #[test]
    fn errors_and_cancel() {
        let mut h = Harness::<MeshMembership>::new();
        for method in [
            "get_group_members",
            "get_group_epoch",
            "get_group_state",
            "remove_group",
            "wait",
        ] {
            let e = h.err(1, method, &[v("nope")]);
            assert_eq!(
                (e.kind.as_str(), e.message.as_str()),
                ("KeyError", "'nope'"),
                "{method}"
            );
        }
        assert_eq!(
            h.err(1, "approve_join", &[v("nope"), v("a"), v(1)]).kind,
            "KeyError"
        );
        assert_eq!(
            h.err(1, "add_group", &[v("g")]).kind,
            ObjectError::BAD_ARGUMENTS
        );
        assert_eq!(h.err(1, "add_group", &[v("g"), v("x")]).kind, "ValueError");
        h.ok::<()>(1, "add_group", &[v("g"), v(1)]);
        assert_eq!(
            h.err(1, "notify_failure", &[v("g"), v(1), v("ghost")]).kind,
            "KeyError"
        );
        assert_eq!(h.err(1, "leave", &[]).kind, ObjectError::UNKNOWN_METHOD);

        let (a, b) = (id(1, 9), id(2, 9));
        assert!(parked(&h.call_id(a, "wait", &[v("g")]).0));
        assert!(parked(&h.call_id(b, "wait", &[v("g")]).0));
        assert!(!cancelled::<bool>(h.cancel(a).0));
        assert_eq!(h.cancel(a).0, None);
        assert_eq!(h.parked(), vec![b]);
        let (_, wakes) = h.call_as(1, "remove_group", &[v("g")]);
        assert_eq!(wakes.len(), 1);
        assert_eq!(wakes[0].0, b);
        assert_eq!(wakes[0].1.as_ref().unwrap_err().kind, "KeyError");
        assert!(h.parked().is_empty());
    }
}
