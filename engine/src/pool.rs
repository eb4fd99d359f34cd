//! The worker pool: one tarpc client per worker, handed out round-robin through a channel,
//! with workers that can go down and come back.
//!
//! Each worker puts one lease per request slot into a FIFO channel, interleaved, so taking the
//! next lease draws the next worker, and no worker is sent more than its own concurrency. A
//! supervisor task per remote worker sends heartbeats; a worker that misses them, or whose
//! connection breaks, is marked down: its leases stop being handed out, and its calls in flight
//! are cancelled so their requests can go elsewhere. It is then reconnected with back-off and
//! rejoins with fresh leases.

use common::traffic::Traffic;
use common::{CrawlServiceClient, WorkerInfo, transport};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How the pool watches its workers.
#[derive(Clone, Copy, Debug)]
pub struct PoolConfig {
    /// Requests in flight to one worker at most (besides the worker's own limit).
    pub max_slots: usize,
    /// Time allowed to connect to a worker.
    pub connect_timeout: Duration,
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// Heartbeats missed in a row before a worker is marked down.
    pub heartbeat_misses: u32,
    /// How long the crawl waits for a worker when every one is down.
    pub no_workers_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_slots: 100,
            connect_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(2),
            heartbeat_misses: 3,
            no_workers_timeout: Duration::from_secs(60),
        }
    }
}

/// What every worker of a crawl must be able to do.
#[derive(Clone, Debug)]
pub enum Job {
    /// Run this built-in parser.
    Parser(String),
    /// Run this spider (its source), which the worker is sent when it connects.
    Spider(String),
}

impl Job {
    /// Checks that a worker can do the job, sending it the spider if there is one.
    pub async fn prepare(
        &self,
        client: &CrawlServiceClient,
        info: &WorkerInfo,
        timeout: Duration,
    ) -> Result<(), String> {
        match self {
            Job::Parser(name) if info.parsers.iter().any(|p| p.name == *name) => Ok(()),
            Job::Parser(name) => Err(format!("it has no parser {name:?}")),
            Job::Spider(source) => match client
                .load_spider(transport::deadline(timeout), source.clone())
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(why)) => Err(format!("it refused the spider: {why}")),
                Err(e) => Err(format!("loading the spider failed: {e}")),
            },
        }
    }
}

/// The live connection to a worker: replaced when the worker reconnects.
#[derive(Clone, Debug)]
struct Link {
    client: CrawlServiceClient,
    info: WorkerInfo,
    generation: u64,
    /// Cancelled when this link is marked down, ending its calls in flight.
    down: CancellationToken,
}

/// One worker of the pool.
#[derive(Debug)]
pub struct WorkerConn {
    /// Position in the pool, for per-worker counters.
    pub index: usize,
    /// The address it is reached at (or `in-process`).
    pub addr: String,
    /// Requests sent to it.
    pub requests: AtomicU64,
    link: Mutex<Link>,
    up: AtomicBool,
}

impl WorkerConn {
    /// Whether the worker is marked down.
    pub fn is_down(&self) -> bool {
        !self.up.load(Ordering::Relaxed)
    }

    /// The client of the worker's current connection.
    pub fn client(&self) -> CrawlServiceClient {
        self.link().client
    }

    /// What the worker said about itself when it last connected.
    pub fn info(&self) -> WorkerInfo {
        self.link
            .lock()
            .map(|l| l.info.clone())
            .unwrap_or_else(|e| e.into_inner().info.clone())
    }

    fn link(&self) -> Link {
        self.link
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }
}

/// The right to send one request to one worker; give it back with [`Pool::release`].
#[derive(Debug)]
pub struct Lease {
    worker: Arc<WorkerConn>,
    generation: u64,
    client: CrawlServiceClient,
    down: CancellationToken,
}

impl Lease {
    /// The worker this lease is for.
    pub fn worker(&self) -> &Arc<WorkerConn> {
        &self.worker
    }

    /// The client of the connection this lease belongs to.
    pub fn client(&self) -> &CrawlServiceClient {
        &self.client
    }

    /// Cancelled when this lease's connection is marked down.
    pub fn down_signal(&self) -> CancellationToken {
        self.down.clone()
    }

