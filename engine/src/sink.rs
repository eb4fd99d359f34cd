//! Sending items to the itemsaver in batches, by count or after a short wait, surviving an
//! itemsaver that is slow, down, or restarted.
//!
//! Every item is in the durable spool (see `state`) before it gets here, under a sequence
//! number; the spool forgets it only when the itemsaver has acknowledged it. Buffers here are
//! bounded: a slow or absent itemsaver slows the crawl instead of growing memory.

use crate::state::{SpooledPage, StateHandle};
use common::traffic::Traffic;
use common::{Batch, Item, ItemSaverServiceClient, SaveError, transport};
use std::collections::VecDeque;
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
/// Most elements (items, fields, list values) in one batch: half of what a peer decodes.
const MAX_BATCH_ELEMENTS: usize = common::budget::MAX_ELEMENTS / 2;

/// A page's items with their spool sequence number: the unit the sink batches and the spool
/// acknowledges. A page's items travel in one batch unless the itemsaver refuses that page
/// alone as too large.
pub type Spooled = (u64, SpooledPage);

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
        /// Other itemsavers to fail over to when this one cannot be reached (cluster mode:
        /// those registered in Redis).
        alternates: Option<Alternates>,
    },
    /// The itemsaver inside this process.
    Local(ItemSaverServiceClient),
}

/// Finds the itemsavers a sink may fail over to.
#[derive(Clone)]
pub struct Alternates(
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Vec<String>> + Send + Sync>,
);

impl Alternates {
    /// Alternates listed by `list`.
    pub fn new(
        list: impl Fn() -> futures::future::BoxFuture<'static, Vec<String>> + Send + Sync + 'static,
    ) -> Alternates {
        Alternates(Arc::new(list))
    }
}

impl std::fmt::Debug for Alternates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Alternates")
    }
}

/// How the sink behaves.
#[derive(Clone, Debug)]
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
    /// Where refused items are appended when there is no state to keep them in.
    pub dead_letters: std::path::PathBuf,
    /// What the engine proves itself to the itemsaver with at each connection's set-up.
    pub credentials: common::handshake::Credentials,
}

/// What became of the items sent to a sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Items the itemsaver acknowledged.
    pub saved: u64,
    /// Items it refused on their own, kept as dead letters.
    pub rejected: u64,
}

/// The crawl's end of the item pipeline.
#[derive(Debug)]
pub struct ItemSink {
    tx: mpsc::Sender<Vec<Spooled>>,
    task: JoinHandle<Result<u64, SinkError>>,
    saved: Arc<AtomicU64>,
    rejected: Arc<AtomicU64>,
}

impl ItemSink {
    /// Starts the sending task; acknowledged items are removed from `state`'s spool.
    pub fn start(target: Target, config: SinkConfig, state: StateHandle) -> ItemSink {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let saved = Arc::new(AtomicU64::new(0));
        let rejected = Arc::new(AtomicU64::new(0));
        let sender = Sender {
            target,
            config,
            state,
            saved: saved.clone(),
            rejected: rejected.clone(),
        };
        let task = tokio::spawn(send_loop(sender, rx));
        ItemSink {
            tx,
            task,
            saved,
            rejected,
        }
    }

    /// Items acknowledged so far.
    pub fn saved(&self) -> u64 {
        self.saved.load(Ordering::Relaxed)
    }

    /// Items the item store refused on their own so far (kept as dead letters).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Queues spooled pages, waiting while the itemsaver is behind.
    pub async fn send(&self, pages: Vec<Spooled>) -> Result<(), SinkError> {
        if pages.is_empty() {
            return Ok(());
        }
        self.tx
            .send(pages)
            .await
            .map_err(|_| SinkError::Stopped("the sending task ended".into()))
    }

    /// Sends everything still queued and returns what became of the items.
    pub async fn finish(self) -> Result<Delivered, SinkError> {
        drop(self.tx);
        let saved = self
            .task
            .await
            .map_err(|e| SinkError::Stopped(e.to_string()))??;
        Ok(Delivered {
            saved,
            rejected: self.rejected.load(Ordering::Relaxed),
        })
    }
}

struct Sender {
    target: Target,
    config: SinkConfig,
    state: StateHandle,
    saved: Arc<AtomicU64>,
    rejected: Arc<AtomicU64>,
}

/// Pages waiting to be sent, with their running size.
#[derive(Default)]
struct Buffer {
    pages: VecDeque<Spooled>,
    items: usize,
    bytes: usize,
    elements: usize,
}

