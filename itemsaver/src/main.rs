//! `itemsaver`: stores a Spinneret crawl's items, and exports them.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use itemsaver::export::{Format, export};
use itemsaver::store::Filter;
use itemsaver::{ItemSaverServer, StoreSpec};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Spinneret itemsaver: stores crawled items (in an embedded SQLite file by default) and
/// acknowledges a batch only after it is committed. `itemsaver export` prints what is stored.
#[derive(Parser, Debug)]
#[command(name = "itemsaver", version, args_conflicts_with_subcommands = true)]
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

    #[command(subcommand)]
    command: Option<Command>,

    /// TCP port to serve RPC on; 0 picks a free port (printed on stdout).
    #[arg(
        long,
        value_name = "PORT",
        env = "SPINNERET_ITEMSAVER_PORT",
        default_value_t = 1234
    )]
    port: u16,

    /// Address to listen on. Loopback by default; use 0.0.0.0 to serve engines on other machines.
    #[arg(
        long,
        value_name = "ADDR",
        env = "SPINNERET_ITEMSAVER_BIND",
        default_value = "127.0.0.1"
    )]
    bind: IpAddr,

    /// Where items are stored (created if missing): a path or sqlite:PATH (an SQLite file,
    /// items updated in place), postgres://USER:PASSWORD@HOST:PORT/DB (a PostgreSQL table,
    /// as SQLite), or jsonl:PATH (a JSON Lines file, appended to: an item stored again is
    /// there twice).
    #[arg(
        long,
        value_name = "STORE",
        env = "SPINNERET_STORE",
        default_value = "items.db",
        hide_env_values = true,        value_parser = itemsaver::StoreSpecParser
    )]
    store: StoreSpec,

    /// Largest batch accepted, in items; the engine splits a batch this refuses.
    #[arg(
        long = "max_batch",
        value_name = "N",
        alias = "max-batch",
        env = "SPINNERET_MAX_BATCH",
        default_value_t = itemsaver::DEFAULT_MAX_BATCH,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000)
    )]
    max_batch: usize,

    /// Largest item accepted, in bytes of text; a larger item is refused on its own and the
    /// engine keeps it as a dead letter.
    #[arg(
        long = "max_item_bytes",
        value_name = "BYTES",
        alias = "max-item-bytes",
        env = "SPINNERET_MAX_ITEM_BYTES",
        default_value_t = itemsaver::DEFAULT_MAX_ITEM_BYTES,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(256..=(1 << 30))
    )]
    max_item_bytes: usize,

    /// Serve Prometheus metrics at http://ADDR/metrics (`PORT` or `:PORT` is on 127.0.0.1):
    /// the peers refused at the connection set-up, by reason.
    #[arg(long, value_name = "ADDR", env = "SPINNERET_ITEMSAVER_METRICS", value_parser = common::metrics_http::parse_listen_addr)]
    metrics: Option<SocketAddr>,

    #[command(flatten, next_help_heading = "Authentication")]
    auth: common::cli::AuthArgs,

    #[command(flatten, next_help_heading = "Cluster mode")]
    registry: common::registry::RegistryArgs,

    #[command(flatten, next_help_heading = "Connection limits")]
    limits: common::listen::LimitArgs,

    #[command(flatten, next_help_heading = "Logging")]
    log: common::cli::LogArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write the stored items to stdout (or --out), streamed: one item in memory at a time.
    Export {
        /// The store to read: a path, sqlite:PATH, postgres://... or jsonl:PATH.
        #[arg(
            long,
            value_name = "STORE",
            env = "SPINNERET_STORE",
            default_value = "items.db",
            hide_env_values = true,            value_parser = itemsaver::StoreSpecParser
        )]
        store: StoreSpec,
        /// Output format: one JSON object per line, CSV (a column per payload field), or one
        /// JSON array.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        /// Only the items of this task.
        #[arg(long, value_name = "NAME")]
        task: Option<String>,
        /// Only the items of this kind.
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// Only the items updated at or after this time (RFC 3339, such as
        /// 2026-11-26T03:00:00Z).
        #[arg(long, value_name = "TIMESTAMP", value_parser = parse_since)]
        since: Option<i64>,
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
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
    match start(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exports to `out` (whole or not at all: written aside, then moved into place) or stdout.
fn write_export(
    store: &dyn itemsaver::ItemStore,
    filter: &Filter,
    format: Format,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let Some(path) = out else {
        let stdout = std::io::stdout().lock();
        return match export(store, filter, format, std::io::BufWriter::new(stdout)) {
            // A reader that stops early (`| head`) is not an error.
            Err(itemsaver::store::ExportError::Io(e))
                if e.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                Ok(())
            }
            other => other.map_err(Into::into),
        };
    };
    let (partial, file) = create_partial(path)?;
    let mut out = std::io::BufWriter::new(file);
    let written = export(store, filter, format, &mut out)
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            // On disk before it takes the name.
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(())
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Creates the file an export to `path` is written to before it takes the name: a new file,
/// never one that exists, so that a link planted at its name (it is predictable) is not
/// followed to overwrite what it points at.
fn create_partial(path: &std::path::Path) -> anyhow::Result<(PathBuf, std::fs::File)> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".partial-{}", std::process::id()));
    let partial = PathBuf::from(partial);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .with_context(|| {
            format!(
                "cannot write {} (a file or link of that name is in the way: remove it)",
                partial.display()
            )
        })?;
    Ok((partial, file))
}

