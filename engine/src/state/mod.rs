//! The crawl's durable state: its tasks, what is queued or in flight, every URL seen, items
//! not yet acknowledged by the itemsaver, and the running figures. Kept in SQLite (WAL), written by one
//! task in batched transactions, so a crawl killed at any moment resumes where it stopped.
//!
//! The invariant that makes resuming exact: a request leaves the queue in the same transaction
//! that records the links it discovered and spools its items. After a crash, every request not
//! recorded as finished is fetched again; nothing recorded is lost.

use common::{Item, PageYield, Request};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info};

/// Operations buffered before the writer task must catch up.
const OPS_BUFFER: usize = 65_536;
/// Operations per transaction at most, so one commit stays short.
const MAX_OPS_PER_COMMIT: usize = 50_000;

/// Why the state could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite failed.
    #[error("crawl state {path}: {source}")]
    Sqlite {
        /// The state file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The directory could not be created or removed.
    #[error("crawl state {path}: {source}")]
    Io {
        /// The state directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A stored record does not decode (a damaged or foreign file).
    #[error("crawl state {path}: damaged record: {message}")]
    Damaged {
        /// The state file.
        path: PathBuf,
        /// What did not decode.
        message: String,
    },
    /// A batch of the state could not be committed (the disk is full, say); the writer
    /// stopped, and the crawl with it.
    #[error("writing the crawl state failed: {0}")]
    Commit(std::sync::Arc<rusqlite::Error>),
    /// A record could not be encoded to be written.
    #[error("a crawl state record could not be encoded: {0}")]
    Encode(bincode::Error),
    /// `--resume` was given but there is nothing to resume.
    #[error("nothing to resume: no unfinished crawl in {0}")]
    NothingToResume(PathBuf),
    /// The writer task stopped.
    #[error("crawl state writer stopped")]
    WriterStopped,
}

/// A queued request as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueueEntry {
    /// The request.
    pub request: Request,
    /// Redirect hops that led to it.
    pub redirects: u32,
}

/// A page's items waiting for the itemsaver, with what the page yields (see [`PageYield`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpooledPage {
    /// The items.
    pub items: Vec<Item>,
    /// Position-keyed items the page yields, by kind.
    pub yields: Vec<PageYield>,
}

/// What a state directory held when it was opened.
#[derive(Debug, Default)]
pub struct Restored {
    /// Whether an unfinished crawl was found.
    pub resumed: bool,
    /// Fingerprints of every URL seen, with their dedup scope (a task's run).
    pub seen: Vec<(u64, u64)>,
    /// The crawl's tasks as the crawl recorded them (see [`Change::Task`]), by id.
    pub tasks: Vec<(u64, String)>,
    /// Requests queued or in flight when the crawl stopped, by id.
    pub queue: Vec<(u64, QueueEntry)>,
    /// Pages whose items the itemsaver has not acknowledged, by spool sequence, in order.
    pub spool: Vec<(u64, SpooledPage)>,
    /// The running figures (a serialized summary), if saved.
    pub counters: Option<String>,
    /// The crawl the state belongs to (JSON of a
    /// [`crate::crawl_identity::CrawlIdentity`]); `None` in a state of an older version.
    pub crawl: Option<String>,
}

/// A change the crawl records; a page's changes are recorded together, as one group.
#[derive(Debug)]
pub enum Change {
    /// A URL fingerprint was seen in a dedup scope (scope, fingerprint).
    Seen(u64, u64),
    /// A dedup scope's fingerprints are forgotten (its run ended; the next has its own).
    Forget(u64),
    /// A task's record (the crawl's own encoding), under its id: written when it is added
    /// and when its state or run changes, so that every task is resumed.
    Task(u64, String),
    /// A request was queued under an id.
    Enqueue(u64, QueueEntry),
    /// A request is done for good.
    Finish(u64),
    /// A page's items wait for the itemsaver under a sequence number.
    Spool(u64, SpooledPage),
}

/// One message to the writer.
#[derive(Debug)]
enum Op {
    Seen(u64, u64),
    Forget(u64),
    Task(u64, String),
    Enqueue(u64, Vec<u8>),
    Finish(u64),
    Spool(u64, Vec<u8>),
    /// Changes committed in one transaction, never split (a page's links, items and removal
    /// from the queue).
    Group(Vec<Op>),
    Acked(Vec<u64>),
    DeadLetter {
        task: String,
        id: String,
        reason: String,
        item: Vec<u8>,
    },
    Counters(String),
    /// The crawl the state belongs to (see [`crate::crawl_identity`]).
    Crawl(String),
    Flush(oneshot::Sender<Result<(), std::sync::Arc<rusqlite::Error>>>),
}

