//! A field value that survives bincode, which is not self-describing.
//!
//! `serde_json::Value` cannot cross bincode (it needs `deserialize_any`), so item payloads use
//! this externally tagged enum instead, and convert to JSON only at the edges (export, SQLite).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The fields of an item, by name; ordered so that output is deterministic.
pub type Payload = BTreeMap<String, Value>;

/// One field value of an item.
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
    /// A list of values, for fields that take every match.
    List(Vec<Value>),
    /// Nested named values.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// Converts the value to JSON for export and storage.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Text(s) => serde_json::Value::String(s.clone()),
            Value::List(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            Value::Map(map) => serde_json::Value::Object(
                map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
            ),
        }
    }

    /// Converts JSON back to a value, as read from storage.
    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => n.as_f64().map(Value::Float).unwrap_or(Value::Null),
            },
            serde_json::Value::String(s) => Value::Text(s.clone()),
            serde_json::Value::Array(items) => {
                Value::List(items.iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Payload {
        let mut nested = BTreeMap::new();
        nested.insert("inner".to_owned(), Value::Float(1.5));
        let mut p = Payload::new();
        p.insert("title".into(), "Hello, 世界".into());
        p.insert("count".into(), Value::Int(-42));
        p.insert(
            "tags".into(),
            Value::List(vec!["a".into(), Value::Null, Value::Bool(true)]),
        );
        p.insert("nested".into(), Value::Map(nested));
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
        let back = match Value::from_json(&json) {
            Value::Map(m) => m,
            other => panic!("expected a map, got {other:?}"),
        };
        assert_eq!(back, p);
    }

    #[test]
    fn non_finite_float_becomes_null_in_json() {
        assert_eq!(Value::Float(f64::NAN).to_json(), serde_json::Value::Null);
    }
}
