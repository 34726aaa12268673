use crate::{reply, Args, CallContext, ObjectError, Outcome, ReplicatedObject};
use serde::{Deserialize, Serialize};

/// A register (beyond ConCoord): `getvalue`, `setvalue(v)`. Holds any value;
/// starts as nil. The shape linearizability checkers use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Value {
    value: rmpv::Value,
}

impl Default for Value {
    fn default() -> Self {
        Value {
            value: rmpv::Value::Nil,
        }
    }
}

impl ReplicatedObject for Value {
    const NAME: &'static str = "Value";

    fn call(&mut self, method: &str, args: &Args, _ctx: &mut CallContext<'_>) -> Outcome {
        let result = (|| match method {
            "getvalue" => {
                args.at_most(0)?;
                Ok(reply(&self.value))
            }
            "setvalue" => {
                args.at_most(1)?;
                self.value = args.raw(0, "value")?;
                Ok(reply(&()))
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        })();
        result.unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    fn init(args: &Args) -> Result<Self, ObjectError> {
        args.at_most(1)?;
        Ok(Value {
            value: args.get_or(0, "value", rmpv::Value::Nil)?,
        })
    }

    fn is_read_only(method: &str) -> bool {
        method == "getvalue"
    }
}
