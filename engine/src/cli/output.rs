//! Engine flags: what the engine prints while it runs and at the end.

use std::path::PathBuf;

/// What the engine prints while it runs and at the end.
#[derive(clap::Args, Debug)]
pub struct OutputArgs {
    /// No progress line or progress logs, and only warnings and errors logged (RUST_LOG
    /// still wins); the summary is still printed.
    #[arg(long, short = 'q', env = "SPINNERET_QUIET")]
    pub quiet: bool,

    /// Seconds between progress log lines (when stderr is not a terminal).
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        long = "progress_secs",
        value_name = "SECS",
        alias = "progress-secs",
        env = "SPINNERET_PROGRESS_SECS",
        default_value_t = 5
    )]
    pub progress_secs: u64,

    /// Also write the summary as JSON to this file.
    #[arg(
        long = "summary_json",
        value_name = "FILE",
        alias = "summary-json",
        env = "SPINNERET_SUMMARY_JSON"
    )]
    pub summary_json: Option<PathBuf>,
}
