use crate::lock::not_granted;
use crate::util::{lock_acquire_args, Fence};
use crate::wait_queue::WaitQueue;
use crate::{
    reply, Args, CallContext, ClientId, CommandId, ObjectError, Outcome, ReplicatedObject, Reply,
};
use serde::{Deserialize, Serialize};

/// What a parked command gets when the lock is handed to it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Grant {
    /// Recursion count it owns once granted (1 for acquire; a Condition
    /// waiter restores the count it had before `wait`).
    pub count: u64,
    /// The value it is answered with.
    pub result: bool,
    /// Plain acquires may time out; a Condition waiter re-acquiring the lock
    /// may not (Python's `wait` re-acquires without a timeout).
    pub cancellable: bool,
    /// `acquire_fenced`: answered with the grant's token instead of `result`.
    #[serde(default)]
    pub fenced: bool,
}

impl Grant {
    pub(crate) const ACQUIRE: Grant = Grant {
        count: 1,
        result: true,
        cancellable: true,
        fenced: false,
    };
}

/// The re-entrant lock shared by [`RLock`] and [`crate::Condition`]: owned by a
/// client, with a recursion count and a FIFO of parked commands that are
/// handed the lock directly on the final release.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Reentrant {
    owner: Option<ClientId>,
    count: u64,
    waiters: WaitQueue<Grant>,
    fence: Fence,
    /// The owner's token (from its first acquire).
    token: Option<u64>,
}

impl Reentrant {
    /// Python's repr of an RLock, without the address.
    pub(crate) fn describe(&self, name: &str) -> String {
        match self.owner {
            Some(owner) => format!(
                "<locked {name} owner={owner:x} count={}, waiting={}>",
                self.count,
                self.waiters.len()
            ),
            None => format!("<unlocked {name} owner=None count=0>"),
        }
    }

    pub(crate) fn is_owned_by(&self, client: ClientId) -> bool {
        self.owner == Some(client)
    }

    pub(crate) fn locked(&self) -> bool {
        self.owner.is_some()
    }

    /// The owner's token, if it is owned.
    pub(crate) fn fence(&self) -> Option<u64> {
        self.token.filter(|_| self.owner.is_some())
    }

    /// `acquire(...)`, or with `fenced` `acquire_fenced(...)`: the token of
    /// the first acquire (a re-entry answers the same token), null if not granted.
    pub(crate) fn acquire(
        &mut self,
        args: &Args,
        fenced: bool,
        ctx: &mut CallContext<'_>,
    ) -> Result<Outcome, ObjectError> {
        let may_park = lock_acquire_args(args)?;
        let answer = |token: Option<u64>| {
            if fenced {
                reply(&token)
            } else {
                reply(&true)
            }
        };
        match self.owner {
            None => {
                self.owner = Some(ctx.client());
                self.count = 1;
                self.token = Some(self.fence.next(ctx.slot));
                Ok(answer(self.token))
            }
            Some(owner) if owner == ctx.client() => {
                self.count = self
                    .count
                    .checked_add(1)
                    .ok_or_else(|| ObjectError::new("OverflowError", "lock recursion too deep"))?;
                Ok(answer(self.token))
            }
            Some(_) if may_park => {
                let grant = Grant {
                    fenced,
                    ..Grant::ACQUIRE
                };
                self.waiters.push(ctx.id, grant);
                Ok(Outcome::Park)
            }
            Some(_) => Ok(reply(&not_granted(fenced))),
        }
    }

    pub(crate) fn release(&mut self, ctx: &mut CallContext<'_>) -> Result<(), ObjectError> {
        if !self.is_owned_by(ctx.client()) {
            return Err(ObjectError::runtime("cannot release un-acquired lock"));
        }
        self.count -= 1;
        if self.count == 0 {
            self.owner = None;
            self.hand_off(ctx);
        }
        Ok(())
    }

    /// Releases every level the caller holds (Condition.wait); returns the
    /// count to restore later. The caller must own the lock.
    pub(crate) fn release_all(&mut self, ctx: &mut CallContext<'_>) -> u64 {
        let saved = std::mem::take(&mut self.count);
        self.owner = None;
        self.hand_off(ctx);
        saved
    }

    /// Gives a free lock to the longest-waiting command.
    fn hand_off(&mut self, ctx: &mut CallContext<'_>) {
        if let Some((id, grant)) = self.waiters.pop() {
            self.owner = Some(id.client);
            self.count = grant.count;
            let token = self.fence.next(ctx.slot);
            self.token = Some(token);
            if grant.fenced {
                ctx.wake_with(id, &token);
            } else {
                ctx.wake_with(id, &grant.result);
            }
        }
    }

    /// Queues `id` for the lock, or grants it now if the lock is free, in
    /// which case its reply is returned instead of woken.
    pub(crate) fn enqueue(&mut self, id: CommandId, grant: Grant) -> Option<Reply> {
        if self.owner.is_none() {
            self.owner = Some(id.client);
            self.count = grant.count;
            self.token = None; // a Condition waiter taking the lock back: no fencing there
            return Some(Ok(crate::encode_value(&grant.result)));
        }
        self.waiters.push(id, grant);
        None
    }

    /// Cancels a timed-out acquire: answered false, never granted later.
    pub(crate) fn cancel(&mut self, id: CommandId) -> Option<Reply> {
        let cancellable = self
            .waiters
            .iter()
            .any(|(queued, grant)| *queued == id && grant.cancellable);
        if !cancellable {
            return None;
        }
        let grant = self.waiters.remove(id)?;
        Some(Ok(crate::encode_value(&not_granted(grant.fenced))))
    }

