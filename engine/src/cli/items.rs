//! Engine flags: where items go: an itemsaver or a store of the engine's own, and how they are batched.

/// Where items go: an itemsaver or a store of the engine's own, and how they are batched.
#[derive(clap::Args, Debug)]
pub struct ItemArgs {
    /// Itemsaver to send items to, `host:port`. None: store in --store from this process.
    #[arg(
        long = "itemsaver_host",
        value_name = "HOST:PORT",
        alias = "itemsaver-host",
        env = "SPINNERET_ITEMSAVER_HOST"
    )]
    pub itemsaver_host: Option<String>,

    /// Where items are stored when there is no --itemsaver_host: a path or sqlite:PATH (an
    /// SQLite file), postgres://USER@HOST/DB (a PostgreSQL table), or jsonl:PATH (a JSON
    /// Lines file, appended to).
    #[arg(
        long,
        value_name = "STORE",
        env = "SPINNERET_STORE",
        default_value = "items.db",
        hide_env_values = true,        value_parser = itemsaver::StoreSpecParser
    )]
    pub store: itemsaver::StoreSpec,

    /// Items per batch sent to the itemsaver.
    #[arg(
        long = "batch_size",
        value_name = "N",
        alias = "batch-size",
        env = "SPINNERET_BATCH_SIZE",
        default_value_t = 500
    )]
    pub batch_size: usize,

    /// Milliseconds an item may wait before a partial batch is sent.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=3_600_000),
        long = "batch_interval_ms",
        value_name = "MS",
        alias = "batch-interval-ms",
        env = "SPINNERET_BATCH_INTERVAL_MS",
        default_value_t = 500
    )]
    pub batch_interval_ms: u64,

    /// Seconds the itemsaver may take no items before the crawl stops (its items stay in the
    /// state and are sent on resume); the crawl waits meanwhile.
    #[arg(
        value_parser = clap::value_parser!(u64).range(1..=604_800),
        long = "itemsaver_timeout",
        alias = "itemsaver-timeout",
        value_name = "SECS",
        env = "SPINNERET_ITEMSAVER_TIMEOUT",
        default_value_t = 300
    )]
    pub itemsaver_timeout: u64,
}
