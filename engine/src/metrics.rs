//! The engine's Prometheus metrics, served at `/metrics` by the admin server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Hosts given their own throttling series at most; the rest share `host="other"`, so a crawl
/// over millions of hosts cannot grow the metrics without bound.
pub const MAX_HOST_SERIES: usize = 256;

/// A page's outcome: `class` is the HTTP status class (`2xx` ... `5xx`) or `error` when no
/// response came; `reason` is `ok`, `redirect` or the failure reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PageLabels {
    /// `2xx`, `3xx`, `4xx`, `5xx` or `error`.
    pub class: String,
    /// `ok`, `redirect`, or why it failed (`http_404`, `timeout`, ...).
    pub reason: String,
}

/// A worker, by its address.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    /// The worker's address.
    pub worker: String,
}

/// A host, by its `host:port` key.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabels {
    /// The host, or `other` past [`MAX_HOST_SERIES`] hosts.
    pub host: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Everything the engine counts for Prometheus.
#[derive(Debug)]
pub struct EngineMetrics {
    registry: Registry,
    /// Pages whose fetch ended, by status class and reason.
    pub pages: Family<PageLabels, Counter>,
    /// Items acknowledged by the itemsaver.
    pub items_saved: Counter,
    /// Items handed to the sink and not yet acknowledged.
    pub items_spooled: Gauge,
    /// Requests waiting in the frontier (queued, retrying or parked).
    pub queued: Gauge,
    /// Requests in flight.
    pub in_flight: Gauge,
    /// Workers up and taking work.
    pub workers_up: Gauge,
    /// Requests sent, per worker.
    pub worker_requests: Family<WorkerLabels, Counter>,
    /// Round-trip time of requests, per worker.
    pub worker_latency: Family<WorkerLabels, Histogram, fn() -> Histogram>,
    /// 429 and 503 answers that slowed a host down, per host.
    pub host_throttled: Family<HostLabels, Counter>,
    /// Page retries after failures that may pass.
    pub retries: Counter,
    /// Requests moved to another worker after a worker failed them.
    pub worker_retries: Counter,
    /// Pages rendered in a browser.
    pub pages_rendered: Counter,
    /// Seconds each rendered page took to render.
    pub render_seconds: Histogram,
    /// Items workers did not extract because a page's result reached its size limit.
    pub items_truncated: Counter,
    /// Items the item store refused on their own, kept in the state's dead letters.
    pub items_rejected: Counter,
    /// URLs refused before they were queued, by reason (`host_queue_full`).
    pub urls_refused: Family<ReasonLabels, Counter>,
    /// Runs of tasks ended (or ticks skipped), by task and status.
    pub task_runs: Family<TaskRunLabels, Counter>,
    hosts: Mutex<HashSet<String>>,
}

/// A task's run, by the task's name and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskRunLabels {
    /// The task's name.
    pub task: String,
    /// `done`, `failed`, `timeout`, `stopped`, `killed` or `skipped`.
    pub status: String,
}