/// Roughly how much a page weighs in a batch: items, bytes and decoding elements.
fn weight(page: &SpooledPage) -> (usize, usize, usize) {
    let bytes = page.items.iter().map(Item::approx_bytes).sum::<usize>()
        + page
            .yields
            .iter()
            .map(|y| y.url.len() + y.kind.len() + y.task.len() + 16)
            .sum::<usize>();
    let elements = page.items.iter().map(Item::elements).sum();
    (page.items.len(), bytes, elements)
}

impl Buffer {
    fn push(&mut self, spooled: Spooled) {
        let (items, bytes, elements) = weight(&spooled.1);
        self.items += items;
        self.bytes += bytes;
        self.elements += elements;
        self.pages.push_back(spooled);
    }

    fn is_full(&self, batch_size: usize) -> bool {
        self.items >= batch_size
            || self.bytes >= MAX_BATCH_BYTES
            || self.elements >= MAX_BATCH_ELEMENTS
    }

    /// Whole pages from the front, within the batch limits (at least one page).
    fn take_batch(&mut self, batch_size: usize) -> Vec<Spooled> {
        let (mut items, mut bytes, mut elements) = (0, 0, 0);
        let mut batch = Vec::new();
        while let Some(front) = self.pages.front() {
            let (i, b, e) = weight(&front.1);
            let over = items + i > batch_size
                || bytes + b > MAX_BATCH_BYTES
                || elements + e > MAX_BATCH_ELEMENTS;
            if over && !batch.is_empty() {
                break;
            }
            items += i;
            bytes += b;
            elements += e;
            if let Some(page) = self.pages.pop_front() {
                batch.push(page);
            }
        }
        self.items -= items;
        self.bytes -= bytes;
        self.elements -= elements;
        batch
    }
}

async fn send_loop(
    mut sender: Sender,
    mut rx: mpsc::Receiver<Vec<Spooled>>,
) -> Result<u64, SinkError> {
    let batch_size = sender.config.batch_size;
    let mut buffer = Buffer::default();
    let mut tick = tokio::time::interval(sender.config.batch_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Some(pages) => {
                    for page in pages {
                        buffer.push(page);
                    }
                    while buffer.is_full(batch_size) {
                        sender.deliver(buffer.take_batch(batch_size)).await?;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                while !buffer.pages.is_empty() {
                    sender.deliver(buffer.take_batch(batch_size)).await?;
                }
            }
        }
    }
    while !buffer.pages.is_empty() {
        sender.deliver(buffer.take_batch(batch_size)).await?;
    }
    Ok(sender.saved.load(Ordering::Relaxed))
}

/// Part of a page on its way: its items (all of them, or a share when the itemsaver refused
/// the page as too large), the page's yields with its first share, and whether delivering this
/// share completes the page.
#[derive(Debug)]
struct Piece {
    seq: u64,
    items: Vec<Item>,
    yields: Vec<common::PageYield>,
    completes: bool,
}

/// What one attempt to save a batch of pieces came to.
enum Outcome {
    Saved(u64),
    /// Too large: split it and try the halves.
    TooLarge,
    /// This item (by position in the batch) can never be stored.
    Rejected {
        index: usize,
        reason: String,
    },
    /// The itemsaver failed or could not be reached: try again later.
    Failed(String),
}

impl Sender {
    /// Delivers whole pages: retries while the itemsaver is down (up to the unavailable
    /// timeout), splits what it refuses as too large, and sets aside as a dead letter any item
    /// it refuses on its own. Saving is idempotent, so a retry after a lost acknowledgement
    /// never duplicates items.
    async fn deliver(&mut self, pages: Vec<Spooled>) -> Result<(), SinkError> {
        let pieces = pages
            .into_iter()
            .map(|(seq, page)| Piece {
                seq,
                items: page.items,
                yields: page.yields,
                completes: true,
            })
            .collect();
        // Parts still to send; the last is sent first, so pieces keep their order.
        let mut parts: Vec<Vec<Piece>> = vec![pieces];
        let mut backoff = Duration::from_millis(200);
        let mut failing_since: Option<Instant> = None;
        while let Some(mut part) = parts.pop() {
            match self.save(&part).await {
                Outcome::Saved(n) => {
                    if failing_since.take().is_some() {
                        info!("the itemsaver is taking items again");
                    }
                    backoff = Duration::from_millis(200);
                    debug!(items = n, "batch saved");
                    self.saved.fetch_add(n, Ordering::Relaxed);
                    let done: Vec<u64> =
                        part.iter().filter(|p| p.completes).map(|p| p.seq).collect();
                    self.state
                        .acked(done)
                        .await
                        .map_err(|e| SinkError::Stopped(e.to_string()))?;
                }
                Outcome::TooLarge => {
                    let (first, second) = split(part);
                    debug!(
                        first = first.iter().map(|p| p.items.len()).sum::<usize>(),
                        second = second.iter().map(|p| p.items.len()).sum::<usize>(),
                        "the itemsaver refused a batch as too large; sending it in halves"
                    );
                    parts.push(second);
                    parts.push(first);
                }
                Outcome::Rejected { index, reason } => match take_item(&mut part, index) {
                    Some(item) => {
                        self.dead_letter(item, reason).await?;
                        parts.push(part);
                    }
                    // An itemsaver naming an item the batch does not have: wait and retry,
                    // never spin.
                    None => parts.push(
                        self.failed(
                            part,
                            &parts,
                            &mut failing_since,
                            &mut backoff,
                            format!(
                                "the itemsaver refused item {index} of a smaller batch: {reason}"
                            ),
                        )
                        .await?,
                    ),
                },
                Outcome::Failed(cause) => {
                    let part = self
                        .failed(part, &parts, &mut failing_since, &mut backoff, cause)
                        .await?;
                    parts.push(part);
                }
            }
        }
        Ok(())
    }

