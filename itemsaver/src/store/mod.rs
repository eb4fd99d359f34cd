//! Where items are kept, behind one boundary ([`ItemStore`]): an embedded SQLite file (the
//! default), a PostgreSQL database or a JSON Lines file. `--store` names one (see
//! [`StoreSpec`]); the itemsaver, the engine's single-machine mode, `itemsaver export` and the
//! bench all go through it.

pub mod jsonl;
pub mod postgres;
pub mod sqlite;

pub use jsonl::JsonlStore;
pub use postgres::PostgresStore;
pub use sqlite::{SqliteStore, position_of};

use common::{Item, PageYield};
use std::path::PathBuf;
use std::sync::Arc;

/// Which store `--store` names: `PATH` or `sqlite:PATH` (SQLite), `postgres://...`
/// (PostgreSQL), `jsonl:PATH` (JSON Lines).
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// An SQLite file, created if missing.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://user:password@host:port/db`); its table is
    /// created if missing.
    Postgres(String),
    /// A JSON Lines file, appended to.
    Jsonl(PathBuf),
}

impl std::fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a password, in any message.
        write!(f, "{self}")
    }
}

/// Reads `--store` for clap without ever printing the value: clap's own message for a
/// refused value quotes it whole, password included (`postgress://user:secret@...`, a
/// mistyped scheme). The message names what is wrong, as [`StoreSpec`]'s parse does.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreSpecParser;

impl clap::builder::TypedValueParser for StoreSpecParser {
    type Value = StoreSpec;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<StoreSpec, clap::Error> {
        let refused = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid --store: {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refused("it is not UTF-8".into()))?;
        text.parse().map_err(refused)
    }
}

impl From<PathBuf> for StoreSpec {
    fn from(path: PathBuf) -> Self {
        StoreSpec::Sqlite(path)
    }
}

impl std::str::FromStr for StoreSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let path = |p: &str| {
            if p.is_empty() {
                Err(format!("{s:?} names no file"))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        if let Some(p) = s.strip_prefix("sqlite:") {
            return Ok(StoreSpec::Sqlite(path(p)?));
        }
        if let Some(p) = s.strip_prefix("jsonl:") {
            return Ok(StoreSpec::Jsonl(path(p)?));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            if scheme == "postgres" || scheme == "postgresql" {
                // Checked when opened, where the message can mask the password (an error
                // here would be printed with the whole value).
                return Ok(StoreSpec::Postgres(s.to_owned()));
            }
            return Err(format!(
                "{scheme}:// stores are not supported: give a path, sqlite:PATH, \
                 postgres://USER@HOST/DB or jsonl:PATH"
            ));
        }
        Ok(StoreSpec::Sqlite(path(s)?))
    }
}

impl std::fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSpec::Sqlite(path) => write!(f, "{}", path.display()),
            StoreSpec::Postgres(url) => f.write_str(&postgres::redact(url)),
            StoreSpec::Jsonl(path) => write!(f, "jsonl:{}", path.display()),
        }
    }
}

impl StoreSpec {
    /// The kind of store, as metrics label it: `sqlite`, `postgres` or `jsonl`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreSpec::Sqlite(_) => "sqlite",
            StoreSpec::Postgres(_) => "postgres",
            StoreSpec::Jsonl(_) => "jsonl",
        }
    }

    /// Whether the store is there to be read (for export, which creates no file; a
    /// database is looked for when connecting).
    pub fn exists(&self) -> bool {
        match self {
            StoreSpec::Sqlite(path) | StoreSpec::Jsonl(path) => path.exists(),
            StoreSpec::Postgres(_) => true,
        }
    }
}

/// Why a store failed; nothing of the batch in hand was committed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed on the file.
    #[error("item store {path}: {source}")]
    Sqlite {
        /// The store file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// Reading or writing a store file failed.
    #[error("item store {path}: {source}")]
    Io {
        /// The store file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A stored item does not read (the file was edited by hand or is damaged).
    #[error("item store {path}: item {id:?} is damaged: {source}")]
    Payload {
        /// The store file.
        path: PathBuf,
        /// The item's id, or the line it is on.
        id: String,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// A thread panicked while holding the store.
    #[error("item store {0}: lock poisoned")]
    Poisoned(PathBuf),
    /// PostgreSQL refused a statement, or the connection broke.
    #[error("item store {store}: {}", postgres::detail(error))]
    Postgres {
        /// The database, its password masked.
        store: String,
        /// What the client said (shown in full in this error's message).
        error: tokio_postgres::Error,
    },
    /// No connection to PostgreSQL could be had in time (the server is down or
    /// restarting, or refuses this user).
    #[error("item store {store}: cannot connect: {cause}")]
    Pool {
        /// The database, its password masked.
        store: String,
        /// What the pool said.
        cause: String,
    },
}

impl StoreError {
    /// The kind of error, as metrics label it.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Sqlite { .. } => "sqlite",
            StoreError::Io { .. } => "io",
            StoreError::Payload { .. } => "payload",
            StoreError::Poisoned(_) => "poisoned",
            StoreError::Postgres { .. } => "postgres",
            StoreError::Pool { .. } => "pool",
        }
    }
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the output failed (a closed pipe, a full disk).
    #[error("writing export: {0}")]
    Io(#[from] std::io::Error),
}

/// An item as stored, with when it was first stored and last updated (Unix milliseconds).
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// The item.
    pub item: Item,
    /// When it was first stored.
    pub first_stored_ms: i64,
    /// When it was last updated.
    pub updated_ms: i64,
}

