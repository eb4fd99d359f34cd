//! The JSON Lines item store: one object per item appended to a file, each batch written and
//! fsynced before it is acknowledged. It never updates in place, so an item stored twice
//! (a re-crawl, or a batch re-sent after a lost acknowledgement or a crash mid-batch) is there
//! twice, and the position-keyed items a page no longer yields are not deleted. One process
//! appends to a file at a time.

use super::{ExportError, Filter, ItemStore, StoreError, Stored, now_ms};
use common::value::{payload_from_json, payload_to_json};
use common::{Item, PageYield};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One line of the file.
#[derive(Serialize, Deserialize)]
struct Line {
    task: String,
    id: String,
    url: String,
    kind: String,
    payload: serde_json::Map<String, serde_json::Value>,
    /// When it was written (Unix milliseconds).
    stored_at: i64,
}

/// An append-only JSON Lines file of items.
#[derive(Debug)]
pub struct JsonlStore {
    /// The appending handle; `None` for a reader (see [`JsonlStore::open_read`]).
    file: Option<Mutex<Appender>>,
    path: PathBuf,
    /// A reader's end: what was in the file when it was opened.
    until: Option<u64>,
}

#[derive(Debug)]
struct Appender {
    file: File,
    /// Set when a failed batch could not be taken back out of the file: nothing more is
    /// appended after a torn line.
    broken: bool,
}

impl JsonlStore {
    /// Opens (creating if needed) the file at `path` for appending. A last line cut short
    /// (the process died mid-write, before the batch was acknowledged, so the engine sends it
    /// again) is cut off.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let whole = whole_lines(&mut file).map_err(io)?;
        if whole < file.metadata().map_err(io)?.len() {
            file.set_len(whole).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        Ok(JsonlStore {
            file: Some(Mutex::new(Appender {
                file,
                broken: false,
            })),
            path,
            until: None,
        })
    }

