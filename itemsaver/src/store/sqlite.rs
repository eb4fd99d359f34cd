//! The embedded SQLite item store: one row per `(task, id)`, written a batch per transaction.

use super::{ExportError, Filter, ItemStore, StoreError, Stored, now_ms};
use common::value::{payload_from_json, payload_to_json};
use common::{Item, PageYield};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A durable item store in one SQLite file; saving an item that exists (same task and id)
/// updates it. `saved_at` is when it was last updated, `first_saved_at` when first stored.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    task     TEXT NOT NULL,
    id       TEXT NOT NULL,
    url      TEXT NOT NULL,
    kind     TEXT NOT NULL,
    payload  TEXT NOT NULL,
    saved_at INTEGER NOT NULL,
    position INTEGER,
    first_saved_at INTEGER,
    PRIMARY KEY (task, id)
);";

/// Added with exports' `--since`: stores from before get the column when opened, their
/// items first stored when last updated (the earliest time known).
const FIRST_SAVED_COLUMN: &str = "ALTER TABLE items ADD COLUMN first_saved_at INTEGER;
UPDATE items SET first_saved_at = saved_at;";

/// Added after the first release: stores from before get the column when opened, filled in
/// for their position-keyed items (ids `URL#KIND-N`).
const POSITION_COLUMN: &str = "ALTER TABLE items ADD COLUMN position INTEGER;
UPDATE items SET position = CAST(substr(id, length(url) + length(kind) + 3) AS INTEGER)
 WHERE substr(id, 1, length(url) + length(kind) + 2) = url || '#' || kind || '-'
   AND substr(id, length(url) + length(kind) + 3) <> ''
   AND substr(id, length(url) + length(kind) + 3) NOT GLOB '*[^0-9]*';";

const PAGE_INDEX: &str = "CREATE INDEX IF NOT EXISTS items_by_page
    ON items (task, url, kind, position) WHERE position IS NOT NULL";

