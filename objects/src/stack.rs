use crate::{reply, Args, CallContext, ObjectError, Outcome, ReplicatedObject};
use serde::{Deserialize, Serialize};

/// ConCoord's Stack: `append(item)`, `pop()`, `get_size`, `get_stack`.
/// `pop` returns the item (ConCoord dropped it) and raises
/// `IndexError: pop from empty list` on an empty stack, as Python's list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stack {
    stack: Vec<rmpv::Value>,
}

impl Stack {
    fn dispatch(&mut self, method: &str, args: &Args) -> Result<Outcome, ObjectError> {
        match method {
            "append" => {
                args.at_most(1)?;
                self.stack.push(args.raw(0, "item")?);
                Ok(reply(&()))
            }
            "pop" => {
                args.at_most(0)?;
                let item = self
                    .stack
                    .pop()
                    .ok_or_else(|| ObjectError::new("IndexError", "pop from empty list"))?;
                Ok(reply(&item))
            }
            "get_size" => {
                args.at_most(0)?;
                Ok(reply(&self.stack.len()))
            }
            "get_stack" => {
                args.at_most(0)?;
                Ok(reply(&self.stack))
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }
}

impl ReplicatedObject for Stack {
    const NAME: &'static str = "Stack";

    fn call(&mut self, method: &str, args: &Args, _ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    fn is_read_only(method: &str) -> bool {
        matches!(method, "get_size" | "get_stack")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use rmpv::Value as V;

    #[test]
    fn lifo() {
        let mut h = Harness::<Stack>::new();
        h.ok::<()>(1, "append", &[v(1)]);
        h.ok::<()>(1, "append", &[v("b")]);
        assert_eq!(h.ok::<usize>(1, "get_size", &[]), 2);
        assert_eq!(h.ok::<Vec<V>>(1, "get_stack", &[]), vec![v(1), v("b")]);
        h.round_trip();
        assert_eq!(h.ok::<V>(1, "pop", &[]), v("b"));
        assert_eq!(h.ok::<V>(1, "pop", &[]), v(1));
        let e = h.err(1, "pop", &[]);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("IndexError", "pop from empty list")
        );
        assert_eq!(h.err(1, "append", &[]).kind, ObjectError::BAD_ARGUMENTS);
        assert_eq!(h.err(1, "push", &[v(1)]).kind, ObjectError::UNKNOWN_METHOD);
    }
}
