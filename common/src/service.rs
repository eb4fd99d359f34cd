//! The tarpc service traits: what a worker and an itemsaver answer.

use crate::wire::{
    Batch, FetchError, LoadSpiderError, ParseResult, RenderRequest, Request, RobotsFile, SaveAck,
    SaveError, WorkerInfo, WorkerStatus,
};

/// The worker's service: fetch and parse pages for the engine.
#[tarpc::service]
pub trait CrawlService {
    /// Fetches `request.url` (rendered in a browser first when `render` says how, by a
    /// worker that renders), parses it with `request.parser`, and returns items and links.
    async fn crawl(
        request: Request,
        render: Option<RenderRequest>,
    ) -> Result<ParseResult, FetchError>;
    /// Fetches a robots.txt URL, following up to five redirects, and returns status and body.
    async fn robots(url: String) -> Result<RobotsFile, FetchError>;
    /// Compiles and caches a spider file; requests then name it by the returned content hash.
    /// An invalid spider comes back as [`LoadSpiderError::Invalid`] with the compiler's message.
    async fn load_spider(source: String) -> Result<u64, LoadSpiderError>;
    /// Describes the worker: id, version, concurrency and parsers.
    async fn info() -> WorkerInfo;
    /// Reports health and load; the engine's heartbeat.
    async fn status() -> WorkerStatus;
}

/// The itemsaver's service: store items durably.
#[tarpc::service]
pub trait ItemSaverService {
    /// Stores a batch in one transaction and answers only after it is committed.
    async fn save(batch: Batch) -> Result<SaveAck, SaveError>;
    /// Counts the stored items, of one task or of all.
    async fn count(task: Option<String>) -> Result<u64, SaveError>;
}
