//! A field value that survives bincode, which is not self-describing.
//!
//! `serde_json::Value` cannot cross bincode (it needs `deserialize_any`), so item payloads use
//! this externally tagged enum instead, and convert to JSON only at the edges (export, SQLite).
//! Values do not nest (a list holds scalars), so no peer can send a structure deep enough to
//! exhaust the stack while it is decoded.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The fields of an item, by name; ordered so that output is deterministic.
pub type Payload = BTreeMap<String, Value>;

/// One field value of an item: a scalar, or a list of scalars.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// No value (a missing optional field).
    Null,
    /// A boolean.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    Text(String),
    /// Every match of a field that takes all of them.
    List(Vec<Scalar>),
}

/// One element of a [`Value::List`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Scalar {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    Text(String),
}

impl Scalar {
    /// Converts the scalar to JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Scalar::Null => serde_json::Value::Null,
            Scalar::Bool(b) => serde_json::Value::Bool(*b),
            Scalar::Int(i) => serde_json::Value::from(*i),
            Scalar::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Scalar::Text(s) => serde_json::Value::String(s.clone()),
        }
    }

    /// Converts JSON to a scalar; arrays and objects become their JSON text.
    pub fn from_json(json: &serde_json::Value) -> Scalar {
        match json {
            serde_json::Value::Null => Scalar::Null,
            serde_json::Value::Bool(b) => Scalar::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Scalar::Int(i),
                None => n.as_f64().map_or(Scalar::Null, Scalar::Float),
            },
            serde_json::Value::String(s) => Scalar::Text(s.clone()),
            other => Scalar::Text(other.to_string()),
        }
    }
}

impl Value {
    /// Converts the value to JSON for export and storage.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::List(items) => {
                serde_json::Value::Array(items.iter().map(Scalar::to_json).collect())
            }
            Value::Null => Scalar::Null.to_json(),
            Value::Bool(b) => Scalar::Bool(*b).to_json(),
            Value::Int(i) => Scalar::Int(*i).to_json(),
            Value::Float(f) => Scalar::Float(*f).to_json(),
            Value::Text(s) => serde_json::Value::String(s.clone()),
        }
    }

    /// Converts JSON back to a value, as read from storage.
    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Array(items) => {
                Value::List(items.iter().map(Scalar::from_json).collect())
            }
            other => Value::from(Scalar::from_json(other)),
        }
    }

    /// Roughly how many bytes the value takes: its text, plus 16 bytes a list element (so
    /// a byte limit also bounds how many elements a message holds; see `budget`).
    pub fn approx_bytes(&self) -> usize {
        let scalar = |s: &Scalar| match s {
            Scalar::Text(t) => t.len() + 16,
            _ => 16,
        };
        match self {
            Value::Text(s) => s.len() + 8,
            Value::List(items) => 8 + items.iter().map(scalar).sum::<usize>(),
            _ => 8,
        }
    }

    /// Returns the text when the value is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl From<Scalar> for Value {
    fn from(s: Scalar) -> Self {
        match s {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Int(i) => Value::Int(i),
            Scalar::Float(f) => Value::Float(f),
            Scalar::Text(t) => Value::Text(t),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

/// Converts a whole payload to a JSON object.
pub fn payload_to_json(payload: &Payload) -> serde_json::Map<String, serde_json::Value> {
    payload
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect()
}

/// Converts a JSON object back to a payload; anything else gives an empty payload.
pub fn payload_from_json(json: &serde_json::Value) -> Payload {
    match json {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), Value::from_json(v)))
            .collect(),
        _ => Payload::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Payload {
        let mut p = Payload::new();
        p.insert("title".into(), "Hello, 世界".into());
        p.insert("count".into(), Value::Int(-42));
        p.insert("price".into(), Value::Float(1.5));
        p.insert("ok".into(), Value::Bool(true));
        p.insert("none".into(), Value::Null);
        p.insert(
            "tags".into(),
            Value::List(vec![Scalar::Text("a".into()), Scalar::Null, Scalar::Int(3)]),
        );
        p
    }

    #[test]
    fn payload_round_trips_through_bincode() {
        let p = sample();
        let bytes = bincode::serialize(&p).expect("serialize");
        let back: Payload = bincode::deserialize(&bytes).expect("deserialize");
        assert_eq!(back, p);
    }

    #[test]
    fn payload_round_trips_through_json() {
        let p = sample();
        let json = serde_json::Value::Object(payload_to_json(&p));
        assert_eq!(payload_from_json(&json), p);
    }

    #[test]
    fn nested_json_is_flattened_to_text() {
        let json = serde_json::json!({"deep": [[1, 2], {"a": 1}]});
        let p = payload_from_json(&json);
        assert_eq!(
            p["deep"],
            Value::List(vec![
                Scalar::Text("[1,2]".into()),
                Scalar::Text("{\"a\":1}".into())
            ])
        );
    }

    #[test]
    fn non_finite_float_becomes_null_in_json() {
        assert_eq!(Value::Float(f64::NAN).to_json(), serde_json::Value::Null);
    }
}
