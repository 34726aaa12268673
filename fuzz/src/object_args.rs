//! Argument decoding and method dispatch of every built-in object: a sequence
//! of calls (a real method name or garbage, a client, MessagePack or raw
//! argument bytes) and cancels, straight into `StateMachine::apply`.
//!
//! Checked: no panic; a call answered with an error leaves the snapshot
//! unchanged and wakes no one (the one deliberate exception is in
//! [`error_may_change_state`]); the final snapshot restores to an identical one.

use arbitrary::{Result, Unstructured};
use concoord::objects::{builtin, builtin_names, CallContext, CommandId, Outcome, StateMachine};

/// Every method name the built-in objects answer to (the union over objects:
/// a method of one object is garbage to the others), plus the constructor.
pub const METHODS: &[&str] = &[
    "concoord_init",
    "abort",
    "acquire",
    "add",
    "add_group",
    "add_node",
    "addnodetosubdomain",
    "append",
    "approve_join",
    "balance",
    "broken",
    "check_member",
    "clear",
    "close",
    "debit",
    "decrement",
    "delete",
    "delnodefromsubdomain",
    "delsubdomain",
    "deposit",
    "deschedule",
    "empty",
    "find",
    "full",
    "get",
    "get_depth",
    "get_group_epoch",
    "get_group_members",
    "get_group_state",
    "get_max",
    "get_min",
    "get_members",
    "get_nowait",
    "get_queue",
    "get_size",
    "get_stack",
    "getdomains",
    "getnodes",
    "getsubdomains",
    "getvalue",
    "increment",
    "insert",
    "list_jobs",
    "locked",
    "n_waiting",
    "notify",
    "notify_failure",
    "open",
    "parties",
    "pop",
    "put",
    "put_nowait",
    "qsize",
    "read",
    "release",
    "remove",
    "remove_group",
    "reset",
    "schedule",
    "set",
    "setvalue",
    "update",
    "updatesubdomain",
    "wait",
    "write",
];

/// A small MessagePack value, biased to the shapes methods take.
pub fn value(u: &mut Unstructured<'_>, depth: u32) -> Result<rmpv::Value> {
    use rmpv::Value;
    let pick = u.int_in_range(0..=if depth > 2 { 9 } else { 11 })?;
    Ok(match pick {
        0 => Value::Nil,
        1 => Value::Boolean(u.arbitrary()?),
        2 => Value::from(u.int_in_range(-3i64..=8)?),
        3 => Value::from(u.arbitrary::<i64>()?),
        4 => Value::from(u.arbitrary::<u64>()?),
        5 => Value::from(u.arbitrary::<f64>()?),
        6 => Value::from(*u.choose(&["a", "b", "alice", "", "x.y", "1", "node"])?),
        7 => Value::from(u.arbitrary::<String>()?),
        8 => Value::Binary(u.arbitrary()?),
        9 => Value::from(*u.choose(&[i64::MAX, i64::MIN, u32::MAX as i64, -1, 0, 1 << 53])?),
        10 => {
            let n = u.int_in_range(0..=3)?;
            Value::Array((0..n).map(|_| value(u, depth + 1)).collect::<Result<_>>()?)
        }
        _ => {
            let n = u.int_in_range(0..=2)?;
            Value::Map(
                (0..n)
                    .map(|_| Ok((value(u, depth + 1)?, value(u, depth + 1)?)))
                    .collect::<Result<_>>()?,
            )
        }
    })
}

/// Argument bytes: usually a well-formed array of values, sometimes raw bytes.
pub fn args(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    Ok(match u.int_in_range(0..=7)? {
        0 => u.arbitrary::<Vec<u8>>()?,
        1 => Vec::new(),
        _ => {
            let n = u.int_in_range(0..=4)?;
            let values = (0..n).map(|_| value(u, 0)).collect::<Result<Vec<_>>>()?;
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &rmpv::Value::Array(values))
                .expect("encoding into a Vec");
            out
        }
    })
}

/// The method name of one call: mostly real names, sometimes garbage.
pub fn method(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(if u.ratio(7u8, 8u8)? {
        (*u.choose(METHODS)?).to_string()
    } else {
        u.arbitrary()?
    })
}

/// The one error that deliberately changes state: as in Python's
/// `threading.Barrier`, a `wait` that times out breaks the barrier (failing
/// its waiters) and raises `BrokenBarrierError`.
pub fn error_may_change_state(object: &str, method: &str, kind: &str) -> bool {
    object == "Barrier" && method == "wait" && kind == "BrokenBarrierError"
}

/// Applies one call and checks the error invariant.
pub fn apply_checked(
    object: &mut dyn StateMachine,
    id: CommandId,
    method: &str,
    args: &[u8],
) -> Outcome {
    let before = object.snapshot();
    let mut wakes = Vec::new();
    let outcome = {
        let mut ctx = CallContext::new(id, id.seq, &mut wakes);
        object.apply(method, args, &mut ctx)
    };
    if let Outcome::Reply(Err(e)) = &outcome {
        if error_may_change_state(object.name(), method, &e.kind) {
            return outcome;
        }
        assert!(
            object.snapshot() == before,
            "{}.{method}({args:02x?}) failed with {e:?} but changed the state",
            object.name()
        );
        assert!(
            wakes.is_empty(),
            "{}.{method}({args:02x?}) failed with {e:?} but woke {wakes:?}",
            object.name()
        );
    }
    outcome
}

/// Checks the snapshot restores into a fresh object of the same kind.
pub fn check_restore(object: &dyn StateMachine) {
    let snapshot = object.snapshot();
    let mut fresh = builtin(object.name()).expect("built in");
    fresh
        .restore(&snapshot)
        .unwrap_or_else(|e| panic!("{}: own snapshot does not restore: {e:?}", object.name()));
    assert!(
        fresh.snapshot() == snapshot,
        "{}: snapshot changed through restore",
        object.name()
    );
}

fn drive(u: &mut Unstructured<'_>) -> Result<()> {
    let name = *u.choose(builtin_names())?;
    let mut object = builtin(name).expect("every listed name is built in");
    let mut seq = 0u64;
    let mut issued: Vec<CommandId> = Vec::new();
    for _ in 0..u.int_in_range(1..=24)? {
        seq += 1;
        if !issued.is_empty() && u.ratio(1u8, 10u8)? {
            let id = *u.choose(&issued)?;
            let mut wakes = Vec::new();
            let mut ctx = CallContext::new(CommandId::new(0, seq), seq, &mut wakes);
            let _ = object.cancel(id, &mut ctx);
            continue;
        }
        let client = u.int_in_range(1..=3)?;
        let id = CommandId::new(client, seq);
        let method = method(u)?;
        let args = args(u)?;
        apply_checked(object.as_mut(), id, &method, &args);
        issued.push(id);
    }
    check_restore(object.as_ref());
    Ok(())
}

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    // Running out of input ends the sequence early; that is not a finding.
    let _ = drive(&mut u);
}

pub fn seeds() -> Vec<Vec<u8>> {
    // Unstructured input has no fixed grammar: a few byte patterns suffice.
    let mut seeds = vec![vec![0u8; 64], vec![0xffu8; 64]];
    for i in 0..builtin_names().len() as u8 {
        let mut s = vec![i];
        s.extend((0u8..200).map(|b| b.wrapping_mul(37).wrapping_add(i)));
        seeds.push(s);
    }
    seeds
}