/// Sends changes to the state writer; cheap to clone.
#[derive(Clone, Debug)]
pub struct StateHandle {
    tx: Option<mpsc::Sender<Op>>,
    /// Where acknowledged spool sequences go when there is no state to remove them from
    /// (cluster mode: a page's lease completes once its items are durable).
    acks: Option<mpsc::Sender<Vec<u64>>>,
}

impl StateHandle {
    /// A handle that records nothing (`--no_state`).
    pub fn disabled() -> StateHandle {
        StateHandle {
            tx: None,
            acks: None,
        }
    }

    /// A handle that records nothing but passes acknowledgements on to `acks`.
    pub fn forwarding_acks(acks: mpsc::Sender<Vec<u64>>) -> StateHandle {
        StateHandle {
            tx: None,
            acks: Some(acks),
        }
    }

    async fn send(&self, op: Op) -> Result<(), StateError> {
        match &self.tx {
            Some(tx) => tx.send(op).await.map_err(|_| StateError::WriterStopped),
            None => Ok(()),
        }
    }

    /// Records `changes` in one transaction: all of them survive a crash, or none.
    pub async fn record(&self, changes: Vec<Change>) -> Result<(), StateError> {
        if self.tx.is_none() || changes.is_empty() {
            return Ok(());
        }
        let mut ops = Vec::with_capacity(changes.len());
        for change in changes {
            ops.push(match change {
                Change::Seen(scope, fp) => Op::Seen(scope, fp),
                Change::Forget(scope) => Op::Forget(scope),
                Change::Task(id, record) => Op::Task(id, record),
                Change::Finish(id) => Op::Finish(id),
                Change::Enqueue(id, entry) => {
                    Op::Enqueue(id, bincode::serialize(&entry).map_err(StateError::Encode)?)
                }
                Change::Spool(seq, page) => {
                    Op::Spool(seq, bincode::serialize(&page).map_err(StateError::Encode)?)
                }
            });
        }
        self.send(Op::Group(ops)).await
    }

    /// Removes acknowledged items from the spool.
    pub async fn acked(&self, seqs: Vec<u64>) -> Result<(), StateError> {
        if let Some(acks) = &self.acks {
            return acks.send(seqs).await.map_err(|_| StateError::WriterStopped);
        }
        self.send(Op::Acked(seqs)).await
    }

    /// Whether changes are recorded (false with `--no_state`).
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Keeps an item the item store refused on its own, with the reason, so that it is not
    /// lost (one row per task and id); nothing without a state (see [`StateHandle::is_enabled`]).
    pub async fn dead_letter(&self, item: Item, reason: String) -> Result<(), StateError> {
        if self.tx.is_none() {
            return Ok(());
        }
        let bytes = bincode::serialize(&item).map_err(StateError::Encode)?;
        self.send(Op::DeadLetter {
            task: item.task,
            id: item.id,
            reason,
            item: bytes,
        })
        .await
    }

    /// Saves the running figures.
    pub async fn counters(&self, json: String) -> Result<(), StateError> {
        self.send(Op::Counters(json)).await
    }

    /// Records which crawl the state belongs to (JSON of a
    /// [`crate::crawl_identity::CrawlIdentity`]), with the first commit.
    pub async fn mark_crawl(&self, json: String) -> Result<(), StateError> {
        self.send(Op::Crawl(json)).await
    }

    /// Commits everything sent so far and waits for it.
    pub async fn flush(&self) -> Result<(), StateError> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let (done, wait) = oneshot::channel();
        tx.send(Op::Flush(done))
            .await
            .map_err(|_| StateError::WriterStopped)?;
        wait.await
            .map_err(|_| StateError::WriterStopped)?
            .map_err(StateError::Commit)
    }
}

/// An item the store refused, as one line of JSON: `reason`, the item's `task`, `id`, `url`
/// and `kind`, and its fields.
pub fn dead_letter_line(item: &Item, reason: &str) -> String {
    let mut obj = common::value::payload_to_json(&item.payload);
    for (k, v) in [
        ("reason", reason),
        ("task", &item.task),
        ("id", &item.id),
        ("url", &item.url),
        ("kind", &item.kind),
    ] {
        obj.insert(k.into(), serde_json::Value::String(v.to_owned()));
    }
    let mut line = serde_json::Value::Object(obj).to_string();
    line.push('\n');
    line
}

