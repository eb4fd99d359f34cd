//! The fetch flags, shared by `worker` and by `engine` (for its in-process worker).

use crate::config::{FetchConfig, WorkerConfig};
use std::time::Duration;

/// How pages are fetched: the limits that protect a worker from hostile servers.
#[derive(clap::Args, Debug, Clone)]
pub struct FetchArgs {
    /// User-Agent header sent with every fetch; its first word is matched against robots.txt.
    #[arg(
        long = "user_agent",
        alias = "user-agent",
        value_name = "UA",
        env = "SPINNERET_USER_AGENT"
    )]
    pub user_agent: Option<String>,

    /// Seconds allowed to open a connection to a site.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=3_600),
        long = "fetch_connect_timeout",
        alias = "fetch-connect-timeout",
        value_name = "SECS",
        env = "SPINNERET_FETCH_CONNECT_TIMEOUT",
        default_value_t = 10
    )]
    pub fetch_connect_timeout: u64,

    /// Seconds allowed for a whole fetch, headers and body; a server that drips bytes is cut off.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        long,
        value_name = "SECS",
        env = "SPINNERET_TIMEOUT",
        default_value_t = 30
    )]
    pub timeout: u64,

    /// Largest body read, in bytes, after decompression; the download stops there (too_large).
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=1_073_741_824),
        long = "max_body_bytes",
        alias = "max-body-bytes",
        value_name = "BYTES",
        env = "SPINNERET_MAX_BODY_BYTES",
        default_value_t = 10 * 1024 * 1024
    )]
    pub max_body_bytes: u64,

    /// Follow-up links returned per page at most.
    #[arg(
        long = "max_links_per_page",
        alias = "max-links-per-page",
        value_name = "N",
        env = "SPINNERET_MAX_LINKS_PER_PAGE",
        default_value_t = 5_000,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
            .range(1..=common::budget::MAX_FOLLOW_UPS as u64)
    )]
    pub max_links_per_page: usize,

    /// Bytes of items and links one page's result may take; extraction stops there and the
    /// items cut are counted (items_truncated).
    #[arg(
        long = "max_result_bytes",
        alias = "max-result-bytes",
        value_name = "BYTES",
        env = "SPINNERET_MAX_RESULT_BYTES",
        default_value_t = crate::config::DEFAULT_MAX_RESULT_BYTES,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
            .range(65_536..=(common::transport::MAX_FRAME_BYTES / 2) as u64)
    )]
    pub max_result_bytes: usize,

    /// Fetch from loopback, private, link-local and other special addresses too. By default
    /// they are refused (blocked_address), so no one who can send a URL can reach this
    /// machine's own network; pass this for intranet crawls.
    #[arg(
        long = "allow_private",
        alias = "allow-private",
        env = "SPINNERET_ALLOW_PRIVATE"
    )]
    pub allow_private: bool,

    /// A network fetches may reach although it is special, as CIDR (10.2.0.0/16) or one
    /// address (10.2.0.7); repeat or comma-separate.
    #[arg(
        long = "allow_addr",
        alias = "allow-addr",
        value_name = "CIDR",
        env = "SPINNERET_ALLOW_ADDR",
        value_delimiter = ',',
        value_parser = crate::addresses::parse_network
    )]
    pub allow_addr: Vec<ipnet::IpNet>,

    /// This network's own NAT64 prefix (RFC 6052: /32, /40, /48, /56, /64 or /96), so that
    /// an address under it is judged as the IPv4 address it embeds; repeat or comma-separate.
    /// The well-known 64:ff9b::/96 is always read so; the rest of the local-use
    /// 64:ff9b:1::/48 is refused unless named here.
    #[arg(
        long = "nat64_prefix",
        alias = "nat64-prefix",
        value_name = "PREFIX",
        env = "SPINNERET_NAT64_PREFIX",
        value_delimiter = ',',
        value_parser = crate::addresses::parse_nat64_prefix
    )]
    pub nat64_prefix: Vec<ipnet::Ipv6Net>,

    /// Archive every HTTP response received (pages, robots.txt, redirects, errors) with its
    /// request as WARC 1.1 files in DIR (created if missing), one gzip member per record.
    #[arg(long, value_name = "DIR", env = "SPINNERET_WARC")]
    pub warc: Option<std::path::PathBuf>,

    /// Start the next WARC file once one holds this many bytes (with --warc).
    #[arg(
        long = "warc_max_bytes",
        alias = "warc-max-bytes",
        value_name = "BYTES",
        env = "SPINNERET_WARC_MAX_BYTES",
        default_value_t = crate::warc::DEFAULT_MAX_BYTES,
        value_parser = clap::value_parser!(u64).range(1_048_576..=1_099_511_627_776)
    )]
    pub warc_max_bytes: u64,
}

impl FetchArgs {
    /// The worker settings these flags describe, with `concurrency` requests at once.
    pub fn worker_config(&self, concurrency: u32) -> WorkerConfig {
        let defaults = FetchConfig::default();
        WorkerConfig {
            concurrency: concurrency.max(1),
            max_links_per_page: self.max_links_per_page,
            max_result_bytes: self.max_result_bytes,
            fetch: FetchConfig {
                user_agent: self.user_agent.clone().unwrap_or(defaults.user_agent),
                connect_timeout: Duration::from_secs(self.fetch_connect_timeout.max(1)),
                timeout: Duration::from_secs(self.timeout.max(1)),
                max_body_bytes: self.max_body_bytes,
                addresses: crate::addresses::AddressPolicy {
                    allow_private: self.allow_private,
                    allowed: self.allow_addr.clone(),
                    origins: Vec::new(),
                    nat64: self.nat64_prefix.clone(),
                },
                warc: self.warc.clone().map(|dir| crate::warc::WarcConfig {
                    dir,
                    max_bytes: self.warc_max_bytes,
                }),
            },
        }
    }
}
