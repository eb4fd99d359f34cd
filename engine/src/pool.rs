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

use common::traffic::Traffic;
use common::{CrawlServiceClient, WorkerInfo, transport};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Set when the worker leaves on purpose (it drains before shutting down): it gets no new
    /// calls, those in flight finish, and any it drops were not its death.
    leaving: Arc<AtomicBool>,
}

impl Link {
    fn new(client: CrawlServiceClient, info: WorkerInfo, generation: u64) -> Link {
        Link {
            client,
            info,
            generation,
            down: CancellationToken::new(),
            leaving: Arc::default(),
        }
    }
}

/// What an operator asked of a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Admin {
    Active = 0,
    Paused = 1,
    Removed = 2,
}

/// The last heartbeat a worker answered.
#[derive(Clone, Debug)]
struct Heartbeat {
    at: std::time::Instant,
    status: common::WorkerStatus,
}

/// One worker of the pool.
#[derive(Debug)]
pub struct WorkerConn {
    /// Position in the pool, for per-worker counters; never reused, so it is also the id the
    /// admin API names the worker by.
    pub index: usize,
    /// The address it is reached at (or `in-process`).
    pub addr: String,
    /// Requests sent to it.
    pub requests: AtomicU64,
    /// Requests sent to it and not answered yet.
    pub in_flight: AtomicU64,
    link: Mutex<Link>,
    up: AtomicBool,
    admin: AtomicU8,
    /// Bumped by every pause, resume and removal: leases of another epoch are discarded.
    epoch: AtomicU64,
    /// Serialises the lease decisions of the supervisor and the operator.
    leasing: Mutex<()>,
    /// Remote workers are reconnected when they fail; the in-process one cannot fail.
    remote: bool,
    heartbeat: Mutex<Option<Heartbeat>>,
}

impl WorkerConn {
    fn new(
        index: usize,
        addr: String,
        client: CrawlServiceClient,
        info: WorkerInfo,
        remote: bool,
    ) -> Self {
        WorkerConn {
            index,
            addr,
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            link: Mutex::new(Link::new(client, info, 0)),
            up: AtomicBool::new(true),
            admin: AtomicU8::new(Admin::Active as u8),
            epoch: AtomicU64::new(0),
            leasing: Mutex::new(()),
            remote,
            heartbeat: Mutex::new(None),
        }
    }

    /// Whether the worker is marked down.
    pub fn is_down(&self) -> bool {
        !self.up.load(Ordering::SeqCst)
    }

    fn admin(&self) -> Admin {
        match self.admin.load(Ordering::SeqCst) {
            0 => Admin::Active,
            1 => Admin::Paused,
            _ => Admin::Removed,
        }
    }

    /// Whether it is leaving on purpose (draining before it shuts down).
    pub fn is_leaving(&self) -> bool {
        self.link().leaving.load(Ordering::SeqCst)
    }

    /// Whether it takes new calls: connected, not leaving, and neither paused nor removed.
    fn is_taking_work(&self) -> bool {
        !self.is_down() && !self.is_leaving() && self.admin() == Admin::Active
    }

