//! Spinneret's shared ground: the wire types every process exchanges, the tarpc service
//! traits, the one place that sets up RPC transports, and URL canonicalisation.
//!
//! Nothing outside this crate defines a type that crosses the wire.

pub mod activity;
pub mod budget;
pub mod canon;
pub mod cli;
pub mod codec;
pub mod config;
pub mod handshake;
pub mod hosts;
pub mod http_serve;
pub mod listen;
pub mod metrics_http;
pub mod redis_conn;
pub mod registry;
pub mod serve;
pub mod service;
pub mod time;
pub mod tls;
pub mod traffic;
pub mod transport;
pub mod value;
pub mod wire;

pub use canon::{CanonError, canonicalize, fingerprint};
pub use hosts::{HostSpecError, parse_host_spec};
pub use service::{CrawlService, CrawlServiceClient, ItemSaverService, ItemSaverServiceClient};
pub use value::{Payload, Scalar, Value};
pub use wire::{
    Batch, FetchError, FetchFacts, FollowUp, Item, LoadSpiderError, PageYield, ParseResult,
    ParserInfo, RenderRequest, RenderWait, Request, RobotsFile, SaveAck, SaveError, WorkerInfo,
    WorkerStatus,
};

/// The version of Spinneret this build belongs to, reported by workers in `info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The User-Agent product token workers send by default.
pub const USER_AGENT_TOKEN: &str = "Spinneret";

/// The product token of a User-Agent header (`Spinneret/0.1 (+url)` gives `Spinneret`): the
/// name robots.txt groups are matched against.
pub fn user_agent_token(user_agent: &str) -> &str {
    let token = user_agent.split(['/', ' ']).next().unwrap_or("").trim();
    if token.is_empty() {
        USER_AGENT_TOKEN
    } else {
        token
    }
}
