//! Progress on the terminal: a live line when stderr is a terminal, periodic log lines when
//! it is not (a file, a pipe, a service manager), nothing with `--quiet`.

use crate::control::CrawlStatus;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// How the crawl reports progress.
#[derive(Clone, Default)]
pub enum Progress {
    /// Log the figures with `tracing` every `--progress_secs`.
    #[default]
    Log,
    /// Redraw one line on the terminal.
    Bar(ProgressBar),
    /// Say nothing until the summary.
    Quiet,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Progress::Log => "Log",
            Progress::Bar(_) => "Bar",
            Progress::Quiet => "Quiet",
        })
    }
}

impl Progress {
    /// The right kind for this process: quiet when asked, a live line when stderr is a
    /// terminal and logs are text, log lines otherwise.
    pub fn detect(quiet: bool, json_logs: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() && !json_logs {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            Progress::Bar(bar)
        } else {
            Progress::Log
        }
    }

    /// A log writer that keeps log lines from tearing the live line: each line is written
    /// with the bar cleared, and the bar redrawn after.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter {
            bar: match self {
                Progress::Bar(bar) => Some(bar.clone()),
                _ => None,
            },
        }
    }

    /// Whether figures are logged periodically.
    pub fn logs(&self) -> bool {
        matches!(self, Progress::Log)
    }

    /// Redraws the live line, if there is one.
    pub fn show(&self, status: &CrawlStatus, workers_up: usize) {
        if let Progress::Bar(bar) = self {
            if bar.is_hidden() {
                return;
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar.set_message(line(status, workers_up));
        }
    }

    /// Clears the live line before the summary is printed.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The progress line: what someone watching wants at a glance.
pub fn line(s: &CrawlStatus, workers_up: usize) -> String {
    let failed: u64 = s.errors.values().sum();
    format!(
        "{} pages ({} failed) · {} queued · {} in flight · {} items · {:.0} pages/s · {} workers up",
        s.pages_ok + s.pages_redirected + failed,
        failed,
        s.queued,
        s.in_flight,
        s.items_extracted,
        s.pages_per_sec,
        workers_up
    )
}

/// Writes log lines to stderr around the live line; see [`Progress::log_writer`].
#[derive(Clone)]
pub struct LogWriter {
    bar: Option<ProgressBar>,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_every_figure() {
        let mut s = CrawlStatus {
            pages_ok: 90,
            queued: 12,
            in_flight: 3,
            items_extracted: 40,
            pages_per_sec: 31.4,
            ..CrawlStatus::default()
        };
        s.errors.insert("http_404".into(), 10);
        assert_eq!(
            line(&s, 2),
            "100 pages (10 failed) · 12 queued · 3 in flight · 40 items · 31 pages/s · 2 workers up"
        );
    }
}
