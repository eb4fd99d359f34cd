//! The state's one writer: a thread that takes the crawl loop's changes in groups and commits
//! them together, every `--state_sync_ms` or at a flush; a failed commit stops it, so that
//! nothing after a lost group is committed.

use super::*;

/// The writer: gathers operations and commits them in batches, every `sync` or when asked.
/// Commits what comes down `rx` at `path`, in groups, until the handles are dropped or a
/// commit fails.
pub(super) fn write_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    sync: Duration,
    path: PathBuf,
) {
    let mut batch: Vec<Op> = Vec::new();
    loop {
        // Wait for the first operation, then gather what arrives within the sync interval.
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        batch.push(first);
        let deadline = std::time::Instant::now() + sync;
        let mut flush_now = matches!(batch.last(), Some(Op::Flush(_)));
        while !flush_now && batch.len() < MAX_OPS_PER_COMMIT {
            match rx.try_recv() {
                Ok(op) => {
                    flush_now = matches!(op, Op::Flush(_));
                    batch.push(op);
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(Duration::from_millis(5)));
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        let result = commit(&mut conn, &mut batch).map_err(std::sync::Arc::new);
        let failed = result.is_err();
        if let Err(e) = &result {
            error!(state = %path.display(), cause = %e, "writing the crawl state failed; the crawl stops");
        }
        for op in batch.drain(..) {
            if let Op::Flush(done) = op {
                let _ = done.send(result.clone());
            }
        }
        if failed {
            // Nothing after a lost batch may be committed, or the state would no longer be
            // consistent: stop, so that every later call fails and the crawl ends.
            break;
        }
    }
    debug!(state = %path.display(), "state writer stopped");
}

fn commit(conn: &mut Connection, batch: &mut [Op]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut seen =
            tx.prepare_cached("INSERT OR IGNORE INTO seen (fp, scope) VALUES (?1, ?2)")?;
        let mut forget = tx.prepare_cached("DELETE FROM seen WHERE scope = ?1")?;
        let mut task =
            tx.prepare_cached("INSERT OR REPLACE INTO tasks (id, record) VALUES (?1, ?2)")?;
        let mut enqueue =
            tx.prepare_cached("INSERT OR REPLACE INTO queue (id, entry) VALUES (?1, ?2)")?;
        let mut finish = tx.prepare_cached("DELETE FROM queue WHERE id = ?1")?;
        let mut spool =
            tx.prepare_cached("INSERT OR REPLACE INTO pages (seq, page) VALUES (?1, ?2)")?;
        let mut acked = tx.prepare_cached("DELETE FROM pages WHERE seq = ?1")?;
        let mut acked_old = tx.prepare_cached("DELETE FROM spool WHERE seq = ?1")?;
        let mut dead = tx.prepare_cached(
            "INSERT OR REPLACE INTO dead_letters (task, id, reason, item, at)
             VALUES (?1, ?2, ?3, ?4, strftime('%s', 'now'))",
        )?;
        let mut meta =
            tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?;
        let mut flat: Vec<&Op> = Vec::with_capacity(batch.len());
        for op in batch.iter() {
            match op {
                Op::Group(ops) => flat.extend(ops.iter()),
                other => flat.push(other),
            }
        }
        for op in flat {
            match op {
                Op::Seen(scope, fp) => {
                    seen.execute([*fp as i64, *scope as i64])?;
                }
                Op::Forget(scope) => {
                    forget.execute([*scope as i64])?;
                }
                Op::Task(id, record) => {
                    task.execute(params![*id as i64, record])?;
                }
                Op::Enqueue(id, entry) => {
                    enqueue.execute(params![*id as i64, entry])?;
                }
                Op::Finish(id) => {
                    finish.execute([*id as i64])?;
                }
                Op::Spool(seq, item) => {
                    spool.execute(params![*seq as i64, item])?;
                }
                Op::Acked(seqs) => {
                    for seq in seqs {
                        acked.execute([*seq as i64])?;
                        acked_old.execute([*seq as i64])?;
                    }
                }
                Op::DeadLetter {
                    task,
                    id,
                    reason,
                    item,
                } => {
                    dead.execute(params![task, id, reason, item])?;
                }
                Op::Counters(json) => {
                    meta.execute(params!["counters", json])?;
                }
                Op::Crawl(json) => {
                    meta.execute(params!["crawl", json])?;
                }
                Op::Flush(_) | Op::Group(_) => {}
            }
        }
    }
    tx.commit()
}