/// The position of an item keyed by it (`URL#KIND-N`, the id a spider gives an item that has
/// none of its own), or `None` for an item with an id of its own.
pub fn position_of(item: &Item) -> Option<u32> {
    item.id
        .strip_prefix(item.url.as_str())?
        .strip_prefix('#')?
        .strip_prefix(item.kind.as_str())?
        .strip_prefix('-')?
        .parse()
        .ok()
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, in WAL mode with full sync on commit.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        // FULL: a batch acked to the engine survives power loss, not only a crash.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        // The column and its values come in one write transaction, checked inside it, so a
        // crash cannot leave the column without its values, nor two openers add it twice.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let has_position: bool = tx
            .prepare("SELECT 1 FROM pragma_table_info('items') WHERE name = 'position'")
            .and_then(|mut s| s.exists([]))
            .map_err(err)?;
        if !has_position {
            tx.execute_batch(POSITION_COLUMN).map_err(err)?;
        }
        let has_first_saved: bool = tx
            .prepare("SELECT 1 FROM pragma_table_info('items') WHERE name = 'first_saved_at'")
            .and_then(|mut s| s.exists([]))
            .map_err(err)?;
        if !has_first_saved {
            tx.execute_batch(FIRST_SAVED_COLUMN).map_err(err)?;
        }
        tx.execute_batch(PAGE_INDEX).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn
            .lock()
            .map_err(|_| StoreError::Poisoned(self.path.clone()))
    }

    /// Inserts or updates every item of `batch` in one transaction, and deletes the
    /// position-keyed items the pages of `yields` no longer yield; returns when committed.
    pub fn save(&self, batch: &[Item], yields: &[PageYield]) -> Result<u64, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
        let now = now_ms();
        {
            let mut stale = tx
                .prepare_cached(
                    "DELETE FROM items WHERE task = ?1 AND url = ?2 AND kind = ?3
                     AND position IS NOT NULL AND position >= ?4",
                )
                .map_err(|e| self.sqlite(e))?;
            for y in yields {
                stale
                    .execute(params![y.task, y.url, y.kind, y.count])
                    .map_err(|e| self.sqlite(e))?;
            }
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO items (task, id, url, kind, payload, saved_at, position,
                     first_saved_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6)
                     ON CONFLICT (task, id) DO UPDATE SET url = excluded.url, kind = excluded.kind,
                     payload = excluded.payload, saved_at = excluded.saved_at,
                     position = excluded.position",
                )
                .map_err(|e| self.sqlite(e))?;
            for item in batch {
                let payload = serde_json::Value::Object(payload_to_json(&item.payload)).to_string();
                stmt.execute(params![
                    item.task,
                    item.id,
                    item.url,
                    item.kind,
                    payload,
                    now,
                    position_of(item)
                ])
                .map_err(|e| self.sqlite(e))?;
            }
        }
        tx.commit().map_err(|e| self.sqlite(e))?;
        Ok(batch.len() as u64)
    }

    /// Counts stored items, of `task` or of every task.
    pub fn count(&self, task: Option<&str>) -> Result<u64, StoreError> {
        let conn = self.lock()?;
        let n: i64 = match task {
            Some(t) => conn.query_row("SELECT COUNT(*) FROM items WHERE task = ?1", [t], |r| {
                r.get(0)
            }),
            None => conn.query_row("SELECT COUNT(*) FROM items", [], |r| r.get(0)),
        }
        .map_err(|e| self.sqlite(e))?;
        Ok(n as u64)
    }

    /// Reads one item back.
    pub fn get(&self, task: &str, id: &str) -> Result<Option<Item>, StoreError> {
        let conn = self.lock()?;
        let row = conn
            .query_row(
                "SELECT task, id, url, kind, payload FROM items WHERE task = ?1 AND id = ?2",
                [task, id],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.sqlite(e))?;
        row.map(|(task, id, url, kind, payload)| self.item(task, id, url, kind, &payload))
            .transpose()
    }

    /// The `WHERE` clause and its parameters for `filter`.
    fn filtered(filter: &Filter) -> (String, Vec<rusqlite::types::Value>) {
        use rusqlite::types::Value;
        let mut clauses = Vec::new();
        let mut values = Vec::new();
        if let Some(task) = &filter.task {
            clauses.push("task = ?");
            values.push(Value::Text(task.clone()));
        }
        if let Some(kind) = &filter.kind {
            clauses.push("kind = ?");
            values.push(Value::Text(kind.clone()));
        }
        if let Some(since) = filter.since_ms {
            clauses.push("saved_at >= ?");
            values.push(Value::Integer(since));
        }
        let clause = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        (clause, values)
    }

    fn item(
        &self,
        task: String,
        id: String,
        url: String,
        kind: String,
        payload: &str,
    ) -> Result<Item, StoreError> {
        let json: serde_json::Value =
            serde_json::from_str(payload).map_err(|source| StoreError::Payload {
                path: self.path.clone(),
                id: id.clone(),
                source,
            })?;
        let payload = payload_from_json(&json);
        Ok(Item {
            id,
            url,
            kind,
            task,
            payload,
        })
    }
}

impl ItemStore for SqliteStore {
    fn save(&self, batch: &[Item], yields: &[PageYield]) -> Result<u64, StoreError> {
        SqliteStore::save(self, batch, yields)
    }

    fn count(&self, task: Option<&str>) -> Result<u64, StoreError> {
        SqliteStore::count(self, task)
    }

