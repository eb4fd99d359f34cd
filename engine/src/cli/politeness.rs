//! Engine flags: how gently each host is crawled, and the limits that refuse work.

/// How gently each host is crawled, and the limits that refuse work.
#[derive(clap::Args, Debug)]
pub struct PolitenessArgs {
    /// Requests in flight to one host at once, across all workers. Default: the spider's
    /// politeness.per_host, or 8.
    #[arg(
        long = "per_host",
        value_name = "N",
        alias = "per-host",
        env = "SPINNERET_PER_HOST"
    )]
    pub per_host: Option<usize>,

    /// Least milliseconds between two requests to one host, across all workers. Default: the
    /// spider's politeness.delay_ms, or 0.
    #[arg(
        value_parser = clap::value_parser!(u64).range(0..=86_400_000),long, value_name = "MS", env = "SPINNERET_DELAY_MS")]
    pub delay: Option<u64>,

    /// Do not fetch or obey robots.txt.
    #[arg(
        long = "ignore_robots",
        alias = "ignore-robots",
        env = "SPINNERET_IGNORE_ROBOTS"
    )]
    pub ignore_robots: bool,

    /// Retries of a page after a connection error, timeout, 5xx or 429 (with back-off).
    #[arg(long, value_name = "N", env = "SPINNERET_RETRIES", default_value_t = 2)]
    pub retries: u32,

    /// Redirect hops followed from one URL; each hop is deduplicated and scoped like a link.
    #[arg(
        long = "max_redirects",
        alias = "max-redirects",
        value_name = "N",
        env = "SPINNERET_MAX_REDIRECTS",
        default_value_t = 10
    )]
    pub max_redirects: u32,

    /// Pages fetched from one host at most (stops spider traps); 0 for no limit.
    #[arg(
        long = "max_pages_per_host",
        alias = "max-pages-per-host",
        value_name = "N",
        env = "SPINNERET_MAX_PAGES_PER_HOST",
        default_value_t = 100_000
    )]
    pub max_pages_per_host: u64,

    /// URLs queued for one host at most (and never more than the host has left of
    /// --max_pages_per_host); links past it are refused and counted as host_queue_full, so a
    /// site of endless links cannot grow the engine.
    #[arg(
        long = "max_queue_per_host",
        alias = "max-queue-per-host",
        value_name = "N",
        env = "SPINNERET_MAX_QUEUE_PER_HOST",
        default_value_t = crate::EngineConfig::default().politeness.max_queue_per_host,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000_000)
    )]
    pub max_queue_per_host: usize,

    /// Longest a host is slowed down, in seconds, by back-off, Retry-After or Crawl-delay.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        long = "max_backoff",
        alias = "max-backoff",
        value_name = "SECS",
        env = "SPINNERET_MAX_BACKOFF",
        default_value_t = 60
    )]
    pub max_backoff: u64,
}
