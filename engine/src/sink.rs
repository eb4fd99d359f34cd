//! Sending items to the itemsaver in batches, by count or after a short wait, surviving an
//! itemsaver that is slow, down, or restarted.
//!
//! Every item is in the durable spool (see `state`) before it gets here, under a sequence
//! number; the spool forgets it only when the itemsaver has acknowledged it. Buffers here are
//! bounded: a slow or absent itemsaver slows the crawl instead of growing memory.

use crate::state::StateHandle;
use common::traffic::Traffic;
use common::{Batch, Item, ItemSaverServiceClient, transport};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// Batches of items buffered between the crawl and the sending task.
const CHANNEL_BATCHES: usize = 64;
/// Largest batch in bytes (roughly), well under the RPC frame limit.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// An item with its spool sequence number.
pub type Spooled = (u64, Item);

/// Why items could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The itemsaver did not take items for too long.
    #[error(
        "the itemsaver took no items for {waited:?} (last error: {cause}); {pending} items are kept in the crawl state and sent when the crawl is resumed"
    )]
    Unavailable {
        /// How long it was tried.
        waited: Duration,
        /// The last failure.
        cause: String,
        /// Items not delivered.
        pending: usize,
    },
    /// The sending task stopped unexpectedly.
    #[error("item sender stopped: {0}")]
    Stopped(String),
}

/// Where items go.
#[derive(Debug)]
pub enum Target {
    /// An itemsaver server, reconnected when its connection breaks.
    Remote {
        /// Its address.
        addr: String,
        /// The connected client.
        client: ItemSaverServiceClient,
        /// Where its traffic is counted.
        traffic: Arc<Traffic>,
    },
    /// The itemsaver inside this process.
    Local(ItemSaverServiceClient),
}

/// How the sink behaves.
#[derive(Clone, Copy, Debug)]
pub struct SinkConfig {
    /// Items per batch at most.
    pub batch_size: usize,
    /// Longest wait before a partial batch is sent.
    pub batch_interval: Duration,
    /// Deadline of each save call.
    pub rpc_timeout: Duration,
    /// How long to keep trying an itemsaver that takes nothing before giving up.
    pub unavailable_timeout: Duration,
    /// Time allowed to reconnect to the itemsaver.
    pub connect_timeout: Duration,
}

/// The crawl's end of the item pipeline.
#[derive(Debug)]
pub struct ItemSink {
    tx: mpsc::Sender<Vec<Spooled>>,
    task: JoinHandle<Result<u64, SinkError>>,
    saved: Arc<AtomicU64>,
}

impl ItemSink {
    /// Starts the sending task; acknowledged items are removed from `state`'s spool.
    pub fn start(target: Target, config: SinkConfig, state: StateHandle) -> ItemSink {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let saved = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(send_loop(target, config, state, rx, saved.clone()));
        ItemSink { tx, task, saved }
    }

    /// Items acknowledged so far.
    pub fn saved(&self) -> u64 {
        self.saved.load(Ordering::Relaxed)
    }

    /// Queues `items`, waiting while the itemsaver is behind.
    pub async fn send(&self, items: Vec<Spooled>) -> Result<(), SinkError> {
        if items.is_empty() {
            return Ok(());
        }
        self.tx
            .send(items)
            .await
            .map_err(|_| SinkError::Stopped("the sending task ended".into()))
    }

    /// Sends everything still queued and returns how many items the itemsaver acknowledged.
    pub async fn finish(self) -> Result<u64, SinkError> {
        drop(self.tx);
        self.task
            .await
            .map_err(|e| SinkError::Stopped(e.to_string()))?
    }
}

struct Sender {
    target: Target,
    config: SinkConfig,
    state: StateHandle,
    saved: Arc<AtomicU64>,
}