    fn for_each(
        &self,
        filter: &Filter,
        visit: &mut dyn FnMut(Stored) -> std::io::Result<()>,
    ) -> Result<(), ExportError> {
        let conn = self.lock()?;
        let (clause, values) = Self::filtered(filter);
        let mut stmt = conn
            .prepare(&format!(
                "SELECT task, id, url, kind, payload, first_saved_at, saved_at FROM items
                 {clause} ORDER BY rowid"
            ))
            .map_err(|e| self.sqlite(e))?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(values))
            .map_err(|e| self.sqlite(e))?;
        while let Some(row) = rows.next().map_err(|e| self.sqlite(e))? {
            let get = |i| row.get::<_, String>(i).map_err(|e| self.sqlite(e));
            let item = self.item(get(0)?, get(1)?, get(2)?, get(3)?, &get(4)?)?;
            let updated_ms: i64 = row.get(6).map_err(|e| self.sqlite(e))?;
            let first: Option<i64> = row.get(5).map_err(|e| self.sqlite(e))?;
            visit(Stored {
                item,
                first_stored_ms: first.unwrap_or(updated_ms),
                updated_ms,
            })?;
        }
        Ok(())
    }

    fn payload_fields(&self, filter: &Filter) -> Result<Vec<String>, StoreError> {
        let conn = self.lock()?;
        let (clause, values) = Self::filtered(filter);
        let mut stmt = conn
            .prepare(&format!(
                "SELECT DISTINCT j.key FROM items, json_each(items.payload) AS j {clause}
                 ORDER BY j.key"
            ))
            .map_err(|e| self.sqlite(e))?;
        let keys = stmt
            .query_map(rusqlite::params_from_iter(values), |r| {
                r.get::<_, String>(0)
            })
            .map_err(|e| self.sqlite(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sqlite(e))?;
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{Payload, Value};

    fn item(task: &str, id: &str, title: &str) -> Item {
        let mut payload = Payload::new();
        payload.insert("title".into(), Value::Text(title.into()));
        payload.insert("n".into(), Value::Int(7));
        Item {
            id: id.into(),
            url: format!("http://a.test/{id}"),
            kind: "page".into(),
            task: task.into(),
            payload,
        }
    }

    #[test]
    fn saving_again_updates_instead_of_duplicating() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("items.db")).expect("open");
        store
            .save(&[item("t", "1", "old"), item("t", "2", "two")], &[])
            .expect("save");
        store
            .save(&[item("t", "1", "new")], &[])
            .expect("save again");
        assert_eq!(store.count(None).expect("count"), 2);
        let got = store.get("t", "1").expect("get").expect("present");
        assert_eq!(got, item("t", "1", "new"));
    }

    #[test]
    fn same_id_in_another_task_is_another_item() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("items.db")).expect("open");
        store
            .save(&[item("a", "1", "x"), item("b", "1", "y")], &[])
            .expect("save");
        assert_eq!(store.count(Some("a")).expect("count"), 1);
        assert_eq!(store.count(None).expect("count"), 2);
    }

    #[test]
    fn items_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("items.db");
        SqliteStore::open(&path)
            .expect("open")
            .save(&[item("t", "1", "kept")], &[])
            .expect("save");
        let reopened = SqliteStore::open(&path).expect("reopen");
        assert_eq!(
            reopened.get("t", "1").expect("get"),
            Some(item("t", "1", "kept"))
        );
        assert_eq!(
            reopened.payload_fields(&Filter::default()).expect("fields"),
            vec!["n", "title"]
        );
    }

    fn positioned(url: &str, kind: &str, n: u32) -> Item {
        Item {
            id: format!("{url}#{kind}-{n}"),
            url: url.into(),
            kind: kind.into(),
            task: "t".into(),
            payload: Payload::new(),
        }
    }

    #[test]
    fn a_page_that_yields_fewer_items_leaves_none_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("items.db")).expect("open");
        let page = "http://a.test/list";
        let three: Vec<Item> = (0..3).map(|n| positioned(page, "q", n)).collect();
        let other = item("t", "own-id", "kept");
        store
            .save(&[three.clone(), vec![other.clone()]].concat(), &[])
            .expect("first crawl");
        assert_eq!(store.count(None).expect("count"), 4);
        let yields = |count| PageYield {
            task: "t".into(),
            url: page.into(),
            kind: "q".into(),
            count,
        };
        store
            .save(&three[..2], &[yields(2)])
            .expect("re-crawl: two now");
        assert_eq!(store.count(None).expect("count"), 3);
        assert!(store.get("t", &three[2].id).expect("get").is_none());
        store.save(&[], &[yields(0)]).expect("re-crawl: none now");
        assert_eq!(
            store.count(None).expect("count"),
            1,
            "only the item with its own id"
        );
        assert_eq!(position_of(&three[1]), Some(1));
        assert_eq!(position_of(&other), None);
    }

    #[test]
    fn a_store_from_before_positions_gets_them_when_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE items (task TEXT NOT NULL, id TEXT NOT NULL, url TEXT NOT NULL,
             kind TEXT NOT NULL, payload TEXT NOT NULL, saved_at INTEGER NOT NULL,
             PRIMARY KEY (task, id));
             INSERT INTO items VALUES ('t', 'http://a.test/l#q-12', 'http://a.test/l', 'q', '{}', 0);
             INSERT INTO items VALUES ('t', 'http://a.test/l#q-x', 'http://a.test/l', 'q', '{}', 0);
             INSERT INTO items VALUES ('t', 'own', 'http://a.test/l', 'q', '{}', 0);",
        )
        .expect("old store");
        drop(conn);
        let store = SqliteStore::open(&path).expect("open old store");
        let none_now = PageYield {
            task: "t".into(),
            url: "http://a.test/l".into(),
            kind: "q".into(),
            count: 0,
        };
        store.save(&[], &[none_now]).expect("re-crawl");
        assert!(
            store
                .get("t", "http://a.test/l#q-12")
                .expect("get")
                .is_none()
        );
        assert!(
            store
                .get("t", "http://a.test/l#q-x")
                .expect("get")
                .is_some()
        );
        assert!(store.get("t", "own").expect("get").is_some());
    }

    fn stored(store: &SqliteStore, filter: &Filter) -> Vec<Stored> {
        let mut all = Vec::new();
        store
            .for_each(filter, &mut |s| {
                all.push(s);
                Ok(())
            })
            .expect("read");
        all
    }

    #[test]
    fn an_update_keeps_when_the_item_was_first_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("items.db")).expect("open");
        store
            .save(&[item("t", "1", "old"), item("u", "2", "x")], &[])
            .expect("save");
        store
            .lock()
            .expect("lock")
            .execute_batch("UPDATE items SET saved_at = 1000, first_saved_at = 1000")
            .expect("back-date");
        store.save(&[item("t", "1", "new")], &[]).expect("update");
        let all = stored(&store, &Filter::default());
        assert_eq!(all[0].first_stored_ms, 1000);
        assert!(all[0].updated_ms > 1000, "{:?}", all[0]);
        assert_eq!((all[1].first_stored_ms, all[1].updated_ms), (1000, 1000));
        let since = Filter {
            since_ms: Some(2000),
            ..Filter::default()
        };
        assert_eq!(stored(&store, &since).len(), 1, "only the updated one");
        let task_u = Filter {
            task: Some("u".into()),
            kind: Some("page".into()),
            ..Filter::default()
        };
        assert_eq!(stored(&store, &task_u)[0].item.id, "2");
    }

    #[test]
    fn a_store_from_before_first_saved_times_gets_them_when_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE items (task TEXT NOT NULL, id TEXT NOT NULL, url TEXT NOT NULL,
             kind TEXT NOT NULL, payload TEXT NOT NULL, saved_at INTEGER NOT NULL,
             position INTEGER, PRIMARY KEY (task, id));
             INSERT INTO items VALUES ('t', '1', 'http://a.test/1', 'page', '{}', 5000, NULL);",
        )
        .expect("old store");
        drop(conn);
        let store = SqliteStore::open(&path).expect("open old store");
        let all = stored(&store, &Filter::default());
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].first_stored_ms, all[0].updated_ms), (5000, 5000));
    }

    #[test]
    fn unwritable_path_names_the_file() {
        let err = SqliteStore::open("/nonexistent-dir/items.db").expect_err("must fail");
        assert!(
            err.to_string().contains("/nonexistent-dir/items.db"),
            "{err}"
        );
    }
}
