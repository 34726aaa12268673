//! Helpers shared by the built-in objects: Python-like argument coercions,
//! a total order over MessagePack values, and Python's `str`/`repr` of them.

use crate::{Args, ObjectError};
use rmpv::Value as V;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;

/// Python truthiness for flag arguments such as `blocking`: a bool, or an
/// integer (`acquire(0)` is common Python); nil means the default.
pub(crate) fn flag(
    args: &Args,
    index: usize,
    name: &str,
    default: bool,
) -> Result<bool, ObjectError> {
    match args.values().get(index) {
        None | Some(V::Nil) => Ok(default),
        Some(V::Boolean(b)) => Ok(*b),
        Some(V::Integer(i)) => Ok(i.as_i64() != Some(0)),
        Some(other) => Err(ObjectError::bad_arguments(format!(
            "argument {name}: expected a bool, got {other}"
        ))),
    }
}

/// An optional timeout in seconds (`None` waits forever).
pub(crate) fn opt_timeout(args: &Args, index: usize) -> Result<Option<f64>, ObjectError> {
    let timeout: Option<f64> = args.get_opt(index, "timeout")?;
    if timeout.is_some_and(f64::is_nan) {
        return Err(ObjectError::value("Invalid value NaN (not a number)"));
    }
    Ok(timeout)
}

/// Whether a call with this optional timeout may park. A timeout of zero or
/// less means "try once" in Python, so parking would only await the cancel.
pub(crate) fn may_wait(timeout: Option<f64>) -> bool {
    timeout.map_or(true, |t| t > 0.0)
}

/// `_thread.lock.acquire(blocking=True, timeout=-1)` argument rules (shared by
/// Lock, RLock and Condition.acquire); returns whether the call may park.
pub(crate) fn lock_acquire_args(args: &Args) -> Result<bool, ObjectError> {
    args.at_most(2)?;
    let blocking = flag(args, 0, "blocking", true)?;
    let timeout: f64 = args.get_or(1, "timeout", -1.0)?;
    if timeout.is_nan() {
        return Err(ObjectError::value("Invalid value NaN (not a number)"));
    }
    if !blocking && timeout != -1.0 {
        return Err(ObjectError::value(
            "can't specify a timeout for a non-blocking call",
        ));
    }
    if timeout < 0.0 && timeout != -1.0 {
        return Err(ObjectError::value(
            "timeout value must be a non-negative number",
        ));
    }
    Ok(blocking && timeout != 0.0)
}

/// Python's `float(x)` for numbers and numeric strings.
pub(crate) fn py_float(value: &V, name: &str) -> Result<f64, ObjectError> {
    let f = match value {
        V::Integer(i) => i
            .as_i64()
            .map(|i| i as f64)
            .or(i.as_u64().map(|u| u as f64)),
        V::F32(f) => Some(f64::from(*f)),
        V::F64(f) => Some(*f),
        V::String(s) => {
            let text = s.as_str().unwrap_or("").trim();
            Some(text.parse::<f64>().map_err(|_| {
                ObjectError::value(format!(
                    "could not convert string to float: {}",
                    py_repr(value)
                ))
            })?)
        }
        _ => None,
    };
    f.ok_or_else(|| {
        ObjectError::new(
            "TypeError",
            format!(
                "argument {name}: must be a number, not {}",
                type_name(value)
            ),
        )
    })
}

/// Python's `int(x)` for integers and integer strings.
pub(crate) fn py_int(value: &V, name: &str) -> Result<i64, ObjectError> {
    match value {
        V::Integer(i) => i
            .as_i64()
            .ok_or_else(|| ObjectError::new("OverflowError", format!("{name} is too large"))),
        V::String(s) => s.as_str().unwrap_or("").trim().parse::<i64>().map_err(|_| {
            ObjectError::value(format!(
                "invalid literal for int() with base 10: {}",
                py_repr(value)
            ))
        }),
        _ => Err(ObjectError::new(
            "TypeError",
            format!(
                "argument {name}: must be an integer, not {}",
                type_name(value)
            ),
        )),
    }
}

