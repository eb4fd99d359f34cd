//! Engine flags: what to crawl: the seeds, the spider or parser, and how far to go.

use std::path::PathBuf;

/// What to crawl: the seeds, the spider or parser, and how far to go.
#[derive(clap::Args, Debug)]
pub struct CrawlArgs {
    /// Start URL (http or https); repeat for several. With --spider, replaces its start_urls.
    #[arg(
        long = "seed",
        alias = "seeds",
        value_name = "URL",
        env = "SPINNERET_SEEDS",
        value_delimiter = ' ',
        required_unless_present_any = ["spider", "check_spider", "resume", "serve", "crawl", "print_config"]
    )]
    pub seeds: Vec<String>,

    /// Crawl with this spider file (see docs/spider-files.md) instead of --parser.
    #[arg(long, value_name = "FILE", env = "SPINNERET_SPIDER")]
    pub spider: Option<PathBuf>,

    /// Render every page in headless Chromium before parsing it: only workers started with
    /// `--render` take them (the in-process worker renders itself). See docs/rendering.md.
    #[arg(long, env = "SPINNERET_RENDER")]
    pub render: bool,

    /// Parser the workers apply to every page (see `worker --list-parsers`).
    #[arg(
        long,
        value_name = "NAME",
        env = "SPINNERET_PARSER",
        default_value = "links"
    )]
    pub parser: String,

    /// Task name items are stored under; re-running a task updates its items. Default: the
    /// spider's name, or `default`.
    #[arg(long, value_name = "NAME", env = "SPINNERET_TASK")]
    pub task: Option<String>,

    /// Requests in flight at once, across all workers.
    #[arg(
        long,
        value_name = "N",
        env = "SPINNERET_CONCURRENCY",
        default_value_t = 100
    )]
    pub concurrency: usize,

    /// Deepest link distance from a seed to fetch (seeds are 0). Default: no limit.
    #[arg(
        long = "max_depth",
        value_name = "N",
        alias = "max-depth",
        env = "SPINNERET_MAX_DEPTH"
    )]
    pub max_depth: Option<u32>,

    /// Pages to fetch at most. Default: no limit.
    #[arg(
        long = "max_pages",
        value_name = "N",
        alias = "max-pages",
        env = "SPINNERET_MAX_PAGES"
    )]
    pub max_pages: Option<u64>,

    /// Longest URL to schedule, in bytes.
    #[arg(
        long = "max_url_len",
        value_name = "BYTES",
        alias = "max-url-len",
        env = "SPINNERET_MAX_URL_LEN",
        default_value_t = 2048
    )]
    pub max_url_len: usize,

    /// Domain to stay within (subdomains included); repeat or comma-separate. Default: the seeds' hosts.
    #[arg(
        long = "allow_domain",
        value_name = "DOMAIN",
        alias = "allow-domain",
        env = "SPINNERET_ALLOW_DOMAINS",
        value_delimiter = ','
    )]
    pub allow_domains: Vec<String>,
}
