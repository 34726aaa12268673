use crate::util::py_str;
use crate::{reply, Args, CallContext, ObjectError, Outcome, ReplicatedObject};
use serde::{Deserialize, Serialize};

/// ConCoord's Log: `write(entry)` replaces the log with one entry,
/// `append(entry)` adds one, `read()` returns the entries as one string,
/// each as Python's `str()` prints it, separated by spaces (ConCoord's
/// `" ".join(str(e) for e in log)`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Log {
    log: Vec<rmpv::Value>,
}

impl Log {
    fn dispatch(&mut self, method: &str, args: &Args) -> Result<Outcome, ObjectError> {
        match method {
            "write" => {
                args.at_most(1)?;
                self.log = vec![args.raw(0, "entry")?];
                Ok(reply(&()))
            }
            "append" => {
                args.at_most(1)?;
                self.log.push(args.raw(0, "entry")?);
                Ok(reply(&()))
            }
            "read" => {
                args.at_most(0)?;
                let text = self.log.iter().map(py_str).collect::<Vec<_>>().join(" ");
                Ok(reply(&text))
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }
}

impl ReplicatedObject for Log {
    const NAME: &'static str = "Log";

    fn call(&mut self, method: &str, args: &Args, _ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    fn is_read_only(method: &str) -> bool {
        method == "read"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    #[test]
    fn write_append_read() {
        let mut h = Harness::<Log>::new();
        assert_eq!(h.ok::<String>(1, "read", &[]), "");
        h.ok::<()>(1, "append", &[v("a")]);
        h.ok::<()>(1, "append", &[v(2)]);
        h.ok::<()>(1, "append", &[v(true)]);
        assert_eq!(h.ok::<String>(1, "read", &[]), "a 2 True");
        h.round_trip();
        h.ok::<()>(1, "write", &[v("fresh")]);
        h.ok::<()>(1, "append", &[v(1.5)]);
        assert_eq!(h.ok::<String>(1, "read", &[]), "fresh 1.5");
        assert_eq!(h.err(1, "write", &[]).kind, ObjectError::BAD_ARGUMENTS);
        assert_eq!(h.err(1, "read", &[v(1)]).kind, ObjectError::BAD_ARGUMENTS);
        assert_eq!(h.err(1, "truncate", &[]).kind, ObjectError::UNKNOWN_METHOD);
    }
}
