//! Why a crawl could not start or finish.

use crate::pool::PoolError;
use crate::sink::SinkError;

/// A crawl-ending failure, worded for the one-line message the engine prints.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No seed URL was given.
    #[error("no seed URL given: pass --seed URL, give the spider start_urls, or --resume a crawl")]
    NoSeeds,
    /// A seed is not a crawlable URL.
    #[error("invalid seed URL {seed:?}: {reason}")]
    BadSeed {
        /// The seed as given.
        seed: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--worker_hosts` entry is malformed.
    #[error("invalid worker host: {0}")]
    BadWorkerHost(common::HostSpecError),
    /// The `--itemsaver_host` value is malformed.
    #[error("invalid itemsaver host: {0}")]
    BadItemSaverHost(common::HostSpecError),
    /// No usable worker.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The itemsaver did not answer.
    #[error("cannot reach the itemsaver at {addr}: {cause}")]
    ItemSaver {
        /// Its address.
        addr: String,
        /// What failed.
        cause: String,
    },
    /// The local item store could not be opened.
    #[error(transparent)]
    Store(#[from] itemsaver::StoreError),
    /// Rendering was asked for (`--render`, or a spider rule) and no Chromium is installed.
    #[error(transparent)]
    Render(#[from] worker::cli::NoChromium),
    /// The in-process worker's browser did not start.
    #[error("cannot render: {0}")]
    RenderStart(#[from] worker::render::RenderError),
    /// The in-process worker could not be built.
    #[error("cannot start the in-process worker: {0}")]
    Worker(#[from] worker::fetch::ClientBuildError),
    /// The spider file could not be read.
    #[error("cannot read spider file {path}: {cause}")]
    SpiderFile {
        /// The file.
        path: String,
        /// What the OS said.
        cause: String,
    },
    /// The spider file is invalid.
    #[error(transparent)]
    Spider(#[from] worker::spider::SpiderError),
    /// The in-process worker refused the spider.
    #[error("the worker refused the spider: {0}")]
    SpiderRefused(common::LoadSpiderError),
    /// Every worker went down during the crawl.
    #[error("every worker went down; {queued} requests were left unfetched")]
    AllWorkersDown {
        /// Requests still queued.
        queued: u64,
    },
    /// The crawl state failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Items could not be delivered.
    #[error(transparent)]
    Sink(#[from] SinkError),

    /// Redis stayed away too long (cluster mode).
    #[error(transparent)]
    FrontierGone(#[from] crate::frontier::FrontierGone),
    /// A schedule cannot be used.
    #[error("{0}")]
    BadSchedule(String),
    /// The run history (`--jobs`) cannot be used.
    #[error(transparent)]
    Jobs(#[from] crate::history::HistoryError),
    /// The token file could not be used.
    #[error(transparent)]
    Token(#[from] common::handshake::TokenError),
    /// The TLS files could not be used.
    #[error(transparent)]
    Tls(#[from] common::tls::TlsError),
    /// `--advertise` is not `host:port`.
    #[error("--advertise {0:?}: {1}")]
    BadAdvertise(String, common::HostSpecError),
    /// In cluster mode, an admin server on a wildcard address needs `--advertise`.
    #[error(
        "--admin {0} listens on every address: give --advertise HOST:PORT, the address other engines reach this one's admin server at"
    )]
    NeedsAdvertise(std::net::SocketAddr),
    /// No itemsaver was given or registered (cluster mode needs one shared by the engines).
    #[error("no itemsaver: give --itemsaver_host, or start one with --redis so that it registers")]
    NoItemSaver,
    /// The crawl's stored settings could not be adopted.
    #[error("{0}")]
    ClusterSettings(String),
    /// The state directory holds an unfinished crawl other than the one asked for.
    #[error(
        "{state} holds an unfinished crawl of {holds}; this command asks for another ({parts} differ): --resume carries that crawl on as it was, --fresh discards it, --state DIR starts this one elsewhere"
    )]
    StateOfAnotherCrawl {
        /// The state directory.
        state: String,
        /// The crawl it holds.
        holds: String,
        /// What differs, in words.
        parts: String,
    },
    /// `--resume` could not carry the state's crawl on as it was.
    #[error("--resume: {0}")]
    ResumeAsItWas(#[from] crate::crawl_identity::IdentityError),
    /// The crawl's name is not one a crawl may have.
    #[error("--crawl: {0}")]
    CrawlName(#[from] crate::cluster::name::CrawlNameError),
    /// Redis refused or failed a cluster operation.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The engine's own task could not be started.
    #[error(transparent)]
    Task(#[from] crate::tasks::TaskError),
}
