//! The run history: every task's runs, kept in a SQLite file
//! (`--jobs`, default `jobs.db`) that is never deleted when a crawl finishes, unlike the
//! crawl's state directory. History is keyed by task name, since task ids are per process.
//!
//! A run is recorded when it starts (`running`) and again when it ends, with its figures and
//! status. A run still `running` when the engine starts again was cut short by the engine
//! dying: it becomes `failed` with the reason `engine restarted`.

use rusqlite::{Connection, params};
use serde::Serialize;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Runs listed per task at most (`GET /api/tasks/{id}/runs`).
pub const MAX_RUNS_LISTED: usize = 100;

/// How a run ended (or that it is still going).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still going.
    Running,
    /// Nothing of it was left to fetch (or it reached its page limit).
    Done,
    /// The engine failed or died before it ended.
    Failed,
    /// It ran past its `timeout_secs` and was stopped.
    Timeout,
    /// An operator stopped (or closed) it.
    Stopped,
    /// An operator killed it.
    Killed,
    /// A scheduled tick that started no run (the previous one was still going, or the
    /// engine was down).
    Skipped,
}

impl RunStatus {
    /// Its name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Timeout => "timeout",
            RunStatus::Stopped => "stopped",
            RunStatus::Killed => "killed",
            RunStatus::Skipped => "skipped",
        }
    }

    fn parse(name: &str) -> RunStatus {
        match name {
            "running" => RunStatus::Running,
            "done" => RunStatus::Done,
            "timeout" => RunStatus::Timeout,
            "stopped" => RunStatus::Stopped,
            "killed" => RunStatus::Killed,
            "skipped" => RunStatus::Skipped,
            _ => RunStatus::Failed,
        }
    }
}

/// A run's figures when it ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunFigures {
    /// Pages fetched and parsed.
    pub pages_ok: u64,
    /// Pages that failed for good.
    pub pages_failed: u64,
    /// Items extracted and handed to the itemsaver.
    pub items: u64,
}

/// One run as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunView {
    /// Its number in the store.
    pub id: i64,
    /// The task's name.
    pub task: String,
    /// When it started, in seconds since the Unix epoch.
    pub started: f64,
    /// When it ended; `None` while it runs.
    pub ended: Option<f64>,
    /// How long it ran (so far), in seconds.
    pub duration_secs: f64,
    /// How it ended.
    pub status: RunStatus,
    /// Pages fetched and parsed.
    pub pages_ok: u64,
    /// Pages that failed for good.
    pub pages_failed: u64,
    /// Items extracted and handed to the itemsaver.
    pub items: u64,
    /// Why it failed or was skipped.
    pub reason: Option<String>,
}

/// Why the run history cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("run history {path}: {source}")]
pub struct HistoryError {
    /// The file.
    pub path: String,
    /// What SQLite said.
    #[source]
    pub source: rusqlite::Error,
}

/// The run history; cheap to clone (clones share the connection).
#[derive(Clone, Debug)]
pub struct RunHistory {
    conn: Arc<Mutex<Connection>>,
    path: String,
}

fn seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

impl RunHistory {
    /// Opens (or creates) the store at `path`, and marks runs an engine that died left
    /// `running` as failed.
    pub fn open(path: &Path) -> Result<RunHistory, HistoryError> {
        let shown = path.display().to_string();
        let fail = |source| HistoryError {
            path: shown.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(fail)?;
        // Several engines of a cluster may share one machine, and one file.
        conn.busy_timeout(Duration::from_secs(10)).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS runs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                task TEXT NOT NULL,
                started REAL NOT NULL,
                ended REAL,
                status TEXT NOT NULL,
                pages_ok INTEGER NOT NULL DEFAULT 0,
                pages_failed INTEGER NOT NULL DEFAULT 0,
                items INTEGER NOT NULL DEFAULT 0,
                reason TEXT
            );
            CREATE INDEX IF NOT EXISTS runs_by_task ON runs (task, id);
            CREATE TABLE IF NOT EXISTS schedules (
                task TEXT PRIMARY KEY,
                spec TEXT NOT NULL
            );",
        )
        .map_err(fail)?;
        Ok(RunHistory {
            conn: Arc::new(Mutex::new(conn)),
            path: shown,
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, HistoryError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn).map_err(|source| HistoryError {
            path: self.path.clone(),
            source,
        })
    }

    /// Ends every run still `running` as `failed` with `reason` (at start: `engine
    /// restarted`); returns how many there were, by task.
    pub fn fail_running(&self, reason: &str) -> Result<Vec<String>, HistoryError> {
        let now = seconds(SystemTime::now());
        self.with(|c| {
            let mut tasks = Vec::new();
            let mut query = c.prepare("SELECT task FROM runs WHERE status = 'running'")?;
            for task in query.query_map([], |r| r.get::<_, String>(0))? {
                tasks.push(task?);
            }
            c.execute(
                "UPDATE runs SET status = 'failed', ended = ?1, reason = ?2 WHERE status = 'running'",
                params![now, reason],
            )?;
            Ok(tasks)
        })
    }

