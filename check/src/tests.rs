//! Tests of the checkers on hand-made and generated histories.

mod lin;
mod mutex;
mod order;
mod random;

use crate::history::{value, Operation, Time};

/// `client` called `method(args)` over `[inv, ret]` and got `result`.
pub(super) fn ok(
    client: &str,
    method: &str,
    args: Vec<rmpv::Value>,
    result: impl serde::Serialize,
    inv: Time,
    ret: Time,
) -> Operation {
    Operation::ok(client, method, args, result, inv, ret)
}

pub(super) fn v(x: impl serde::Serialize) -> rmpv::Value {
    value(x)
}
