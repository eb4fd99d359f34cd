//! The worker's settings: how it fetches and how much it takes on.

use std::time::Duration;

/// How pages are fetched; every limit here protects the worker from a hostile server.
#[derive(Clone, Debug)]
pub struct FetchConfig {
    /// The User-Agent header sent with every request.
    pub user_agent: String,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request, from connecting to the last body byte.
    pub timeout: Duration,
    /// The most body bytes read (after decompression); the download stops there.
    pub max_body_bytes: u64,
    /// Which addresses fetches may connect to (by default, public ones only).
    pub addresses: crate::addresses::AddressPolicy,
    /// Where every response received is archived as WARC (`--warc`), if anywhere.
    pub warc: Option<crate::warc::WarcConfig>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            user_agent: format!(
                "{}/{} (+https://example.invalid/spinneret)",
                common::USER_AGENT_TOKEN,
                common::VERSION
            ),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_body_bytes: 10 * 1024 * 1024,
            addresses: crate::addresses::AddressPolicy::default(),
            warc: None,
        }
    }
}

/// Bytes of items and links one page may yield by default: a quarter of the RPC frame.
pub const DEFAULT_MAX_RESULT_BYTES: usize = common::transport::MAX_FRAME_BYTES / 4;

/// Everything a worker needs to serve.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Requests fetched and parsed at once; more wait their turn.
    pub concurrency: u32,
    /// Follow-up links returned per page at most, so one page cannot flood the engine.
    pub max_links_per_page: usize,
    /// Bytes of items and links one page's result may take; extraction stops there.
    pub max_result_bytes: usize,
    /// How pages are fetched.
    pub fetch: FetchConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 64,
            max_links_per_page: 5_000,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            fetch: FetchConfig::default(),
        }
    }
}
