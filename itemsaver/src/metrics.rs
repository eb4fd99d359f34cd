//! The itemsaver's own Prometheus metrics, served at `/metrics` with `itemsaver --metrics
//! ADDR`: what it saved (items, batches, and how long each commit took), what it refused
//! (items, store errors by kind), and the peers it refused at the connection set-up. Every
//! series but the refused peers carries the kind of store (`store="sqlite"`, `"postgres"`,
//! `"jsonl"`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

/// The label of a refusal's reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The label of the kind of store.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
}

/// A store's series with a reason or an error's kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreKindLabels {
    store: &'static str,
    kind: &'static str,
}

/// Why items were refused without reaching the store.
#[derive(Clone, Copy, Debug)]
pub enum Rejection {
    /// An item that can never be stored (empty or long id, too large).
    Invalid,
    /// A batch over `--max_batch`: its items are counted.
    BatchTooLarge,
}

impl Rejection {
    fn label(self) -> &'static str {
        match self {
            Rejection::Invalid => "invalid",
            Rejection::BatchTooLarge => "batch_too_large",
        }
    }
}

fn save_histogram() -> Histogram {
    // 1 ms to about 33 s: an fsync on a quiet disk to a PostgreSQL server under load.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// What an itemsaver counts.
#[derive(Clone, Debug)]
pub struct ItemSaverMetrics {
    registry: Arc<Registry>,
    store: &'static str,
    refused: Family<ReasonLabels, Counter>,
    items_saved: Family<StoreLabels, Counter>,
    batches_saved: Family<StoreLabels, Counter>,
    items_rejected: Family<StoreKindLabels, Counter>,
    store_errors: Family<StoreKindLabels, Counter>,
    save_seconds: Family<StoreLabels, Histogram, fn() -> Histogram>,
}

impl Default for ItemSaverMetrics {
    fn default() -> Self {
        ItemSaverMetrics::new("sqlite")
    }
}

impl ItemSaverMetrics {
    /// The metrics of an itemsaver saving into a store of kind `store`.
    pub fn new(store: &'static str) -> Self {
        let refused = Family::<ReasonLabels, Counter>::default();
        let items_saved = Family::<StoreLabels, Counter>::default();
        let batches_saved = Family::<StoreLabels, Counter>::default();
        let items_rejected = Family::<StoreKindLabels, Counter>::default();
        let store_errors = Family::<StoreKindLabels, Counter>::default();
        let save_seconds: Family<StoreLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(save_histogram);
        let mut registry = Registry::with_prefix("spinneret_itemsaver");
        registry.register(
            "peers_refused",
            "Connections refused at their set-up, by reason (wrong_token, no_token, version_mismatch, tls, ...)",
            refused.clone(),
        );
        registry.register(
            "items_saved",
            "Items committed to the store (an update of a stored item counts)",
            items_saved.clone(),
        );
        registry.register(
            "batches_saved",
            "Batches committed to the store, each acknowledged after its commit",
            batches_saved.clone(),
        );
        registry.register(
            "items_rejected",
            "Items refused before the store: kind invalid (empty or long id, over --max_item_bytes; its whole batch is refused) or batch_too_large (every item of a batch over --max_batch)",
            items_rejected.clone(),
        );
        registry.register(
            "store_errors",
            "Batches the store failed to commit, by kind of error (sqlite, io, postgres, pool, ...); the engine sends them again",
            store_errors.clone(),
        );
        registry.register(
            "save_seconds",
            "Time to commit one batch to the store",
            save_seconds.clone(),
        );
        // Every series shows from the start, at zero: a dashboard needs no first save.
        let labels = StoreLabels { store };
        drop(items_saved.get_or_create(&labels));
        drop(batches_saved.get_or_create(&labels));
        drop(save_seconds.get_or_create(&labels));
        ItemSaverMetrics {
            registry: Arc::new(registry),
            store,
            refused,
            items_saved,
            batches_saved,
            items_rejected,
            store_errors,
            save_seconds,
        }
    }

    /// The registry to serve.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Counts a peer refused at a connection's set-up.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts a batch of `items` committed in `took`.
    pub fn saved(&self, items: u64, took: Duration) {
        let labels = StoreLabels { store: self.store };
        self.items_saved.get_or_create(&labels).inc_by(items);
        self.batches_saved.get_or_create(&labels).inc();
        self.save_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Counts `items` refused before the store.
    pub fn rejected(&self, why: Rejection, items: u64) {
        self.items_rejected
            .get_or_create(&StoreKindLabels {
                store: self.store,
                kind: why.label(),
            })
            .inc_by(items);
    }

    /// Counts a batch the store failed to commit with an error of `kind`.
    pub fn store_error(&self, kind: &'static str) {
        self.store_errors
            .get_or_create(&StoreKindLabels {
                store: self.store,
                kind,
            })
            .inc();
    }
}
