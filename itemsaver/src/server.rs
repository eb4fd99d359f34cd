//! The `ItemSaverService` implementation: batches go to the store, acks follow the commit.

use crate::metrics::{ItemSaverMetrics, Rejection};
use crate::store::ItemStore;
use common::activity::Activity;
use common::{Batch, Item, ItemSaverService, SaveAck, SaveError};
use std::sync::Arc;
use tarpc::context::Context;
use tracing::{debug, error};

/// Largest batch accepted by default; the engine's batches are far smaller.
pub const DEFAULT_MAX_BATCH: usize = 50_000;

/// Largest item accepted by default, in bytes (its text, roughly).
pub const DEFAULT_MAX_ITEM_BYTES: usize = 4 * 1024 * 1024;

/// Longest item id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 4 * 1024;

/// Serves saves into one store; clones share it.
#[derive(Clone, Debug)]
pub struct ItemSaverServer {
    store: Arc<dyn ItemStore>,
    max_batch: usize,
    max_item_bytes: usize,
    activity: Activity,
    metrics: Option<ItemSaverMetrics>,
}

impl ItemSaverServer {
    /// Serves `store`, refusing batches over `max_batch` items and items over
    /// `max_item_bytes`.
    pub fn new(store: Arc<dyn ItemStore>, max_batch: usize, max_item_bytes: usize) -> Self {
        ItemSaverServer {
            store,
            max_batch,
            max_item_bytes,
            activity: Activity::default(),
            metrics: None,
        }
    }

    /// Counts what is saved and refused in `metrics`.
    pub fn with_metrics(mut self, metrics: ItemSaverMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Why `item` can never be stored, if it cannot.
    fn refusal(&self, item: &Item) -> Option<String> {
        let bytes = item.approx_bytes();
        if item.id.is_empty() {
            Some("empty id".into())
        } else if item.id.len() > MAX_ID_BYTES {
            Some(format!(
                "id of {} bytes, over {MAX_ID_BYTES}",
                item.id.len()
            ))
        } else if bytes > self.max_item_bytes {
            Some(format!(
                "{bytes} bytes, over the limit of {} (--max_item_bytes)",
                self.max_item_bytes
            ))
        } else {
            None
        }
    }

    /// Stops taking batches and waits (at most `timeout`) for the commits in progress.
    pub async fn drain(&self, timeout: std::time::Duration) -> bool {
        self.activity.drain(timeout).await
    }
}

impl ItemSaverService for ItemSaverServer {
    async fn save(self, _: Context, batch: Batch) -> Result<SaveAck, SaveError> {
        let metrics = self.metrics.clone();
        if batch.items.len() > self.max_batch {
            if let Some(m) = &metrics {
                m.rejected(Rejection::BatchTooLarge, batch.items.len() as u64);
            }
            return Err(SaveError::BatchTooLarge {
                items: batch.items.len() as u64,
                limit: self.max_batch as u64,
            });
        }
        let Some(_working) = self.activity.start() else {
            return Err(SaveError::Store("the itemsaver is shutting down".into()));
        };
        let store = self.store.clone();
        // Stores block; the commit (and its fsync) happens off the async threads. The task runs
        // to completion even if the caller gives up, so a committed batch is never half-written.
        if let Some((index, item, reason)) = batch
            .items
            .iter()
            .enumerate()
            .find_map(|(i, item)| self.refusal(item).map(|why| (i, item, why)))
        {
            if let Some(m) = &metrics {
                m.rejected(Rejection::Invalid, 1);
            }
            return Err(SaveError::Rejected {
                index: index as u32,
                id: item.id.chars().take(200).collect(),
                reason,
            });
        }
        let started = std::time::Instant::now();
        let saved = tokio::task::spawn_blocking(move || store.save(&batch.items, &batch.pages))
            .await
            .map_err(|e| SaveError::Store(format!("save task failed: {e}")))?
            .map_err(|e| {
                error!(cause = %e, "save failed");
                if let Some(m) = &metrics {
                    m.store_error(e.kind());
                }
                SaveError::Store(e.to_string())
            })?;
        if let Some(m) = &metrics {
            m.saved(saved, started.elapsed());
        }
        debug!(saved, "batch committed");
        Ok(SaveAck { saved })
    }

    async fn count(self, _: Context, task: Option<String>) -> Result<u64, SaveError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.count(task.as_deref()))
            .await
            .map_err(|e| SaveError::Store(format!("count task failed: {e}")))?
            .map_err(|e| SaveError::Store(e.to_string()))
    }
}
