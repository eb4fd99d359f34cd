//! The worker pool: one tarpc client per worker, handed out round-robin through a channel,
//! with workers that can go down and come back.
//!
//! Each worker puts one lease per request slot into a FIFO channel, interleaved, so taking the
//! next lease draws the next worker, and no worker is sent more than its own concurrency. A
//! supervisor task per remote worker sends heartbeats; a worker that misses them, or whose
//! connection breaks, is marked down: its leases stop being handed out, and its calls in flight
//! are cancelled so their requests can go elsewhere. It is then reconnected with back-off and
//! rejoins with fresh leases.
//!
//! An operator steers workers through a [`PoolControl`]: adding one at runtime, pausing it (its
//! leases stop being handed out; calls in flight finish), resuming it, or removing it. Every
//! such change moves the worker to a new lease epoch, so leases of an older epoch are
//! discarded as they come back. A worker resumed while calls from before its pause are still
//! running gets its full slots at once, so for that while it may have more calls than slots
//! (its own concurrency limit queues them).

mod conn;
mod control;
mod lease;
mod supervise;

pub use conn::{RenderTab, WorkerConn, WorkerView};
pub use control::{ControlError, PoolControl};
pub use lease::Lease;

use common::traffic::Traffic;
use common::{CrawlServiceClient, WorkerInfo, transport};
use conn::Admin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use supervise::{Failure, connect_one};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How the pool watches its workers.
#[derive(Clone, Debug)]
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
    /// What the engine proves itself to workers with at each connection's set-up.
    pub credentials: common::handshake::Credentials,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_slots: 100,
            connect_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(2),
            heartbeat_misses: 3,
            no_workers_timeout: Duration::from_secs(60),
            credentials: Default::default(),
        }
    }
}

/// What every worker of a crawl must be able to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Run this built-in parser.
    Parser(String),
    /// Run this spider (its source), which the worker is sent when it connects.
    Spider(String),
}

impl Requirement {
    /// Checks that a worker can do the requirement, sending it the spider if there is one.
    pub async fn prepare(
        &self,
        client: &CrawlServiceClient,
        info: &WorkerInfo,
        timeout: Duration,
    ) -> Result<(), RequirementError> {
        match self {
            Requirement::Parser(name) if info.parsers.iter().any(|p| p.name == *name) => Ok(()),
            Requirement::Parser(name) => Err(RequirementError::NoParser(name.clone())),
            Requirement::Spider(source) => match client
                .load_spider(transport::deadline(timeout), source.clone())
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(why)) => Err(RequirementError::SpiderRefused(why)),
                Err(e) => Err(RequirementError::Unanswered(e.to_string())),
            },
        }
    }
}

/// Why a worker cannot do a requirement.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RequirementError {
    /// The worker has no parser of that name.
    #[error("it has no parser {0:?}")]
    NoParser(String),
    /// The worker refused the spider file.
    #[error("it refused the spider: {0}")]
    SpiderRefused(common::LoadSpiderError),
    /// The worker did not answer the spider's load.
    #[error("loading the spider failed: {0}")]
    Unanswered(String),
    /// No worker was up to take it.
    #[error("no worker is up")]
    NoWorker,
}

/// Why the pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No worker answered.
    #[error("no worker could be reached (tried {tried}): {last}")]
    NoWorkers {
        /// The addresses tried, comma-separated.
        tried: String,
        /// What the last attempt said.
        last: String,
    },
    /// Workers answered, but none can do the crawl (no such parser, or the spider refused).
    #[error("no reachable worker can do this crawl: {why}")]
    Unable {
        /// Why the last worker could not.
        why: String,
    },
}
/// Everything the supervisors and the operator share with the pool.
#[derive(Debug)]
struct Shared {
    traffic: Arc<Traffic>,
    tx: mpsc::UnboundedSender<Lease>,
    /// Leases in circulation (in the channel or out on requests), valid or not yet discarded.
    live: AtomicUsize,
    config: PoolConfig,
    /// What every worker must be able to do: one entry per parser or spider in use.
    requirements: Mutex<Vec<Requirement>>,
    /// Every worker ever in the pool, by index.
    workers: RwLock<Vec<Arc<WorkerConn>>>,
    /// Stops the supervisors when the pool is dropped.
    stop: CancellationToken,
}

impl Shared {
    fn slots(&self, info: &WorkerInfo) -> usize {
        (info.concurrency.max(1) as usize).min(self.config.max_slots.max(1))
    }

    fn requirements(&self) -> Vec<Requirement> {
        self.requirements
            .lock()
            .map(|j| j.clone())
            .unwrap_or_default()
    }