    pub(crate) fn parked(&self) -> impl Iterator<Item = CommandId> + '_ {
        self.waiters.ids()
    }

    /// The owner's session ended: every level it held is released and the
    /// lock passes to the longest waiter.
    pub(crate) fn session_ended(&mut self, client: ClientId, ctx: &mut CallContext<'_>) {
        // Its queued grants first (a Condition waiter re-acquiring is one):
        // the lock must never be handed to a session that is gone.
        self.waiters.remove_client(client);
        if self.owner == Some(client) {
            self.count = 0;
            self.owner = None;
            self.token = None;
            self.hand_off(ctx);
        }
    }
}

/// Python's `threading.RLock` across machines (ConCoord's `DRLock`):
/// `acquire(blocking=True, timeout=-1) -> bool`, `release()`, `locked()`.
/// Owned by the client that acquired it and re-entrant for that client; on
/// the final release it passes to the longest-waiting client.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RLock {
    lock: Reentrant,
}

impl RLock {
    fn dispatch(
        &mut self,
        method: &str,
        args: &Args,
        ctx: &mut CallContext<'_>,
    ) -> Result<Outcome, ObjectError> {
        match method {
            "acquire" => self.lock.acquire(args, false, ctx),
            "acquire_fenced" => self.lock.acquire(args, true, ctx),
            "fence" => {
                args.at_most(0)?;
                Ok(reply(&self.lock.fence()))
            }
            "release" => {
                args.at_most(0)?;
                self.lock.release(ctx)?;
                Ok(reply(&()))
            }
            "locked" => {
                args.at_most(0)?;
                Ok(reply(&self.lock.locked()))
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }
}

impl ReplicatedObject for RLock {
    fn session_ended(&mut self, client: ClientId, ctx: &mut CallContext<'_>) {
        self.lock.session_ended(client, ctx);
    }

    fn describe(&self) -> String {
        self.lock.describe("RLock")
    }

    const NAME: &'static str = "RLock";

    fn call(&mut self, method: &str, args: &Args, ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args, ctx)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    fn cancel(&mut self, id: CommandId, _ctx: &mut CallContext<'_>) -> Option<Reply> {
        self.lock.cancel(id)
    }

    fn parked(&self) -> Vec<CommandId> {
        self.lock.parked().collect()
    }

    fn is_read_only(method: &str) -> bool {
        matches!(method, "locked" | "fence")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    #[test]
    fn reentrant_for_the_owner_only() {
        let mut h = Harness::<RLock>::new();
        assert!(h.ok::<bool>(1, "acquire", &[]));
        assert!(h.ok::<bool>(1, "acquire", &[]));
        assert!(!h.ok::<bool>(2, "acquire", &[v(false)]));
        let e = h.err(2, "release", &[]);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("RuntimeError", "cannot release un-acquired lock")
        );
        h.ok::<()>(1, "release", &[]);
        assert!(h.ok::<bool>(2, "locked", &[]), "one level still held");
        h.ok::<()>(1, "release", &[]);
        assert!(!h.ok::<bool>(2, "locked", &[]));
        let e = h.err(1, "release", &[]);
        assert_eq!(e.message, "cannot release un-acquired lock");
        assert_eq!(h.err(1, "acquire", &[v(false), v(2)]).kind, "ValueError");
    }

    #[test]
    fn final_release_passes_ownership_fifo() {
        let mut h = Harness::<RLock>::new();
        assert!(h.ok::<bool>(1, "acquire", &[]));
        assert!(h.ok::<bool>(1, "acquire", &[]));
        let (a, b) = (id(2, 7), id(3, 7));
        assert!(parked(&h.call_id(a, "acquire", &[]).0));
        assert!(parked(&h.call_id(b, "acquire", &[]).0));
        h.round_trip();
        assert_eq!(h.parked(), vec![a, b]);
        let (_, wakes) = h.call_as(1, "release", &[]);
        assert!(wakes.is_empty());
        let (_, wakes) = h.call_as(1, "release", &[]);
        assert_eq!(woke::<bool>(wakes), vec![(a, true)]);
        // Client 2 now owns it with count 1; client 1 no longer does.
        assert_eq!(h.err(1, "release", &[]).kind, "RuntimeError");
        assert!(h.ok::<bool>(2, "acquire", &[]));
        h.ok::<()>(2, "release", &[]);
        let (_, wakes) = h.call_as(2, "release", &[]);
        assert_eq!(woke::<bool>(wakes), vec![(b, true)]);
        h.ok::<()>(3, "release", &[]);
        assert!(!h.ok::<bool>(3, "locked", &[]));
    }

    #[test]
    fn cancelled_waiter_is_skipped() {
        let mut h = Harness::<RLock>::new();
        assert!(h.ok::<bool>(1, "acquire", &[]));
        let (a, b) = (id(2, 1), id(3, 1));
        assert!(parked(&h.call_id(a, "acquire", &[v(true), v(1)]).0));
        assert!(parked(&h.call_id(b, "acquire", &[]).0));
        assert!(!cancelled::<bool>(h.cancel(a).0));
        assert_eq!(h.cancel(a).0, None);
        let (_, wakes) = h.call_as(1, "release", &[]);
        assert_eq!(woke::<bool>(wakes), vec![(b, true)]);
        assert_eq!(h.err(2, "release", &[]).kind, "RuntimeError");
    }
}
