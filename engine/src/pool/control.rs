//! The operator's handle on the pool: pause, resume, remove and add workers, and ready them
//! for new requirements.

use super::conn::{Admin, WorkerConn, WorkerView};
use super::supervise::{Failure, connect_one};
use super::{Requirement, RequirementError, Shared};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tracing::{info, warn};

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

/// Steers the workers of a running crawl: the admin API's handle on the pool.
#[derive(Clone, Debug)]
pub struct PoolControl {
    pub(super) shared: Arc<Shared>,
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
        let requirements = self.shared.requirements();
        let (client, info) = connect_one(
            &addr,
            &requirements,
            self.shared.config.connect_timeout,
            &self.shared.traffic,
            &self.shared.config.credentials,
        )
        .await
        .map_err(|failure| match failure {
            Failure::Unreachable(why) => ControlError::Unreachable(why),
            Failure::Unable(why) => ControlError::Unreachable(why.to_string()),
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

    /// Readies every worker up for another requirement (a new task's spider), and has workers that
    /// connect later readied for it too. Fails when no worker could take it.
    pub async fn require(&self, requirement: Requirement) -> Result<(), RequirementError> {
        if self.shared.requirements().contains(&requirement) {
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
            match requirement
                .prepare(&worker.client(), &worker.info(), timeout)
                .await
            {
                Ok(()) => ready += 1,
                Err(why) => {
                    warn!(worker = %worker.addr, %why, "worker cannot do the new task");
                    last_error = Some(why);
                }
            }
        }
        if ready == 0 {
            return Err(last_error.unwrap_or(RequirementError::NoWorker));
        }
        if let Ok(mut requirements) = self.shared.requirements.lock() {
            requirements.push(requirement);
        }
        Ok(())
    }
}