    fn workers(&self) -> Vec<Arc<WorkerConn>> {
        self.workers.read().map(|w| w.clone()).unwrap_or_default()
    }

    fn worker(&self, id: usize) -> Result<Arc<WorkerConn>, ControlError> {
        let worker = self
            .workers
            .read()
            .ok()
            .and_then(|w| w.get(id).cloned())
            .ok_or(ControlError::NotFound(id))?;
        if worker.is_removed() {
            return Err(ControlError::Removed(id));
        }
        Ok(worker)
    }

    /// Puts `count` fresh leases of `worker`'s current link and epoch into circulation.
    fn add_leases(&self, worker: &Arc<WorkerConn>, count: usize) {
        let link = worker.link();
        let epoch = worker.epoch.load(Ordering::SeqCst);
        let node = common::fingerprint(&link.info.node_id);
        for _ in 0..count {
            self.live.fetch_add(1, Ordering::Relaxed);
            let lease = Lease {
                worker: worker.clone(),
                generation: link.generation,
                epoch,
                client: link.client.clone(),
                down: link.down.clone(),
                leaving: link.leaving.clone(),
                node,
            };
            if self.tx.send(lease).is_err() {
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Marks the worker down if `generation` is still its link; idempotent.
    fn mark_down(&self, worker: &WorkerConn, generation: u64, why: &str) {
        let link = worker.link();
        if link.generation == generation && worker.up.swap(false, Ordering::SeqCst) {
            warn!(worker = %worker.addr, %why, "worker marked down; its requests go to other workers");
            link.down.cancel();
        }
    }

    /// Marks the worker as leaving if `generation` is still its link: it gets no new calls,
    /// and those in flight finish; idempotent.
    fn withdraw(&self, worker: &WorkerConn, generation: u64, why: &str) {
        let link = worker.link();
        if link.generation == generation && !link.leaving.swap(true, Ordering::SeqCst) {
            info!(worker = %worker.addr, %why, "worker is leaving; its requests in flight finish, new ones go to other workers");
        }
    }

    /// Starts a worker's supervisor.
    fn supervise(self: &Arc<Self>, worker: Arc<WorkerConn>) {
        tokio::spawn(supervise::supervise(
            worker,
            self.clone(),
            self.stop.clone(),
        ));
    }
}

/// Connected workers and their leases.
#[derive(Debug)]
pub struct Pool {
    rx: mpsc::UnboundedReceiver<Lease>,
    shared: Arc<Shared>,
    /// Since when no worker has been up, while that lasts: the no-workers timeout counts from
    /// there, however often the crawl loop asks again.
    all_down_since: Option<tokio::time::Instant>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

impl Pool {
    /// Connects to every host, logging each result, and keeps those that answer and can do
    /// `requirements`; fails only when none is left. Each worker is then supervised.
    pub async fn connect(
        hosts: &[String],
        requirements: Vec<Requirement>,
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
            let requirements = requirements.clone();
            let traffic = traffic.clone();
            let credentials = config.credentials.clone();
            async move {
                (
                    addr.clone(),
                    connect_one(addr, &requirements, timeout, &traffic, &credentials).await,
                )
            }
        });
        let mut connected: Vec<(String, CrawlServiceClient, WorkerInfo)> = Vec::new();
        let mut unable = None;
        let mut last = String::new();
        for (addr, result) in futures::future::join_all(attempts).await {
            match result {
                Err(Failure::Unreachable(cause)) => {
                    warn!(worker = %addr, %cause, "worker unreachable; going on without it");
                    last = cause;
                }
                Err(Failure::Unable(why)) => {
                    warn!(worker = %addr, %why, "worker cannot do this crawl; not using it");
                    unable = Some(why.to_string());
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
                    last,
                },
            });
        }
        let pool = Pool::build(connected, true, requirements, config, traffic);
        for worker in pool.workers() {
            pool.shared.supervise(worker);
        }
        Ok(pool)
    }

    /// Builds a pool of one worker running in this process; it is only watched for its
    /// heartbeat figures, since it cannot go down.
    pub fn in_process(
        client: CrawlServiceClient,
        info: WorkerInfo,
        requirements: Vec<Requirement>,
        config: PoolConfig,
        traffic: Arc<Traffic>,
    ) -> Pool {
        let pool = Pool::build(
            vec![("in-process".into(), client, info)],
            false,
            requirements,
            config,
            traffic,
        );
        for worker in pool.workers() {
            pool.shared.supervise(worker);
        }
        pool
    }

    fn build(
        clients: Vec<(String, CrawlServiceClient, WorkerInfo)>,
        remote: bool,
        requirements: Vec<Requirement>,
        config: PoolConfig,
        traffic: Arc<Traffic>,
    ) -> Pool {
        let (tx, rx) = mpsc::unbounded_channel();
        let workers: Vec<Arc<WorkerConn>> = clients
            .into_iter()
            .enumerate()
            .map(|(index, (addr, client, info))| {
                Arc::new(WorkerConn::new(index, addr, client, info, remote))
            })
            .collect();
        let shared = Arc::new(Shared {
            traffic,
            tx,
            live: AtomicUsize::new(0),
            config,
            requirements: Mutex::new(requirements),
            workers: RwLock::new(workers.clone()),
            stop: CancellationToken::new(),
        });
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
            rx,
            shared,
            all_down_since: None,
        }
    }

