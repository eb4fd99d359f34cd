//! Tasks and scheduled runs in Redis: task changes recorded for every engine (fenced by
//! the leader's epoch), their news, ticks fired and runs ended.

use super::*;

impl RedisFrontier {
    /// Whether a scheduled tick was ever fired in the crawl: it runs again at its next one.
    pub async fn has_schedules(&mut self) -> Result<bool, ClusterError> {
        redis::cmd("EXISTS")
            .arg(self.keys().ticks())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("look for schedules"))
    }

    /// How many tasks the crawl's leaders recorded (added through the admin API).
    pub async fn tasks_recorded(&mut self) -> Result<u64, ClusterError> {
        redis::cmd("LLEN")
            .arg(self.keys().tasks())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("count the tasks"))
    }

    /// Leader only: records task changes for every engine (added tasks in order, states by
    /// name) and queues the added tasks' seeds, at once, fenced by `epoch` and as `fence`
    /// says: the answer to its idempotency key is kept in the same step, and an add is
    /// refused when the tasks recorded are not those this leader knows.
    pub async fn record_change(
        &mut self,
        epoch: u64,
        changes: &[crate::tasks::record::TaskChange],
        seeds: &[NewUrl],
        fence: &TaskFence<'_>,
    ) -> Result<Recorded, ClusterError> {
        let mut call = self.scripts.tasks.prepare_invoke();
        call.key(&self.prefix)
            .arg(epoch)
            .arg(fence.key.unwrap_or(""))
            .arg(fence.answer)
            .arg(fence.keep.as_secs())
            .arg(fence.tasks.map_or(-1, |n| n as i64))
            .arg(changes.len());
        for change in changes {
            match change {
                crate::tasks::record::TaskChange::Added(json) => {
                    call.arg("A").arg(json).arg("");
                }
                crate::tasks::record::TaskChange::State(name, state, run) => {
                    call.arg("S")
                        .arg(name)
                        .arg(crate::tasks::record::state_value(*state, *run));
                }
            }
        }
        Self::push_urls(&mut call, seeds);
        let answer: i64 = call
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("record task changes"))?;
        match answer {
            1 => Ok(Recorded::Now),
            2 => Ok(Recorded::Before),
            -1 => Ok(Recorded::Stale),
            -2 => Ok(Recorded::Moved),
            _ => Err(ClusterError::Answer("record task changes")),
        }
    }

    /// The tasks added after the first `known`, every task state and the ends of runs that
    /// were replaced, when the tasks' version is not `version` any more.
    pub async fn tasks_since(
        &mut self,
        version: u64,
        known: usize,
    ) -> Result<Option<TasksRead>, ClusterError> {
        let now: Option<u64> = redis::cmd("GET")
            .arg(self.keys().tasks_version())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("read the tasks' version"))?;
        let now = now.unwrap_or(0);
        if now == version {
            return Ok(None);
        }
        let (records, states, run_ends) = redis::pipe()
            .lrange(self.keys().tasks(), known as isize, -1)
            .hgetall(self.keys().task_states())
            .hgetall(self.keys().run_ends())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("read the tasks"))?;
        Ok(Some(TasksRead {
            version: now,
            records,
            states,
            run_ends,
        }))
    }

    /// Leader only: fires tick `at` (Unix seconds) of scheduled task `task`, starting run
    /// `run` with `seeds` (encoded for that run) unless the tick was fired before, the
    /// previous run is still open and `overlap` skips, or the task's current run is not
    /// `run - 1` (see tick.lua). Tells what happened and the task's last tick fired before.
    pub async fn tick(
        &mut self,
        epoch: u64,
        task: &str,
        at: i64,
        overlap: crate::schedule::Overlap,
        run: u64,
        seeds: &[NewUrl],
    ) -> Result<(Tick, Option<i64>), ClusterError> {
        let mut call = self.scripts.tick.prepare_invoke();
        call.key(&self.prefix)
            .arg(epoch)
            .arg(task)
            .arg(at)
            .arg(match overlap {
                crate::schedule::Overlap::Skip => "skip",
                crate::schedule::Overlap::Replace => "replace",
            })
            .arg(run);
        Self::push_urls(&mut call, seeds);
        let (code, last): (i64, i64) = call
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("fire a scheduled tick"))?;
        let tick = match code {
            -1 => Tick::NotLeader,
            0 => Tick::FiredBefore,
            1 => Tick::Skipped,
            2 => Tick::Started,
            3 => Tick::RunMoved,
            4 => Tick::Closed,
            5 => Tick::Replaced,
            _ => return Err(ClusterError::Answer("fire a scheduled tick")),
        };
        Ok((tick, (last >= 0).then_some(last)))
    }

    /// The current run of scheduled task `task` as recorded (0 before its first), and the
    /// last tick fired for it (Unix seconds).
    pub async fn run_of(&mut self, task: &str) -> Result<(u64, Option<i64>), ClusterError> {
        let (state, last): (Option<String>, Option<i64>) = redis::pipe()
            .hget(self.keys().task_states(), task)
            .hget(self.keys().ticks(), task)
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("read a task's run"))?;
        let run = state
            .and_then(|s| crate::tasks::record::parse_state_value(&s))
            .map_or(0, |(_, run)| run);
        Ok((run, last))
    }

    /// Leader only: marks done the current runs of `tasks` that have nothing open any more
    /// (see runs.lua); returns how many, `None` when `epoch` is stale.
    pub async fn end_runs(
        &mut self,
        epoch: u64,
        tasks: &[String],
    ) -> Result<Option<u64>, ClusterError> {
        let mut call = self.scripts.runs.prepare_invoke();
        call.key(&self.prefix).arg(epoch);
        for task in tasks {
            call.arg(task);
        }
        let ended: i64 = call
            .invoke_async(&mut self.conn)
            .await
            .map_err(redis_err("end scheduled runs"))?;
        Ok(u64::try_from(ended).ok())
    }

    /// Pages of each scheduled run still open (queued, leased or deferred), by run key.
    pub async fn runs_open(&mut self) -> Result<Vec<(String, i64)>, ClusterError> {
        redis::cmd("HGETALL")
            .arg(self.keys().run_open())
            .query_async(&mut self.conn)
            .await
            .map_err(redis_err("count the runs' open pages"))
    }
}