fn type_name(value: &V) -> &'static str {
    match value {
        V::Nil => "NoneType",
        V::Boolean(_) => "bool",
        V::Integer(_) => "int",
        V::F32(_) | V::F64(_) => "float",
        V::String(_) => "str",
        V::Binary(_) => "bytes",
        V::Array(_) => "list",
        V::Map(_) => "dict",
        V::Ext(..) => "ext",
    }
}

/// Rank of a value's type in [`cmp_values`]; numbers share one rank.
fn rank(value: &V) -> u8 {
    match value {
        V::Nil => 0,
        V::Boolean(_) => 1,
        V::Integer(_) | V::F32(_) | V::F64(_) => 2,
        V::String(_) => 3,
        V::Binary(_) => 4,
        V::Array(_) => 5,
        V::Map(_) => 6,
        V::Ext(..) => 7,
    }
}

enum Num {
    Int(i128),
    Float(f64),
}

fn num(value: &V) -> Num {
    match value {
        V::Integer(i) => Num::Int(
            i.as_i64()
                .map(i128::from)
                .or(i.as_u64().map(i128::from))
                .unwrap_or(0),
        ),
        V::F32(f) => Num::Float(f64::from(*f)),
        V::F64(f) => Num::Float(*f),
        _ => unreachable!("num() is only called on numbers"),
    }
}

fn cmp_floats(a: f64, b: f64) -> Ordering {
    // -0.0 == 0.0 as in Python; NaN sorts above everything and equals itself,
    // which keeps the order total.
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

fn cmp_int_float(i: i128, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Less;
    }
    if f.is_infinite() {
        return if f > 0.0 {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    if f.fract() == 0.0 && f.abs() < 1e38 {
        // Exact: an integral float fits i128 here.
        return i.cmp(&(f as i128));
    }
    // A non-integral float is below 2^53, so the rounded int never ties it.
    cmp_floats(i as f64, f)
}

fn cmp_nums(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Float(x), Num::Float(y)) => cmp_floats(x, y),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).reverse(),
    }
}

/// A deterministic total order over MessagePack values: by type (nil, bool,
/// numbers, str, bytes, arrays, maps, ext), then by value. Numbers compare by
/// value across int and float (`1 == 1.0`, as Python's dict keys do).
pub(crate) fn cmp_values(a: &V, b: &V) -> Ordering {
    let (ra, rb) = (rank(a), rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (V::Nil, V::Nil) => Ordering::Equal,
        (V::Boolean(x), V::Boolean(y)) => x.cmp(y),
        (V::String(x), V::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (V::Binary(x), V::Binary(y)) => x.cmp(y),
        (V::Array(x), V::Array(y)) => cmp_seq(x.iter(), y.iter()),
        (V::Map(x), V::Map(y)) => {
            let flat_x = x.iter().flat_map(|(k, v)| [k, v]);
            let flat_y = y.iter().flat_map(|(k, v)| [k, v]);
            cmp_seq(flat_x, flat_y)
        }
        (V::Ext(tx, x), V::Ext(ty, y)) => tx.cmp(ty).then_with(|| x.cmp(y)),
        _ => cmp_nums(num(a), num(b)),
    }
}

fn cmp_seq<'a>(mut a: impl Iterator<Item = &'a V>, mut b: impl Iterator<Item = &'a V>) -> Ordering {
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match cmp_values(x, y) {
                Ordering::Equal => continue,
                other => return other,
            },
        }
    }
}

/// Python equality under [`cmp_values`].
pub(crate) fn values_eq(a: &V, b: &V) -> bool {
    cmp_values(a, b) == Ordering::Equal
}

/// A MessagePack value usable as a `BTreeMap`/`BTreeSet` key: ordered by
/// [`cmp_values`], serialized as the plain value. Maps are refused as
/// Python refuses unhashable dict keys; arrays count as tuples.
#[derive(Clone, Debug)]
pub(crate) struct Key(pub V);

impl Key {
    pub(crate) fn new(value: V) -> Result<Key, ObjectError> {
        if matches!(value, V::Map(_))
            || matches!(&value, V::Array(items) if items.iter().any(|v| matches!(v, V::Map(_))))
        {
            return Err(ObjectError::new("TypeError", "unhashable type: 'dict'"));
        }
        Ok(Key(value))
    }