/// Appends `text` to the file at `path` (created if missing) and syncs it to disk.
pub fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// The state directory of a crawl.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The state kept in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn db(&self) -> PathBuf {
        self.dir.join("state.db")
    }

    /// Whether the directory holds an unfinished crawl.
    pub fn has_unfinished(&self) -> bool {
        self.db().exists()
    }

    /// Removes the state of a crawl that finished.
    pub fn remove(&self) -> Result<(), StateError> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StateError::Io {
                path: self.dir.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Appends the dead letters the state holds to `out` (see [`dead_letter_line`]); returns
    /// how many. Called before a finished crawl's state is
    /// removed, so that no refused item is lost with it.
    pub fn export_dead_letters(&self, out: &Path) -> Result<u64, StateError> {
        let path = self.db();
        let sqlite = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sqlite)?;
        let letters: Vec<(String, Item)> = {
            let mut stmt = conn
                .prepare("SELECT reason, item FROM dead_letters ORDER BY at, task, id")
                .map_err(sqlite)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
                })
                .map_err(sqlite)?;
            let mut letters = Vec::new();
            for row in rows {
                let (reason, bytes) = row.map_err(sqlite)?;
                let item: Item = bincode::deserialize(&bytes).map_err(|e| StateError::Damaged {
                    path: path.clone(),
                    message: format!("dead letter: {e}"),
                })?;
                letters.push((reason, item));
            }
            letters
        };
        if letters.is_empty() {
            return Ok(0);
        }
        let mut text = String::new();
        for (reason, item) in &letters {
            text.push_str(&dead_letter_line(item, reason));
        }
        append(out, &text).map_err(|source| StateError::Io {
            path: out.to_owned(),
            source,
        })?;
        Ok(letters.len() as u64)
    }

    /// Opens the state (creating it), reads back what it holds, and starts the writer task,
    /// which commits every `sync`.
    pub fn open(&self, sync: Duration) -> Result<(StateHandle, Restored), StateError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| StateError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.db();
        let sqlite = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        // A committed transaction survives the process being killed; only a power cut could
        // lose the last commits, and those are re-fetched on resume.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS seen (fp INTEGER PRIMARY KEY,
                 scope INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, record TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY, entry BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY, item BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS pages (seq INTEGER PRIMARY KEY, page BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS dead_letters (task TEXT NOT NULL, id TEXT NOT NULL,
                 reason TEXT NOT NULL, item BLOB NOT NULL, at INTEGER NOT NULL,
                 PRIMARY KEY (task, id));",
        )
        .map_err(sqlite)?;
        // A state written before scopes were kept: its fingerprints are the first task's.
        let scoped: bool = conn
            .query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('seen') WHERE name = 'scope'",
                [],
                |row| row.get(0),
            )
            .map_err(sqlite)?;
        if !scoped {
            conn.execute_batch("ALTER TABLE seen ADD COLUMN scope INTEGER NOT NULL DEFAULT 0")
                .map_err(sqlite)?;
        }
        let restored = restore(&conn, &path)?;
        let (tx, rx) = mpsc::channel(OPS_BUFFER);
        let writer_path = path.clone();
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || write_loop(conn, rx, sync, writer_path))
            .map_err(|source| StateError::Io {
                path: self.dir.clone(),
                source,
            })?;
        Ok((
            StateHandle {
                tx: Some(tx),
                acks: None,
            },
            restored,
        ))
    }
}

/// Logs what a resumed crawl carries on (`crawl`, as its identity shows it) and how much is
/// left of it.
pub fn log_restored(dir: &Path, r: &Restored, crawl: &dyn std::fmt::Display) {
    if r.resumed {
        info!(
            state = %dir.display(),
            queued = r.queue.len(),
            seen = r.seen.len(),
            pages_of_items_to_deliver = r.spool.len(),
            "resuming the unfinished crawl of {crawl}: {} requests left in its queue",
            r.queue.len()
        );
    }
}

mod restore;
mod writer;
use restore::restore;
use writer::write_loop;

#[cfg(test)]
mod tests {
    use super::*;
    use common::Payload;

    fn request(url: &str) -> Request {
        Request {
            url: url.into(),
            parser: "links".into(),
            depth: 1,
            task: "t".into(),
            meta: Default::default(),
            spider: None,
        }
    }

