//! The crawl's figures, in one owner: what became of each request (counted at once in the
//! summary, the metrics and its task's figures, so they never disagree), the items sent and
//! saved, and the throughput history; and what is published of them: the status for the
//! admin API, the metrics' gauges and the live progress line.

use super::Crawl;
use super::tally::Outcome;
use crate::control::{CrawlStatus, HISTORY, Sample};
use crate::frontier::Frontier;
use crate::metrics::{EngineMetrics, ReasonLabels, TaskRunLabels};
use crate::summary::Summary;
use crate::tasks::Task;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The crawl's running figures. The crawl loop tells it what happened; nothing else changes
/// them.
pub(super) struct Figures {
    /// The figures the summary reports.
    summary: Summary,
    metrics: Arc<EngineMetrics>,
    /// Per worker index: its request counter and latency histogram.
    meters: Vec<Option<(Counter, Histogram)>>,
    /// Items extracted and handed to the sink.
    items_sent: u64,
    /// Items acknowledged in earlier runs of a resumed crawl.
    items_saved_before: u64,
    /// Items acknowledged when the metrics were last updated.
    items_saved_metered: u64,
    /// Items refused by the store when the metrics were last updated.
    items_rejected_metered: u64,
    /// Pages and items saved, once a second, for the dashboard's rate.
    history: VecDeque<Sample>,
    /// When the crawl started.
    started: Instant,
}

impl Figures {
    /// No figures yet, for a crawl whose items go to `items_at`, counted in `metrics`.
    pub(super) fn new(items_at: String, metrics: Arc<EngineMetrics>) -> Figures {
        Figures {
            summary: Summary {
                items_at,
                ..Summary::default()
            },
            metrics,
            meters: Vec::new(),
            items_sent: 0,
            items_saved_before: 0,
            items_saved_metered: 0,
            items_rejected_metered: 0,
            history: VecDeque::new(),
            started: Instant::now(),
        }
    }

    /// The crawl starts now; returns when.
    pub(super) fn start(&mut self) -> Instant {
        self.started = Instant::now();
        self.started
    }

    /// The figures so far.
    pub(super) fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Items extracted and handed to the sink so far.
    pub(super) fn items_extracted(&self) -> u64 {
        self.items_sent
    }

    /// The figures, for the end of the crawl to complete (see `Crawl::finish`).
    pub(super) fn into_summary(self) -> (Summary, u64) {
        (self.summary, self.items_saved_before)
    }

    /// Takes up the figures of an earlier run of a resumed crawl.
    pub(super) fn restore(&mut self, before: &Summary) {
        self.summary.restore_counters(before);
        self.items_saved_before = before.items_saved;
    }

    /// The figures to keep in the state: `saved` and `rejected` items by the sink so far.
    pub(super) fn counters_json(&self, saved: u64, rejected: u64) -> String {
        let mut counters = self.summary.clone();
        counters.items_saved = self.items_saved_before + saved;
        counters.items_rejected += rejected;
        serde_json::to_string(&counters).unwrap_or_default()
    }

    /// Items extracted from a page and handed to the sink.
    pub(super) fn items_sent(&mut self, n: u64) {
        self.items_sent += n;
    }

    /// One more turn of the crawl loop.
    pub(super) fn loop_turn(&mut self) {
        self.summary.loop_turns += 1;
    }

    /// A request is sent again after a back-off.
    pub(super) fn retried(&mut self) {
        self.summary.retries += 1;
        self.metrics.retries.inc();
    }

    /// A request goes back to its queue, not its fault (its worker died or left).
    pub(super) fn worker_retried(&mut self) {
        self.summary.worker_retries += 1;
        self.metrics.worker_retries.inc();
    }

    /// A host answered 429 or 503.
    pub(super) fn throttled(&mut self, host: &str) {
        self.metrics.throttled(host);
    }

    /// A page was rendered in a browser, taking `ms`.
    pub(super) fn rendered(&mut self, ms: u64) {
        let secs = ms as f64 / 1000.0;
        self.summary.pages_rendered += 1;
        self.summary.render_secs += secs;
        self.metrics.pages_rendered.inc();
        self.metrics.render_seconds.observe(secs);
    }

    /// A robots.txt was fetched.
    pub(super) fn robots_fetched(&mut self) {
        self.summary.robots_fetched += 1;
    }

    /// Links not followed: past a page's limit, or off the allowed domains.
    pub(super) fn links_dropped(&mut self, over_limit: u64, offsite: u64) {
        self.summary.links_over_limit += over_limit;
        self.summary.links_offsite += offsite;
    }

    /// What a shared frontier said as the engine left it.
    pub(super) fn closing(&mut self, late: u64, unreadable: u64) {
        self.summary.late_completions = Some(late);
        self.summary.unreadable_requests = Some(unreadable);
    }

