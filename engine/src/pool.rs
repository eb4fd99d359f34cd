//! The worker pool: one tarpc client per worker, handed out round-robin through a channel.
//!
//! Each worker puts one lease per request slot into a FIFO channel, interleaved, so taking the
//! next lease draws the next worker, and no worker is sent more than its own concurrency.

use common::{CrawlServiceClient, WorkerInfo, transport};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// One connected worker.
#[derive(Debug)]
pub struct WorkerConn {
    /// Position in the pool, for per-worker counters.
    pub index: usize,
    /// The address it was reached at (or `in-process`).
    pub addr: String,
    /// The RPC client.
    pub client: CrawlServiceClient,
    /// What it said about itself on connect.
    pub info: WorkerInfo,
    /// Requests sent to it.
    pub requests: AtomicU64,
    down: AtomicBool,
}

impl WorkerConn {
    /// Whether the worker was marked down after its connection failed.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}

/// The right to send one request to one worker; give it back with [`Pool::release`].
#[derive(Debug)]
pub struct Lease(Arc<WorkerConn>);

impl Lease {
    /// The worker this lease is for.
    pub fn worker(&self) -> &Arc<WorkerConn> {
        &self.0
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

/// What every worker of a crawl must be able to do.
#[derive(Clone, Copy, Debug)]
pub enum Job<'a> {
    /// Run this built-in parser.
    Parser(&'a str),
    /// Run this spider (its source), which the worker is sent now.
    Spider(&'a str),
}

impl Job<'_> {
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
                .load_spider(transport::deadline(timeout), source.to_string())
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(why)) => Err(format!("it refused the spider: {why}")),
                Err(e) => Err(format!("loading the spider failed: {e}")),
            },
        }
    }
}

/// Connected workers and their leases.
#[derive(Debug)]
pub struct Pool {
    workers: Vec<Arc<WorkerConn>>,
    tx: mpsc::Sender<Lease>,
    rx: mpsc::Receiver<Lease>,
    /// Leases not yet retired: in the channel or out on requests.
    live: Arc<AtomicUsize>,
}

impl Pool {
    /// Connects to every host, logging each result, and keeps those that answer and can do
    /// `job`; fails only when none is left.
    pub async fn connect(
        hosts: &[String],
        job: Job<'_>,
        max_slots: usize,
        timeout: Duration,
    ) -> Result<Pool, PoolError> {
        let mut unique: Vec<&String> = Vec::new();
        for h in hosts {
            if !unique.contains(&h) {
                unique.push(h);
            }
        }
        let attempts = unique
            .into_iter()
            .map(|addr| async move { (addr.clone(), connect_one(addr, timeout).await) });
        let mut connected: Vec<(String, CrawlServiceClient, WorkerInfo)> = Vec::new();
        let mut unable = None;
        for (addr, result) in futures::future::join_all(attempts).await {
            let (client, info) = match result {
                Ok(conn) => conn,
                Err(cause) => {
                    warn!(worker = %addr, %cause, "worker unreachable; going on without it");
                    continue;
                }
            };
            // Two addresses of one worker must not give it twice its slots.
            if connected
                .iter()
                .any(|(_, _, known)| known.node_id == info.node_id)
            {
                warn!(worker = %addr, node = %info.node_id, "same worker as another address; using it once");
                continue;
            }
            if let Err(why) = job.prepare(&client, &info, timeout).await {
                warn!(worker = %addr, node = %info.node_id, %why, "worker cannot do this crawl; not using it");
                unable = Some(why);
                continue;
            }
            info!(worker = %addr, node = %info.node_id, concurrency = info.concurrency, "worker connected");
            connected.push((addr, client, info));
        }
        if connected.is_empty() {
            return Err(match unable {
                Some(why) => PoolError::Unable { why },
                None => PoolError::NoWorkers {
                    tried: hosts.join(", "),
                },
            });
        }
        Ok(Pool::from_clients(connected, max_slots))
    }