    /// After a failed save: gives up past the unavailable timeout, otherwise waits out the
    /// back-off and hands the part back to be tried again.
    async fn failed(
        &self,
        part: Vec<Piece>,
        rest: &[Vec<Piece>],
        failing_since: &mut Option<Instant>,
        backoff: &mut Duration,
        cause: String,
    ) -> Result<Vec<Piece>, SinkError> {
        let since = *failing_since.get_or_insert_with(|| {
            warn!(%cause, "the itemsaver is not taking items; the crawl waits and keeps them spooled");
            Instant::now()
        });
        let waited = since.elapsed();
        if waited >= self.config.unavailable_timeout {
            let pending = part
                .iter()
                .chain(rest.iter().flatten())
                .map(|p| p.items.len())
                .sum();
            return Err(SinkError::Unavailable {
                waited,
                cause,
                pending,
            });
        }
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(Duration::from_secs(5));
        Ok(part)
    }

    /// One save call; a broken connection is reconnected and tried again at once (an
    /// itemsaver closes connections that stay idle).
    async fn save(&mut self, part: &[Piece]) -> Outcome {
        let batch = Batch {
            items: part.iter().flat_map(|p| p.items.iter().cloned()).collect(),
            pages: part.iter().flat_map(|p| p.yields.iter().cloned()).collect(),
        };
        let mut reconnected = false;
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
            return match client
                .save(transport::deadline(self.config.rpc_timeout), batch.clone())
                .await
            {
                Ok(Ok(ack)) => Outcome::Saved(ack.saved),
                Ok(Err(SaveError::BatchTooLarge { .. })) if batch.items.len() > 1 => {
                    Outcome::TooLarge
                }
                Ok(Err(SaveError::BatchTooLarge { limit, .. })) => Outcome::Rejected {
                    index: 0,
                    reason: format!("alone over the itemsaver's batch limit of {limit}"),
                },
                Ok(Err(SaveError::Rejected { index, reason, .. })) => Outcome::Rejected {
                    index: index as usize,
                    reason,
                },
                Ok(Err(e @ SaveError::Store(_))) => Outcome::Failed(e.to_string()),
                Err(e) => {
                    // A broken connection (the itemsaver restarted, or closed it when it
                    // stayed idle) is worth one immediate try on a new one.
                    let back = self.reconnect().await;
                    if back && !reconnected {
                        info!(cause = %e, "the connection to the itemsaver broke; reconnected");
                        reconnected = true;
                        continue;
                    }
                    Outcome::Failed(e.to_string())
                }
            };
        }
    }

    /// Keeps an item the store refused on its own, logged once: in the state's dead letters,
    /// or, without a state, appended to the dead-letters file at once.
    async fn dead_letter(&mut self, item: Item, reason: String) -> Result<(), SinkError> {
        warn!(task = %item.task, id = %item.id, url = %item.url, %reason, "the item store refused an item; kept as a dead letter, the crawl goes on");
        self.rejected.fetch_add(1, Ordering::Relaxed);
        if self.state.is_enabled() {
            return self
                .state
                .dead_letter(item, reason)
                .await
                .map_err(|e| SinkError::Stopped(e.to_string()));
        }
        let path = self.config.dead_letters.clone();
        let line = crate::state::dead_letter_line(&item, &reason);
        tokio::task::spawn_blocking(move || crate::state::append(&path, &line))
            .await
            .map_err(|e| SinkError::Stopped(e.to_string()))?
            .map_err(|e| {
                SinkError::Stopped(format!(
                    "cannot write dead letters to {}: {e}",
                    self.config.dead_letters.display()
                ))
            })
    }
    /// Replaces the itemsaver connection, failing over to another registered itemsaver when
    /// this one cannot be reached; returns whether a new connection was made.
    async fn reconnect(&mut self) -> bool {
        let Target::Remote {
            addr,
            client,
            traffic,
            alternates,
        } = &mut self.target
        else {
            return false;
        };
        match transport::connect_itemsaver(
            addr,
            self.config.connect_timeout,
            traffic,
            &self.config.credentials,
        )
        .await
        {
            Ok(fresh) => {
                debug!(itemsaver = %addr, "reconnected");
                *client = fresh;
                return true;
            }
            Err(e) => debug!(itemsaver = %addr, cause = %e, "reconnect failed"),
        }
        let Some(alternates) = alternates else {
            return false;
        };
        for other in (alternates.0)().await {
            if other == *addr {
                continue;
            }
            if let Ok(fresh) = transport::connect_itemsaver(
                &other,
                self.config.connect_timeout,
                traffic,
                &self.config.credentials,
            )
            .await
            {
                warn!(from = %addr, to = %other, "the itemsaver cannot be reached; sending items to another registered one");
                *addr = other;
                *client = fresh;
                return true;
            }
        }
        false
    }
}