/// Which stored items an export takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this task's.
    pub task: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only those updated at or after this time (Unix milliseconds).
    pub since_ms: Option<i64>,
}

impl Filter {
    /// Whether `stored` passes.
    pub fn admits(&self, stored: &Stored) -> bool {
        self.task.as_ref().is_none_or(|t| *t == stored.item.task)
            && self.kind.as_ref().is_none_or(|k| *k == stored.item.kind)
            && self.since_ms.is_none_or(|since| stored.updated_ms >= since)
    }
}

/// A durable item store: saving an item that exists (same task and id) updates it, except
/// where a store says otherwise ([`JsonlStore`] appends). Calls block; async callers run them
/// on a blocking thread.
pub trait ItemStore: Send + Sync + std::fmt::Debug {
    /// Stores every item of `batch`, and drops the position-keyed items the pages of
    /// `yields` no longer yield, all at once; returns when it is durable.
    fn save(&self, batch: &[Item], yields: &[PageYield]) -> Result<u64, StoreError>;

    /// Counts stored items, of `task` or of every task.
    fn count(&self, task: Option<&str>) -> Result<u64, StoreError>;

    /// Calls `visit` with every stored item `filter` admits, in the order they were first
    /// stored, holding only one at a time.
    fn for_each(
        &self,
        filter: &Filter,
        visit: &mut dyn FnMut(Stored) -> std::io::Result<()>,
    ) -> Result<(), ExportError>;

    /// The sorted names of every payload field of the items `filter` admits, for CSV
    /// columns.
    fn payload_fields(&self, filter: &Filter) -> Result<Vec<String>, StoreError>;
}

/// Opens (creating if needed) the store `spec` names. Its calls block: run them on a
/// blocking thread (a PostgreSQL store drives its connections on this runtime).
pub async fn open(spec: &StoreSpec) -> Result<Arc<dyn ItemStore>, StoreError> {
    Ok(match spec {
        StoreSpec::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        StoreSpec::Postgres(url) => Arc::new(PostgresStore::open(url).await?),
        StoreSpec::Jsonl(path) => Arc::new(JsonlStore::open(path)?),
    })
}

/// Opens the store `spec` names to export it: no table is created and no file cut (a
/// PostgreSQL table must exist; a JSON Lines export reads what the file held when opened).
pub async fn open_existing(spec: &StoreSpec) -> Result<Arc<dyn ItemStore>, StoreError> {
    Ok(match spec {
        StoreSpec::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        StoreSpec::Postgres(url) => Arc::new(PostgresStore::open_existing(url).await?),
        StoreSpec::Jsonl(path) => Arc::new(JsonlStore::open_read(path)?),
    })
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_names_read_as_their_kind() {
        let parse = |s: &str| s.parse::<StoreSpec>();
        assert_eq!(parse("items.db"), Ok(StoreSpec::Sqlite("items.db".into())));
        assert_eq!(
            parse("sqlite:/a/b.db"),
            Ok(StoreSpec::Sqlite("/a/b.db".into()))
        );
        assert_eq!(
            parse("jsonl:x.jsonl"),
            Ok(StoreSpec::Jsonl("x.jsonl".into()))
        );
        assert!(parse("jsonl:").is_err());
        assert!(parse("").is_err());
        let err = parse("mysql://h/db").expect_err("unsupported");
        assert!(err.contains("mysql://"), "{err}");
        let pg = parse("postgres://spin:pw@127.0.0.1:5432/items").expect("postgres");
        assert_eq!(pg.to_string(), "postgres://spin:***@127.0.0.1:5432/items");
        assert_eq!(format!("{pg:?}"), pg.to_string());
    }
}