    /// Opens the file at `path` to read what it holds now, as an export does: it changes
    /// nothing (a writer may be appending), and reads no further than the file's whole lines
    /// at this moment, so that every pass of one export sees the same items.
    pub fn open_read(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut file = File::open(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        let until = whole_lines(&mut file).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(JsonlStore {
            file: None,
            path,
            until: Some(until),
        })
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads every line, in order, calling `visit` with each item.
    fn scan(
        &self,
        mut visit: impl FnMut(Stored) -> Result<(), ExportError>,
    ) -> Result<(), ExportError> {
        // A reader of its own: appends go on while an export reads.
        let file = File::open(&self.path).map_err(|e| self.io(e))?;
        let mut reader = BufReader::new(file.take(self.until.unwrap_or(u64::MAX)));
        let mut text = String::new();
        let mut number = 0u64;
        loop {
            text.clear();
            if reader.read_line(&mut text).map_err(|e| self.io(e))? == 0 {
                return Ok(());
            }
            number += 1;
            if !text.ends_with('\n') {
                // Being written now: not acknowledged yet.
                return Ok(());
            }
            let line: Line = serde_json::from_str(&text).map_err(|source| StoreError::Payload {
                path: self.path.clone(),
                id: format!("on line {number}"),
                source,
            })?;
            visit(Stored {
                item: Item {
                    task: line.task,
                    id: line.id,
                    url: line.url,
                    kind: line.kind,
                    payload: payload_from_json(&serde_json::Value::Object(line.payload)),
                },
                first_stored_ms: line.stored_at,
                updated_ms: line.stored_at,
            })?;
        }
    }
}

/// The length of `file` up to the end of its last whole line.
fn whole_lines(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl ItemStore for JsonlStore {
    fn save(&self, batch: &[Item], _yields: &[PageYield]) -> Result<u64, StoreError> {
        let stored_at = now_ms();
        let mut text = Vec::new();
        for item in batch {
            let line = Line {
                task: item.task.clone(),
                id: item.id.clone(),
                url: item.url.clone(),
                kind: item.kind.clone(),
                payload: payload_to_json(&item.payload),
                stored_at,
            };
            // Plain strings and JSON values always serialize.
            serde_json::to_writer(&mut text, &line).map_err(|e| self.io(e.into()))?;
            text.push(b'\n');
        }
        let Some(appender) = &self.file else {
            return Err(self.io(std::io::Error::other("opened to read only")));
        };
        let mut appender = appender
            .lock()
            .map_err(|_| StoreError::Poisoned(self.path.clone()))?;
        if appender.broken {
            return Err(self.io(std::io::Error::other(
                "a failed write could not be taken back; restart the itemsaver to cut it off",
            )));
        }
        let file = &mut appender.file;
        let before = file.metadata().map_err(|e| self.io(e))?.len();
        let written = file.write_all(&text).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // What of a failed batch reached the file goes (it is sent again whole); should
            // that fail too, nothing more is appended after it.
            if file.set_len(before).is_err() {
                appender.broken = true;
            }
            return Err(self.io(e));
        }
        Ok(batch.len() as u64)
    }

    fn count(&self, task: Option<&str>) -> Result<u64, StoreError> {
        let mut n = 0;
        let counted = self.scan(|stored| {
            if task.is_none_or(|t| t == stored.item.task) {
                n += 1;
            }
            Ok(())
        });
        match counted {
            Ok(()) => Ok(n),
            Err(ExportError::Store(e)) => Err(e),
            Err(ExportError::Io(e)) => Err(self.io(e)),
        }
    }

    fn for_each(
        &self,
        filter: &Filter,
        visit: &mut dyn FnMut(Stored) -> std::io::Result<()>,
    ) -> Result<(), ExportError> {
        self.scan(|stored| {
            if filter.admits(&stored) {
                visit(stored)?;
            }
            Ok(())
        })
    }

    fn payload_fields(&self, filter: &Filter) -> Result<Vec<String>, StoreError> {
        let mut fields = std::collections::BTreeSet::new();
        let read = self.scan(|stored| {
            if filter.admits(&stored) {
                for key in stored.item.payload.keys() {
                    if !fields.contains(key) {
                        fields.insert(key.clone());
                    }
                }
            }
            Ok(())
        });
        match read {
            Ok(()) => Ok(fields.into_iter().collect()),
            Err(ExportError::Store(e)) => Err(e),
            Err(ExportError::Io(e)) => Err(self.io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{Payload, Value};

    fn item(task: &str, id: &str, title: &str) -> Item {
        let mut payload = Payload::new();
        payload.insert("title".into(), Value::Text(title.into()));
        Item {
            id: id.into(),
            url: format!("http://a.test/{id}"),
            kind: "page".into(),
            task: task.into(),
            payload,
        }
    }

    fn all(store: &JsonlStore, filter: &Filter) -> Vec<Item> {
        let mut items = Vec::new();
        store
            .for_each(filter, &mut |s| {
                items.push(s.item);
                Ok(())
            })
            .expect("read");
        items
    }

    #[test]
    fn items_are_appended_and_read_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("items.jsonl");
        let store = JsonlStore::open(&path).expect("open");
        store
            .save(&[item("a", "1", "one"), item("b", "2", "two")], &[])
            .expect("save");
        store.save(&[item("a", "1", "again")], &[]).expect("save");
        assert_eq!(
            store.count(None).expect("count"),
            3,
            "appended, not updated"
        );
        assert_eq!(store.count(Some("a")).expect("count"), 2);
        let only_b = Filter {
            task: Some("b".into()),
            ..Filter::default()
        };
        assert_eq!(all(&store, &only_b), vec![item("b", "2", "two")]);
        drop(store);
        let reopened = JsonlStore::open(&path).expect("reopen");
        assert_eq!(all(&reopened, &Filter::default()).len(), 3);
        assert_eq!(
            reopened.payload_fields(&Filter::default()).expect("fields"),
            vec!["title"]
        );
    }

    #[test]
    fn a_reader_changes_nothing_and_reads_what_was_there_when_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("items.jsonl");
        let writer = JsonlStore::open(&path).expect("open");
        writer.save(&[item("t", "1", "one")], &[]).expect("save");
        let mut file = OpenOptions::new().append(true).open(&path).expect("append");
        // A batch being written: the reader must neither cut it nor read it.
        file.write_all(br#"{"task":"t","id":"2""#).expect("part");
        let reader = JsonlStore::open_read(&path).expect("read");
        file.write_all(b",\"url\":\"u\",\"kind\":\"k\",\"payload\":{},\"stored_at\":1}\n")
            .expect("rest");
        writer.save(&[item("t", "3", "three")], &[]).expect("save");
        assert_eq!(
            all(&reader, &Filter::default()),
            vec![item("t", "1", "one")]
        );
        assert!(
            reader.save(&[item("t", "4", "x")], &[]).is_err(),
            "read only"
        );
        assert_eq!(writer.count(None).expect("count"), 3, "nothing was cut");
    }

    #[test]
    fn a_line_cut_short_is_cut_off_when_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("items.jsonl");
        JsonlStore::open(&path)
            .expect("open")
            .save(&[item("t", "1", "whole")], &[])
            .expect("save");
        let mut file = OpenOptions::new().append(true).open(&path).expect("append");
        file.write_all(br#"{"task":"t","id":"2","ur"#)
            .expect("torn write");
        drop(file);
        let store = JsonlStore::open(&path).expect("reopen");
        assert_eq!(
            all(&store, &Filter::default()),
            vec![item("t", "1", "whole")]
        );
        store.save(&[item("t", "3", "after")], &[]).expect("save");
        assert_eq!(store.count(None).expect("count"), 2);
    }
}
