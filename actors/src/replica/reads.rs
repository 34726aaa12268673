//! Reads without a log write: served once the replica has executed up to
//! the read index, or at once when allowed to be stale; and the guess of
//! which calls are reads.

use super::*;

impl Replica {
    /// Reads a read-index round confirmed: each runs once this replica has
    /// executed up to its index (at once if it has).
    pub(super) fn on_read_at(&mut self, at: ReadAt, fx: &mut Effects) {
        for (index, command) in at.reads {
            self.reads_waiting.entry(index).or_default().push(command);
        }
        self.serve_ready_reads(fx);
    }

    pub(super) fn serve_ready_reads(&mut self, fx: &mut Effects) {
        if !self.has_state {
            return;
        }
        while let Some(entry) = self.reads_waiting.first_entry() {
            if *entry.key() > self.executed {
                return;
            }
            for command in entry.remove() {
                self.serve_read(command, fx);
            }
        }
    }

    /// A read allowed to be stale: runs on this replica's state as it is now.
    pub fn stale_read(&mut self, command: Command, fx: &mut Effects) {
        self.serve_read(command, fx);
    }

    /// Reads waiting for this replica to execute further.
    pub fn reads_waiting(&self) -> usize {
        self.reads_waiting.values().map(Vec::len).sum()
    }

    /// Answers a read from the state as it is, or hands it to the log when
    /// it cannot be served so ([`ObjectStore::read`]).
    pub(super) fn serve_read(&mut self, command: Command, fx: &mut Effects) {
        let Command::Call {
            id,
            target,
            method,
            args,
            ..
        } = &command
        else {
            return fx.to_log.push(command);
        };
        if !self.has_state {
            return fx.to_log.push(command);
        }
        if self.expired.contains_key(&id.client) {
            let e = ObjectError::new(
                SESSION_EXPIRED_KIND,
                "this client's session expired; what it held was released (start a new client)",
            );
            fx.replies.push((*id, Err(e)));
            return;
        }
        let mut wakes = Vec::new();
        let mut ctx = CallContext::new(*id, self.executed, &mut wakes);
        let outcome = self.objects.read(target, method, args, &mut ctx);
        drop(ctx);
        match outcome {
            None => fx.to_log.push(command),
            Some(Outcome::Reply(reply)) if wakes.is_empty() => fx.replies.push((*id, reply)),
            Some(_) => {
                // A method marked read-only must answer at once and wake nobody.
                debug_assert!(false, "read-only {method} parked or woke a call");
                let e = ObjectError::runtime(format!(
                    "{method} is marked read-only but did not answer at once"
                ));
                fx.replies.push((*id, Err(e)));
            }
        }
    }
}

/// Which calls a node sends down the read path: a guess from the types the
/// node knows (the default object's, or the type a call names), made
/// without asking the replica, so writes never wait for it. The replica
/// decides for good ([`ObjectStore::read`]); a wrong guess costs a read
/// round before the call goes through the log.
pub struct ReadRouting {
    types: Arc<Types>,
    default_type: &'static str,
    /// One object per type name calls gave, to ask `is_read_only`.
    samples: BTreeMap<String, Box<dyn StateMachine>>,
}

/// Type names [`ReadRouting`] keeps a sample object for (clients name types).
const READ_ROUTING_TYPES_MAX: usize = 64;

impl ReadRouting {
    pub fn new(types: Arc<Types>, default_type: &'static str) -> Self {
        ReadRouting {
            types,
            default_type,
            samples: BTreeMap::new(),
        }
    }

    /// Whether `method` on `target` is probably read-only.
    pub fn may_read(&mut self, target: &Target, method: &str) -> bool {
        let type_name = if target.name.is_empty() {
            self.default_type
        } else if target.type_name.is_empty() {
            return false;
        } else {
            target.type_name.as_str()
        };
        if let Some(sample) = self.samples.get(type_name) {
            return sample.is_read_only(method);
        }
        let Some(sample) = self.types.make(type_name) else {
            return false;
        };
        let read_only = sample.is_read_only(method);
        if self.samples.len() < READ_ROUTING_TYPES_MAX {
            self.samples.insert(type_name.to_string(), sample);
        }
        read_only
    }
}
