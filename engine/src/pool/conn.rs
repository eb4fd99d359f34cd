//! One worker of the pool: its live connection, what an operator asked of it, and how the
//! admin API shows it.

use common::{CrawlServiceClient, WorkerInfo};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// The live connection to a worker: replaced when the worker reconnects.
#[derive(Clone, Debug)]
pub(super) struct Link {
    pub(super) client: CrawlServiceClient,
    pub(super) info: WorkerInfo,
    pub(super) generation: u64,
    /// Cancelled when this link is marked down, ending its calls in flight.
    pub(super) down: CancellationToken,
    /// Set when the worker leaves on purpose (it drains before shutting down): it gets no new
    /// calls, those in flight finish, and any it drops were not its death.
    pub(super) leaving: Arc<AtomicBool>,
}

impl Link {
    pub(super) fn new(client: CrawlServiceClient, info: WorkerInfo, generation: u64) -> Link {
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
pub(super) enum Admin {
    Active = 0,
    Paused = 1,
    Removed = 2,
}

/// The last heartbeat a worker answered.
#[derive(Clone, Debug)]
pub(super) struct Heartbeat {
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
    /// Rendered pages among them: at most its tabs (see [`RenderTab`]).
    rendering: Arc<AtomicU64>,
    pub(super) link: Mutex<Link>,
    pub(super) up: AtomicBool,
    pub(super) admin: AtomicU8,
    /// Bumped by every pause, resume and removal: leases of another epoch are discarded.
    pub(super) epoch: AtomicU64,
    /// Serialises the lease decisions of the supervisor and the operator.
    pub(super) leasing: Mutex<()>,
    /// Remote workers are reconnected when they fail; the in-process one cannot fail.
    pub(super) remote: bool,
    pub(super) heartbeat: Mutex<Option<Heartbeat>>,
}

impl WorkerConn {
    pub(super) fn new(
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
            rendering: Arc::default(),
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

    pub(super) fn admin(&self) -> Admin {
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
    pub(super) fn is_taking_work(&self) -> bool {
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

    /// Pages the worker renders at once (`worker --render_tabs`; 0 when it does not
    /// render), as it last said.
    pub fn render_tabs(&self) -> u32 {
        self.link
            .lock()
            .map(|l| l.info.render_tabs)
            .unwrap_or_else(|e| e.into_inner().info.render_tabs)
    }

    /// Whether the worker renders pages (`worker --render`), as it last said.
    pub fn renders(&self) -> bool {
        self.render_tabs() > 0
    }

    /// Whether it renders and has a tab free for one more page.
    pub fn has_free_tab(&self) -> bool {
        self.rendering.load(Ordering::Relaxed) < u64::from(self.render_tabs())
    }

    /// Takes one of its tabs for a rendered page, until the returned guard is dropped.
    pub fn take_tab(&self) -> RenderTab {
        self.rendering.fetch_add(1, Ordering::Relaxed);
        RenderTab(self.rendering.clone())
    }

    pub(super) fn link(&self) -> Link {
        self.link
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    pub(super) fn leasing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.leasing.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn record_heartbeat(&self, status: common::WorkerStatus) {
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
            in_flight_by_task: heartbeat
                .as_ref()
                .map(|h| h.status.in_flight_by_task.clone())
                .unwrap_or_default(),
            oldest_in_flight_secs: heartbeat
                .as_ref()
                .and_then(|h| h.status.oldest_in_flight_secs),
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
    /// What it reported working on at its last heartbeat: crawl requests by task (for every
    /// engine it serves).
    pub in_flight_by_task: std::collections::BTreeMap<String, u64>,
    /// Seconds its oldest request in flight had been going at its last heartbeat; far past
    /// the fetch timeout, the worker is stuck.
    pub oldest_in_flight_secs: Option<f64>,
}

/// One of a worker's tabs, held by a rendered page in flight there; given back when dropped
/// (when the call ends, whatever its outcome). A rendering worker takes at most its tabs'
/// worth of rendered pages, so that the rest of its slots serve plain pages instead of
/// waiting for a tab.
#[derive(Debug)]
pub struct RenderTab(Arc<AtomicU64>);

impl Drop for RenderTab {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