async fn send_loop(
    target: Target,
    config: SinkConfig,
    state: StateHandle,
    mut rx: mpsc::Receiver<Vec<Spooled>>,
    saved: Arc<AtomicU64>,
) -> Result<u64, SinkError> {
    let mut sender = Sender {
        target,
        config,
        state,
        saved,
    };
    let mut buffer: Vec<Spooled> = Vec::new();
    let mut bytes = 0usize;
    let mut tick = tokio::time::interval(config.batch_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Some(items) => {
                    bytes += items.iter().map(|(_, i)| approx_size(i)).sum::<usize>();
                    buffer.extend(items);
                    while buffer.len() >= config.batch_size || bytes >= MAX_BATCH_BYTES {
                        let take = take_batch(&buffer, config.batch_size);
                        let rest = buffer.split_off(take);
                        let batch = std::mem::replace(&mut buffer, rest);
                        bytes = buffer.iter().map(|(_, i)| approx_size(i)).sum();
                        sender.deliver(batch).await?;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if !buffer.is_empty() {
                    bytes = 0;
                    sender.deliver(std::mem::take(&mut buffer)).await?;
                }
            }
        }
    }
    while !buffer.is_empty() {
        let take = take_batch(&buffer, config.batch_size);
        let rest = buffer.split_off(take);
        sender.deliver(std::mem::replace(&mut buffer, rest)).await?;
    }
    Ok(sender.saved.load(Ordering::Relaxed))
}

/// How many items from the front make a batch within the count and byte limits (at least one).
fn take_batch(buffer: &[Spooled], max_items: usize) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for (_, item) in buffer.iter().take(max_items) {
        bytes += approx_size(item);
        if n > 0 && bytes > MAX_BATCH_BYTES {
            break;
        }
        n += 1;
    }
    n.max(1).min(buffer.len())
}

fn approx_size(item: &Item) -> usize {
    let payload: usize = item
        .payload
        .iter()
        .map(|(k, v)| k.len() + value_size(v))
        .sum();
    item.id.len() + item.url.len() + item.kind.len() + item.task.len() + payload + 32
}

fn value_size(v: &common::Value) -> usize {
    match v {
        common::Value::Text(s) => s.len(),
        common::Value::List(items) => {
            items.len() * 16
                + items
                    .iter()
                    .map(|s| match s {
                        common::Scalar::Text(t) => t.len(),
                        _ => 8,
                    })
                    .sum::<usize>()
        }
        _ => 8,
    }
}

impl Sender {
    /// Delivers one batch, retrying with back-off (and reconnecting) until the itemsaver takes
    /// it or has taken nothing for the unavailable timeout. Saving is idempotent, so a retry
    /// after a lost acknowledgement never duplicates items.
    async fn deliver(&mut self, batch: Vec<Spooled>) -> Result<(), SinkError> {
        let seqs: Vec<u64> = batch.iter().map(|(s, _)| *s).collect();
        let items: Vec<Item> = batch.into_iter().map(|(_, i)| i).collect();
        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        let mut reported = false;
        loop {
            let client = match &self.target {
                Target::Remote {
                    client, traffic, ..
                } => {
                    traffic.call();
                    client.clone()
                }
                Target::Local(client) => client.clone(),
            };
            let cause = match client
                .save(
                    transport::deadline(self.config.rpc_timeout),
                    Batch {
                        items: items.clone(),
                        pages: Vec::new(),
                    },
                )
                .await
            {
                Ok(Ok(ack)) => {
                    debug!(items = ack.saved, "batch saved");
                    self.saved.fetch_add(ack.saved, Ordering::Relaxed);
                    if reported {
                        info!("the itemsaver is taking items again");
                    }
                    self.state
                        .acked(seqs)
                        .await
                        .map_err(|e| SinkError::Stopped(e.to_string()))?;
                    return Ok(());
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => {
                    self.reconnect().await;
                    e.to_string()
                }
            };
            let waited = started.elapsed();
            if waited >= self.config.unavailable_timeout {
                return Err(SinkError::Unavailable {
                    waited,
                    cause,
                    pending: items.len(),
                });
            }
            if !reported {
                warn!(items = items.len(), %cause, "the itemsaver is not taking items; the crawl waits and keeps them spooled");
                reported = true;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn reconnect(&mut self) {
        if let Target::Remote {
            addr,
            client,
            traffic,
        } = &mut self.target
        {
            match transport::connect_itemsaver(addr, self.config.connect_timeout, traffic).await {
                Ok(fresh) => {
                    debug!(itemsaver = %addr, "reconnected");
                    *client = fresh;
                }
                Err(e) => debug!(itemsaver = %addr, cause = %e, "reconnect failed"),
            }
        }
    }
}