    /// Whether an operator removed it from the pool.
    pub fn is_removed(&self) -> bool {
        self.admin() == Admin::Removed
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

    fn leasing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.leasing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record_heartbeat(&self, status: common::WorkerStatus) {
        if let Ok(mut h) = self.heartbeat.lock() {
            *h = Some(Heartbeat {
                at: std::time::Instant::now(),
                status,
            });
        }
    }

    /// The worker as the admin API shows it.
    pub fn view(&self) -> WorkerView {
        let heartbeat = self.heartbeat.lock().ok().and_then(|h| h.clone());
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        let state = match self.admin() {
            Admin::Removed if in_flight > 0 => "draining",
            Admin::Removed => "removed",
            Admin::Paused => "paused",
            Admin::Active if self.is_down() => "down",
            Admin::Active if self.is_leaving() => "draining",
            Admin::Active => "up",
        };
        WorkerView {
            id: self.index,
            addr: self.addr.clone(),
            node_id: self.info().node_id,
            state,
            up: !self.is_down(),
            heartbeat_age_secs: heartbeat.as_ref().map(|h| h.at.elapsed().as_secs_f64()),
            requests: self.requests.load(Ordering::Relaxed),
            in_flight,
            done: heartbeat.as_ref().map_or(0, |h| h.status.done),
            failed: heartbeat.as_ref().map_or(0, |h| h.status.failed),
            uptime_secs: heartbeat.as_ref().map_or(0, |h| h.status.uptime_secs),
        }
    }
}

/// A worker as the admin API and the dashboard show it.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerView {
    /// The id to name it by in `/api/workers/{id}`.
    pub id: usize,
    /// Its address.
    pub addr: String,
    /// The node id it reported.
    pub node_id: String,
    /// `up`, `down`, `paused`, `draining` (removed, requests still in flight) or `removed`.
    pub state: &'static str,
    /// Whether its connection is up (a paused worker may be up or down).
    pub up: bool,
    /// Seconds since it last answered a heartbeat; `null` before the first.
    pub heartbeat_age_secs: Option<f64>,
    /// Requests this engine sent it.
    pub requests: u64,
    /// Requests this engine sent it that are not answered yet.
    pub in_flight: u64,
    /// Requests it reports done (since it started, for any engine).
    pub done: u64,
    /// Requests it reports failed (since it started, for any engine).
    pub failed: u64,
    /// Seconds since it started, as it reported.
    pub uptime_secs: u64,
}

/// The right to send one request to one worker; give it back with [`Pool::release`].
#[derive(Debug)]
pub struct Lease {
    worker: Arc<WorkerConn>,
    generation: u64,
    epoch: u64,
    client: CrawlServiceClient,
    down: CancellationToken,
    leaving: Arc<AtomicBool>,
    node: u64,
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

    /// Set once the worker of this lease's connection leaves on purpose (drains): a call it
    /// drops from then on was not lost to its death.
    pub fn leaving_flag(&self) -> Arc<AtomicBool> {
        self.leaving.clone()
    }

    /// The worker process this lease's connection reaches: a hash of the node id it reported,
    /// so a worker restarted in place is another node.
    pub fn node(&self) -> u64 {
        self.node
    }

    fn is_valid(&self) -> bool {
        !self.worker.is_down()
            && !self.down.is_cancelled()
            && !self.leaving.load(Ordering::SeqCst)
            && self.worker.admin() == Admin::Active
            && self.worker.epoch.load(Ordering::SeqCst) == self.epoch
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

/// Why an operator's request about a worker was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No worker has this id.
    #[error("no worker has id {0}")]
    NotFound(usize),
    /// The worker was removed; it can be added again under a new id.
    #[error("worker {0} was removed")]
    Removed(usize),
    /// The address is not `host:port`.
    #[error("{0}")]
    BadAddress(String),
    /// The worker is already in the pool.
    #[error("{addr} is already in the pool as worker {id}")]
    Duplicate {
        /// The address asked for.
        addr: String,
        /// The id it has.
        id: usize,
    },
    /// It could not be reached, or cannot do the crawl's tasks.
    #[error("{0}")]
    Unreachable(String),
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
    jobs: Mutex<Vec<Job>>,
    /// Every worker ever in the pool, by index.
    workers: RwLock<Vec<Arc<WorkerConn>>>,
    /// Stops the supervisors when the pool is dropped.
    stop: CancellationToken,
}

impl Shared {
    fn slots(&self, info: &WorkerInfo) -> usize {
        (info.concurrency.max(1) as usize).min(self.config.max_slots.max(1))
    }

