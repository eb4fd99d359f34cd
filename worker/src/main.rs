//! `worker`: serves fetch-and-parse requests to a Spinneret engine.

use anyhow::Context as _;
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use worker::cli::FetchArgs;
use worker::{CrawlServer, parsers::Registry};

/// Spinneret worker: fetches and parses pages for an engine over RPC. Run one per core-ish,
/// on as many machines as you like, and list them in the engine's --worker_hosts.
#[derive(Parser, Debug)]
#[command(name = "worker", version)]
struct Args {
    /// TOML file setting any flag under its own name (`max_pages = 5000`, lists for repeated
    /// flags; examples in config/). A flag beats its environment variable, which beats the
    /// file, which beats the built-in default.
    #[arg(long, value_name = "FILE", env = "SPINNERET_CONFIG")]
    config: Option<std::path::PathBuf>,

    /// Print the merged configuration (flags, environment, --config file and defaults), with
    /// where each value came from, and exit.
    #[arg(long = "print-config", alias = "print_config")]
    print_config: bool,

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

    /// Serve Prometheus metrics at http://ADDR/metrics (`PORT` or `:PORT` is on 127.0.0.1).
    #[arg(long, value_name = "ADDR", env = "SPINNERET_WORKER_METRICS", value_parser = common::metrics_http::parse_listen_addr)]
    metrics: Option<SocketAddr>,

    #[command(flatten, next_help_heading = "Fetch limits")]
    fetch: FetchArgs,

    #[command(flatten, next_help_heading = "Rendering")]
    render: worker::cli::RenderArgs,

    #[command(flatten, next_help_heading = "Authentication")]
    auth: common::cli::AuthArgs,

    #[command(flatten, next_help_heading = "Cluster mode")]
    registry: common::registry::RegistryArgs,

    #[command(flatten, next_help_heading = "Connection limits")]
    limits: common::listen::LimitArgs,

    #[command(flatten, next_help_heading = "Logging")]
    log: common::cli::LogArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let loaded = common::config::parse_loaded::<Args>();
    if loaded.args.print_config {
        print!("{}", loaded.described);
        return ExitCode::SUCCESS;
    }
    let args = loaded.args;
    common::cli::init_tracing_with(args.log.log_format, "info", std::io::stderr);
    // Connection bursts meet the servers' own limits, not the system's.
    common::cli::raise_open_files_limit();
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
        println!(
            "(declarative spiders arrive from the engine with --spider; see docs/spider-files.md)"
        );
        return Ok(());
    }
    let addr = SocketAddr::new(args.bind, args.port);
    let guard = args.auth.guard(addr)?;
    let config = args.fetch.worker_config(args.concurrency);
    let mut server = CrawlServer::new(&config)?;
    if let Some(settings) = args.render.settings()? {
        server = server
            .start_renderer(settings)
            .await
            .context("cannot render")?;
        tracing::info!(
            tabs = args.render.render_tabs,
            "rendering pages in headless Chromium"
        );
    }
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
    let registered = match (&args.registry.redis, args.registry.address(local)?) {
        (Some(url), Some(addr)) => Some(common::registry::announce(
            url,
            args.auth.tls.redis_tls()?,
            common::registry::NodeKind::Worker,
            common::registry::Node {
                id: server.worker_info().node_id,
                addr,
            },
            shutdown.clone(),
        )?),
        _ => None,
    };
    if let Some(addr) = args.metrics {
        let router = common::metrics_http::router(server.metrics().registry());
        let (bound, _) = common::metrics_http::serve(addr, router, shutdown.clone())
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        // Tests and scripts read this line to learn the port when given port 0.
        println!("metrics on http://{bound}/metrics");
    }
    worker::run(listener, server, args.limits.limits(), guard, shutdown).await?;
    if let Some(registered) = registered {
        let _ = registered.await;
    }
    tracing::info!("worker stopped");
    Ok(())
}
