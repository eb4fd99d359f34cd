//! The task endpoints: `/api/tasks` and `/api/tasks/{id}[/pause|/resume]`.

use super::{Admin, ApiError, ApiResult, id_of};
use crate::config::SpiderRun;
use crate::control::TaskCommand;
use crate::pool::Requirement;
use crate::tasks::{TaskAction, TaskDef, TaskState, TaskView};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

/// The body of `POST /api/tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// The name items are stored under; `task-ID` when left out.
    #[serde(default)]
    pub name: Option<String>,
    /// Start URLs; a spider's `start_urls` when left out.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// A built-in parser (default `links`); not with `spider`.
    #[serde(default)]
    pub parser: Option<String>,
    /// A spider file's TOML text (see docs/spider-files.md); not with `parser`.
    #[serde(default)]
    pub spider: Option<String>,
    /// Pages fetched for this task at most.
    #[serde(default)]
    pub max_pages: Option<u64>,
    /// Deepest link distance from a seed.
    #[serde(default)]
    pub max_depth: Option<u32>,
    /// Domains the task may crawl; its seeds' hosts when left out.
    #[serde(default)]
    pub allow_domains: Vec<String>,
    /// Seconds the task may run before it is stopped (status `timeout`).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Render every page in a browser (only workers with `--render` take them).
    #[serde(default)]
    pub render: bool,
    /// When the task runs again: `{"cron": "0 3 * * *", "timezone": "UTC", "overlap":
    /// "skip"}` (the spider's `[schedule]` when left out).
    #[serde(default)]
    pub schedule: Option<crate::schedule::ScheduleSpec>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

impl NewTask {
    /// Checks the task and turns it into a definition (the spider compiled, the seeds
    /// canonical).
    pub fn into_def(self) -> ApiResult<TaskDef> {
        let name = self.name.unwrap_or_default();
        if name.len() > 200 || name.chars().any(char::is_control) {
            return Err(bad(
                "a task name has at most 200 characters and no control characters",
            ));
        }
        let (spider, spec) = match (&self.parser, self.spider) {
            (Some(_), Some(_)) => return Err(bad("give a task a parser or a spider, not both")),
            (_, Some(source)) => {
                let (run, spec) = SpiderRun::compile("the task's spider", source)
                    .map_err(|e| bad(e.to_string()))?;
                (Some(run), Some(spec))
            }
            _ => (None, None),
        };
        let seed_texts = match &spec {
            Some(spec) if self.seeds.is_empty() => spec.start_urls.clone(),
            _ => self.seeds,
        };
        if seed_texts.is_empty() {
            return Err(bad("a task needs at least one seed URL in \"seeds\""));
        }
        let seeds = seed_texts
            .iter()
            .map(|s| crate::parse_seed(s).map_err(|e| bad(e.to_string())))
            .collect::<ApiResult<Vec<_>>>()?;
        let allow_domains = match &spec {
            Some(spec) if self.allow_domains.is_empty() => spec.allowed_domains.clone(),
            _ => self.allow_domains,
        };
        let limits = spec.as_ref().map(|s| s.limits.clone()).unwrap_or_default();
        let name = match (name.is_empty(), &spider) {
            (true, Some(run)) => run.name.clone(),
            _ => name,
        };
        Ok(TaskDef {
            name,
            seeds,
            parser: self.parser.unwrap_or_else(|| "links".into()),
            spider,
            max_pages: self.max_pages.or(limits.max_pages),
            max_depth: self.max_depth.or(limits.max_depth),
            allow_domains,
            timeout: self
                .timeout_secs
                .or(limits.timeout_secs)
                .map(crate::tasks::task_timeout)
                .transpose()
                .map_err(|e| bad(e.to_string()))?,
            schedule: match self.schedule {
                Some(spec) => Some(spec),
                None => match &spec {
                    Some(spec) => crate::spider_schedule(spec).map_err(|e| bad(e.to_string()))?,
                    None => None,
                },
            }
            .map(crate::schedule::Schedule::new)
            .transpose()
            .map_err(|e| bad(e.to_string()))?,
            render: self.render,
        })
    }
}

pub(super) async fn list(State(admin): State<Admin>) -> Json<Vec<TaskView>> {
    Json(admin.crawl.status().tasks.clone())
}

