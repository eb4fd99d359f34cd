//! The end-of-crawl summary: what was fetched, what failed and why, where items went.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Figures for one worker.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerShare {
    /// The worker's address.
    pub addr: String,
    /// Requests it was sent.
    pub requests: u64,
    /// Whether it was down at the end.
    pub down: bool,
}

/// What a crawl did, printed at the end and written as JSON with `--summary_json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// Pages fetched and parsed.
    pub pages_ok: u64,
    /// Pages that failed, by reason (`http_404`, `timeout`, ...).
    pub pages_failed: BTreeMap<String, u64>,
    /// Redirect responses; their targets were scheduled like links.
    pub pages_redirected: u64,
    /// URLs not fetched, by reason (`robots_disallowed`, `host_page_cap`, ...).
    pub skipped: BTreeMap<String, u64>,
    /// Fetches tried again after a failure that may pass.
    pub retries: u64,
    /// robots.txt files fetched and applied.
    pub robots_fetched: u64,
    /// Items the itemsaver acknowledged (new or updated).
    pub items_saved: u64,
    /// Items dropped because a required field was missing.
    pub items_dropped: u64,
    /// Items workers did not extract because a page's result reached `--max_result_bytes`.
    pub items_truncated: u64,
    /// Items the item store refused on their own (too large, invalid); kept as dead letters
    /// in the crawl state with their reason.
    pub items_rejected: u64,
    /// Where the dead letters of a finished crawl were written (JSON Lines), if there were any.
    pub dead_letters: Option<String>,
    /// Distinct URLs seen (scheduled or not).
    pub urls_seen: u64,
    /// Links skipped because they were outside the allowed domains.
    pub links_offsite: u64,
    /// Links skipped for depth or URL length.
    pub links_over_limit: u64,
    /// Requests still queued at the end (after `--max_pages` or an interrupt).
    pub left_in_queue: u64,
    /// Requests moved to another worker after a worker failed them.
    pub worker_retries: u64,
    /// Pages rendered in a browser (counted among `pages_ok`).
    #[serde(default)]
    pub pages_rendered: u64,
    /// Time spent rendering them, in seconds, all pages together.
    #[serde(default)]
    pub render_secs: f64,
    /// Requests per worker.
    pub workers: Vec<WorkerShare>,
    /// Wall time of the crawl in seconds.
    pub elapsed_secs: f64,
    /// Pages (ok and failed) per second.
    pub pages_per_sec: f64,
    /// Why the crawl stopped: `done`, `max_pages` or `interrupted`.
    pub stopped: String,
    /// Where the items are.
    pub items_at: String,
    /// The engine's peak resident memory in MiB, where the OS reports it.
    pub peak_rss_mb: Option<f64>,
    /// Where the crawl's state was kept, when it stopped early and can be resumed.
    pub resumable_state: Option<String>,
    /// CPU time (user and system) the engine process used, in seconds, where the OS reports it.
    pub cpu_secs: Option<f64>,
    /// Turns of the crawl loop, each for one event (a page answered, a lease, a tick, ...):
    /// a loop that turns many times a page spins instead of waiting.
    pub loop_turns: u64,
    /// RPC calls the engine made (crawl, robots, save, heartbeat, ...).
    pub rpc_calls: u64,
    /// Bytes the engine's RPC connections carried, both ways (0 in single-machine mode).
    pub rpc_bytes: u64,
    /// Commands this engine sent to Redis (cluster mode; a script call is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_commands: Option<u64>,
    /// Completions this engine sent for a lease that was gone (cluster mode): reaped after an
    /// outage longer than `--lease_secs`, so another engine fetched the page again. Their
    /// links were queued all the same. A batch sent again after a Redis error it had in fact
    /// survived counts its completions here too (they found their leases completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_completions: Option<u64>,
    /// Requests this engine claimed whose record in Redis did not read (cluster mode; written
    /// by another version, or damaged): dropped, counted out of their scheduled run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable_requests: Option<u64>,
    /// The whole shared crawl's figures, in the summary of the engine that led at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterTotals>,
}

/// A shared crawl's figures: every engine's, added up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterTotals {
    /// Engines whose figures are counted.
    pub engines: u64,
    /// Pages fetched and parsed.
    pub pages_ok: u64,
    /// Pages that failed for good.
    pub pages_failed: u64,
    /// Redirect responses.
    pub pages_redirected: u64,
    /// Items the itemsaver acknowledged.
    pub items_saved: u64,
}

impl ClusterTotals {
    /// Adds one engine's figures.
    pub fn add(&mut self, other: &ClusterTotals) {
        self.engines += other.engines;
        self.pages_ok += other.pages_ok;
        self.pages_failed += other.pages_failed;
        self.pages_redirected += other.pages_redirected;
        self.items_saved += other.items_saved;
    }
}

