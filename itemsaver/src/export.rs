//! `itemsaver export`: the stored items a filter admits, streamed to a writer as JSON Lines,
//! CSV or one JSON array, one item in memory at a time.

use crate::store::{ExportError, Filter, ItemStore, Stored};
use common::{Item, Value};
use std::io::Write;

/// Output formats for export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line: id, url, kind, task, stored_at, updated_at and the payload
    /// fields.
    Jsonl,
    /// A header row, then one row per item; payload fields are columns (the union of the
    /// exported items' fields, sorted), non-text values JSON.
    Csv,
    /// One JSON array of the same objects as `jsonl`.
    Json,
}

/// Writes the items of `store` that `filter` admits to `out` in `format`.
pub fn export(
    store: &dyn ItemStore,
    filter: &Filter,
    format: Format,
    out: impl Write,
) -> Result<(), ExportError> {
    match format {
        Format::Jsonl => json(store, filter, out, Framing::Lines),
        Format::Json => json(store, filter, out, Framing::Array),
        Format::Csv => csv(store, filter, out),
    }
}

/// The fields every exported record starts with; payload fields of the same name are shadowed.
const CORE_FIELDS: [&str; 6] = ["id", "url", "kind", "task", "stored_at", "updated_at"];

/// A time as exports show it: RFC 3339 in UTC, to the millisecond.
fn time(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The core fields of `stored`, in [`CORE_FIELDS`] order, and its payload.
fn core(stored: Stored) -> ([String; 6], common::Payload) {
    let Stored {
        item,
        first_stored_ms,
        updated_ms,
    } = stored;
    let Item {
        id,
        url,
        kind,
        task,
        payload,
    } = item;
    let fields = [id, url, kind, task, time(first_stored_ms), time(updated_ms)];
    (fields, payload)
}

/// How JSON records are put together.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// One per line.
    Lines,
    /// In one array, one per line.
    Array,
}

fn json(
    store: &dyn ItemStore,
    filter: &Filter,
    mut out: impl Write,
    framing: Framing,
) -> Result<(), ExportError> {
    let mut first = true;
    if framing == Framing::Array {
        out.write_all(b"[")?;
    }
    store.for_each(filter, &mut |stored| {
        let (fields, payload) = core(stored);
        let mut obj = serde_json::Map::new();
        for (k, v) in CORE_FIELDS.iter().zip(fields) {
            obj.insert((*k).into(), serde_json::Value::String(v));
        }
        for (k, v) in payload {
            obj.entry(k).or_insert_with(|| v.to_json());
        }
        match framing {
            Framing::Lines => {}
            Framing::Array if first => out.write_all(b"\n")?,
            Framing::Array => out.write_all(b",\n")?,
        }
        first = false;
        serde_json::to_writer(&mut out, &obj)?;
        if framing == Framing::Lines {
            out.write_all(b"\n")?;
        }
        Ok(())
    })?;
    if framing == Framing::Array {
        out.write_all(b"\n]\n")?;
    }
    out.flush()?;
    Ok(())
}

fn csv(store: &dyn ItemStore, filter: &Filter, out: impl Write) -> Result<(), ExportError> {
    let fields: Vec<String> = store
        .payload_fields(filter)?
        .into_iter()
        .filter(|f| !CORE_FIELDS.contains(&f.as_str()))
        .collect();
    let mut writer = csv::Writer::from_writer(out);
    // An I/O error keeps its kind (a reader that went away is a broken pipe, not a failure).
    let io = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::other(format!("{other:?}")),
    };
    let header = CORE_FIELDS
        .iter()
        .map(|s| s.to_string())
        .chain(fields.iter().cloned());
    writer.write_record(header).map_err(io)?;
    store.for_each(filter, &mut |stored| {
        let (core, payload) = core(stored);
        let mut row = Vec::from(core);
        for f in &fields {
            row.push(match payload.get(f) {
                None | Some(Value::Null) => String::new(),
                Some(Value::Text(s)) => s.clone(),
                Some(other) => other.to_json().to_string(),
            });
        }
        writer.write_record(&row).map_err(io)
    })?;
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{Payload, Scalar};

    fn store_with_items() -> (tempfile::TempDir, crate::store::SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::SqliteStore::open(dir.path().join("items.db")).expect("open");
        let mut p = Payload::new();
        p.insert("title".into(), Value::Text("Hello, \"world\"".into()));
        p.insert(
            "tags".into(),
            Value::List(vec![Scalar::Text("a".into()), Scalar::Text("b".into())]),
        );
        let mut q = Payload::new();
        q.insert("price".into(), Value::Float(9.5));
        store
            .save(
                &[
                    Item {
                        id: "1".into(),
                        url: "http://a.test/1".into(),
                        kind: "page".into(),
                        task: "t".into(),
                        payload: p,
                    },
                    Item {
                        id: "2".into(),
                        url: "http://a.test/2".into(),
                        kind: "offer".into(),
                        task: "t".into(),
                        payload: q,
                    },
                ],
                &[],
            )
            .expect("save");
        (dir, store)
    }

    #[test]
    fn jsonl_has_core_and_payload_fields() {
        let (_dir, store) = store_with_items();
        let mut out = Vec::new();
        export(&store, &Filter::default(), Format::Jsonl, &mut out).expect("export");
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["id"], "1");
        assert_eq!(lines[0]["task"], "t");
        assert_eq!(lines[0]["title"], "Hello, \"world\"");
        assert_eq!(lines[0]["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(lines[1]["price"], 9.5);
    }

    #[test]
    fn csv_has_a_column_per_payload_field() {
        let (_dir, store) = store_with_items();
        let mut out = Vec::new();
        export(&store, &Filter::default(), Format::Csv, &mut out).expect("export");
        let text = String::from_utf8(out).expect("utf8");
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("id,url,kind,task,stored_at,updated_at,price,tags,title")
        );
        let (one, two) = (lines.next().expect("row"), lines.next().expect("row"));
        assert!(one.starts_with("1,http://a.test/1,page,t,20"), "{one}");
        assert!(
            one.ends_with(",,\"[\"\"a\"\",\"\"b\"\"]\",\"Hello, \"\"world\"\"\""),
            "{one}"
        );
        assert!(two.starts_with("2,http://a.test/2,offer,t,20"), "{two}");
        assert!(two.ends_with(",9.5,,"), "{two}");
    }
}