pub(super) async fn get_one(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    let id = id_of::<u64>("task", &id)?;
    admin
        .crawl
        .status()
        .tasks
        .iter()
        .find(|t| t.id == id)
        .cloned()
        .map(Json)
        .ok_or_else(|| crate::tasks::TaskError::NotFound(id).into())
}

pub(super) async fn add(
    State(admin): State<Admin>,
    key: Option<axum::Extension<super::cluster::ChangeKey>>,
    body: Result<Json<NewTask>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    let Json(new) = body?;
    let def = new.into_def()?;
    // Every worker must be able to run it, and workers that join later are readied too.
    let requirement = match &def.spider {
        Some(run) => Requirement::Spider(run.source.clone()),
        None => Requirement::Parser(def.parser.clone()),
    };
    let spider = def.spider.is_some();
    admin.crawl.pool.require(requirement).await.map_err(|why| {
        if spider {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("no worker took the spider: {why}"),
            )
        } else {
            bad(format!("no worker can run this task: {why}"))
        }
    })?;
    let view = admin
        .crawl
        .ask(TaskCommand::Add(Box::new(def)), key.map(|k| k.0.0))
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub(super) async fn pause(
    State(admin): State<Admin>,
    key: Option<axum::Extension<super::cluster::ChangeKey>>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    change(&admin, key, &id, TaskAction::Pause).await
}

pub(super) async fn resume(
    State(admin): State<Admin>,
    key: Option<axum::Extension<super::cluster::ChangeKey>>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    change(&admin, key, &id, TaskAction::Resume).await
}

pub(super) async fn close(
    State(admin): State<Admin>,
    key: Option<axum::Extension<super::cluster::ChangeKey>>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    change(&admin, key, &id, TaskAction::End(TaskState::Closed)).await
}

/// Sends a change of task `id` to the crawl loop, with the change's idempotency key.
async fn change(
    admin: &Admin,
    key: Option<axum::Extension<super::cluster::ChangeKey>>,
    id: &str,
    action: TaskAction,
) -> ApiResult<Json<TaskView>> {
    let id = id_of("task", id)?;
    let what = TaskCommand::Change(id, action);
    Ok(Json(admin.crawl.ask(what, key.map(|k| k.0.0)).await?))
}

pub(super) async fn runs(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<crate::history::RunView>>> {
    let id: u64 = id_of("task", &id)?;
    let status = admin.crawl.status();
    let task = status
        .tasks
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no task has id {id}")))?;
    let Some(history) = &admin.crawl.history else {
        return Ok(Json(Vec::new()));
    };
    let runs = history
        .runs(&task.name, crate::history::MAX_RUNS_LISTED)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(runs))
}

pub(super) async fn stop(
    State(admin): State<Admin>,
    key: Option<axum::Extension<super::cluster::ChangeKey>>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    change(&admin, key, &id, TaskAction::End(TaskState::Stopped)).await
}

pub(super) async fn kill(
    State(admin): State<Admin>,
    key: Option<axum::Extension<super::cluster::ChangeKey>>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    change(&admin, key, &id, TaskAction::End(TaskState::Killed)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(json: &str) -> ApiResult<TaskDef> {
        serde_json::from_str::<NewTask>(json)
            .map_err(|e| bad(e.to_string()))?
            .into_def()
    }

    #[test]
    fn a_task_needs_seeds_and_one_way_to_parse() {
        let err = task(r#"{"seeds": []}"#).expect_err("no seeds");
        assert!(err.1.contains("at least one seed"), "{}", err.1);
        let err = task(r#"{"seeds": ["http://a.test/"], "parser": "links", "spider": "x"}"#)
            .expect_err("both");
        assert!(err.1.contains("not both"), "{}", err.1);
        let err = task(r#"{"seeds": ["ftp://a.test/"]}"#).expect_err("bad seed");
        assert!(err.1.contains("ftp://a.test/"), "{}", err.1);
        let def = task(r#"{"seeds": ["http://a.test/x"], "max_pages": 5}"#).expect("ok");
        assert_eq!(def.parser, "links");
        assert_eq!(def.max_pages, Some(5));
        assert_eq!(def.name, "", "named by the crawl");
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<NewTask>(r#"{"seeds": [], "speed": 9}"#).is_err());
    }
}
