//! Start-up plumbing the three binaries share: logging and shutdown signals.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The logging flags every binary takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LogArgs {
    /// Log line format: `text` for people, `json` for log collectors. Filter with RUST_LOG.
    #[arg(
        long = "log-format",
        alias = "log_format",
        value_name = "FORMAT",
        env = "SPINNERET_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (default `info`, with tarpc's own
/// per-connection chatter held to errors; ours says what matters).
pub fn init_tracing() {
    init_tracing_with(LogFormat::Text, "info", std::io::stderr);
}

/// Like [`init_tracing`], in `format`, at `default_level` when `RUST_LOG` is unset, written
/// through `writer` (a progress bar's writer keeps log lines from tearing the bar).
pub fn init_tracing_with<W>(format: LogFormat, default_level: &str, writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default_level},tarpc=error"))
    });
    // Colours only where someone reads them live, not in log files.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Cancels `token` on the first SIGINT or SIGTERM; exits the process at once on the second.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down (signal again to exit at once)");
        token.cancel();
        wait_for_signal().await;
        warn!("second signal: exiting now");
        std::process::exit(130);
    });
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// The flags a server (worker, itemsaver) proves and checks its peers with.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AuthArgs {
    /// File holding the shared secret every process of the crawl must know; peers prove it
    /// to each other at each connection's set-up, without sending it.
    #[arg(long, value_name = "FILE", env = "SPINNERET_TOKEN")]
    pub token: Option<std::path::PathBuf>,

    /// Listen on a non-loopback address without a token or mutual TLS: anyone who can reach
    /// the port can use this server. For private networks only.
    #[arg(long)]
    pub insecure: bool,

    /// TLS on the connections.
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
}

/// Why a server refuses to start as asked.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token could not be read.
    #[error(transparent)]
    Token(#[from] crate::handshake::TokenError),
    /// The TLS files could not be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A non-loopback address without a token, mutual TLS or `--insecure`.
    #[error(
        "refusing to listen on {0} without --token FILE or mutual TLS (--tls_ca): anyone who can reach it could use this server; give every process the same --token, or pass --insecure on a private network"
    )]
    Unprotected(std::net::SocketAddr),
}

/// Reads `--token FILE`, if given.
pub fn read_token(
    path: Option<&std::path::Path>,
) -> Result<Option<crate::handshake::Token>, crate::handshake::TokenError> {
    path.map(crate::handshake::Token::read).transpose()
}

impl AuthArgs {
    /// What a server listening on `addr` checks its peers with. Off loopback that needs a
    /// token or client certificates (TLS alone encrypts but lets anyone in), unless
    /// `--insecure` says the operator means it.
    pub fn guard(&self, addr: std::net::SocketAddr) -> Result<crate::listen::Guard, AuthError> {
        let token = read_token(self.token.as_deref())?;
        let tls = self.tls.server_config()?;
        let protected = token.is_some() || (tls.is_some() && self.tls.mutual());
        if !(addr.ip().is_loopback() || protected) {
            if !self.insecure {
                return Err(AuthError::Unprotected(addr));
            }
            tracing::warn!(%addr, "listening without a token or mutual TLS (--insecure): anyone who can reach this port can use this server");
        }
        Ok(crate::listen::Guard {
            credentials: crate::handshake::Credentials { token, tls: None },
            tls,
            on_refused: None,
        })
    }
}

/// Raises this process's soft limit on open files to its hard limit, so that a burst of
/// connections meets the servers' own limits, not the system's.
pub fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    tracing::debug!("could not raise the open files limit");
                }
            }
        }
    }
}
