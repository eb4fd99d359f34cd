//! The crawl's figures for the outside: the published status, the throughput history, the
//! metrics' gauges and the live progress line.

use super::Crawl;
use crate::control::{CrawlStatus, HISTORY, Sample};
use crate::frontier::Frontier;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often the figures are published.
pub(super) const PUBLISH_EVERY: Duration = Duration::from_millis(250);

impl<F: Frontier> Crawl<F> {
    /// Publishes the figures: to the admin API, the metrics and the progress line. `state`
    /// overrides the derived state (`stopping`, `finished`) when not empty.
    pub(super) fn publish(&mut self, state: &'static str) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let saved = self.items_saved_before + self.sink.saved();
        let pages =
            self.summary.pages_ok + self.summary.failed_total() + self.summary.pages_redirected;
        if self.history.back().is_none_or(|s| elapsed - s.t >= 1.0) {
            if self.history.len() >= HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(Sample {
                t: elapsed,
                pages,
                items: saved,
            });
        }
        let queued = (self.frontier.queued() + self.frontier.parked()) as u64;
        let state = match state {
            "" if self.in_flight == 0 && queued == 0 && self.config.serve => "idle",
            "" => "running",
            s => s,
        };
        let status = CrawlStatus {
            state,
            elapsed_secs: elapsed,
            pages_ok: self.summary.pages_ok,
            pages_failed: self.summary.failed_total(),
            pages_redirected: self.summary.pages_redirected,
            skipped: self.summary.skipped.clone(),
            errors: self.summary.pages_failed.clone(),
            retries: self.summary.retries,
            queued,
            urls_seen: self.frontier.seen() as u64,
            redis_commands: self.frontier.store_commands(),
            in_flight: self.in_flight as u64,
            items_extracted: self.items_sent,
            items_saved: saved,
            pages_per_sec: rate(&self.history, elapsed, pages),
            tasks: self.tasks.views(),
            history: self.history.iter().copied().collect(),
            serve: self.config.serve,
        };
        let m = &self.metrics;
        m.items_saved
            .inc_by(saved.saturating_sub(self.items_saved_metered));
        self.items_saved_metered = self.items_saved_metered.max(saved);
        let rejected = self.sink.rejected();
        m.items_rejected
            .inc_by(rejected.saturating_sub(self.items_rejected_metered));
        self.items_rejected_metered = self.items_rejected_metered.max(rejected);
        m.items_spooled
            .set(self.items_sent.saturating_sub(self.sink.saved() + rejected) as i64);
        m.queued.set(queued as i64);
        m.in_flight.set(self.in_flight as i64);
        let workers_up = self.pool.workers_up();
        m.workers_up.set(workers_up as i64);
        self.progress.show(&status, workers_up);
        self.end.status.send_replace(Arc::new(status));
    }
}

/// Pages per second over the last five seconds of `history`, up to `pages` now.
fn rate(history: &std::collections::VecDeque<Sample>, now: f64, pages: u64) -> f64 {
    let Some(from) = history
        .iter()
        .rev()
        .find(|s| now - s.t >= 5.0)
        .or(history.front())
    else {
        return 0.0;
    };
    let dt = now - from.t;
    if dt <= 0.0 {
        0.0
    } else {
        pages.saturating_sub(from.pages) as f64 / dt
    }
}
