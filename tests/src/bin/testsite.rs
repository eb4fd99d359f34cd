//! `testsite`: serves the generated test site, for `make demo` and manual runs.

use clap::Parser;
use spinneret_tests::TestSite;
use std::process::ExitCode;

/// Serves Spinneret's generated test site; GET /__hits shows the hits per path.
#[derive(Parser, Debug)]
#[command(name = "testsite")]
struct Args {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Pages in the site.
    #[arg(long, default_value_t = 200)]
    pages: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::FAILURE;
        }
    };
    let site = match TestSite::serve(listener, args.pages).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", site.addr);
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