    /// Records that a run of `task` started at `at`; returns its id.
    pub fn start(&self, task: &str, at: SystemTime) -> Result<i64, HistoryError> {
        let now = seconds(at);
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (task, started, status) VALUES (?1, ?2, 'running')",
                params![task, now],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Forgets run `id`, started but with nothing to show (a task that found its shared crawl
    /// done).
    pub fn forget(&self, id: i64) -> Result<(), HistoryError> {
        self.with(|c| {
            c.execute("DELETE FROM runs WHERE id = ?1", params![id])
                .map(drop)
        })
    }

    /// Records how run `id` ended, at `at`.
    pub fn end(
        &self,
        id: i64,
        at: SystemTime,
        status: RunStatus,
        figures: RunFigures,
        reason: Option<&str>,
    ) -> Result<(), HistoryError> {
        let now = seconds(at);
        self.with(|c| {
            c.execute(
                "UPDATE runs SET ended = ?2, status = ?3, pages_ok = ?4, pages_failed = ?5,
                 items = ?6, reason = ?7 WHERE id = ?1",
                params![
                    id,
                    now,
                    status.as_str(),
                    figures.pages_ok as i64,
                    figures.pages_failed as i64,
                    figures.items as i64,
                    reason
                ],
            )
            .map(drop)
        })
    }

    /// Records a scheduled tick of `task` at `at` that started no run, and why.
    pub fn skipped(&self, task: &str, at: SystemTime, reason: &str) -> Result<(), HistoryError> {
        let now = seconds(at);
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (task, started, ended, status, reason)
                 VALUES (?1, ?2, ?2, 'skipped', ?3)",
                params![task, now, reason],
            )
            .map(drop)
        })
    }

    /// The runs of `task`, newest first, at most `limit`.
    pub fn runs(&self, task: &str, limit: usize) -> Result<Vec<RunView>, HistoryError> {
        let now = seconds(SystemTime::now());
        self.with(|c| {
            let mut query = c.prepare(
                "SELECT id, task, started, ended, status, pages_ok, pages_failed, items, reason
                 FROM runs WHERE task = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = query.query_map(params![task, limit.min(MAX_RUNS_LISTED) as i64], |r| {
                let started: f64 = r.get(2)?;
                let ended: Option<f64> = r.get(3)?;
                Ok(RunView {
                    id: r.get(0)?,
                    task: r.get(1)?,
                    started,
                    ended,
                    duration_secs: (ended.unwrap_or(now) - started).max(0.0),
                    status: RunStatus::parse(&r.get::<_, String>(4)?),
                    pages_ok: r.get::<_, i64>(5)? as u64,
                    pages_failed: r.get::<_, i64>(6)? as u64,
                    items: r.get::<_, i64>(7)? as u64,
                    reason: r.get(8)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The newest run of `task`, if any.
    pub fn last(&self, task: &str) -> Result<Option<RunView>, HistoryError> {
        Ok(self.runs(task, 1)?.into_iter().next())
    }

    /// Keeps a scheduled task added through the API (its JSON record), so that a restarted
    /// engine takes it up again.
    pub fn keep_schedule(&self, task: &str, spec: &str) -> Result<(), HistoryError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO schedules (task, spec) VALUES (?1, ?2)
                 ON CONFLICT (task) DO UPDATE SET spec = excluded.spec",
                params![task, spec],
            )
            .map(drop)
        })
    }

    /// Forgets a scheduled task (it was closed).
    pub fn drop_schedule(&self, task: &str) -> Result<(), HistoryError> {
        self.with(|c| {
            c.execute("DELETE FROM schedules WHERE task = ?1", params![task])
                .map(drop)
        })
    }

    /// The scheduled tasks kept, as (name, JSON record).
    pub fn schedules(&self) -> Result<Vec<(String, String)>, HistoryError> {
        self.with(|c| {
            let mut query = c.prepare("SELECT task, spec FROM schedules ORDER BY task")?;
            let rows = query.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_recorded_listed_newest_first_and_failed_after_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("jobs.db");
        let jobs = RunHistory::open(&path).expect("open");
        let now = SystemTime::now();
        let first = jobs.start("news", now).expect("start");
        let figures = RunFigures {
            pages_ok: 5,
            pages_failed: 1,
            items: 5,
        };
        jobs.end(first, now, RunStatus::Done, figures, None)
            .expect("end");
        jobs.skipped("news", now, "the previous run was still going")
            .expect("skip");
        jobs.start("news", now).expect("start");
        drop(jobs);
        let jobs = RunHistory::open(&path).expect("reopen");
        assert_eq!(
            jobs.fail_running("engine restarted").expect("fail"),
            vec!["news"]
        );
        let runs = jobs.runs("news", 10).expect("runs");
        let statuses: Vec<RunStatus> = runs.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            vec![RunStatus::Failed, RunStatus::Skipped, RunStatus::Done]
        );
        assert_eq!(runs[0].reason.as_deref(), Some("engine restarted"));
        assert_eq!((runs[2].pages_ok, runs[2].items), (5, 5));
    }
}
