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

    /// With --warc, archive every response the browser receives while rendering a page
    /// (scripts, XHR, styles, frames), not only the page's own response.
    #[arg(
        long = "warc_subresources",
        alias = "warc-subresources",
        env = "SPINNERET_WARC_SUBRESOURCES",
        requires = "warc"
    )]
    pub warc_subresources: bool,
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
                    subresources: self.warc_subresources,
                }),
            },
        }
    }
}

/// `--render_tabs` unless given (and the engine's in-process worker's).
const DEFAULT_TABS: u64 = 4;
/// `--render_recycle` unless given.
const DEFAULT_RECYCLE: u64 = 200;
/// `--render_max_mb` unless given.
const DEFAULT_MAX_MB: u64 = 2048;
/// `--render_js_heap_mb` unless given.
const DEFAULT_JS_HEAP_MB: u64 = 256;

/// Rendering pages in headless Chromium (`--render`), for pages whose content is made by
/// script.
#[derive(clap::Args, Debug, Clone)]
pub struct RenderArgs {
    /// Render the pages that ask for it in headless Chromium (a spider rule's `render`, or
    /// `engine --render`); engines send such pages only to workers that render.
    #[arg(long, env = "SPINNERET_RENDER")]
    pub render: bool,

    /// The Chromium executable. Default: Debian's (/usr/lib/chromium/chromium), else
    /// `chromium` or `chromium-browser` on PATH.
    #[arg(long, value_name = "PATH", env = "SPINNERET_CHROMIUM")]
    pub chromium: Option<std::path::PathBuf>,

    /// Pages rendered at once (browser tabs); each takes one of --concurrency's slots too.
    /// Engines send a page to render to a worker with a tab free first; others wait for one.
    #[arg(
        long = "render_tabs",
        value_name = "N",
        env = "SPINNERET_RENDER_TABS",
        default_value_t = DEFAULT_TABS,
        value_parser = clap::value_parser!(u64).range(1..=64)
    )]
    pub render_tabs: u64,

    /// Pages a browser renders before it is replaced by a fresh one (browsers leak).
    #[arg(
        long = "render_recycle",
        value_name = "PAGES",
        env = "SPINNERET_RENDER_RECYCLE",
        default_value_t = DEFAULT_RECYCLE,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub render_recycle: u64,

    /// Memory of the browser and its processes, MiB, past which it is replaced before its
    /// next page.
    #[arg(
        long = "render_max_mb",
        value_name = "MIB",
        env = "SPINNERET_RENDER_MAX_MB",
        default_value_t = DEFAULT_MAX_MB,
        value_parser = clap::value_parser!(u64).range(64..)
    )]
    pub render_max_mb: u64,

    /// Each page's JavaScript heap, MiB: a page that allocates past it crashes
    /// (render_crashed), not the worker.
    #[arg(
        long = "render_js_heap_mb",
        value_name = "MIB",
        env = "SPINNERET_RENDER_JS_HEAP_MB",
        default_value_t = DEFAULT_JS_HEAP_MB,
        value_parser = clap::value_parser!(u64).range(16..=16_384)
    )]
    pub render_js_heap_mb: u64,
}

/// Chromium is not where it was looked for.
#[derive(Debug, thiserror::Error)]
#[error(
    "--render needs Chromium, which is not installed here{}: apt-get install -y chromium (or give --chromium PATH)",
    .0.as_ref().map(|p| format!(" ({} does not exist)", p.display())).unwrap_or_default()
)]
pub struct NoChromium(Option<std::path::PathBuf>);

impl RenderArgs {
    /// The renderer's settings, when rendering is asked for; an error naming the install
    /// command when no Chromium is found.
    pub fn settings(&self) -> Result<Option<crate::render::RenderSettings>, NoChromium> {
        if !self.render {
            return Ok(None);
        }
        let chromium = match &self.chromium {
            Some(path) if path.is_file() => path.clone(),
            Some(path) => return Err(NoChromium(Some(path.clone()))),
            None => find_chromium().ok_or(NoChromium(None))?,
        };
        Ok(Some(crate::render::RenderSettings {
            chromium,
            tabs: self.render_tabs as usize,
            recycle: self.render_recycle,
            max_mb: self.render_max_mb,
            js_heap_mb: self.render_js_heap_mb,
        }))
    }
}

/// Debian's Chromium binary (not its /usr/bin wrapper, which adds extension flags), else a
/// `chromium` or `chromium-browser` on PATH.
fn find_chromium() -> Option<std::path::PathBuf> {
    let debian = std::path::PathBuf::from("/usr/lib/chromium/chromium");
    if debian.is_file() {
        return Some(debian);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The renderer's settings with every default (the engine's in-process worker, which takes
/// no rendering flags): Chromium found as `--chromium` would find it.
pub fn default_render_settings() -> Result<crate::render::RenderSettings, NoChromium> {
    let args = RenderArgs {
        render: true,
        chromium: None,
        render_tabs: DEFAULT_TABS,
        render_recycle: DEFAULT_RECYCLE,
        render_max_mb: DEFAULT_MAX_MB,
        render_js_heap_mb: DEFAULT_JS_HEAP_MB,
    };
    args.settings()?.ok_or(NoChromium(None))
}
