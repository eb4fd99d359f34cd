//! The PostgreSQL item store: one row per `(task, id)` with the payload as JSONB, each batch
//! one transaction of one batched upsert (the rows travel as arrays and are unnested on the
//! server), acknowledged after the commit. Connections come from a pool and are checked
//! before use, so a server restarted mid-crawl costs the batches in flight a failure (the
//! engine sends them again) and nothing more.
//!
//! The store's calls block, like every store's: it drives the async client on the runtime it
//! was opened on, from the blocking threads its callers run it on.

use super::{ExportError, Filter, ItemStore, StoreError, Stored, now_ms, position_of};
use common::value::{payload_from_json, payload_to_json};
use common::{Item, PageYield};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::NoTls;

/// Connections the itemsaver keeps at most (its batches are committed a few at a time).
const POOL_SIZE: usize = 8;

/// How long a call waits for a connection (a server that is down or restarting).
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Rows an export reads from the server at a time.
const EXPORT_CHUNK: i32 = 1_000;

/// The table and its indexes. The primary key's index serves lookups by task (its first
/// column); `seq` keeps the order items were first stored in, for exports.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    task           TEXT NOT NULL,
    id             TEXT NOT NULL,
    url            TEXT NOT NULL,
    kind           TEXT NOT NULL,
    payload        JSONB NOT NULL,
    position       INTEGER,
    first_saved_at BIGINT NOT NULL,
    saved_at       BIGINT NOT NULL,
    seq            BIGSERIAL,
    PRIMARY KEY (task, id)
);
CREATE INDEX IF NOT EXISTS items_kind ON items (kind);
CREATE INDEX IF NOT EXISTS items_seq ON items (seq);
CREATE INDEX IF NOT EXISTS items_by_page ON items (task, url, kind, position)
    WHERE position IS NOT NULL;";

/// An item store in a PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
    /// The database, its password masked, for messages.
    shown: String,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.shown)
            .finish()
    }
}

/// `url` with its password, if any, masked: in the user information (everything up to the
/// last `@`, whatever it holds, `?` and `/` included, unless that `@` is in the query of a
/// URL without user information) and in a `password=` parameter.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The user information ends at the last `@`: a password as written may hold `?`, `/`
    // or `@`. An `@` after a `?` with no `:` before it is a query's (no password there).
    let (userinfo, after) = match rest.rfind('@') {
        Some(at) if !rest[..at].contains('?') || rest[..at].contains(':') => {
            (Some(&rest[..at]), &rest[at + 1..])
        }
        _ => (None, rest),
    };
    let (before_query, query) = match after.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (after, None),
    };
    let mut out = format!("{scheme}://");
    if let Some(userinfo) = userinfo {
        let user = userinfo.split([':', '?', '/']).next().unwrap_or_default();
        let masked = if userinfo.len() > user.len() {
            ":***"
        } else {
            ""
        };
        out.push_str(&format!("{user}{masked}@"));
    }
    out.push_str(before_query);
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// Gives `config` the password `pgpassword` (the `PGPASSWORD` variable, which libpq's tools
/// read and the client does not) when its URL names none, so that a password need not be
/// written in the URL. An empty one counts as none, as for libpq.
fn password_from_env(config: &mut tokio_postgres::Config, pgpassword: Option<std::ffi::OsString>) {
    if config.get_password().is_none()
        && let Some(password) = pgpassword.filter(|p| !p.is_empty())
    {
        config.password(password.as_encoded_bytes());
    }
}

/// What PostgreSQL said, in full: the client shows a server's refusal only as "db error".
pub fn detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

/// What the pool said, with PostgreSQL's own words when it failed to connect.
fn pool_cause(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => detail(e),
        other => other.to_string(),
    }
}

