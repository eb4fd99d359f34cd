//! Decoding a peer's items on a budget: one message may carry at most [`MAX_ELEMENTS`] items,
//! fields and list values together.
//!
//! The frame limit bounds bytes, not memory: in bincode a null list value is one byte on the
//! wire and 32 in memory, so a full frame of them would decode into a gigabyte. Counting
//! elements while decoding stops such a message after a bounded amount of work and memory.

use crate::value::{Payload, Scalar, Value};
use crate::wire::{FollowUp, Item, PageYield};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

/// Items, payload fields and list values one message may carry in all.
pub const MAX_ELEMENTS: usize = 1_000_000;

/// Most elements reserved up front from a length the peer announced.
const MAX_PREALLOCATE: usize = 4_096;

/// Decodes a list of items, refusing it once it holds more than [`MAX_ELEMENTS`] elements;
/// for `#[serde(deserialize_with)]` on the wire types that carry items.
pub fn items<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Item>, D::Error> {
    let budget = Budget(Cell::new(MAX_ELEMENTS));
    deserializer.deserialize_seq(ItemsVisitor(&budget))
}

/// Page yields one batch may carry (one per page and kind of position-keyed items).
pub const MAX_PAGE_YIELDS: usize = 100_000;

/// Follow-up links one page's result may carry.
pub const MAX_FOLLOW_UPS: usize = 100_000;

/// Metadata entries one request may carry.
pub const MAX_META: usize = 1_000;

/// Decodes a batch's page yields, refusing more than [`MAX_PAGE_YIELDS`].
pub fn page_yields<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PageYield>, D::Error> {
    d.deserialize_seq(Capped::<Vec<PageYield>>::new(
        MAX_PAGE_YIELDS,
        "page yields",
    ))
}

/// Decodes a page's follow-up links, refusing more than [`MAX_FOLLOW_UPS`].
pub fn follow_ups<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FollowUp>, D::Error> {
    d.deserialize_seq(Capped::<Vec<FollowUp>>::new(MAX_FOLLOW_UPS, "links"))
}

/// Decodes a request's metadata, refusing more than [`MAX_META`] entries.
pub fn meta<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    d.deserialize_map(Capped::<BTreeMap<String, String>>::new(
        MAX_META,
        "metadata entries",
    ))
}

/// A list or map of at most `max` entries.
struct Capped<T> {
    max: usize,
    what: &'static str,
    out: std::marker::PhantomData<T>,
}

impl<T> Capped<T> {
    fn new(max: usize, what: &'static str) -> Self {
        Capped {
            max,
            what,
            out: std::marker::PhantomData,
        }
    }

    fn over<E: de::Error>(&self) -> E {
        E::custom(format!(
            "more than {} {} in one message",
            self.max, self.what
        ))
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Capped<Vec<T>> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list of at most {} {}", self.max, self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::with_capacity(capacity(seq.size_hint()));
        while let Some(v) = seq.next_element()? {
            if out.len() == self.max {
                return Err(self.over());
            }
            out.push(v);
        }
        Ok(out)
    }
}

impl<'de> Visitor<'de> for Capped<BTreeMap<String, String>> {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a map of at most {} {}", self.max, self.what)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry()? {
            if out.len() == self.max {
                return Err(self.over());
            }
            out.insert(k, v);
        }
        Ok(out)
    }
}

/// What is left to spend.
struct Budget(Cell<usize>);

impl Budget {
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        let left = self.0.get();
        if left == 0 {
            return Err(E::custom(format!(
                "more than {MAX_ELEMENTS} items, fields and values in one message"
            )));
        }
        self.0.set(left - 1);
        Ok(())
    }
}

fn capacity(hint: Option<usize>) -> usize {
    hint.unwrap_or(0).min(MAX_PREALLOCATE)
}

struct ItemsVisitor<'a>(&'a Budget);

impl<'de> Visitor<'de> for ItemsVisitor<'_> {
    type Value = Vec<Item>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Item>, A::Error> {
        let mut out = Vec::with_capacity(capacity(seq.size_hint()));
        while let Some(item) = seq.next_element_seed(ItemSeed(self.0))? {
            out.push(item);
        }
        Ok(out)
    }
}

const ITEM_FIELDS: &[&str] = &["id", "url", "kind", "task", "payload"];

struct ItemSeed<'a>(&'a Budget);

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Item;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Item, D::Error> {
        self.0.spend()?;
        d.deserialize_struct("Item", ITEM_FIELDS, self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an item")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
        let mut text = |i: usize| -> Result<String, A::Error> {
            seq.next_element()?
                .ok_or_else(|| de::Error::invalid_length(i, &self))
        };
        let (id, url, kind, task) = (text(0)?, text(1)?, text(2)?, text(3)?);
        let payload = seq
            .next_element_seed(PayloadSeed(self.0))?
            .ok_or_else(|| de::Error::invalid_length(4, &self))?;
        Ok(Item {
            id,
            url,
            kind,
            task,
            payload,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let (mut id, mut url, mut kind, mut task, mut payload) = (None, None, None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "id" => id = Some(map.next_value()?),
                "url" => url = Some(map.next_value()?),
                "kind" => kind = Some(map.next_value()?),
                "task" => task = Some(map.next_value()?),
                "payload" => payload = Some(map.next_value_seed(PayloadSeed(self.0))?),
                other => return Err(de::Error::unknown_field(other, ITEM_FIELDS)),
            }
        }
        let missing = |name| de::Error::missing_field(name);
        Ok(Item {
            id: id.ok_or_else(|| missing("id"))?,
            url: url.ok_or_else(|| missing("url"))?,
            kind: kind.ok_or_else(|| missing("kind"))?,
            task: task.ok_or_else(|| missing("task"))?,
            payload: payload.ok_or_else(|| missing("payload"))?,
        })
    }
}

struct PayloadSeed<'a>(&'a Budget);

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = Payload;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Payload, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PayloadSeed<'_> {
    type Value = Payload;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an item's fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Payload, A::Error> {
        let mut payload = Payload::new();
        while let Some(key) = map.next_key::<String>()? {
            self.0.spend()?;
            let value = map.next_value_seed(ValueSeed(self.0))?;
            payload.insert(key, value);
        }
        Ok(payload)
    }
}

