//! JSON on the command line ⇄ MessagePack on the wire.

use concoord_objects::rmpv;

/// Parses whitespace-separated JSON values (`1 "two" [3, 4]`).
pub fn parse_json_args(text: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut values = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    for (i, value) in stream.enumerate() {
        values.push(value.map_err(|e| {
            format!(
                "argument {} is not JSON ({e}); quote strings, e.g. '\"text\"'",
                i + 1
            )
        })?);
    }
    Ok(values)
}

/// Parses each command-line argument as one JSON value.
pub fn parse_each(args: &[String]) -> Result<Vec<serde_json::Value>, String> {
    args.iter()
        .enumerate()
        .map(|(i, a)| {
            serde_json::from_str(a).map_err(|e| {
                format!(
                    "argument {} ({a:?}) is not JSON ({e}); quote strings, e.g. '\"text\"'",
                    i + 1
                )
            })
        })
        .collect()
}

/// Encodes JSON values as the MessagePack argument array of a call.
pub fn encode_args(values: &[serde_json::Value]) -> Vec<u8> {
    let array: Vec<rmpv::Value> = values.iter().map(json_to_msgpack).collect();
    concoord_objects::encode_value(&rmpv::Value::Array(array))
}

fn json_to_msgpack(value: &serde_json::Value) -> rmpv::Value {
    match value {
        serde_json::Value::Null => rmpv::Value::Nil,
        serde_json::Value::Bool(b) => rmpv::Value::Boolean(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                rmpv::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                rmpv::Value::from(u)
            } else {
                rmpv::Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => rmpv::Value::from(s.as_str()),
        serde_json::Value::Array(a) => rmpv::Value::Array(a.iter().map(json_to_msgpack).collect()),
        serde_json::Value::Object(o) => rmpv::Value::Map(
            o.iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), json_to_msgpack(v)))
                .collect(),
        ),
    }
}

/// Decodes a MessagePack result as JSON (binary becomes an array of bytes).
pub fn result_to_json(bytes: &[u8]) -> Result<serde_json::Value, String> {
    let value = rmpv::decode::read_value(&mut &bytes[..])
        .map_err(|e| format!("undecodable result: {e}"))?;
    Ok(msgpack_to_json(&value))
}

fn msgpack_to_json(value: &rmpv::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        rmpv::Value::Nil => J::Null,
        rmpv::Value::Boolean(b) => J::Bool(*b),
        rmpv::Value::Integer(i) => i
            .as_i64()
            .map(J::from)
            .or_else(|| i.as_u64().map(J::from))
            .unwrap_or(J::Null),
        rmpv::Value::F32(f) => J::from(*f as f64),
        rmpv::Value::F64(f) => J::from(*f),
        rmpv::Value::String(s) => J::String(s.as_str().unwrap_or_default().to_string()),
        rmpv::Value::Binary(b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
        rmpv::Value::Array(a) => J::Array(a.iter().map(msgpack_to_json).collect()),
        rmpv::Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k {
                        rmpv::Value::String(s) => s.as_str().unwrap_or_default().to_string(),
                        other => other.to_string(),
                    };
                    (key, msgpack_to_json(v))
                })
                .collect(),
        ),
        rmpv::Value::Ext(_, b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_arguments_round_trip_through_msgpack() {
        let args = parse_json_args(r#"1 "two" [3, 4.5] {"k": null} true"#).unwrap();
        let bytes = encode_args(&args);
        let back = result_to_json(&bytes).unwrap();
        assert_eq!(
            back,
            serde_json::json!([1, "two", [3, 4.5], {"k": null}, true])
        );
    }

    #[test]
    fn bare_words_are_refused_with_a_hint() {
        let err = parse_each(&["hello".to_string()]).unwrap_err();
        assert!(err.contains("quote strings"), "{err}");
    }
}