    /// A handle for steering the pool's workers while the crawl runs.
    pub fn control(&self) -> PoolControl {
        PoolControl {
            shared: self.shared.clone(),
        }
    }

    /// Waits for the next lease. When every worker is down it waits up to the no-workers
    /// timeout for one to come back, and returns `None` if none does. Paused workers are
    /// waited for without a limit: an operator will resume them.
    pub async fn acquire(&mut self) -> Option<Lease> {
        loop {
            let any_paused = || {
                self.shared
                    .workers()
                    .iter()
                    .any(|w| w.admin() == Admin::Paused)
            };
            let lease = if self.shared.live.load(Ordering::Relaxed) == 0 && !any_paused() {
                let timeout = self.shared.config.no_workers_timeout;
                let since = *self.all_down_since.get_or_insert_with(|| {
                    warn!(?timeout, "no worker is up; waiting for one to come back");
                    tokio::time::Instant::now()
                });
                tokio::time::timeout_at(common::time::later(since, timeout), self.rx.recv())
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

    /// A lease free right now, without waiting.
    pub fn try_acquire(&mut self) -> Option<Lease> {
        while let Ok(lease) = self.rx.try_recv() {
            if lease.is_valid() {
                return Some(lease);
            }
            self.shared.live.fetch_sub(1, Ordering::Relaxed);
        }
        None
    }

    /// Builds a pool with no worker yet: workers join as they register (cluster mode).
    pub fn empty(
        requirements: Vec<Requirement>,
        config: PoolConfig,
        traffic: Arc<Traffic>,
    ) -> Pool {
        Pool::build(Vec::new(), true, requirements, config, traffic)
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

    /// A lease of a worker that renders pages, for a page to render: of one with a tab free
    /// if there is one (`lease` itself when its worker has, else one taken from the free
    /// slots in its place), else of any that renders (the page waits for a tab there). `Err`
    /// gives `lease` back to the caller when no worker that renders has a slot free.
    pub fn renderer_lease(&mut self, lease: Lease) -> Result<Lease, Lease> {
        if lease.worker.has_free_tab() {
            return Ok(lease);
        }
        let mut passed = Vec::new();
        let mut found = None;
        while let Ok(candidate) = self.rx.try_recv() {
            if !candidate.is_valid() {
                self.shared.live.fetch_sub(1, Ordering::Relaxed);
            } else if candidate.worker.has_free_tab() {
                found = Some(candidate);
                break;
            } else {
                passed.push(candidate);
            }
        }
        // No tab free anywhere: a slot of a worker that renders, if one is free.
        let found = found.or_else(|| {
            let busy = passed.iter().position(|l| l.worker.renders())?;
            Some(passed.swap_remove(busy))
        });
        for l in passed {
            self.release(l);
        }
        match found {
            Some(found) => {
                self.release(lease);
                Ok(found)
            }
            None if lease.worker.renders() => Ok(lease),
            None => Err(lease),
        }
    }

    /// Whether a worker that renders pages is connected and up.
    pub fn any_renders(&self) -> bool {
        self.workers()
            .iter()
            .any(|w| w.renders() && w.is_taking_work())
    }

    /// Gives a lease back after its request finished.
    pub fn release(&self, lease: Lease) {
        // A lease of a down connection or an old epoch is discarded; so is one the channel
        // cannot take.
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

    /// Marks the lease's worker as leaving (it refused a call because it is draining) and
    /// discards the lease; its other calls in flight finish.
    pub fn withdraw(&self, lease: Lease, why: &str) {
        self.shared.withdraw(&lease.worker, lease.generation, why);
        self.shared.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// The RPC traffic counter of the crawl.
    pub fn traffic(&self) -> &Arc<Traffic> {
        &self.shared.traffic
    }

    /// Every worker ever in the pool, removed ones included.
    pub fn workers(&self) -> Vec<Arc<WorkerConn>> {
        self.shared.workers()
    }

    /// The worker with this index, if there is one.
    pub fn worker(&self, index: usize) -> Option<Arc<WorkerConn>> {
        self.shared
            .workers
            .read()
            .ok()
            .and_then(|w| w.get(index).cloned())
    }

    /// Workers up and taking work (not down, leaving, paused or removed).
    pub fn workers_up(&self) -> usize {
        self.shared
            .workers()
            .iter()
            .filter(|w| w.is_taking_work())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::conn::Link;
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
        Pool::build(
            workers,
            true,
            vec![Requirement::Parser("links".into())],
            config,
            Arc::default(),
        )
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
    async fn rendered_pages_go_where_a_tab_is_free_then_to_any_renderer_slot() {
        let renderer = |concurrency| {
            let (name, client, mut info) = in_process_worker(concurrency);
            info.render_tabs = 1;
            (format!("{name}-renders"), client, info)
        };
        let mut pool = pool(vec![in_process_worker(3), renderer(2), renderer(1)], 100);
        let first = pool.acquire().await.expect("lease");
        let first = pool.renderer_lease(first).expect("a renderer");
        let tab_a = first.worker().take_tab();
        // The other renderer has its tab free: it takes the next page.
        let second = pool.acquire().await.expect("lease");
        let second = pool.renderer_lease(second).expect("a renderer");
        assert_ne!(first.worker().index, second.worker().index);
        assert_ne!(second.worker().index, 0);
        let tab_b = second.worker().take_tab();
        // No tab free: a renderer's slot all the same (the page waits for its tab there).
        let third = pool.acquire().await.expect("lease");
        let third = pool.renderer_lease(third).expect("a renderer's slot");
        assert_eq!(
            third.worker().index,
            1,
            "the only renderer with a slot left"
        );
        // No renderer slot free: none, and the plain lease comes back.
        let fourth = pool.acquire().await.expect("lease");
        let fourth = pool.renderer_lease(fourth).expect_err("no renderer slot");
        assert_eq!(fourth.worker().index, 0);
        drop((tab_a, tab_b));
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
    async fn a_leaving_worker_gets_no_new_calls_and_keeps_those_in_flight() {
        let mut pool = pool(vec![in_process_worker(2), in_process_worker(2)], 100);
        let held = pool.acquire().await.expect("lease");
        let leaving = held.worker().clone();
        pool.shared.withdraw(&leaving, 0, "test");
        assert!(
            !held.down_signal().is_cancelled(),
            "its call in flight is not cancelled"
        );
        assert!(held.leaving_flag().load(Ordering::SeqCst));
        let mut drawn = Vec::new();
        while let Some(lease) = pool.acquire().now_or_never().flatten() {
            assert_ne!(
                lease.worker().index,
                leaving.index,
                "a leaving worker is handed no new call"
            );
            drawn.push(lease);
        }
        assert_eq!(drawn.len(), 2, "the other worker's two slots");
        assert_eq!(pool.workers_up(), 1);
        assert_eq!(leaving.view().state, "draining");
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
            *link = Link::new(fresh.1, fresh.2, 1);
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

    #[tokio::test]
    async fn pause_and_resume_never_double_a_workers_slots() {
        let mut pool = pool(vec![in_process_worker(2), in_process_worker(2)], 100);
        let control = pool.control();
        let out = pool.acquire().await.expect("lease");
        assert_eq!(out.worker().index, 0);
        control.pause(0).expect("pause");
        control.resume(0).expect("resume");
        control.pause(0).expect("pause again");
        control.resume(0).expect("resume again");
        // The lease taken before the pause comes back and is discarded: worker 0 has its two
        // fresh slots, worker 1 its two, and nothing more.
        pool.release(out);
        let mut got = Vec::new();
        while let Some(Some(lease)) = pool.acquire().now_or_never() {
            got.push(lease.worker().index);
        }
        got.sort_unstable();
        assert_eq!(got, vec![0, 0, 1, 1]);
    }

    #[tokio::test]
    async fn a_paused_worker_gets_nothing_and_the_pool_waits_for_it() {
        let mut pool = pool(vec![in_process_worker(1)], 100);
        let control = pool.control();
        assert_eq!(control.pause(0).expect("pause").state, "paused");
        assert!(
            pool.acquire().now_or_never().is_none(),
            "no lease while paused, and no no-workers failure either"
        );
        control.resume(0).expect("resume");
        assert_eq!(pool.acquire().await.expect("lease").worker().index, 0);
        assert!(matches!(control.pause(7), Err(ControlError::NotFound(7))));
        control.remove(0).expect("remove");
        assert!(matches!(control.resume(0), Err(ControlError::Removed(0))));
        assert!(
            control.views().is_empty(),
            "a removed worker with nothing in flight is gone"
        );
    }
}