/// Splits a part in two: by pages when it holds several, else the one page's items in
/// halves (its yields go with the first half, its acknowledgement with the second).
fn split(mut part: Vec<Piece>) -> (Vec<Piece>, Vec<Piece>) {
    if part.len() > 1 {
        let second = part.split_off(part.len() / 2);
        return (part, second);
    }
    let Some(mut piece) = part.pop() else {
        return (Vec::new(), Vec::new());
    };
    let rest = piece.items.split_off(piece.items.len() / 2);
    let second = Piece {
        seq: piece.seq,
        items: rest,
        yields: Vec::new(),
        completes: piece.completes,
    };
    piece.completes = false;
    (vec![piece], vec![second])
}

/// Takes the item at `index` of the batch a part makes.
fn take_item(part: &mut [Piece], mut index: usize) -> Option<Item> {
    for piece in part {
        if index < piece.items.len() {
            return Some(piece.items.remove(index));
        }
        index -= piece.items.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(seq: u64, items: usize) -> Piece {
        Piece {
            seq,
            items: (0..items)
                .map(|i| Item {
                    id: format!("{seq}-{i}"),
                    url: "http://a.test/".into(),
                    kind: "k".into(),
                    task: "t".into(),
                    payload: Default::default(),
                })
                .collect(),
            yields: vec![common::PageYield {
                task: "t".into(),
                url: "http://a.test/".into(),
                kind: "k".into(),
                count: 0,
            }],
            completes: true,
        }
    }

    #[test]
    fn a_refused_part_splits_by_pages_then_one_page_by_items() {
        let (a, b) = split(vec![piece(1, 3), piece(2, 3), piece(3, 3)]);
        assert_eq!(a.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![1]);
        assert_eq!(b.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![2, 3]);
        let (a, b) = split(vec![piece(7, 5)]);
        assert_eq!((a[0].items.len(), b[0].items.len()), (2, 3));
        assert!(
            !a[0].completes && b[0].completes,
            "acked with its last share"
        );
        assert_eq!((a[0].yields.len(), b[0].yields.len()), (1, 0));
    }

    #[test]
    fn a_rejected_item_is_found_across_pieces() {
        let mut part = vec![piece(1, 2), piece(2, 2)];
        let item = take_item(&mut part, 3).expect("item");
        assert_eq!(item.id, "2-1");
        assert_eq!(part[1].items.len(), 1);
    }

    #[test]
    fn batches_hold_whole_pages() {
        let page = |n: usize| SpooledPage {
            items: piece(0, n).items,
            yields: Vec::new(),
        };
        let mut buffer = Buffer::default();
        for (seq, n) in [(1, 300), (2, 300), (3, 900)] {
            buffer.push((seq, page(n)));
        }
        let seqs = |b: Vec<Spooled>| b.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
        assert_eq!(seqs(buffer.take_batch(500)), vec![1], "page 2 would split");
        assert_eq!(seqs(buffer.take_batch(500)), vec![2]);
        assert_eq!(
            seqs(buffer.take_batch(500)),
            vec![3],
            "a big page goes alone"
        );
        assert!(buffer.pages.is_empty() && buffer.items == 0);
    }
}
