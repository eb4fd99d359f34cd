//! The tasks' runs as the crawl records them in the history store: a run starts with its task,
//! and ends when nothing of it is in flight and its state says how (done, stopped, killed,
//! timeout); runs the crawl leaves unfinished end `failed`.

use super::Crawl;
use crate::frontier::Frontier;
use crate::history::{RunFigures, RunStatus};
use tracing::{info, warn};

/// Runs shown per task on the dashboard.
const RECENT_RUNS: usize = 5;

impl<F: Frontier> Crawl<F> {
    /// Records the start of task `id`'s run.
    pub(super) fn record_run_start(&mut self, id: u64) {
        let on_done_crawl = self.frontier.done_before_joining(id);
        let Ok(task) = self.tasks.by_id_mut(id) else {
            return;
        };
        // A scheduled task's runs start at its ticks, each on a crawl done between runs.
        task.run_on_done_crawl = on_done_crawl && task.def.schedule.is_none();
        task.run_open = true;
        task.runs_started += 1;
        let Some(history) = self.handle.history.clone() else {
            return;
        };
        match history.start(&task.def.name, self.clock.now().into()) {
            Ok(run) => {
                task.run = Some(run);
                task.recent_runs = history
                    .runs(&task.def.name, RECENT_RUNS)
                    .unwrap_or_default();
            }
            Err(e) => warn!(task = %task.def.name, cause = %e, "could not record the run's start"),
        }
    }

    /// Records the runs that ended since the last look.
    pub(super) fn record_run_ends(&mut self) {
        let ended: Vec<(u64, RunStatus)> = self
            .tasks
            .iter()
            .filter(|t| t.run_open)
            .filter_map(|t| t.run_outcome().map(|status| (t.id, status)))
            .collect();
        for (id, status) in ended {
            self.end_run(id, status, None);
        }
    }

    /// Ends every run still going as `failed`, with `reason`.
    pub(super) fn fail_open_runs(&mut self, reason: &str) {
        let open: Vec<u64> = self
            .tasks
            .iter()
            .filter(|t| t.run_open)
            .map(|t| t.id)
            .collect();
        for id in open {
            let status = self
                .tasks
                .by_id_mut(id)
                .ok()
                .and_then(|t| t.run_outcome())
                .unwrap_or(RunStatus::Failed);
            let reason = (status == RunStatus::Failed).then_some(reason);
            self.end_run(id, status, reason);
        }
    }

    pub(super) fn end_run(&mut self, id: u64, status: RunStatus, reason: Option<&str>) {
        let Ok(task) = self.tasks.by_id_mut(id) else {
            return;
        };
        if !task.run_open {
            return;
        }
        task.run_open = false;
        let run = task.run.take();
        let figures: RunFigures = task.run_figures();
        let name = task.def.name.clone();
        if task.run_on_done_crawl
            && status == RunStatus::Done
            && figures == RunFigures::default()
            && task.skipped == 0
        {
            // Begun on a crawl that was done already: nothing happened, nothing is kept.
            info!(task = %name, "the shared crawl was done already; no run recorded");
            if let (Some(history), Some(run)) = (self.handle.history.clone(), run) {
                if let Err(e) = history.forget(run) {
                    warn!(task = %name, cause = %e, "could not forget an empty run");
                }
                if let Ok(task) = self.tasks.by_id_mut(id) {
                    task.recent_runs = history.runs(&name, RECENT_RUNS).unwrap_or_default();
                }
            }
            self.run_ended(id);
            return;
        }
        self.figures.runs(&name, status.as_str(), 1);
        info!(task = %name, status = status.as_str(), pages_ok = figures.pages_ok, items = figures.items, "run ended");
        if let (Some(history), Some(run)) = (self.handle.history.clone(), run) {
            if let Err(e) = history.end(run, self.clock.now().into(), status, figures, reason) {
                warn!(task = %name, cause = %e, "could not record the run's end");
            }
            if let Ok(task) = self.tasks.by_id_mut(id) {
                task.recent_runs = history.runs(&name, RECENT_RUNS).unwrap_or_default();
            }
        }
        self.run_ended(id);
    }

    /// Records a tick of `task` that started no run, `count` times (one history row).
    pub(super) fn record_skipped(&mut self, id: u64, count: u64, reason: &str) {
        let Ok(task) = self.tasks.by_id_mut(id) else {
            return;
        };
        let name = task.def.name.clone();
        self.figures.runs(&name, RunStatus::Skipped.as_str(), count);
        info!(task = %name, count, reason, "scheduled tick skipped");
        if let Some(history) = self.handle.history.clone() {
            if let Err(e) = history.skipped(&name, self.clock.now().into(), reason) {
                warn!(task = %name, cause = %e, "could not record a skipped tick");
            }
            if let Ok(task) = self.tasks.by_id_mut(id) {
                task.recent_runs = history.runs(&name, RECENT_RUNS).unwrap_or_default();
            }
        }
    }
}