    fn jobs(&self) -> Vec<Job> {
        self.jobs.lock().map(|j| j.clone()).unwrap_or_default()
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
        tokio::spawn(supervise(worker, self.clone(), self.stop.clone()));
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
    /// `jobs`; fails only when none is left. Each worker is then supervised.
    pub async fn connect(
        hosts: &[String],
        jobs: Vec<Job>,
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
            let jobs = jobs.clone();
            let traffic = traffic.clone();
            async move {
                (
                    addr.clone(),
                    connect_one(addr, &jobs, timeout, &traffic).await,
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
        let pool = Pool::build(connected, true, jobs, config, traffic);
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
        jobs: Vec<Job>,
        config: PoolConfig,
        traffic: Arc<Traffic>,
    ) -> Pool {
        let pool = Pool::build(
            vec![("in-process".into(), client, info)],
            false,
            jobs,
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
        jobs: Vec<Job>,
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
            jobs: Mutex::new(jobs),
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

/// Steers the workers of a running crawl: the admin API's handle on the pool.
#[derive(Clone, Debug)]
pub struct PoolControl {
    shared: Arc<Shared>,
}

impl PoolControl {
    /// Every worker not removed (or still draining), as the admin API shows them.
    pub fn views(&self) -> Vec<WorkerView> {
        self.shared
            .workers()
            .iter()
            .map(|w| w.view())
            .filter(|v| v.state != "removed")
            .collect()
    }

    /// Workers up and taking work.
    pub fn workers_up(&self) -> usize {
        self.shared
            .workers()
            .iter()
            .filter(|w| w.is_taking_work())
            .count()
    }

    /// Stops handing the worker requests; those in flight finish.
    pub fn pause(&self, id: usize) -> Result<WorkerView, ControlError> {
        let worker = self.shared.worker(id)?;
        let _leasing = worker.leasing();
        if worker.admin() == Admin::Active {
            worker.admin.store(Admin::Paused as u8, Ordering::SeqCst);
            worker.epoch.fetch_add(1, Ordering::SeqCst);
            info!(worker = %worker.addr, id, "worker paused");
        }
        Ok(worker.view())
    }

    /// Hands the worker requests again.
    pub fn resume(&self, id: usize) -> Result<WorkerView, ControlError> {
        let worker = self.shared.worker(id)?;
        let _leasing = worker.leasing();
        if worker.admin() == Admin::Paused {
            worker.admin.store(Admin::Active as u8, Ordering::SeqCst);
            worker.epoch.fetch_add(1, Ordering::SeqCst);
            // A worker down now gets its leases from its supervisor when it reconnects.
            if !worker.is_down() {
                self.shared
                    .add_leases(&worker, self.shared.slots(&worker.info()));
            }
            info!(worker = %worker.addr, id, "worker resumed");
        }
        Ok(worker.view())
    }

    /// Takes the worker out of the pool for good: no new requests, those in flight finish.
    pub fn remove(&self, id: usize) -> Result<WorkerView, ControlError> {
        let worker = self.shared.worker(id)?;
        let _leasing = worker.leasing();
        worker.admin.store(Admin::Removed as u8, Ordering::SeqCst);
        worker.epoch.fetch_add(1, Ordering::SeqCst);
        info!(worker = %worker.addr, id, "worker removed; its requests in flight finish");
        Ok(worker.view())
    }

    /// Connects to a worker at `addr`, readies it for every task, and adds it to the rotation.
    pub async fn add(&self, addr: &str) -> Result<WorkerView, ControlError> {
        let addr =
            common::parse_host_spec(addr).map_err(|e| ControlError::BadAddress(e.to_string()))?;
        if let Some(known) = self
            .shared
            .workers()
            .iter()
            .find(|w| w.addr == addr && !w.is_removed())
        {
            return Err(ControlError::Duplicate {
                addr,
                id: known.index,
            });
        }
        let jobs = self.shared.jobs();
        let (client, info) = connect_one(
            &addr,
            &jobs,
            self.shared.config.connect_timeout,
            &self.shared.traffic,
        )
        .await
        .map_err(|(Failure::Unreachable(why) | Failure::Unable(why))| {
            ControlError::Unreachable(why)
        })?;
        let worker = {
            let mut workers = self
                .shared
                .workers
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(known) = workers
                .iter()
                .find(|w| !w.is_removed() && w.info().node_id == info.node_id)
            {
                return Err(ControlError::Duplicate {
                    addr,
                    id: known.index,
                });
            }
            let worker = Arc::new(WorkerConn::new(workers.len(), addr, client, info, true));
            workers.push(worker.clone());
            worker
        };
        self.shared
            .add_leases(&worker, self.shared.slots(&worker.info()));
        self.shared.supervise(worker.clone());
        info!(worker = %worker.addr, id = worker.index, "worker added");
        Ok(worker.view())
    }

    /// Readies every worker up for another job (a new task's spider), and has workers that
    /// connect later readied for it too. Fails when no worker could take it.
    pub async fn add_job(&self, job: Job) -> Result<(), String> {
        if self.shared.jobs().contains(&job) {
            // Every worker in the pool was readied for it already.
            return Ok(());
        }
        let timeout = self.shared.config.connect_timeout;
        let mut ready = 0;
        let mut last_error = None;
        for worker in self.shared.workers() {
            if worker.is_down() || worker.is_removed() {
                continue;
            }
            match job.prepare(&worker.client(), &worker.info(), timeout).await {
                Ok(()) => ready += 1,
                Err(why) => {
                    warn!(worker = %worker.addr, %why, "worker cannot do the new task");
                    last_error = Some(why);
                }
            }
        }
        if ready == 0 {
            return Err(last_error.unwrap_or_else(|| "no worker is up".into()));
        }
        if let Ok(mut jobs) = self.shared.jobs.lock() {
            jobs.push(job);
        }
        Ok(())
    }
}

enum Failure {
    Unreachable(String),
    Unable(String),
}

async fn connect_one(
    addr: &str,
    jobs: &[Job],
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
    for job in jobs {
        job.prepare(&client, &info, timeout)
            .await
            .map_err(Failure::Unable)?;
    }
    Ok((client, info))
}

/// Watches one worker: heartbeats while it is up, reconnects with back-off while it is down.
/// The in-process worker is only asked for its figures.
async fn supervise(worker: Arc<WorkerConn>, shared: Arc<Shared>, stop: CancellationToken) {
    let config = shared.config;
    let mut misses = 0;
    let mut backoff = Duration::from_millis(250);
    loop {
        if worker.is_removed() {
            return;
        }
        if worker.is_down() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            let jobs = shared.jobs();
            match connect_one(&worker.addr, &jobs, config.connect_timeout, &shared.traffic).await {
                Ok((client, info)) => {
                    let slots = shared.slots(&info);
                    let _leasing = worker.leasing();
                    if let Ok(mut link) = worker.link.lock() {
                        let generation = link.generation + 1;
                        *link = Link::new(client, info, generation);
                    }
                    worker.up.store(true, Ordering::SeqCst);
                    // A paused worker gets its leases when it is resumed.
                    if worker.admin() == Admin::Active {
                        shared.add_leases(&worker, slots);
                    }
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
        let answer = tokio::time::timeout(
            config.heartbeat,
            link.client.status(transport::deadline(config.heartbeat)),
        )
        .await;
        if let Ok(Ok(status)) = &answer {
            worker.record_heartbeat(status.clone());
        }
        if !worker.remote {
            continue;
        }
        match answer {
            // A draining worker finishes what it holds; it closes its connections when done,
            // and is marked down then.
            Ok(Ok(status)) if status.paused => {
                misses = 0;
                shared.withdraw(&worker, link.generation, "it is draining");
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
        Pool::build(
            workers,
            true,
            vec![Job::Parser("links".into())],
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