    /// Builds a pool from already-connected clients (the in-process worker, or tests).
    pub fn from_clients(
        clients: Vec<(String, CrawlServiceClient, WorkerInfo)>,
        max_slots: usize,
    ) -> Pool {
        let workers: Vec<Arc<WorkerConn>> = clients
            .into_iter()
            .enumerate()
            .map(|(index, (addr, client, info))| {
                Arc::new(WorkerConn {
                    index,
                    addr,
                    client,
                    info,
                    requests: AtomicU64::new(0),
                    down: AtomicBool::new(false),
                })
            })
            .collect();
        let slots = |w: &WorkerConn| (w.info.concurrency.max(1) as usize).min(max_slots.max(1));
        let total: usize = workers.iter().map(|w| slots(w)).sum();
        let (tx, rx) = mpsc::channel(total.max(1));
        let deepest = workers.iter().map(|w| slots(w)).max().unwrap_or(0);
        for round in 0..deepest {
            for w in workers.iter().filter(|w| round < slots(w)) {
                // Capacity is the total number of leases, so this never fails.
                let _ = tx.try_send(Lease(w.clone()));
            }
        }
        Pool {
            workers,
            tx,
            rx,
            live: Arc::new(AtomicUsize::new(total)),
        }
    }

    /// Waits for the next lease; `None` when every worker is down and no lease can come back.
    pub async fn acquire(&mut self) -> Option<Lease> {
        loop {
            if self.live.load(Ordering::Relaxed) == 0 {
                return None;
            }
            let lease = self.rx.recv().await?;
            if lease.0.is_down() {
                self.live.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            return Some(lease);
        }
    }

    /// Swaps `lease` for one on another worker when it is for `avoid` and another worker has a
    /// free slot right now; a retry then goes elsewhere without waiting.
    pub fn prefer_other(&mut self, lease: Lease, avoid: usize) -> Lease {
        if lease.0.index != avoid || self.workers_up() < 2 {
            return lease;
        }
        let mut passed = Vec::new();
        let mut other = None;
        while let Ok(candidate) = self.rx.try_recv() {
            if candidate.0.is_down() {
                self.live.fetch_sub(1, Ordering::Relaxed);
            } else if candidate.0.index != avoid {
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
        if lease.0.is_down() {
            self.live.fetch_sub(1, Ordering::Relaxed);
        } else {
            // Never full: the channel holds every lease there is.
            let _ = self.tx.try_send(lease);
        }
    }

    /// Marks the lease's worker down (its connection failed) and retires the lease.
    pub fn retire(&self, lease: Lease) {
        if !lease.0.down.swap(true, Ordering::Relaxed) {
            warn!(worker = %lease.0.addr, "worker connection failed; marked down");
        }
        self.live.fetch_sub(1, Ordering::Relaxed);
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

async fn connect_one(
    addr: &str,
    timeout: Duration,
) -> Result<(CrawlServiceClient, WorkerInfo), String> {
    let client = transport::connect_worker(addr, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let info = client
        .info(transport::deadline(timeout))
        .await
        .map_err(|e| format!("{addr} connected but did not answer as a worker: {e}"))?;
    Ok((client, info))
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
        let info = server.worker_info().clone();
        (format!("w{concurrency}"), worker::in_process(server), info)
    }

    #[tokio::test]
    async fn leases_alternate_between_workers() {
        let mut pool = Pool::from_clients(vec![in_process_worker(2), in_process_worker(3)], 100);
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
        let mut pool = Pool::from_clients(vec![in_process_worker(2)], 100);
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
    async fn retired_workers_leave_the_rotation() {
        let mut pool = Pool::from_clients(vec![in_process_worker(1), in_process_worker(1)], 100);
        let first = pool.acquire().await.expect("lease");
        assert_eq!(first.worker().index, 0);
        pool.retire(first);
        assert_eq!(pool.workers_up(), 1);
        let next = pool.acquire().await.expect("lease");
        assert_eq!(next.worker().index, 1);
        pool.retire(next);
        assert!(
            pool.acquire().await.is_none(),
            "with every worker down there is no lease to wait for"
        );
    }

    #[tokio::test]
    async fn a_retry_prefers_another_worker() {
        let mut pool = Pool::from_clients(vec![in_process_worker(2), in_process_worker(2)], 100);
        let first = pool.acquire().await.expect("lease");
        assert_eq!(first.worker().index, 0);
        let swapped = pool.prefer_other(first, 0);
        assert_eq!(swapped.worker().index, 1);
        let kept = pool.prefer_other(swapped, 0);
        assert_eq!(kept.worker().index, 1, "a lease for another worker is kept");
    }

    #[tokio::test]
    async fn max_slots_caps_a_worker() {
        let mut pool = Pool::from_clients(vec![in_process_worker(64)], 1);
        let _only = pool.acquire().await.expect("lease");
        assert!(
            pool.acquire().now_or_never().is_none(),
            "one slot, one lease"
        );
    }
}