/// The variants of [`Value`], in declaration order (bincode sends the index).
#[derive(Deserialize)]
#[serde(variant_identifier)]
enum ValueTag {
    Null,
    Bool,
    Int,
    Float,
    Text,
    List,
}

const VALUE_VARIANTS: &[&str] = &["Null", "Bool", "Int", "Float", "Text", "List"];

struct ValueSeed<'a>(&'a Budget);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_enum("Value", VALUE_VARIANTS, self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field value")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        use serde::de::VariantAccess;
        let (tag, variant) = data.variant::<ValueTag>()?;
        Ok(match tag {
            ValueTag::Null => {
                variant.unit_variant()?;
                Value::Null
            }
            ValueTag::Bool => Value::Bool(variant.newtype_variant()?),
            ValueTag::Int => Value::Int(variant.newtype_variant()?),
            ValueTag::Float => Value::Float(variant.newtype_variant()?),
            ValueTag::Text => Value::Text(variant.newtype_variant()?),
            ValueTag::List => Value::List(variant.newtype_variant_seed(ListSeed(self.0))?),
        })
    }
}

struct ListSeed<'a>(&'a Budget);

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = Vec<Scalar>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Scalar>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = Vec<Scalar>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Scalar>, A::Error> {
        let mut out = Vec::with_capacity(capacity(seq.size_hint()));
        while let Some(scalar) = seq.next_element()? {
            self.0.spend()?;
            out.push(scalar);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ParseResult;
    use bincode::Options;

    fn item(payload: Payload) -> Item {
        Item {
            id: "i".into(),
            url: "http://a.test/".into(),
            kind: "k".into(),
            task: "t".into(),
            payload,
        }
    }

    fn round_trip(result: &ParseResult) -> Result<ParseResult, bincode::Error> {
        let options = bincode::DefaultOptions::new();
        options.deserialize(&options.serialize(result).expect("serialize"))
    }

    #[test]
    fn every_value_kind_survives_the_budgeted_decoder() {
        let mut payload = Payload::new();
        payload.insert("null".into(), Value::Null);
        payload.insert("bool".into(), Value::Bool(true));
        payload.insert("int".into(), Value::Int(-7));
        payload.insert("float".into(), Value::Float(1.5));
        payload.insert("text".into(), Value::Text("héllo".into()));
        payload.insert(
            "list".into(),
            Value::List(vec![Scalar::Null, Scalar::Int(2), Scalar::Text("x".into())]),
        );
        let result = ParseResult {
            items: vec![item(payload), item(Payload::new())],
            ..ParseResult::default()
        };
        assert_eq!(round_trip(&result).expect("decode"), result);
        let json = serde_json::to_string(&result.items[0]).expect("json");
        let back: Item = ItemSeed(&Budget(Cell::new(100)))
            .deserialize(&mut serde_json::Deserializer::from_str(&json))
            .expect("json decode");
        assert_eq!(back, result.items[0]);
    }

    #[test]
    fn lists_of_links_and_metadata_are_capped() {
        let options = bincode::DefaultOptions::new();
        let result = ParseResult {
            requests: vec![
                FollowUp {
                    url: String::new(),
                    parser: None,
                };
                MAX_FOLLOW_UPS + 1
            ],
            ..ParseResult::default()
        };
        let bytes = options.serialize(&result).expect("serialize");
        let err = options
            .deserialize::<ParseResult>(&bytes)
            .expect_err("too many links");
        assert!(err.to_string().contains("links"), "{err}");
        let request = crate::wire::Request {
            url: "http://a.test/".into(),
            parser: "links".into(),
            depth: 0,
            task: "t".into(),
            meta: (0..=MAX_META)
                .map(|i| (i.to_string(), String::new()))
                .collect(),
            spider: None,
        };
        let bytes = options.serialize(&request).expect("serialize");
        assert!(options.deserialize::<crate::wire::Request>(&bytes).is_err());
    }

    #[test]
    fn a_message_of_millions_of_tiny_values_is_refused() {
        let mut payload = Payload::new();
        payload.insert(
            "nulls".into(),
            Value::List(vec![Scalar::Null; MAX_ELEMENTS + 1]),
        );
        let result = ParseResult {
            items: vec![item(payload)],
            ..ParseResult::default()
        };
        let err = round_trip(&result).expect_err("over the budget");
        assert!(err.to_string().contains("more than"), "{err}");
    }
}
