//! The end of a crawl: the items delivered, the summary made up and kept with the state.

use super::*;
use crate::frontier::Frontier;

impl<F: Frontier> Crawl<F> {
    pub(super) async fn finish(
        mut self,
        started: Instant,
        stopped: Stopped,
    ) -> Result<Summary, EngineError> {
        self.flush_pending().await?;
        let saved = self.sink.finish().await;
        let Crawl {
            figures,
            frontier,
            pool,
            journal,
            ..
        } = self;
        let state = journal.state();
        let (mut summary, items_saved_before) = figures.into_summary();
        let delivered = match saved {
            Ok(delivered) => delivered,
            Err(e) => {
                // Keep what the state has (the undelivered items are in its spool) before
                // reporting the failure.
                if let Err(e) = state
                    .counters(serde_json::to_string(&summary).unwrap_or_default())
                    .await
                {
                    warn!(cause = %e, "the figures could not be recorded in the state");
                }
                if let Err(e) = state.flush().await {
                    warn!(cause = %e, "the state could not be committed before stopping");
                }
                return Err(e.into());
            }
        };
        summary.items_saved = items_saved_before + delivered.saved;
        summary.items_rejected += delivered.rejected;
        let elapsed = started.elapsed().as_secs_f64();
        summary.elapsed_secs = elapsed;
        let pages = summary.pages_ok + summary.failed_total() + summary.pages_redirected;
        summary.pages_per_sec = if elapsed > 0.0 {
            pages as f64 / elapsed
        } else {
            0.0
        };
        summary.urls_seen = frontier.seen() as u64;
        summary.left_in_queue = (frontier.queued() + frontier.parked()) as u64;
        summary.stopped = stopped.as_str().into();
        summary.peak_rss_mb = crate::summary::peak_rss_mb();
        summary.cpu_secs = crate::summary::cpu_secs();
        summary.rpc_calls = pool.traffic().calls();
        summary.rpc_bytes = pool.traffic().bytes();
        summary.workers = pool
            .workers()
            .iter()
            .map(|w| WorkerShare {
                addr: w.addr.clone(),
                requests: w.requests.load(Ordering::Relaxed),
                down: w.is_down(),
            })
            .collect();
        state
            .counters(serde_json::to_string(&summary).unwrap_or_default())
            .await?;
        state.flush().await?;
        Ok(summary)
    }
}
