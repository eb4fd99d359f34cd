//! The right to send one request to one worker.

use super::conn::{Admin, WorkerConn};
use common::CrawlServiceClient;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;

/// The right to send one request to one worker; give it back with [`Pool::release`].
#[derive(Debug)]
pub struct Lease {
    pub(super) worker: Arc<WorkerConn>,
    pub(super) generation: u64,
    pub(super) epoch: u64,
    pub(super) client: CrawlServiceClient,
    pub(super) down: CancellationToken,
    pub(super) leaving: Arc<AtomicBool>,
    pub(super) node: u64,
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

    pub(super) fn is_valid(&self) -> bool {
        !self.worker.is_down()
            && !self.down.is_cancelled()
            && !self.leaving.load(Ordering::SeqCst)
            && self.worker.admin() == Admin::Active
            && self.worker.epoch.load(Ordering::SeqCst) == self.epoch
    }
}
