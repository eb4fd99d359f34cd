//! What rendering costs: one worker renders pages of the dense site in headless Chromium,
//! and the same worker set-up fetches the same pages plainly, in the same run. CPU is the
//! engine's, the worker's and its browser's (every process of the worker's tree, with the
//! children they reaped).

use super::{cpu_secs, engine, spawn_server};
use serde_json::Value;
use std::path::Path;

/// Requests in flight in both crawls, and the rendering worker's tabs.
pub const CONCURRENCY: usize = 8;
/// The rendering worker's tabs.
pub const TABS: usize = 4;

/// The figures of the two crawls.
pub struct RenderFigures {
    /// Pages crawled in each.
    pub pages: usize,
    /// Pages per second, rendered.
    pub render_pages_per_s: f64,
    /// CPU milliseconds per page, rendered.
    pub render_cpu_ms_per_page: f64,
    /// Pages per second, fetched plainly.
    pub plain_pages_per_s: f64,
    /// CPU milliseconds per page, fetched plainly.
    pub plain_cpu_ms_per_page: f64,
}

/// Crawls `pages` pages from `seed` twice through one worker, rendered and plain; `None`
/// when there is no Chromium here.
pub async fn render_vs_plain(
    bins: &Path,
    dir: &Path,
    seed: &str,
    pages: usize,
) -> anyhow::Result<Option<RenderFigures>> {
    if worker::cli::default_render_settings().is_err() {
        return Ok(None);
    }
    let (render_pages_per_s, render_cpu_ms_per_page) = crawl(bins, dir, seed, pages, true).await?;
    let (plain_pages_per_s, plain_cpu_ms_per_page) = crawl(bins, dir, seed, pages, false).await?;
    Ok(Some(RenderFigures {
        pages,
        render_pages_per_s,
        render_cpu_ms_per_page,
        plain_pages_per_s,
        plain_cpu_ms_per_page,
    }))
}

/// One crawl of `pages` pages through an itemsaver and one worker that renders when
/// `render` says; its pages per second and CPU milliseconds per page.
async fn crawl(
    bins: &Path,
    dir: &Path,
    seed: &str,
    pages: usize,
    render: bool,
) -> anyhow::Result<(f64, f64)> {
    let name = if render { "render" } else { "plain" };
    let store = dir.join(format!("{name}.db"));
    let saver = spawn_server(bins, "itemsaver", &[format!("--store={}", store.display())]).await?;
    let mut worker_flags = vec![format!("--concurrency={CONCURRENCY}")];
    if render {
        worker_flags.extend([
            "--render".to_owned(),
            format!("--render_tabs={TABS}"),
            // One browser for the whole run: a recycled one's CPU would go uncounted.
            "--render_recycle=1000000".to_owned(),
        ]);
    }
    let worker = spawn_server(bins, "worker", &worker_flags).await?;
    let mut flags = vec![
        format!("--seed={seed}"),
        format!("--concurrency={CONCURRENCY}"),
        format!("--per_host={CONCURRENCY}"),
        format!("--max_pages={pages}"),
        format!("--itemsaver_host={}", saver.addr),
        format!("--worker_hosts={}", worker.addr),
        "--no_state".to_owned(),
    ];
    if render {
        flags.push("--render".to_owned());
    }
    let worker_cpu_before = tree_cpu_secs(worker.pid());
    let summary = engine(bins, dir, &flags).await?;
    let worker_cpu = tree_cpu_secs(worker.pid()) - worker_cpu_before;
    drop((saver, worker));
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let crawled = num(&summary["pages_ok"]).max(1.0);
    let cpu_ms_per_page = (num(&summary["cpu_secs"]) + worker_cpu) * 1000.0 / crawled;
    Ok((num(&summary["pages_per_sec"]), cpu_ms_per_page))
}

/// CPU seconds (user and system) of `pid` and its descendants, with the children each
/// reaped.
fn tree_cpu_secs(pid: u32) -> f64 {
    worker::render::process::process_tree(pid)
        .into_iter()
        .filter_map(|p| cpu_secs(p, true))
        .sum()
}
