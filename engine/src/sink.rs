//! Sending items to the itemsaver in batches, by count or after a short wait.
//!
//! The engine hands items to a bounded channel; one task batches them and waits for each
//! batch's ack. A slow itemsaver fills the channel, which slows the crawl instead of
//! growing memory.

use common::{Item, ItemSaverServiceClient, transport};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// Batches of items buffered between the crawl and the sending task.
const CHANNEL_BATCHES: usize = 64;
/// Attempts to deliver one batch before the crawl gives up.
const SAVE_ATTEMPTS: u32 = 5;

/// Why items could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The itemsaver kept failing a batch.
    #[error("itemsaver failed a batch of {items} items {attempts} times; last error: {cause}")]
    Save {
        /// Items in the batch.
        items: usize,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        cause: String,
    },
    /// The sending task stopped unexpectedly.
    #[error("item sender stopped: {0}")]
    Stopped(String),
}

/// How the sink settings are chosen.
#[derive(Clone, Copy, Debug)]
pub struct SinkConfig {
    /// Items per batch at most.
    pub batch_size: usize,
    /// Longest wait before a partial batch is sent.
    pub batch_interval: Duration,
    /// Deadline of each save call.
    pub rpc_timeout: Duration,
}

/// The crawl's end of the item pipeline.
#[derive(Debug)]
pub struct ItemSink {
    tx: mpsc::Sender<Vec<Item>>,
    task: JoinHandle<Result<u64, SinkError>>,
}

impl ItemSink {
    /// Starts the sending task for `client`.
    pub fn start(client: ItemSaverServiceClient, config: SinkConfig) -> ItemSink {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let task = tokio::spawn(send_loop(client, config, rx));
        ItemSink { tx, task }
    }

    /// Queues `items`, waiting while the itemsaver is behind.
    pub async fn send(&self, items: Vec<Item>) -> Result<(), SinkError> {
        if items.is_empty() {
            return Ok(());
        }
        self.tx
            .send(items)
            .await
            .map_err(|_| SinkError::Stopped("the sending task ended early".into()))
    }

    /// Sends everything still queued and returns how many items the itemsaver acknowledged.
    pub async fn finish(self) -> Result<u64, SinkError> {
        drop(self.tx);
        self.task
            .await
            .map_err(|e| SinkError::Stopped(e.to_string()))?
    }
}

async fn send_loop(
    client: ItemSaverServiceClient,
    config: SinkConfig,
    mut rx: mpsc::Receiver<Vec<Item>>,
) -> Result<u64, SinkError> {
    let mut buffer: Vec<Item> = Vec::new();
    let mut saved = 0u64;
    let mut tick = tokio::time::interval(config.batch_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Some(items) => {
                    buffer.extend(items);
                    while buffer.len() >= config.batch_size {
                        let rest = buffer.split_off(config.batch_size);
                        saved += save(&client, std::mem::replace(&mut buffer, rest), config.rpc_timeout).await?;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if !buffer.is_empty() {
                    saved += save(&client, std::mem::take(&mut buffer), config.rpc_timeout).await?;
                }
            }
        }
    }
    if !buffer.is_empty() {
        saved += save(&client, buffer, config.rpc_timeout).await?;
    }
    Ok(saved)
}

/// Delivers one batch, retrying with back-off; saving is idempotent, so a retry after a lost
/// ack cannot duplicate items.
async fn save(
    client: &ItemSaverServiceClient,
    batch: Vec<Item>,
    timeout: Duration,
) -> Result<u64, SinkError> {
    let mut backoff = Duration::from_millis(200);
    let mut cause = String::new();
    for attempt in 1..=SAVE_ATTEMPTS {
        match client
            .save(transport::deadline(timeout), batch.clone())
            .await
        {
            Ok(Ok(ack)) => {
                debug!(items = ack.saved, "batch saved");
                return Ok(ack.saved);
            }
            Ok(Err(e)) => cause = e.to_string(),
            Err(e) => cause = e.to_string(),
        }
        warn!(attempt, items = batch.len(), %cause, "saving a batch failed; retrying");
        if attempt < SAVE_ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
    Err(SinkError::Save {
        items: batch.len(),
        attempts: SAVE_ATTEMPTS,
        cause,
    })
}
