//! Reading a state back: what an earlier run left (seen URLs, the queue, undelivered items,
//! tasks and figures).

use super::*;

/// Everything the state at `path` holds, read through `conn`.
pub(super) fn restore(conn: &Connection, path: &Path) -> Result<Restored, StateError> {
    let sqlite = |source| StateError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let mut r = Restored::default();
    let mut stmt = conn.prepare("SELECT scope, fp FROM seen").map_err(sqlite)?;
    r.seen = stmt
        .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))
        .map_err(sqlite)?
        .map(|row| row.map(|(scope, fp)| (scope as u64, fp as u64)))
        .collect::<Result<_, _>>()
        .map_err(sqlite)?;
    let mut stmt = conn
        .prepare("SELECT id, record FROM tasks ORDER BY id")
        .map_err(sqlite)?;
    r.tasks = stmt
        .query_map([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)))
        .map_err(sqlite)?
        .collect::<Result<_, _>>()
        .map_err(sqlite)?;
    r.queue = load_records(
        conn,
        path,
        "SELECT id, entry FROM queue ORDER BY id",
        "queue entry",
    )?;
    r.spool = load_records(
        conn,
        path,
        "SELECT seq, page FROM pages ORDER BY seq",
        "spooled page",
    )?;
    // A state written before items were spooled by page: one item a row.
    let single: Vec<(u64, Item)> = load_records(
        conn,
        path,
        "SELECT seq, item FROM spool ORDER BY seq",
        "spooled item",
    )?;
    r.spool.extend(single.into_iter().map(|(seq, item)| {
        (
            seq,
            SpooledPage {
                items: vec![item],
                yields: Vec::new(),
            },
        )
    }));
    r.spool.sort_by_key(|(seq, _)| *seq);
    r.counters = conn
        .query_row("SELECT value FROM meta WHERE key = 'counters'", [], |row| {
            row.get(0)
        })
        .ok();
    r.crawl = conn
        .query_row("SELECT value FROM meta WHERE key = 'crawl'", [], |row| {
            row.get(0)
        })
        .ok();
    r.resumed = !r.seen.is_empty();
    Ok(r)
}

/// Reads `(key, bincode record)` rows in key order, decoding each record.
fn load_records<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    path: &Path,
    sql: &str,
    what: &str,
) -> Result<Vec<(u64, T)>, StateError> {
    let sqlite = |source| StateError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let mut stmt = conn.prepare(sql).map_err(sqlite)?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, i64>(0)? as u64, row.get::<_, Vec<u8>>(1)?))
        })
        .map_err(sqlite)?;
    let mut out = Vec::new();
    for row in rows {
        let (key, bytes) = row.map_err(sqlite)?;
        let record = bincode::deserialize(&bytes).map_err(|e| StateError::Damaged {
            path: path.to_owned(),
            message: format!("{what} {key}: {e}"),
        })?;
        out.push((key, record));
    }
    Ok(out)
}
