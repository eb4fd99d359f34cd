//! The worker's own Prometheus metrics, served at `/metrics` with `worker --metrics ADDR`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

/// How a crawl request ended: `ok`, or the failure reason (`http_404`, `timeout`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok` or a failure reason.
    pub outcome: String,
}

/// What a worker counts about the requests it serves.
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    registry: Arc<Registry>,
    requests: Family<OutcomeLabels, Counter>,
    seconds: Histogram,
    in_flight: Gauge,
    bytes: Counter,
    items: Counter,
    refused: Family<ReasonLabels, Counter>,
}

/// The label of a refusal's reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        let requests = Family::<OutcomeLabels, Counter>::default();
        let seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let in_flight = Gauge::default();
        let bytes = Counter::default();
        let items = Counter::default();
        let mut registry = Registry::with_prefix("spinneret_worker");
        registry.register(
            "requests",
            "Crawl requests served, by outcome (ok or the failure reason)",
            requests.clone(),
        );
        registry.register(
            "request_seconds",
            "Time to fetch and parse one page",
            seconds.clone(),
        );
        registry.register(
            "in_flight",
            "Crawl requests being served",
            in_flight.clone(),
        );
        registry.register("body_bytes", "Body bytes fetched", bytes.clone());
        registry.register("items", "Items extracted", items.clone());
        let refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "peers_refused",
            "Connections refused at their set-up, by reason (wrong_token, no_token, version_mismatch, ...)",
            refused.clone(),
        );
        WorkerMetrics {
            registry: Arc::new(registry),
            requests,
            seconds,
            in_flight,
            bytes,
            items,
            refused,
        }
    }
}

impl WorkerMetrics {
    /// The registry to serve.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Counts a peer refused at a connection's set-up.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts a request as started; the guard counts it as ended when dropped.
    pub(crate) fn start(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// Records a finished crawl request.
    pub(crate) fn finished(&self, outcome: String, took: Duration, bytes: u64, items: usize) {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.seconds.observe(took.as_secs_f64());
        self.bytes.inc_by(bytes);
        self.items.inc_by(items as u64);
    }
}

/// Holds a request in the in-flight gauge.
pub(crate) struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
