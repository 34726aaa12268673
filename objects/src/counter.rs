use crate::{reply, Args, CallContext, ObjectError, Outcome, ReplicatedObject};
use serde::{Deserialize, Serialize};

/// ConCoord's Counter: `increment`, `decrement`, `getvalue`; `Counter(value=0)`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    value: i64,
}

impl ReplicatedObject for Counter {
    const NAME: &'static str = "Counter";

    fn call(&mut self, method: &str, args: &Args, _ctx: &mut CallContext<'_>) -> Outcome {
        let result = (|| match method {
            "increment" => {
                args.at_most(0)?;
                self.value = self.value.wrapping_add(1);
                Ok(reply(&()))
            }
            "decrement" => {
                args.at_most(0)?;
                self.value = self.value.wrapping_sub(1);
                Ok(reply(&()))
            }
            "getvalue" => {
                args.at_most(0)?;
                Ok(reply(&self.value))
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        })();
        result.unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    fn init(args: &Args) -> Result<Self, ObjectError> {
        args.at_most(1)?;
        Ok(Counter {
            value: args.get_or(0, "value", 0)?,
        })
    }

    fn is_read_only(method: &str) -> bool {
        method == "getvalue"
    }
}
