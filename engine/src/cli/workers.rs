//! Engine flags: the workers the engine sends pages to, and how it talks to them.

use std::path::PathBuf;

/// The workers the engine sends pages to, and how it talks to them.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Workers to use, comma-separated `host:port` (`:9000` is port 9000 here). None: in-process.
    #[arg(
        long = "worker_hosts",
        value_name = "HOSTS",
        alias = "worker-hosts",
        env = "SPINNERET_WORKER_HOSTS",
        value_delimiter = ','
    )]
    pub worker_hosts: Vec<String>,

    /// Seconds a worker gets to answer one request before it is tried elsewhere.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        long = "rpc_timeout",
        value_name = "SECS",
        alias = "rpc-timeout",
        env = "SPINNERET_RPC_TIMEOUT",
        default_value_t = 60
    )]
    pub rpc_timeout: u64,

    /// Seconds allowed to connect to a worker or the itemsaver.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=3_600),
        long = "connect_timeout",
        value_name = "SECS",
        alias = "connect-timeout",
        env = "SPINNERET_RPC_CONNECT_TIMEOUT",
        default_value_t = 5
    )]
    pub connect_timeout: u64,

    /// Different workers that may die (crash, lose their connection) while holding one page
    /// before it is given up as poison_page; a browser that crashes rendering the page
    /// (render_crashed) counts as one too. Workers that drain, restart cleanly, are paused or
    /// removed never count against a page.
    #[arg(
        long = "max_worker_deaths",
        alias = "max-worker-deaths",
        value_name = "N",
        env = "SPINNERET_MAX_WORKER_DEATHS",
        default_value_t = crate::EngineConfig::default().max_worker_deaths,
        value_parser = clap::value_parser!(u32).range(1..=1_000)
    )]
    pub max_worker_deaths: u32,

    /// Milliseconds between heartbeats to each worker.
    #[arg(
        value_parser = clap::value_parser!(u64).range(10..=300_000),
        long = "heartbeat_ms",
        alias = "heartbeat-ms",
        value_name = "MS",
        env = "SPINNERET_HEARTBEAT_MS",
        default_value_t = 2000
    )]
    pub heartbeat_ms: u64,

    /// Heartbeats a worker may miss in a row before it is marked down and its requests move.
    #[arg(
        value_parser = clap::value_parser!(u32).range(1..=1_000),
        long = "heartbeat_misses",
        alias = "heartbeat-misses",
        value_name = "N",
        env = "SPINNERET_HEARTBEAT_MISSES",
        default_value_t = 3
    )]
    pub heartbeat_misses: u32,

    /// Seconds the crawl waits for a worker to come back when every worker is down.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=604_800),
        long = "no_workers_timeout",
        alias = "no-workers-timeout",
        value_name = "SECS",
        env = "SPINNERET_NO_WORKERS_TIMEOUT",
        default_value_t = 60
    )]
    pub no_workers_timeout: u64,

    /// File holding the shared secret the workers and itemsavers were given (`--token`);
    /// proven at each connection's set-up, never sent.
    #[arg(long, value_name = "FILE", env = "SPINNERET_TOKEN")]
    pub token: Option<PathBuf>,
}
