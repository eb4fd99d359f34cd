//! Engine flags: the durable crawl state: where it is kept, how often it is written, resuming.

use std::path::PathBuf;

/// The durable crawl state: where it is kept, how often it is written, resuming.
#[derive(clap::Args, Debug)]
pub struct StateArgs {
    /// Directory for the crawl's durable state (queue, seen URLs, undelivered items, figures),
    /// so that a killed or stopped crawl resumes. Default: TASK.state in the working directory.
    /// Removed when the crawl finishes.
    #[arg(long, value_name = "DIR", env = "SPINNERET_STATE")]
    pub state: Option<PathBuf>,

    /// Keep no durable state: a crawl that stops cannot be resumed.
    #[arg(long = "no_state", alias = "no-state", env = "SPINNERET_NO_STATE", conflicts_with_all = ["state", "resume"])]
    pub no_state: bool,

    /// Carry on the unfinished crawl in the state directory; fail if there is none. (Re-running
    /// the same command also carries on, and starts fresh when there is nothing to resume.)
    #[arg(long, env = "SPINNERET_RESUME", conflicts_with = "fresh")]
    pub resume: bool,

    /// Throw away the state of an unfinished crawl and start over.
    #[arg(long, env = "SPINNERET_FRESH")]
    pub fresh: bool,

    /// Milliseconds between commits of the state (batched for speed; a crash refetches at most
    /// the pages finished in the last interval).
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=60_000),
        long = "state_sync_ms",
        alias = "state-sync-ms",
        value_name = "MS",
        env = "SPINNERET_STATE_SYNC_MS",
        default_value_t = 200
    )]
    pub state_sync_ms: u64,

    /// Seconds a stopping crawl (first SIGINT or SIGTERM) waits for its requests in flight.
    #[arg(
        value_parser = clap::value_parser!(u64).range(0..=86_400),
        long = "drain_timeout",
        alias = "drain-timeout",
        value_name = "SECS",
        env = "SPINNERET_DRAIN_TIMEOUT",
        default_value_t = 30
    )]
    pub drain_timeout: u64,
}
