//! `worker`: serves fetch-and-parse requests to a Spinneret engine.

use anyhow::Context as _;
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use worker::{CrawlServer, FetchConfig, WorkerConfig, parsers::Registry};

/// Spinneret worker: fetches and parses pages for an engine over RPC. Run one per core-ish,
/// on as many machines as you like, and list them in the engine's --worker_hosts.
#[derive(Parser, Debug)]
#[command(name = "worker", version)]
struct Args {
    /// TCP port to serve RPC on; 0 picks a free port (printed on stdout).
    #[arg(
        long,
        value_name = "PORT",
        env = "SPINNERET_WORKER_PORT",
        default_value_t = 9000
    )]
    port: u16,

    /// Address to listen on. Loopback by default; use 0.0.0.0 to serve engines on other machines.
    #[arg(
        long,
        value_name = "ADDR",
        env = "SPINNERET_WORKER_BIND",
        default_value = "127.0.0.1"
    )]
    bind: IpAddr,

    /// Requests fetched and parsed at once; the engine never sends more than this.
    #[arg(
        long,
        value_name = "N",
        env = "SPINNERET_WORKER_CONCURRENCY",
        default_value_t = 64
    )]
    concurrency: u32,

    /// Print the available parsers and exit.
    #[arg(long = "list-parsers", alias = "list_parsers")]
    list_parsers: bool,

    /// User-Agent header sent with every fetch.
    #[arg(
        long = "user_agent",
        value_name = "UA",
        alias = "user-agent",
        env = "SPINNERET_USER_AGENT"
    )]
    user_agent: Option<String>,

    /// Seconds allowed to open a connection to a site.
    #[arg(
        long = "connect_timeout",
        value_name = "SECS",
        alias = "connect-timeout",
        env = "SPINNERET_CONNECT_TIMEOUT",
        default_value_t = 10
    )]
    connect_timeout: u64,

    /// Seconds allowed for a whole fetch, headers and body.
    #[arg(
        long,
        value_name = "SECS",
        env = "SPINNERET_TIMEOUT",
        default_value_t = 30
    )]
    timeout: u64,

    /// Largest body read, in bytes, after decompression; larger pages fail as too_large.
    #[arg(long = "max_body_bytes", value_name = "BYTES", alias = "max-body-bytes", env = "SPINNERET_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    max_body_bytes: u64,

    /// Redirects followed per fetch.
    #[arg(
        long = "max_redirects",
        value_name = "N",
        alias = "max-redirects",
        env = "SPINNERET_MAX_REDIRECTS",
        default_value_t = 10
    )]
    max_redirects: u32,

    /// Follow-up links returned per page at most.
    #[arg(
        long = "max_links_per_page",
        value_name = "N",
        alias = "max-links-per-page",
        env = "SPINNERET_MAX_LINKS_PER_PAGE",
        default_value_t = 5_000
    )]
    max_links_per_page: usize,
}

impl Args {
    fn config(&self) -> WorkerConfig {
        let defaults = FetchConfig::default();
        WorkerConfig {
            concurrency: self.concurrency.max(1),
            max_links_per_page: self.max_links_per_page,
            fetch: FetchConfig {
                user_agent: self.user_agent.clone().unwrap_or(defaults.user_agent),
                connect_timeout: Duration::from_secs(self.connect_timeout.max(1)),
                timeout: Duration::from_secs(self.timeout.max(1)),
                max_redirects: self.max_redirects,
                max_body_bytes: self.max_body_bytes,
            },
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::cli::init_tracing();
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    if args.list_parsers {
        for p in Registry::builtin().list() {
            println!("{:<12} {}", p.name, p.description);
        }
        return Ok(());
    }
    let server = CrawlServer::new(&args.config())?;
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    // Tests and scripts read this line to learn the port when started with --port 0.
    println!("listening on {local}");
    tracing::info!(addr = %local, node = %server.worker_info().node_id, concurrency = args.concurrency, "worker serving");
    if local.ip().is_loopback() {
        tracing::info!("listening on loopback only; use --bind 0.0.0.0 to serve other machines");
    }
    let shutdown = CancellationToken::new();
    common::cli::cancel_on_signals(shutdown.clone());
    worker::run(listener, server, shutdown).await?;
    tracing::info!("worker stopped");
    Ok(())
}