/// A `--since` that is not an RFC 3339 time.
#[derive(Debug, thiserror::Error)]
#[error("{value:?} is not an RFC 3339 time such as 2026-11-26T03:00:00Z ({why})")]
struct BadSince {
    value: String,
    why: chrono::ParseError,
}

/// Reads `--since`: an RFC 3339 time, as Unix milliseconds.
fn parse_since(value: &str) -> Result<i64, BadSince> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp_millis())
        .map_err(|why| BadSince {
            value: value.to_owned(),
            why,
        })
}

async fn start(args: Args) -> anyhow::Result<()> {
    if let Some(Command::Export {
        store,
        format,
        task,
        kind,
        since,
        out,
    }) = args.command
    {
        if !store.exists() {
            anyhow::bail!("no item store at {store}");
        }
        let store = itemsaver::store::open_existing(&store).await?;
        let filter = Filter {
            task,
            kind,
            since_ms: since,
        };
        // Stores block: the export runs on a blocking thread.
        return tokio::task::spawn_blocking(move || {
            write_export(store.as_ref(), &filter, format, out.as_deref())
        })
        .await?;
    }
    // Flags first: a bad one must not leave a store file behind.
    let addr = SocketAddr::new(args.bind, args.port);
    let guard = args.auth.guard(addr)?;
    let store = itemsaver::store::open(&args.store).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    // Tests and scripts read this line to learn the port when started with --port 0.
    println!("listening on {local}");
    tracing::info!(addr = %local, store = %args.store, "itemsaver serving");
    let shutdown = CancellationToken::new();
    common::cli::cancel_on_signals(shutdown.clone());
    let registered = match (&args.registry.redis, args.registry.address(local)?) {
        (Some(url), Some(addr)) => Some(common::registry::announce(
            url,
            args.auth.tls.redis_tls()?,
            common::registry::NodeKind::ItemSaver,
            common::registry::Node {
                id: common::registry::node_id("itemsaver"),
                addr,
            },
            shutdown.clone(),
        )?),
        _ => None,
    };
    let metrics = itemsaver::metrics::ItemSaverMetrics::new(args.store.kind());
    if let Some(addr) = args.metrics {
        let router = common::metrics_http::router(metrics.registry());
        let (bound, _) = common::metrics_http::serve(addr, router, shutdown.clone())
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        // Tests and scripts read this line to learn the port when given port 0.
        println!("metrics on http://{bound}/metrics");
    }
    let server = ItemSaverServer::new(store, args.max_batch, args.max_item_bytes)
        .with_metrics(metrics.clone());
    let guard = common::listen::Guard {
        on_refused: Some(std::sync::Arc::new(move |reason| metrics.refused(reason))),
        ..guard
    };
    itemsaver::run(listener, server, args.limits.limits(), guard, shutdown).await?;
    if let Some(registered) = registered {
        let _ = registered.await;
    }
    tracing::info!("itemsaver stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn an_exports_file_aside_is_never_a_planted_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").expect("write");
        let out = dir.path().join("items.csv");
        let planted = dir
            .path()
            .join(format!("items.csv.partial-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).expect("symlink");
        let refused = create_partial(&out).expect_err("a link is in the way");
        assert!(refused.to_string().contains("partial"), "{refused}");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep me");
    }
}