    fn is_valid(&self) -> bool {
        !self.worker.is_down() && !self.down.is_cancelled()
    }
}

/// Why the pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No worker answered.
    #[error("no worker could be reached (tried {tried})")]
    NoWorkers {
        /// The addresses tried, comma-separated.
        tried: String,
    },
    /// Workers answered, but none can do the crawl (no such parser, or the spider refused).
    #[error("no reachable worker can do this crawl: {why}")]
    Unable {
        /// Why the last worker could not.
        why: String,
    },
}

/// Everything the supervisors share with the pool.
#[derive(Debug)]
struct Shared {
    traffic: Arc<Traffic>,
    tx: mpsc::UnboundedSender<Lease>,
    /// Leases in circulation (in the channel or out on requests), valid or not yet discarded.
    live: AtomicUsize,
    config: PoolConfig,
    job: Job,
}

impl Shared {
    fn slots(&self, info: &WorkerInfo) -> usize {
        (info.concurrency.max(1) as usize).min(self.config.max_slots.max(1))
    }

    /// Puts `count` fresh leases of `worker`'s current link into circulation.
    fn add_leases(&self, worker: &Arc<WorkerConn>, count: usize) {
        let link = worker.link();
        for _ in 0..count {
            self.live.fetch_add(1, Ordering::Relaxed);
            let lease = Lease {
                worker: worker.clone(),
                generation: link.generation,
                client: link.client.clone(),
                down: link.down.clone(),
            };
            if self.tx.send(lease).is_err() {
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Marks the worker down if `generation` is still its link; idempotent.
    fn mark_down(&self, worker: &WorkerConn, generation: u64, why: &str) {
        let link = worker.link();
        if link.generation == generation && worker.up.swap(false, Ordering::Relaxed) {
            warn!(worker = %worker.addr, %why, "worker marked down; its requests go to other workers");
            link.down.cancel();
        }
    }
}

/// Connected workers and their leases.
#[derive(Debug)]
pub struct Pool {
    workers: Vec<Arc<WorkerConn>>,
    rx: mpsc::UnboundedReceiver<Lease>,
    shared: Arc<Shared>,
    /// Stops the supervisors when the pool is dropped.
    stop: CancellationToken,
    /// Since when no worker has been up, while that lasts: the no-workers timeout counts from
    /// there, however often the crawl loop asks again.
    all_down_since: Option<tokio::time::Instant>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Pool {
    /// Connects to every host, logging each result, and keeps those that answer and can do
    /// `job`; fails only when none is left. Each worker is then supervised.
    pub async fn connect(
        hosts: &[String],
        job: Job,
        config: PoolConfig,
        traffic: Arc<Traffic>,
    ) -> Result<Pool, PoolError> {
        let mut unique: Vec<&String> = Vec::new();
        for h in hosts {
            if !unique.contains(&h) {
                unique.push(h);
            }
        }
        let timeout = config.connect_timeout;
        let attempts = unique.into_iter().map(|addr| {
            let job = job.clone();
            let traffic = traffic.clone();
            async move {
                (
                    addr.clone(),
                    connect_one(addr, &job, timeout, &traffic).await,
                )
            }
        });
        let mut connected: Vec<(String, CrawlServiceClient, WorkerInfo)> = Vec::new();
        let mut unable = None;
        for (addr, result) in futures::future::join_all(attempts).await {
            match result {
                Err(Failure::Unreachable(cause)) => {
                    warn!(worker = %addr, %cause, "worker unreachable; going on without it")
                }
                Err(Failure::Unable(why)) => {
                    warn!(worker = %addr, %why, "worker cannot do this crawl; not using it");
                    unable = Some(why);
                }
                // Two addresses of one worker must not give it twice its slots.
                Ok((_, info))
                    if connected
                        .iter()
                        .any(|(_, _, known)| known.node_id == info.node_id) =>
                {
                    warn!(worker = %addr, node = %info.node_id, "same worker as another address; using it once");
                }
                Ok((client, info)) => {
                    info!(worker = %addr, node = %info.node_id, concurrency = info.concurrency, "worker connected");
                    connected.push((addr, client, info));
                }
            }
        }
        if connected.is_empty() {
            return Err(match unable {
                Some(why) => PoolError::Unable { why },
                None => PoolError::NoWorkers {
                    tried: hosts.join(", "),
                },
            });
        }
        let pool = Pool::build(connected, job, config, traffic);
        for worker in &pool.workers {
            tokio::spawn(supervise(
                worker.clone(),
                pool.shared.clone(),
                pool.stop.clone(),
            ));
        }
        Ok(pool)
    }

    /// Builds a pool of one worker running in this process (never supervised).
    pub fn in_process(
        client: CrawlServiceClient,
        info: WorkerInfo,
        job: Job,
        config: PoolConfig,
        traffic: Arc<Traffic>,
    ) -> Pool {
        Pool::build(
            vec![("in-process".into(), client, info)],
            job,
            config,
            traffic,
        )
    }

    fn build(
        clients: Vec<(String, CrawlServiceClient, WorkerInfo)>,
        job: Job,
        config: PoolConfig,
        traffic: Arc<Traffic>,
    ) -> Pool {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            traffic,
            tx,
            live: AtomicUsize::new(0),
            config,
            job,
        });
        let workers: Vec<Arc<WorkerConn>> = clients
            .into_iter()
            .enumerate()
            .map(|(index, (addr, client, info))| {
                Arc::new(WorkerConn {
                    index,
                    addr,
                    requests: AtomicU64::new(0),
                    link: Mutex::new(Link {
                        client,
                        info,
                        generation: 0,
                        down: CancellationToken::new(),
                    }),
                    up: AtomicBool::new(true),
                })
            })
            .collect();
        // Interleave the first leases so that workers take turns from the start.
        let deepest = workers
            .iter()
            .map(|w| shared.slots(&w.info()))
            .max()
            .unwrap_or(0);
        for round in 0..deepest {
            for w in workers.iter().filter(|w| round < shared.slots(&w.info())) {
                shared.add_leases(w, 1);
            }
        }
        Pool {
            workers,
            rx,
            shared,
            stop: CancellationToken::new(),
            all_down_since: None,
        }
    }

    /// Waits for the next lease. When every worker is down it waits up to the no-workers
    /// timeout for one to come back, and returns `None` if none does.
    pub async fn acquire(&mut self) -> Option<Lease> {
        loop {
            let lease = if self.shared.live.load(Ordering::Relaxed) == 0 {
                let timeout = self.shared.config.no_workers_timeout;
                let since = *self.all_down_since.get_or_insert_with(|| {
                    warn!(?timeout, "no worker is up; waiting for one to come back");
                    tokio::time::Instant::now()
                });
                tokio::time::timeout_at(since + timeout, self.rx.recv())
                    .await
                    .ok()??
            } else {
                self.rx.recv().await?
            };
            if lease.is_valid() {
                self.all_down_since = None;
                return Some(lease);
            }
            self.shared.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Swaps `lease` for one on another worker when it is for `avoid` and another worker has a
    /// free slot right now; a retry then goes elsewhere without waiting.
    pub fn prefer_other(&mut self, lease: Lease, avoid: usize) -> Lease {
        if lease.worker.index != avoid || self.workers_up() < 2 {
            return lease;
        }
        let mut passed = Vec::new();
        let mut other = None;
        while let Ok(candidate) = self.rx.try_recv() {
            if !candidate.is_valid() {
                self.shared.live.fetch_sub(1, Ordering::Relaxed);
            } else if candidate.worker.index != avoid {
                other = Some(candidate);
                break;
            } else {
                passed.push(candidate);
            }
        }
        for l in passed {
            self.release(l);
        }
        match other {
            Some(other) => {
                self.release(lease);
                other
            }
            None => lease,
        }
    }

    /// Gives a lease back after its request finished.
    pub fn release(&self, lease: Lease) {
        // A lease of a down connection is discarded; so is one the channel cannot take.
        if !lease.is_valid() || self.shared.tx.send(lease).is_err() {
            self.shared.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Marks the lease's worker down (its connection failed) and discards the lease; the
    /// worker's supervisor reconnects it.
    pub fn retire(&self, lease: Lease, why: &str) {
        self.shared.mark_down(&lease.worker, lease.generation, why);
        self.shared.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// The RPC traffic counter of the crawl.
    pub fn traffic(&self) -> &Arc<Traffic> {
        &self.shared.traffic
    }

    /// Every worker ever in the pool.
    pub fn workers(&self) -> &[Arc<WorkerConn>] {
        &self.workers
    }

    /// Workers not marked down.
    pub fn workers_up(&self) -> usize {
        self.workers.iter().filter(|w| !w.is_down()).count()
    }
}

enum Failure {
    Unreachable(String),
    Unable(String),
}

async fn connect_one(
    addr: &str,
    job: &Job,
    timeout: Duration,
    traffic: &Arc<Traffic>,
) -> Result<(CrawlServiceClient, WorkerInfo), Failure> {
    let client = transport::connect_worker(addr, timeout, traffic)
        .await
        .map_err(|e| Failure::Unreachable(e.to_string()))?;
    traffic.call();
    let info = client
        .info(transport::deadline(timeout))
        .await
        .map_err(|e| {
            Failure::Unreachable(format!(
                "{addr} connected but did not answer as a worker: {e}"
            ))
        })?;
    // A worker that is shutting down answers, but takes no work: not back yet.
    let status = client
        .status(transport::deadline(timeout))
        .await
        .map_err(|e| Failure::Unreachable(format!("{addr} did not answer its status: {e}")))?;
    if status.paused {
        return Err(Failure::Unreachable(format!("{addr} is shutting down")));
    }
    job.prepare(&client, &info, timeout)
        .await
        .map_err(Failure::Unable)?;
    Ok((client, info))
}

/// Watches one worker: heartbeats while it is up, reconnects with back-off while it is down.
async fn supervise(worker: Arc<WorkerConn>, shared: Arc<Shared>, stop: CancellationToken) {
    let config = shared.config;
    let mut misses = 0;
    let mut backoff = Duration::from_millis(250);
    loop {
        if worker.is_down() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            match connect_one(
                &worker.addr,
                &shared.job,
                config.connect_timeout,
                &shared.traffic,
            )
            .await
            {
                Ok((client, info)) => {
                    let slots = shared.slots(&info);
                    if let Ok(mut link) = worker.link.lock() {
                        let generation = link.generation + 1;
                        *link = Link {
                            client,
                            info,
                            generation,
                            down: CancellationToken::new(),
                        };
                    }
                    worker.up.store(true, Ordering::Relaxed);
                    shared.add_leases(&worker, slots);
                    info!(worker = %worker.addr, "worker is back; rejoining the rotation");
                    misses = 0;
                    backoff = Duration::from_millis(250);
                }
                Err(Failure::Unreachable(cause) | Failure::Unable(cause)) => {
                    debug!(worker = %worker.addr, %cause, ?backoff, "worker still down");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
            continue;
        }
        let link = worker.link();
        tokio::select! {
            _ = stop.cancelled() => return,
            // Marked down by the crawl (its connection broke): reconnect now.
            _ = link.down.cancelled() => continue,
            _ = tokio::time::sleep(config.heartbeat) => {}
        }
        match tokio::time::timeout(
            config.heartbeat,
            link.client.status(transport::deadline(config.heartbeat)),
        )
        .await
        {
            Ok(Ok(status)) if status.paused => {
                shared.mark_down(&worker, link.generation, "it is shutting down");
            }
            Ok(Ok(_)) => misses = 0,
            Ok(Err(tarpc::client::RpcError::Shutdown)) => {
                shared.mark_down(&worker, link.generation, "connection closed");
            }
            _ => {
                misses += 1;
                debug!(worker = %worker.addr, misses, "heartbeat missed");
                if misses >= config.heartbeat_misses {
                    shared.mark_down(
                        &worker,
                        link.generation,
                        &format!("missed {misses} heartbeats"),
                    );
                    misses = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn in_process_worker(concurrency: u32) -> (String, CrawlServiceClient, WorkerInfo) {
        let config = worker::WorkerConfig {
            concurrency,
            ..worker::WorkerConfig::default()
        };
        let server = worker::CrawlServer::new(&config).expect("worker");
        let info = server.worker_info();
        (format!("w{concurrency}"), worker::in_process(server), info)
    }

    fn pool(workers: Vec<(String, CrawlServiceClient, WorkerInfo)>, max_slots: usize) -> Pool {
        let config = PoolConfig {
            max_slots,
            no_workers_timeout: Duration::from_millis(10),
            ..PoolConfig::default()
        };
        Pool::build(workers, Job::Parser("links".into()), config, Arc::default())
    }

    #[tokio::test]
    async fn leases_alternate_between_workers() {
        let mut pool = pool(vec![in_process_worker(2), in_process_worker(3)], 100);
        let mut order = Vec::new();
        for _ in 0..5 {
            order.push(pool.acquire().await.expect("lease").worker().index);
        }
        assert_eq!(
            order,
            vec![0, 1, 0, 1, 1],
            "round-robin, then the deeper worker's extra slot"
        );
    }

    #[tokio::test]
    async fn no_worker_gets_more_than_its_slots() {
        let mut pool = pool(vec![in_process_worker(2)], 100);
        let a = pool.acquire().await.expect("lease");
        let _b = pool.acquire().await.expect("lease");
        assert!(
            pool.acquire().now_or_never().is_none(),
            "a third lease must wait for a release"
        );
        pool.release(a);
        assert!(pool.acquire().await.is_some());
    }

    #[tokio::test]
    async fn a_worker_marked_down_leaves_the_rotation_and_cancels_its_calls() {
        let mut pool = pool(vec![in_process_worker(1), in_process_worker(1)], 100);
        let first = pool.acquire().await.expect("lease");
        assert_eq!(first.worker().index, 0);
        let signal = first.down_signal();
        pool.retire(first, "test");
        assert!(
            signal.is_cancelled(),
            "calls in flight on a down worker are cancelled"
        );
        assert_eq!(pool.workers_up(), 1);
        let next = pool.acquire().await.expect("lease");
        assert_eq!(next.worker().index, 1);
        pool.retire(next, "test");
        assert!(
            pool.acquire().await.is_none(),
            "nothing comes back within the no-workers timeout"
        );
    }

    #[tokio::test]
    async fn a_rejoined_worker_gets_fresh_leases_and_old_ones_are_discarded() {
        let mut pool = pool(vec![in_process_worker(1)], 100);
        let old = pool.acquire().await.expect("lease");
        let worker = old.worker().clone();
        pool.shared.mark_down(&worker, 0, "test");
        // The supervisor's part, by hand: a new link, up again, fresh leases.
        let fresh = in_process_worker(1);
        if let Ok(mut link) = worker.link.lock() {
            *link = Link {
                client: fresh.1,
                info: fresh.2,
                generation: 1,
                down: CancellationToken::new(),
            };
        }
        worker.up.store(true, Ordering::Relaxed);
        pool.shared.add_leases(&worker, 1);
        pool.release(old);
        let lease = pool.acquire().await.expect("fresh lease");
        assert_eq!(lease.generation, 1);
        assert!(
            pool.acquire().now_or_never().is_none(),
            "the old lease was discarded, not reused"
        );
    }

    #[tokio::test]
    async fn a_retry_prefers_another_worker() {
        let mut pool = pool(vec![in_process_worker(2), in_process_worker(2)], 100);
        let first = pool.acquire().await.expect("lease");
        assert_eq!(first.worker().index, 0);
        let swapped = pool.prefer_other(first, 0);
        assert_eq!(swapped.worker().index, 1);
        let kept = pool.prefer_other(swapped, 0);
        assert_eq!(kept.worker().index, 1, "a lease for another worker is kept");
    }

    #[tokio::test]
    async fn max_slots_caps_a_worker() {
        let mut pool = pool(vec![in_process_worker(64)], 1);
        let _only = pool.acquire().await.expect("lease");
        assert!(
            pool.acquire().now_or_never().is_none(),
            "one slot, one lease"
        );
    }
}