    /// A run of `task` ended as `status` (`count` times: ticks skipped are counted at once).
    pub(super) fn runs(&mut self, task: &str, status: &str, count: u64) {
        self.metrics
            .task_runs
            .get_or_create(&TaskRunLabels {
                task: common::metrics_http::label_value(task),
                status: status.to_owned(),
            })
            .inc_by(count);
    }

    /// The request counter and latency histogram of worker `index`, made on first use.
    pub(super) fn meter(&mut self, index: usize, addr: &str) -> &(Counter, Histogram) {
        if self.meters.len() <= index {
            self.meters.resize_with(index + 1, || None);
        }
        let metrics = &self.metrics;
        self.meters[index].get_or_insert_with(|| metrics.worker(addr))
    }

    /// Counts `outcome` in the summary, the metrics and, when given, its task's figures.
    pub(super) fn count(&mut self, t: Option<&mut Task>, outcome: Outcome<'_>) {
        let s = &mut self.summary;
        let m = &self.metrics;
        match outcome {
            Outcome::Page {
                status,
                items,
                dropped,
                truncated,
            } => {
                if let Some(t) = t {
                    t.pages_ok += 1;
                    t.items += items;
                }
                s.pages_ok += 1;
                s.items_dropped += u64::from(dropped);
                s.items_truncated += u64::from(truncated);
                m.items_truncated.inc_by(u64::from(truncated));
                m.page(status, "ok");
            }
            Outcome::Redirect { status } => {
                if let Some(t) = t {
                    t.pages_redirected += 1;
                }
                s.pages_redirected += 1;
                m.page(status, "redirect");
            }
            Outcome::Failed { status, reason } => {
                if let Some(t) = t {
                    t.pages_failed += 1;
                }
                *s.pages_failed.entry(reason.into()).or_default() += 1;
                m.page(status, reason);
            }
            Outcome::Skipped { reason } => {
                if let Some(t) = t {
                    t.skipped += 1;
                }
                *s.skipped.entry(reason.into()).or_default() += 1;
            }
            Outcome::Refused { reason } => {
                if let Some(t) = t {
                    t.skipped += 1;
                }
                *s.skipped.entry(reason.into()).or_default() += 1;
                m.urls_refused
                    .get_or_create(&ReasonLabels {
                        reason: reason.into(),
                    })
                    .inc();
            }
        }
    }
}

/// How often the figures are published.
pub(super) const PUBLISH_EVERY: Duration = Duration::from_millis(250);

impl<F: Frontier> Crawl<F> {
    /// Publishes the figures: to the admin API, the metrics and the progress line. `state`
    /// overrides the derived state (`stopping`, `finished`) when not empty.
    pub(super) fn publish(&mut self, state: &'static str) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.figures.started).as_secs_f64();
        let saved = self.figures.items_saved_before + self.sink.saved();
        let pages = self.figures.summary.pages_ok
            + self.figures.summary.failed_total()
            + self.figures.summary.pages_redirected;
        if self
            .figures
            .history
            .back()
            .is_none_or(|s| elapsed - s.t >= 1.0)
        {
            if self.figures.history.len() >= HISTORY {
                self.figures.history.pop_front();
            }
            self.figures.history.push_back(Sample {
                t: elapsed,
                pages,
                items: saved,
            });
        }
        let queued = (self.frontier.queued() + self.frontier.parked()) as u64;
        let state = match state {
            "" if self.slots.in_flight() == 0 && queued == 0 && self.config.serve => "idle",
            "" => "running",
            s => s,
        };
        let status = CrawlStatus {
            state,
            elapsed_secs: elapsed,
            pages_ok: self.figures.summary.pages_ok,
            pages_failed: self.figures.summary.failed_total(),
            pages_redirected: self.figures.summary.pages_redirected,
            skipped: self.figures.summary.skipped.clone(),
            errors: self.figures.summary.pages_failed.clone(),
            retries: self.figures.summary.retries,
            queued,
            urls_seen: self.frontier.seen() as u64,
            redis_commands: self.frontier.store_commands(),
            in_flight: self.slots.in_flight() as u64,
            items_extracted: self.figures.items_sent,
            items_saved: saved,
            pages_per_sec: rate(&self.figures.history, elapsed, pages),
            tasks: self.tasks.views(),
            history: self.figures.history.iter().copied().collect(),
            serve: self.config.serve,
        };
        let m = &self.figures.metrics;
        m.items_saved
            .inc_by(saved.saturating_sub(self.figures.items_saved_metered));
        self.figures.items_saved_metered = self.figures.items_saved_metered.max(saved);
        let rejected = self.sink.rejected();
        m.items_rejected
            .inc_by(rejected.saturating_sub(self.figures.items_rejected_metered));
        self.figures.items_rejected_metered = self.figures.items_rejected_metered.max(rejected);
        m.items_spooled.set(
            self.figures
                .items_sent
                .saturating_sub(self.sink.saved() + rejected) as i64,
        );
        m.queued.set(queued as i64);
        m.in_flight.set(self.slots.in_flight() as i64);
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