/// Text PostgreSQL can hold: it refuses NUL characters, which a hostile page may put in an
/// item, so they become U+FFFD.
fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `value` with every NUL character in its strings and keys replaced (see [`storable`]).
fn storable_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(storable(&s).into_owned()),
        Value::Array(list) => Value::Array(list.into_iter().map(storable_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (storable(&k).into_owned(), storable_json(v)))
                .collect(),
        ),
        other => other,
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`) and
    /// creates the table and its indexes if missing. Calls on the store run on this
    /// runtime.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        if !store.has_table().await? {
            let mut client = store.client().await?;
            let tx = client.transaction().await.map_err(|e| store.pg(e))?;
            // Itemsavers starting together create the table once.
            tx.batch_execute("SELECT pg_advisory_xact_lock(7151563);")
                .await
                .map_err(|e| store.pg(e))?;
            tx.batch_execute(SCHEMA).await.map_err(|e| store.pg(e))?;
            tx.commit().await.map_err(|e| store.pg(e))?;
        }
        Ok(store)
    }

    /// Connects to the database at `url` to read its items, as an export does: nothing is
    /// created, and a database without the table is an error.
    pub async fn open_existing(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        if !store.has_table().await? {
            return Err(StoreError::Pool {
                store: store.shown.clone(),
                cause: "it has no items table (no itemsaver stored items there)".into(),
            });
        }
        Ok(store)
    }

    /// Whether the items table is there (a role that may only write rows can open a store
    /// another made).
    async fn has_table(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT to_regclass('items') IS NOT NULL", &[])
            .await
            .map_err(|e| self.pg(e))?;
        row.try_get(0).map_err(|e| self.pg(e))
    }

    async fn connect(url: &str) -> Result<Self, StoreError> {
        let shown = redact(url);
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::Postgres {
            store: shown.clone(),
            error: e,
        })?;
        password_from_env(&mut config, std::env::var_os("PGPASSWORD"));
        // The runtime the store's calls are driven on.
        let runtime = tokio::runtime::Handle::current();
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // A connection the server dropped (a restart) is replaced, not handed out.
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(CONNECT_WAIT))
            .create_timeout(Some(CONNECT_WAIT))
            .recycle_timeout(Some(CONNECT_WAIT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Pool {
                store: shown.clone(),
                cause: e.to_string(),
            })?;
        Ok(PostgresStore {
            pool,
            shown,
            runtime,
        })
    }

    fn pg(&self, source: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres {
            store: self.shown.clone(),
            error: source,
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(|e| StoreError::Pool {
            store: self.shown.clone(),
            cause: pool_cause(&e),
        })
    }

    /// Runs `work` to its end on the store's runtime, from a blocking thread.
    fn block_on<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(work)
    }

    async fn save_async(&self, batch: &[Item], yields: &[PageYield]) -> Result<u64, StoreError> {
        // One row per (task, id) as stored: a later item of the batch wins, as it would one
        // by one (an upsert may not touch a row twice).
        let mut last: HashMap<(String, String), usize> = HashMap::with_capacity(batch.len());
        for (i, item) in batch.iter().enumerate() {
            let key = (
                storable(&item.task).into_owned(),
                storable(&item.id).into_owned(),
            );
            last.insert(key, i);
        }
        let mut rows: Vec<usize> = last.into_values().collect();
        rows.sort_unstable();
        let text = |f: fn(&Item) -> &str| -> Vec<String> {
            rows.iter()
                .map(|&i| storable(f(&batch[i])).into_owned())
                .collect()
        };
        let tasks = text(|i| &i.task);
        let ids = text(|i| &i.id);
        let urls = text(|i| &i.url);
        let kinds = text(|i| &i.kind);
        let payloads: Vec<serde_json::Value> = rows
            .iter()
            .map(|&i| {
                storable_json(serde_json::Value::Object(payload_to_json(
                    &batch[i].payload,
                )))
            })
            .collect();
        let positions: Vec<Option<i32>> = rows
            .iter()
            .map(|&i| position_of(&batch[i]).and_then(|p| i32::try_from(p).ok()))
            .collect();
        let now = now_ms();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.pg(e))?;
        if !yields.is_empty() {
            let stale = tx
                .prepare_cached(
                    "DELETE FROM items WHERE task = $1 AND url = $2 AND kind = $3
                     AND position IS NOT NULL AND position >= $4",
                )
                .await
                .map_err(|e| self.pg(e))?;
            for y in yields {
                let count = i32::try_from(y.count).unwrap_or(i32::MAX);
                tx.execute(
                    &stale,
                    &[
                        &storable(&y.task),
                        &storable(&y.url),
                        &storable(&y.kind),
                        &count,
                    ],
                )
                .await
                .map_err(|e| self.pg(e))?;
            }
        }
        if !rows.is_empty() {
            let upsert = tx
                .prepare_cached(
                    "INSERT INTO items (task, id, url, kind, payload, position, first_saved_at,
                                        saved_at)
                     SELECT t, i, u, k, p, pos, $7, $7
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[],
                                 $6::int4[]) AS x(t, i, u, k, p, pos)
                     ON CONFLICT (task, id) DO UPDATE SET url = excluded.url,
                         kind = excluded.kind, payload = excluded.payload,
                         position = excluded.position, saved_at = excluded.saved_at",
                )
                .await
                .map_err(|e| self.pg(e))?;
            tx.execute(
                &upsert,
                &[&tasks, &ids, &urls, &kinds, &payloads, &positions, &now],
            )
            .await
            .map_err(|e| self.pg(e))?;
        }
        tx.commit().await.map_err(|e| self.pg(e))?;
        Ok(batch.len() as u64)
    }

    /// The filter's parameters, in the order the queries below number them.
    fn params(filter: &Filter) -> (Option<String>, Option<String>, Option<i64>) {
        (filter.task.clone(), filter.kind.clone(), filter.since_ms)
    }

    async fn for_each_async(
        &self,
        filter: &Filter,
        visit: &mut dyn FnMut(Stored) -> std::io::Result<()>,
    ) -> Result<(), ExportError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.pg(e))?;
        let query = tx
            .prepare(
                "SELECT task, id, url, kind, payload, first_saved_at, saved_at FROM items
                 WHERE ($1::text IS NULL OR task = $1) AND ($2::text IS NULL OR kind = $2)
                   AND ($3::int8 IS NULL OR saved_at >= $3)
                 ORDER BY seq",
            )
            .await
            .map_err(|e| self.pg(e))?;
        let (task, kind, since) = Self::params(filter);
        // A portal reads the rows a chunk at a time: the export holds one chunk at most.
        let portal = tx
            .bind(&query, &[&task, &kind, &since])
            .await
            .map_err(|e| self.pg(e))?;
        loop {
            let rows = tx
                .query_portal(&portal, EXPORT_CHUNK)
                .await
                .map_err(|e| self.pg(e))?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                let payload: serde_json::Value = row.try_get(4).map_err(|e| self.pg(e))?;
                let get = |i| row.try_get::<_, String>(i).map_err(|e| self.pg(e));
                let item = Item {
                    task: get(0)?,
                    id: get(1)?,
                    url: get(2)?,
                    kind: get(3)?,
                    payload: payload_from_json(&payload),
                };
                visit(Stored {
                    item,
                    first_stored_ms: row.try_get(5).map_err(|e| self.pg(e))?,
                    updated_ms: row.try_get(6).map_err(|e| self.pg(e))?,
                })?;
            }
        }
    }
}

impl ItemStore for PostgresStore {
    fn save(&self, batch: &[Item], yields: &[PageYield]) -> Result<u64, StoreError> {
        self.block_on(self.save_async(batch, yields))
    }

    fn count(&self, task: Option<&str>) -> Result<u64, StoreError> {
        self.block_on(async {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT COUNT(*) FROM items WHERE ($1::text IS NULL OR task = $1)",
                    &[&task],
                )
                .await
                .map_err(|e| self.pg(e))?;
            let n: i64 = row.try_get(0).map_err(|e| self.pg(e))?;
            Ok(n as u64)
        })
    }

    fn for_each(
        &self,
        filter: &Filter,
        visit: &mut dyn FnMut(Stored) -> std::io::Result<()>,
    ) -> Result<(), ExportError> {
        self.block_on(self.for_each_async(filter, visit))
    }

    fn payload_fields(&self, filter: &Filter) -> Result<Vec<String>, StoreError> {
        self.block_on(async {
            let client = self.client().await?;
            let (task, kind, since) = Self::params(filter);
            let rows = client
                .query(
                    "SELECT k FROM (
                         SELECT DISTINCT k FROM items, jsonb_object_keys(payload) AS k
                         WHERE ($1::text IS NULL OR task = $1) AND ($2::text IS NULL OR kind = $2)
                           AND ($3::int8 IS NULL OR saved_at >= $3)
                     ) AS keys
                     ORDER BY k COLLATE \"C\"",
                    &[&task, &kind, &since],
                )
                .await
                .map_err(|e| self.pg(e))?;
            rows.iter()
                .map(|r| r.try_get::<_, String>(0).map_err(|e| self.pg(e)))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact("postgres://spin:s3cret@db.example:5432/items"),
            "postgres://spin:***@db.example:5432/items"
        );
        assert_eq!(
            redact("postgresql://spin@db/items"),
            "postgresql://spin@db/items"
        );
        assert_eq!(redact("postgres://db/items"), "postgres://db/items");
        assert_eq!(
            redact("postgres://u:p@ss:w@rd@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redact("postgres://spin:a/b@h/db"),
            "postgres://spin:***@h/db",
            "a password with a slash"
        );
        assert_eq!(
            redact("postgres://h/db?user=spin&password=s3cret&sslmode=disable"),
            "postgres://h/db?user=spin&password=***&sslmode=disable"
        );
        assert_eq!(
            redact("postgres://spin:pa?ss@db/items"),
            "postgres://spin:***@db/items",
            "a password with a question mark"
        );
        assert_eq!(
            redact("postgres://db/items?application_name=a@b"),
            "postgres://db/items?application_name=a@b",
            "an @ in the query is not user information"
        );
    }

    #[test]
    fn pgpassword_is_used_only_when_the_url_has_no_password() {
        let parse = |url: &str| -> tokio_postgres::Config { url.parse().expect("a valid URL") };
        let env = Some(std::ffi::OsString::from("from-env"));
        let mut bare = parse("postgres://spin@db/items");
        password_from_env(&mut bare, env.clone());
        assert_eq!(bare.get_password(), Some(&b"from-env"[..]));
        let mut given = parse("postgres://spin:s3cret@db/items");
        password_from_env(&mut given, env);
        assert_eq!(given.get_password(), Some(&b"s3cret"[..]));
        let mut empty = parse("postgres://spin@db/items");
        password_from_env(&mut empty, Some(std::ffi::OsString::new()));
        assert_eq!(empty.get_password(), None);
    }

    #[test]
    fn nul_characters_become_storable() {
        let value = serde_json::json!({"a\u{0}": ["x\u{0}y", 1], "b": "ok"});
        assert_eq!(
            storable_json(value),
            serde_json::json!({"a\u{fffd}": ["x\u{fffd}y", 1], "b": "ok"})
        );
    }
}
