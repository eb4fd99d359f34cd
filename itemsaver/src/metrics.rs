//! The itemsaver's own Prometheus metrics, served at `/metrics` with `itemsaver --metrics
//! ADDR`: the peers it refused at the connection set-up, by reason.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// The label of a refusal's reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// What an itemsaver counts.
#[derive(Clone, Debug)]
pub struct ItemSaverMetrics {
    registry: Arc<Registry>,
    refused: Family<ReasonLabels, Counter>,
}

impl Default for ItemSaverMetrics {
    fn default() -> Self {
        let refused = Family::<ReasonLabels, Counter>::default();
        let mut registry = Registry::with_prefix("spinneret_itemsaver");
        registry.register(
            "peers_refused",
            "Connections refused at their set-up, by reason (wrong_token, no_token, version_mismatch, tls, ...)",
            refused.clone(),
        );
        ItemSaverMetrics {
            registry: Arc::new(registry),
            refused,
        }
    }
}

impl ItemSaverMetrics {
    /// The registry to serve.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Counts a peer refused at a connection's set-up.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }
}
