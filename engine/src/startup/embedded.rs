//! Building a crawl of one engine: its frontier in memory, kept durable by the SQLite state
//! in its state directory (resumed when an earlier run did not finish), its workers remote
//! or in this process, its items sent to an itemsaver or stored here.

use super::{Built, End, Operate, Parts, parts};
use crate::config::{EngineConfig, ResumeMode};
use crate::crawl::{self, Stopped};
use crate::error::EngineError;
use crate::pool::Pool;
use crate::sink::{ItemSink, Target};
use crate::state::{self, Restored, StateDir, StateError, StateHandle};
use crate::{Summary, crawl_identity, local_worker};
use common::traffic::Traffic;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::info;

/// Builds the parts of a crawl of one engine.
pub(super) async fn build(
    mut config: EngineConfig,
    operate: &mut Operate,
) -> Result<Built<crate::frontier::EmbeddedFrontier>, EngineError> {
    let state_dir = config.state_dir.as_ref().map(StateDir::new);
    let (state, restored) = match &state_dir {
        Some(dir) => open_state(dir, &mut config).await?,
        None => (StateHandle::disabled(), Restored::default()),
    };
    if config.seeds.is_empty() && !restored.resumed && !config.serve {
        return Err(EngineError::NoSeeds);
    }
    let traffic = Arc::new(Traffic::default());
    let (target, items_at) = match &config.itemsaver_host {
        Some(addr) => {
            let client = parts::connect_itemsaver(addr, &config, &traffic).await?;
            (
                Target::Remote {
                    addr: addr.clone(),
                    client,
                    traffic: traffic.clone(),
                    alternates: None,
                },
                format!("itemsaver at {addr}"),
            )
        }
        None => {
            let store = itemsaver::store::open(&config.store).await?;
            info!(store = %config.store, "storing items in this process");
            let server = itemsaver::ItemSaverServer::new(
                store,
                itemsaver::DEFAULT_MAX_BATCH,
                itemsaver::DEFAULT_MAX_ITEM_BYTES,
            );
            (
                Target::Local(itemsaver::in_process(server)),
                config.store.to_string(),
            )
        }
    };
    let requirements = parts::requirements(&config, restored.resumed);
    let pool_config = parts::pool_config(&config);
    let pool = if config.worker_hosts.is_empty() {
        let settings = local_worker::settings(&config, &restored).await;
        let mut server = worker::CrawlServer::new(&settings)?;
        // It renders when the crawl asks for it: --render, or a spider rule.
        let renders = config.render
            || config
                .spider
                .as_ref()
                .is_some_and(|s| !s.renders.is_empty());
        if renders {
            let render = worker::cli::default_render_settings().map_err(EngineError::Render)?;
            server = server.start_renderer(render).await?;
        }
        if let Some(spider) = &config.spider {
            server
                .load_spider_source(&spider.source)
                .map_err(EngineError::SpiderRefused)?;
        }
        let info = server.worker_info();
        info!(
            concurrency = info.concurrency,
            "fetching with a worker in this process"
        );
        Pool::in_process(
            worker::in_process(server),
            info,
            requirements,
            pool_config,
            traffic.clone(),
        )
    } else {
        Pool::connect(
            &config.worker_hosts,
            requirements,
            pool_config,
            traffic.clone(),
        )
        .await?
    };
    let sink = ItemSink::start(target, parts::sink_config(&config), state.clone());
    let dead_letters =
        std::path::absolute(&config.dead_letters).unwrap_or_else(|_| config.dead_letters.clone());
    let history = parts::open_history(&config)?;
    let frontier = crate::frontier::EmbeddedFrontier::new(config.politeness);
    let mut crawl = crawl::Crawl::new(
        config,
        frontier,
        pool,
        sink,
        items_at,
        state,
        state_dir.is_some(),
        std::mem::take(&mut operate.progress),
    );
    if let Some(store) = history {
        crawl = crawl.with_history(store);
    }
    Ok(Built::Ready(Box::new(Parts {
        crawl,
        restored,
        end: End::Embedded(EmbeddedEnd {
            state_dir,
            dead_letters,
        }),
    })))
}

/// What a crawl of one engine does once it ended: its state is kept for a resume, or removed
/// with the items the store refused written beside it.
pub(super) struct EmbeddedEnd {
    state_dir: Option<StateDir>,
    dead_letters: PathBuf,
}

impl EmbeddedEnd {
    /// Finishes after the crawl ended with `result`.
    pub(super) async fn finish(
        self,
        result: Result<(Stopped, Summary), EngineError>,
    ) -> Result<Summary, EngineError> {
        let EmbeddedEnd {
            state_dir,
            dead_letters,
        } = self;
        let (stopped, mut summary) = result?;
        if let Some(dir) = state_dir {
            if stopped == Stopped::Interrupted {
                summary.resumable_state = Some(dir.path().display().to_string());
            } else {
                // Finished: nothing to resume, and a re-run starts a fresh crawl. Items the store
                // refused outlive the state, in a file beside it.
                if dir.export_dead_letters(&dead_letters)? > 0 {
                    summary.dead_letters = Some(dead_letters.display().to_string());
                }
                dir.remove()?;
            }
        } else if summary.items_rejected > 0 {
            summary.dead_letters = Some(dead_letters.display().to_string());
        }
        Ok(summary)
    }
}

/// Opens the state in `dir` for the crawl `config` asks for. An unfinished crawl of the state
/// is carried on when it is the same crawl, or as it was with `--resume` (its seeds, spider,
/// scope and store replace the flags given); another crawl is refused, so that two crawls
/// never mix. The state is marked with the crawl it holds.
async fn open_state(
    dir: &StateDir,
    config: &mut EngineConfig,
) -> Result<(StateHandle, Restored), EngineError> {
    if config.resume == ResumeMode::Fresh {
        dir.remove()?;
    }
    if config.resume == ResumeMode::Require && !dir.has_unfinished() {
        return Err(StateError::NothingToResume(dir.path().to_owned()).into());
    }
    let (handle, restored) = dir.open(config.state_sync)?;
    let asked = crawl_identity::CrawlIdentity::of(config);
    let held = restored
        .crawl
        .as_deref()
        .and_then(|json| serde_json::from_str::<crawl_identity::CrawlIdentity>(json).ok())
        .filter(|_| restored.resumed);
    let identity = match held {
        Some(held) => {
            let parts = held.differences(&asked);
            if !parts.is_empty() {
                if config.resume != ResumeMode::Require {
                    return Err(EngineError::StateOfAnotherCrawl {
                        state: dir.path().display().to_string(),
                        holds: held.to_string(),
                        parts: parts
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                held.apply_to(config)?;
            }
            held
        }
        None => asked,
    };
    state::log_restored(dir.path(), &restored, &identity);
    handle
        .mark_crawl(serde_json::to_string(&identity).unwrap_or_default())
        .await?;
    Ok((handle, restored))
}
