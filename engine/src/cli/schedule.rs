//! Engine flags: when the task runs: a cron schedule, its history and its time limit.

use std::path::PathBuf;

/// When the task runs: a cron schedule, its history and its time limit.
#[derive(clap::Args, Debug)]
pub struct ScheduleArgs {
    /// Run the engine's own task on this cron schedule (`"0 3 * * *"`, seconds optional):
    /// each tick starts a new run with a fresh dedup; the engine keeps running between runs.
    /// A spider's `[schedule]` when not given. In cluster mode the leader fires each tick once
    /// for every engine.
    #[arg(long, value_name = "CRON", env = "SPINNERET_SCHEDULE")]
    pub schedule: Option<String>,

    /// Time zone of --schedule (an IANA name such as Europe/Paris).
    #[arg(
        long,
        value_name = "TZ",
        env = "SPINNERET_TIMEZONE",
        default_value = "UTC"
    )]
    pub timezone: String,

    /// What a tick of --schedule does while the previous run is still going: `skip` it
    /// (recorded as a skipped run) or `replace` (stop the old run gracefully, then start).
    #[arg(long, value_name = "HOW", env = "SPINNERET_OVERLAP", default_value = "skip", value_parser = super::parse_overlap)]
    pub overlap: crate::schedule::Overlap,

    /// File of the run history (SQLite), kept across crawls and restarts. Default `jobs.db`;
    /// in cluster mode none unless given (give each engine its own).
    #[arg(long, value_name = "PATH", env = "SPINNERET_JOBS")]
    pub jobs: Option<PathBuf>,

    /// Seconds the engine's own task may run before it is stopped gracefully, its items
    /// saved (status `timeout`; the spider's `[limits] timeout_secs` when not given).
    #[arg(
        long = "task_timeout",
        alias = "task-timeout",
        value_name = "SECS",
        env = "SPINNERET_TASK_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..=31_536_000)
    )]
    pub task_timeout: Option<u64>,
}