/// The label of a refusal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: String,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("spinneret");
        let pages = Family::<PageLabels, Counter>::default();
        let items_saved = Counter::default();
        let items_spooled = Gauge::default();
        let queued = Gauge::default();
        let in_flight = Gauge::default();
        let workers_up = Gauge::default();
        let worker_requests = Family::<WorkerLabels, Counter>::default();
        let worker_latency: Family<WorkerLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let host_throttled = Family::<HostLabels, Counter>::default();
        let retries = Counter::default();
        let worker_retries = Counter::default();
        let pages_rendered = Counter::default();
        let render_seconds = Histogram::new([0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]);
        let items_truncated = Counter::default();
        let items_rejected = Counter::default();
        let urls_refused = Family::<ReasonLabels, Counter>::default();
        let task_runs = Family::<TaskRunLabels, Counter>::default();
        registry.register(
            "task_runs",
            "Runs of tasks ended, and scheduled ticks skipped, by task and status",
            task_runs.clone(),
        );
        registry.register(
            "items_truncated",
            "Items not extracted because a page's result reached the worker's size limit",
            items_truncated.clone(),
        );
        registry.register(
            "items_rejected",
            "Items the item store refused on their own (kept as dead letters in the state)",
            items_rejected.clone(),
        );
        registry.register(
            "urls_refused",
            "URLs refused before they were queued, by reason",
            urls_refused.clone(),
        );
        registry.register(
            "pages",
            "Pages whose fetch ended, by HTTP status class and outcome",
            pages.clone(),
        );
        registry.register(
            "items_saved",
            "Items the itemsaver acknowledged",
            items_saved.clone(),
        );
        registry.register(
            "items_spooled",
            "Items waiting for the itemsaver's acknowledgement",
            items_spooled.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting: queued, retrying, or held for paused tasks",
            queued.clone(),
        );
        registry.register("in_flight", "Requests in flight", in_flight.clone());
        registry.register(
            "workers_up",
            "Workers up and taking work",
            workers_up.clone(),
        );
        registry.register(
            "worker_requests",
            "Requests sent, per worker",
            worker_requests.clone(),
        );
        registry.register(
            "worker_request_seconds",
            "Round trip of a request to a worker, per worker",
            worker_latency.clone(),
        );
        registry.register(
            "host_throttled",
            "429 and 503 answers that slowed a host down, per host",
            host_throttled.clone(),
        );
        registry.register(
            "retries",
            "Page retries after failures that may pass",
            retries.clone(),
        );
        registry.register(
            "worker_retries",
            "Requests moved to another worker after a worker failed them",
            worker_retries.clone(),
        );
        registry.register(
            "pages_rendered",
            "Pages rendered in a browser before they were parsed",
            pages_rendered.clone(),
        );
        registry.register(
            "render_seconds",
            "Time each rendered page took to render",
            render_seconds.clone(),
        );
        EngineMetrics {
            registry,
            pages,
            items_saved,
            items_spooled,
            queued,
            in_flight,
            workers_up,
            worker_requests,
            worker_latency,
            host_throttled,
            retries,
            worker_retries,
            pages_rendered,
            render_seconds,
            items_truncated,
            items_rejected,
            urls_refused,
            task_runs,
            hosts: Mutex::new(HashSet::new()),
        }
    }
}

impl EngineMetrics {
    /// A fresh set, shared by the crawl and the admin server.
    pub fn shared() -> Arc<EngineMetrics> {
        Arc::new(EngineMetrics::default())
    }

    /// The registry to render.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts a page's outcome: an HTTP `status` (0 when none came) and a reason.
    pub fn page(&self, status: u16, reason: &str) {
        let class = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "error",
        };
        self.pages
            .get_or_create(&PageLabels {
                class: class.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// The request counter and latency histogram of one worker, to keep and update cheaply.
    pub fn worker(&self, addr: &str) -> (Counter, Histogram) {
        let labels = WorkerLabels {
            worker: addr.into(),
        };
        (
            self.worker_requests.get_or_create(&labels).clone(),
            self.worker_latency.get_or_create(&labels).clone(),
        )
    }

    /// Counts a 429 or 503 from `host`.
    pub fn throttled(&self, host: &str) {
        let host = match self.hosts.lock() {
            Ok(hosts) if hosts.contains(host) => host.to_owned(),
            Ok(mut hosts) if hosts.len() < MAX_HOST_SERIES => {
                hosts.insert(host.to_owned());
                host.to_owned()
            }
            _ => "other".to_owned(),
        };
        self.host_throttled
            .get_or_create(&HostLabels { host })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(m: &EngineMetrics) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, m.registry()).expect("encode");
        text
    }

    #[test]
    fn pages_are_counted_by_class_and_reason() {
        let m = EngineMetrics::default();
        m.page(200, "ok");
        m.page(404, "http_404");
        m.page(0, "timeout");
        let text = render(&m);
        assert!(
            text.contains(r#"spinneret_pages_total{class="2xx",reason="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"spinneret_pages_total{class="4xx",reason="http_404"} 1"#));
        assert!(text.contains(r#"spinneret_pages_total{class="error",reason="timeout"} 1"#));
    }

    #[test]
    fn host_series_are_bounded() {
        let m = EngineMetrics::default();
        for i in 0..MAX_HOST_SERIES + 10 {
            m.throttled(&format!("h{i}:80"));
        }
        m.throttled("h0:80");
        let text = render(&m);
        assert!(text.contains(r#"spinneret_host_throttled_total{host="other"} 10"#));
        assert!(text.contains(r#"spinneret_host_throttled_total{host="h0:80"} 2"#));
    }
}
