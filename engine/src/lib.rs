//! The Spinneret engine: schedules a crawl over a pool of workers and sends the items to an
//! itemsaver.
//!
//! With no worker hosts it runs a worker in this process, and with no itemsaver it stores items
//! itself, so one command crawls a site on one machine.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod crawl;
pub mod crawl_identity;
pub mod error;
pub mod frontier;
pub mod history;
pub mod local_worker;
pub mod metrics;
pub mod pool;
pub mod progress;
pub mod robots;
pub mod schedule;
pub mod scope;
pub mod sink;
pub mod startup;
pub mod state;
pub mod summary;
pub mod tasks;

pub use config::{EngineConfig, SpiderRun};
pub use error::EngineError;
pub use startup::{Operate, run, run_with};
pub use summary::Summary;

/// Reads and checks the spider file at `path`.
pub fn load_spider(
    path: &std::path::Path,
) -> Result<(SpiderRun, worker::spider::spec::SpiderSpec), EngineError> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| EngineError::SpiderFile {
        path: file.clone(),
        cause: e.to_string(),
    })?;
    Ok(SpiderRun::compile(&file, source)?)
}

/// Why a spider file's `[schedule]` is refused.
#[derive(Debug, thiserror::Error)]
pub enum SpiderScheduleError {
    /// `overlap` is neither `skip` nor `replace`.
    #[error("[schedule] overlap = {0:?}: use \"skip\" or \"replace\"")]
    Overlap(String),
    /// The cron pattern or the time zone does not read.
    #[error("[schedule] {0}")]
    Schedule(#[from] schedule::ScheduleError),
}

/// The `[schedule]` of a spider file, checked.
pub fn spider_schedule(
    spec: &worker::spider::spec::SpiderSpec,
) -> Result<Option<schedule::ScheduleSpec>, SpiderScheduleError> {
    let Some(section) = &spec.schedule else {
        return Ok(None);
    };
    let overlap = match section.overlap.as_deref() {
        None | Some("skip") => schedule::Overlap::Skip,
        Some("replace") => schedule::Overlap::Replace,
        Some(other) => return Err(SpiderScheduleError::Overlap(other.to_owned())),
    };
    let spec = schedule::ScheduleSpec {
        cron: section.cron.clone(),
        timezone: section.timezone.clone().unwrap_or_else(|| "UTC".into()),
        overlap,
    };
    // Checked here, so that a bad pattern names the file's section.
    schedule::Schedule::new(spec.clone())?;
    Ok(Some(spec))
}

/// Checks a seed and returns its canonical URL.
pub fn parse_seed(seed: &str) -> Result<url::Url, EngineError> {
    common::canonicalize(seed, None).map_err(|e| EngineError::BadSeed {
        seed: seed.into(),
        reason: e.to_string(),
    })
}
