//! The engine's flags of cluster mode.

/// Flags of cluster mode: several engines sharing one crawl in Redis.
#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// Share the crawl with other engines through the Redis at URL (`redis://host:port/db`);
    /// needs --crawl. Workers and itemsavers registered there are found and used.
    #[arg(
        long,
        value_name = "URL",
        env = "SPINNERET_REDIS",
        requires = "crawl",
        hide_env_values = true
    )]
    pub redis: Option<String>,

    /// The name of the shared crawl: engines given the same name (and --redis) share it.
    /// Letters, digits, '-', '_' and '.'.
    #[arg(
        long,
        value_name = "NAME",
        env = "SPINNERET_CRAWL",
        requires = "redis",
        value_parser = crate::cluster::name::check
    )]
    pub crawl: Option<String>,

    /// Seconds a request claimed by an engine stays leased to it unless renewed (a live engine
    /// renews its leases every third of this); the requests of an engine that died go back
    /// to the queue after it.
    #[arg(
        value_parser = clap::value_parser!(u64).range(2..=86_400),
        long = "lease_secs",
        value_name = "SECS",
        env = "SPINNERET_LEASE_SECS",
        default_value_t = 15
    )]
    pub lease_secs: u64,

    /// The address other engines reach this engine's admin server at (`host:port`), for the
    /// changes they forward to the leader. Defaults to the --admin address, which must then
    /// not be a wildcard like 0.0.0.0.
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "SPINNERET_ADVERTISE",
        requires = "redis"
    )]
    pub advertise: Option<String>,

    /// Seconds Redis may be unreachable before the engine stops with the crawl resumable.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        long = "redis_timeout",
        value_name = "SECS",
        env = "SPINNERET_REDIS_TIMEOUT",
        default_value_t = 60
    )]
    pub redis_timeout: u64,
}