    fn item(id: &str) -> Item {
        Item {
            id: id.into(),
            url: id.into(),
            kind: "page".into(),
            task: "t".into(),
            payload: Payload::new(),
        }
    }

    #[tokio::test]
    async fn what_was_committed_comes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path().join("crawl.state"));
        {
            let (handle, restored) = state.open(Duration::from_millis(10)).expect("open");
            assert!(!restored.resumed);
            let mut changes = Vec::new();
            for (id, url) in [
                (1, "http://a.test/1"),
                (2, "http://a.test/2"),
                (3, "http://a.test/3"),
            ] {
                changes.push(Change::Seen(id % 2, id * 100));
                changes.push(Change::Enqueue(
                    id,
                    QueueEntry {
                        request: request(url),
                        redirects: 0,
                    },
                ));
            }
            handle.record(changes).await.expect("record");
            let page_done = vec![
                Change::Finish(2),
                Change::Spool(1, page(item("x"))),
                Change::Spool(2, page(item("y"))),
            ];
            handle.record(page_done).await.expect("record");
            handle.acked(vec![1]).await.expect("acked");
            handle
                .dead_letter(item("refused"), "too large".into())
                .await
                .expect("dead letter");
            handle
                .counters("{\"pages_ok\":1}".into())
                .await
                .expect("counters");
            handle.flush().await.expect("flush");
        }
        assert!(state.has_unfinished());
        let (_handle, r) = state.open(Duration::from_millis(10)).expect("reopen");
        assert!(r.resumed);
        let mut seen = r.seen.clone();
        seen.sort();
        assert_eq!(seen, vec![(0, 200), (1, 100), (1, 300)]);
        let queued: Vec<(u64, String)> = r
            .queue
            .iter()
            .map(|(id, e)| (*id, e.request.url.clone()))
            .collect();
        assert_eq!(
            queued,
            vec![
                (1, "http://a.test/1".to_owned()),
                (3, "http://a.test/3".to_owned())
            ]
        );
        assert_eq!(
            r.spool
                .iter()
                .map(|(s, p)| (*s, p.items[0].id.as_str()))
                .collect::<Vec<_>>(),
            vec![(2, "y")]
        );
        assert_eq!(r.counters.as_deref(), Some("{\"pages_ok\":1}"));
        let letters = dir.path().join("letters.jsonl");
        assert_eq!(state.export_dead_letters(&letters).expect("export"), 1);
        let text = std::fs::read_to_string(&letters).expect("read");
        assert!(
            text.contains("\"reason\":\"too large\"") && text.contains("refused"),
            "{text}"
        );
        state.remove().expect("remove");
        assert!(!state.has_unfinished());
    }

    #[tokio::test]
    async fn a_forgotten_scope_leaves_and_task_records_come_back_over_a_state_from_before_scopes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path().join("crawl.state"));
        std::fs::create_dir_all(state.path()).expect("dir");
        {
            // A state written before scopes and tasks were kept.
            let conn = Connection::open(state.db()).expect("open");
            conn.execute_batch(
                "CREATE TABLE seen (fp INTEGER PRIMARY KEY); INSERT INTO seen VALUES (7);",
            )
            .expect("old schema");
        }
        {
            let (handle, restored) = state.open(Duration::from_millis(10)).expect("open");
            assert_eq!(restored.seen, vec![(0, 7)], "the first task's");
            let changes = vec![
                Change::Seen(5, 1),
                Change::Seen(5, 2),
                Change::Seen(6, 3),
                Change::Task(2, "second".into()),
                Change::Task(1, "first".into()),
            ];
            handle.record(changes).await.expect("record");
            let next_run = vec![Change::Forget(5), Change::Task(2, "second, run 2".into())];
            handle.record(next_run).await.expect("record");
            handle.flush().await.expect("flush");
        }
        let (_handle, r) = state.open(Duration::from_millis(10)).expect("reopen");
        let mut seen = r.seen.clone();
        seen.sort();
        assert_eq!(seen, vec![(0, 7), (6, 3)]);
        assert_eq!(
            r.tasks,
            vec![(1, "first".to_owned()), (2, "second, run 2".to_owned())]
        );
    }

    fn page(item: Item) -> SpooledPage {
        SpooledPage {
            items: vec![item],
            yields: Vec::new(),
        }
    }

    #[tokio::test]
    async fn disabled_state_records_nothing() {
        let handle = StateHandle::disabled();
        handle
            .record(vec![Change::Seen(0, 1)])
            .await
            .expect("record");
        handle.flush().await.expect("flush");
    }
}