    /// The key argument at `index`.
    pub(crate) fn arg(args: &Args, index: usize, name: &str) -> Result<Key, ObjectError> {
        Key::new(args.raw(index, name)?)
    }

    /// The `KeyError` Python raises for this key (its message is the key's repr).
    pub(crate) fn missing(&self) -> ObjectError {
        ObjectError::key(py_repr(&self.0))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        values_eq(&self.0, &other.0)
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_values(&self.0, &other.0)
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        V::deserialize(deserializer).map(Key)
    }
}

fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{f:?}")
    }
}

/// Python's `str()` of a value (strings unquoted), as ConCoord's `__str__`
/// methods print items.
pub(crate) fn py_str(value: &V) -> String {
    match value {
        V::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => py_repr(other),
    }
}

/// Python's `repr()` of a value (strings quoted), as in `KeyError('x')`.
pub(crate) fn py_repr(value: &V) -> String {
    match value {
        V::Nil => "None".into(),
        V::Boolean(true) => "True".into(),
        V::Boolean(false) => "False".into(),
        V::Integer(i) => i.to_string(),
        V::F32(f) => py_float_repr(f64::from(*f)),
        V::F64(f) => py_float_repr(*f),
        V::String(s) => format!(
            "'{}'",
            String::from_utf8_lossy(s.as_bytes()).replace('\'', "\\'")
        ),
        V::Binary(b) => format!("b'{}'", b.escape_ascii()),
        V::Array(items) => format!(
            "[{}]",
            items.iter().map(py_repr).collect::<Vec<_>>().join(", ")
        ),
        V::Map(pairs) => format!(
            "{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!("{}: {}", py_repr(k), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        V::Ext(tag, data) => format!("ExtType(code={tag}, data=b'{}')", data.escape_ascii()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_python_like_and_total() {
        let one = V::from(1);
        assert_eq!(cmp_values(&one, &V::from(1.0)), Ordering::Equal);
        assert_eq!(cmp_values(&V::from(-0.0), &V::from(0)), Ordering::Equal);
        assert_eq!(cmp_values(&one, &V::from(1.5)), Ordering::Less);
        assert_eq!(
            cmp_values(&V::from(u64::MAX), &V::from(-1)),
            Ordering::Greater
        );
        assert_eq!(
            cmp_values(&V::from(f64::NAN), &V::from(f64::NAN)),
            Ordering::Equal
        );
        assert_eq!(
            cmp_values(&V::from(f64::INFINITY), &V::from(i64::MAX)),
            Ordering::Greater
        );
        assert_eq!(cmp_values(&V::from("b"), &V::from("a")), Ordering::Greater);
        assert_eq!(cmp_values(&V::from(5), &V::from("a")), Ordering::Less);
        assert!(Key::new(V::Map(vec![])).is_err());
        assert!(Key::new(V::Array(vec![V::from(1)])).is_ok());
    }

    #[test]
    fn str_and_repr() {
        assert_eq!(py_str(&V::from("a b")), "a b");
        assert_eq!(py_repr(&V::from("it's")), "'it\\'s'");
        assert_eq!(
            py_repr(&V::Array(vec![
                V::from(1),
                V::from(2.0),
                V::Nil,
                V::from(true)
            ])),
            "[1, 2.0, None, True]"
        );
    }
}

/// Hands out fencing tokens: every grant of a lock or permit gets one that
/// is larger than any this object gave before, and, being built from the
/// grant's slot, larger than any a deleted object of the same name gave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fence {
    last: u64,
}

impl Fence {
    /// Grants per slot before tokens run ahead of the slot (they stay unique
    /// and growing either way).
    const SLOT_SHIFT: u32 = 16;

    pub(crate) fn next(&mut self, slot: u64) -> u64 {
        let token = (self.last + 1).max(slot.saturating_mul(1 << Self::SLOT_SHIFT));
        self.last = token;
        token
    }
}

/// The kind of error a fenced write with an old token gets.
pub const STALE_TOKEN: &str = "StaleToken";