/// The CPU time this process used so far in seconds (Linux `/proc/self/stat`), if known.
pub fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line, in ticks of 1/100 s (USER_HZ).
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// The peak resident memory of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

impl Summary {
    /// Adds the figures of an earlier run of the same crawl (a resume).
    pub fn restore_counters(&mut self, before: &Summary) {
        self.pages_ok += before.pages_ok;
        self.pages_redirected += before.pages_redirected;
        self.retries += before.retries;
        self.robots_fetched += before.robots_fetched;
        self.items_dropped += before.items_dropped;
        self.items_truncated += before.items_truncated;
        self.items_rejected += before.items_rejected;
        self.links_offsite += before.links_offsite;
        self.links_over_limit += before.links_over_limit;
        self.worker_retries += before.worker_retries;
        self.pages_rendered += before.pages_rendered;
        self.render_secs += before.render_secs;
        for (reason, n) in &before.pages_failed {
            *self.pages_failed.entry(reason.clone()).or_default() += n;
        }
        for (reason, n) in &before.skipped {
            *self.skipped.entry(reason.clone()).or_default() += n;
        }
    }

    /// Pages that failed, all reasons together.
    pub fn failed_total(&self) -> u64 {
        self.pages_failed.values().sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, label: &str, value: &dyn fmt::Display| {
            writeln!(f, "  {label:<22}{value}")
        };
        writeln!(f, "crawl {} in {:.1}s", self.stopped, self.elapsed_secs)?;
        row(f, "pages ok", &self.pages_ok)?;
        row(f, "pages failed", &self.failed_total())?;
        for (reason, n) in &self.pages_failed {
            row(f, &format!("  {reason}"), n)?;
        }
        if self.pages_redirected > 0 {
            row(f, "redirects", &self.pages_redirected)?;
        }
        if !self.skipped.is_empty() {
            row(f, "not fetched", &self.skipped.values().sum::<u64>())?;
            for (reason, n) in &self.skipped {
                row(f, &format!("  {reason}"), n)?;
            }
        }
        if self.retries > 0 {
            row(f, "retries", &self.retries)?;
        }
        row(f, "items saved", &self.items_saved)?;
        if self.items_dropped > 0 {
            row(f, "items dropped", &self.items_dropped)?;
        }
        if self.items_truncated > 0 {
            row(f, "items truncated", &self.items_truncated)?;
        }
        if self.items_rejected > 0 {
            row(f, "items rejected", &self.items_rejected)?;
        }
        if let Some(path) = &self.dead_letters {
            row(f, "dead letters", path)?;
        }
        row(f, "urls seen", &self.urls_seen)?;
        row(f, "links offsite", &self.links_offsite)?;
        row(f, "links over limit", &self.links_over_limit)?;
        if self.left_in_queue > 0 {
            row(f, "left in queue", &self.left_in_queue)?;
        }
        if self.worker_retries > 0 {
            row(f, "worker retries", &self.worker_retries)?;
        }
        if self.pages_rendered > 0 {
            row(f, "pages rendered", &self.pages_rendered)?;
            let per_page = self.render_secs * 1000.0 / self.pages_rendered as f64;
            row(f, "render ms/page", &format!("{per_page:.0}"))?;
        }
        if let Some(late) = self.late_completions.filter(|n| *n > 0) {
            row(f, "late completions", &late)?;
        }
        if let Some(n) = self.unreadable_requests.filter(|n| *n > 0) {
            row(f, "unreadable requests", &n)?;
        }
        row(f, "pages/s", &format!("{:.1}", self.pages_per_sec))?;
        writeln!(f, "  requests per worker")?;
        for w in &self.workers {
            row(
                f,
                &format!("  {}", w.addr),
                &format!("{}{}", w.requests, if w.down { " (down)" } else { "" }),
            )?;
        }
        if let Some(mb) = self.peak_rss_mb {
            row(f, "peak memory", &format!("{mb:.0} MiB"))?;
        }
        if let Some(c) = &self.cluster {
            writeln!(f, "  the whole cluster")?;
            row(f, "  engines", &c.engines)?;
            row(f, "  pages ok", &c.pages_ok)?;
            row(f, "  pages failed", &c.pages_failed)?;
            row(f, "  items saved", &c.items_saved)?;
        }
        if let Some(state) = &self.resumable_state {
            row(f, "resumable state", state)?;
            writeln!(
                f,
                "  (run the same command again, or add --resume, to carry on)"
            )?;
        }
        write!(f, "  {:<22}{}", "items at", self.items_at)
    }
}
