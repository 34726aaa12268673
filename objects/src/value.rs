use crate::util::opt_timeout;
use crate::wait_queue::WaitQueue;
use crate::{reply, Args, CallContext, CommandId, ObjectError, Outcome, ReplicatedObject, Reply};
use serde::{Deserialize, Serialize};

/// A register (beyond ConCoord): `getvalue`, `setvalue(v)`. Holds any value;
/// starts as nil. The shape linearizability checkers use.
///
/// Also a small configuration store, as ZooKeeper and etcd users build on:
/// `version()` grows on every successful write, `compare_and_set(expected,
/// new) -> bool`, and the watch `wait_change(version[, timeout])`, a parked
/// call answered `[value, version]` once the version passes the one given
/// (null when its timeout runs out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Value {
    value: rmpv::Value,
    version: u64,
    /// Watches, each with the version it waits to see passed.
    watches: WaitQueue<u64>,
    /// The highest fencing token `set_fenced` accepted.
    fenced: u64,
}

impl Default for Value {
    fn default() -> Self {
        Value {
            value: rmpv::Value::Nil,
            version: 0,
            watches: WaitQueue::default(),
            fenced: 0,
        }
    }
}

impl Value {
    fn write(&mut self, value: rmpv::Value, ctx: &mut CallContext<'_>) {
        self.value = value;
        self.version += 1;
        let version = self.version;
        let mut watches = std::mem::take(&mut self.watches);
        for (id, seen) in watches.drain() {
            if seen < version {
                ctx.wake_with(id, &(&self.value, version));
            } else {
                self.watches.push(id, seen);
            }
        }
    }
}

impl ReplicatedObject for Value {
    const NAME: &'static str = "Value";

    fn call(&mut self, method: &str, args: &Args, ctx: &mut CallContext<'_>) -> Outcome {
        let result = (|| match method {
            "getvalue" => {
                args.at_most(0)?;
                Ok(reply(&self.value))
            }
            "setvalue" => {
                args.at_most(1)?;
                let value = args.raw(0, "value")?;
                self.write(value, ctx);
                Ok(reply(&()))
            }
            // A write guarded by a lock's fencing token: refused if a newer
            // holder has written already.
            "set_fenced" => {
                args.at_most(2)?;
                let token: u64 = args.get(0, "token")?;
                let value = args.raw(1, "value")?;
                if token < self.fenced {
                    return Err(ObjectError::new(
                        crate::util::STALE_TOKEN,
                        format!(
                            "token {token} is older than {}, the newest this Value accepted",
                            self.fenced
                        ),
                    ));
                }
                self.fenced = token;
                self.write(value, ctx);
                Ok(reply(&()))
            }
            "version" => {
                args.at_most(0)?;
                Ok(reply(&self.version))
            }
            "compare_and_set" => {
                args.at_most(2)?;
                let expected = args.raw(0, "expected")?;
                let new = args.raw(1, "new")?;
                if self.value != expected {
                    return Ok(reply(&false));
                }
                self.write(new, ctx);
                Ok(reply(&true))
            }
            "wait_change" => {
                args.at_most(2)?;
                let seen: u64 = args.get(0, "version")?;
                let timeout = opt_timeout(args, 1)?;
                if self.version > seen {
                    return Ok(reply(&(&self.value, self.version)));
                }
                if timeout.is_some_and(|t| t <= 0.0) {
                    return Ok(reply(&()));
                }
                self.watches.push(ctx.id, seen);
                Ok(Outcome::Park)
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        })();
        result.unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    fn init(args: &Args) -> Result<Self, ObjectError> {
        args.at_most(1)?;
        Ok(Value {
            value: args.get_or(0, "value", rmpv::Value::Nil)?,
            ..Value::default()
        })
    }

    fn is_read_only(method: &str) -> bool {
        matches!(method, "getvalue" | "version")
    }

    /// A watch whose timeout ran out answers null.
    fn cancel(&mut self, id: CommandId, _ctx: &mut CallContext<'_>) -> Option<Reply> {
        self.watches
            .remove(id)
            .map(|_| Ok(crate::encode_value(&())))
    }

    fn parked(&self) -> Vec<CommandId> {
        self.watches.ids().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    #[test]
    fn versions_compare_and_set_and_watches() {
        let mut h = Harness::<Value>::new();
        assert_eq!(h.ok::<u64>(1, "version", &[]), 0);
        h.ok::<()>(1, "setvalue", &[v("a")]);
        assert_eq!(h.ok::<u64>(1, "version", &[]), 1);
        assert!(!h.ok::<bool>(1, "compare_and_set", &[v("x"), v("b")]));
        assert_eq!(
            h.ok::<u64>(1, "version", &[]),
            1,
            "a failed CAS writes nothing"
        );
        // A watch on a version already passed answers at once.
        let (seen, version): (String, u64) = h.ok(2, "wait_change", &[v(0)]);
        assert_eq!((seen.as_str(), version), ("a", 1));
        let w = id(3, 1);
        assert!(parked(&h.call_id(w, "wait_change", &[v(1)]).0));
        let timed = id(4, 1);
        assert!(parked(&h.call_id(timed, "wait_change", &[v(1), v(5.0)]).0));
        let (r, _) = h.cancel(timed);
        assert_eq!(
            r,
            Some(Ok(crate::encode_value(&()))),
            "a timed-out watch answers null"
        );
        let (out, wakes) = h.call_as(1, "compare_and_set", &[v("a"), v("b")]);
        assert!(value::<bool>(out));
        assert_eq!(
            woke::<(String, u64)>(wakes),
            vec![(w, ("b".to_string(), 2))]
        );
        assert!(h.parked().is_empty());
        assert_eq!(h.ok::<()>(1, "wait_change", &[v(2), v(0)]), ());
    }

    #[test]
    fn fenced_writes_refuse_older_tokens() {
        let mut h = Harness::<Value>::new();
        h.ok::<()>(1, "set_fenced", &[v(10), v("a")]);
        h.ok::<()>(1, "set_fenced", &[v(10), v("b")]);
        let e = h.err(2, "set_fenced", &[v(9), v("stale")]);
        assert_eq!(e.kind, "StaleToken");
        assert_eq!(h.ok::<String>(1, "getvalue", &[]), "b");
        h.ok::<()>(3, "set_fenced", &[v(11), v("c")]);
        assert_eq!(h.err(1, "set_fenced", &[v(10), v("d")]).kind, "StaleToken");
        assert_eq!(
            h.err(1, "set_fenced", &[v(-1), v("d")]).kind,
            ObjectError::BAD_ARGUMENTS
        );
    }
}
