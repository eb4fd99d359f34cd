//! `itemsaver export`: every stored item to a writer, as JSON lines or CSV.

use crate::store::{ExportError, Store};
use common::{Item, Value};
use std::io::Write;

/// Output formats for export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line: id, url, kind, task and the payload fields.
    Jsonl,
    /// A header row, then one row per item; payload fields are columns, non-text values JSON.
    Csv,
}

/// Writes every item of `store` to `out` in `format`.
pub fn export(store: &Store, format: Format, out: impl Write) -> Result<(), ExportError> {
    match format {
        Format::Jsonl => jsonl(store, out),
        Format::Csv => csv(store, out),
    }
}

/// The fields every exported record starts with; payload fields of the same name are shadowed.
const CORE_FIELDS: [&str; 4] = ["id", "url", "kind", "task"];

fn jsonl(store: &Store, mut out: impl Write) -> Result<(), ExportError> {
    store.for_each(|item| {
        let mut obj = serde_json::Map::new();
        let Item {
            id,
            url,
            kind,
            task,
            payload,
        } = item;
        for (k, v) in CORE_FIELDS.iter().zip([id, url, kind, task]) {
            obj.insert((*k).into(), serde_json::Value::String(v));
        }
        for (k, v) in payload {
            obj.entry(k).or_insert_with(|| v.to_json());
        }
        serde_json::to_writer(&mut out, &obj)?;
        out.write_all(b"\n")
    })?;
    out.flush()?;
    Ok(())
}

fn csv(store: &Store, out: impl Write) -> Result<(), ExportError> {
    let fields: Vec<String> = store
        .payload_fields()?
        .into_iter()
        .filter(|f| !CORE_FIELDS.contains(&f.as_str()))
        .collect();
    let mut writer = csv::Writer::from_writer(out);
    let io = |e: csv::Error| std::io::Error::other(e);
    let header = CORE_FIELDS
        .iter()
        .map(|s| s.to_string())
        .chain(fields.iter().cloned());
    writer.write_record(header).map_err(io)?;
    store.for_each(|item| {
        let mut row = vec![item.id, item.url, item.kind, item.task];
        for f in &fields {
            row.push(match item.payload.get(f) {
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

    fn store_with_items() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("items.db")).expect("open");
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
        export(&store, Format::Jsonl, &mut out).expect("export");
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
        export(&store, Format::Csv, &mut out).expect("export");
        let text = String::from_utf8(out).expect("utf8");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("id,url,kind,task,price,tags,title"));
        assert_eq!(
            lines.next(),
            Some("1,http://a.test/1,page,t,,\"[\"\"a\"\",\"\"b\"\"]\",\"Hello, \"\"world\"\"\"")
        );
        assert_eq!(lines.next(), Some("2,http://a.test/2,offer,t,9.5,,"));
    }
}
