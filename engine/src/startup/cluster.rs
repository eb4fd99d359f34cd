//! Building an engine's share of a crawl in Redis: join the crawl (adopting its settings),
//! find the workers and an itemsaver that registered, make the shared frontier and take
//! part in the leader election; once the crawl ended, leave its figures for the leader's
//! totals.

use super::{Built, End, Operate, Parts, parts};
use crate::cluster::shared::{SharedConfig, SharedFrontier};
use crate::cluster::{RedisFrontier, RedisFrontierConfig, crawl_prefix};
use crate::cluster::{discover, leader, settings};
use crate::config::EngineConfig;
use crate::crawl::Stopped;
use crate::error::EngineError;
use crate::pool::Pool;
use crate::sink::{ItemSink, Target};
use crate::state::StateHandle;
use crate::tasks::TaskDef;
use crate::{Summary, crawl};
use common::registry::{Node, NodeKind};
use common::traffic::Traffic;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Acknowledgements buffered between the item sink and the crawl loop.
const ACKS: usize = 4_096;

/// Builds this engine's share of the crawl named in `config.cluster`.
pub(super) async fn build(
    mut config: EngineConfig,
    operate: &mut Operate,
) -> Result<Built<SharedFrontier>, EngineError> {
    let Some(cluster) = config.cluster.clone() else {
        return Err(EngineError::NoSeeds);
    };
    crate::cluster::name::check(&cluster.crawl)?;
    let conn = RedisFrontier::connect(&cluster.redis, &cluster.redis_tls).await?;
    let prefix = crawl_prefix(&cluster.crawl);
    let pacing = |config: &EngineConfig| RedisFrontierConfig {
        politeness: config.politeness,
        lease: cluster.lease,
    };
    if config.resume == crate::config::ResumeMode::Fresh {
        let deleted = RedisFrontier::new(conn.clone(), &cluster.crawl, pacing(&config))
            .delete_crawl()
            .await?;
        info!(crawl = %cluster.crawl, keys = deleted, "--fresh: the crawl's earlier state is deleted");
    }
    let wait = config.no_workers_timeout;
    settings::adopt(
        &mut conn.clone(),
        &prefix,
        &cluster.crawl,
        &mut config,
        wait,
    )
    .await
    .map_err(|e| match e {
        settings::SettingsError::Redis(e) => EngineError::Cluster(e),
        other => EngineError::ClusterSettings(other.to_string()),
    })?;
    let mut redis = RedisFrontier::new(conn.clone(), &cluster.crawl, pacing(&config));
    if let Some(found) = redis.keep_limits().await? {
        return Err(EngineError::ClusterSettings(
            settings::SettingsError::NewerLayout {
                crawl: cluster.crawl.clone(),
                found,
                known: crate::cluster::LAYOUT,
            }
            .to_string(),
        ));
    }
    // A scheduled crawl is done between its runs, and goes on at its next tick.
    let scheduled = config.schedule.is_some() || redis.has_schedules().await?;
    let done = redis.is_done().await?;
    let joined_done = match done {
        true => Some(redis.tasks_recorded().await?),
        false => None,
    };
    if done && !config.serve && !scheduled {
        info!(crawl = %cluster.crawl, "the crawl is already done; start with --fresh to run it again");
        return Ok(Built::Finished(Box::new(Summary {
            stopped: "done".into(),
            ..Summary::default()
        })));
    }
    let traffic = Arc::new(Traffic::default());
    let itemsaver = match &config.itemsaver_host {
        Some(addr) => addr.clone(),
        None => discover::itemsaver(&mut conn.clone(), config.no_workers_timeout)
            .await
            .ok_or(EngineError::NoItemSaver)?,
    };
    let client = parts::connect_itemsaver(&itemsaver, &config, &traffic).await?;
    let registered = conn.clone();
    let target = Target::Remote {
        addr: itemsaver.clone(),
        client,
        traffic: traffic.clone(),
        alternates: Some(crate::sink::Alternates::new(move || {
            let mut conn = registered.clone();
            Box::pin(async move {
                common::registry::live(&mut conn, common::registry::SHARED, NodeKind::ItemSaver)
                    .await
                    .map(|nodes| nodes.into_iter().map(|n| n.addr).collect())
                    .unwrap_or_default()
            })
        })),
    };
    let requirements = parts::requirements(&config, false);
    let pool = if config.worker_hosts.is_empty() {
        Pool::empty(requirements, parts::pool_config(&config), traffic.clone())
    } else {
        Pool::connect(
            &config.worker_hosts,
            requirements,
            parts::pool_config(&config),
            traffic.clone(),
        )
        .await?
    };
    // Until the crawl has ended (see ClusterEnd), a failure, a panic or a dropped future
    // stops the jobs started for it.
    let stop = CancellationToken::new();
    let stop_on_failure = stop.clone().drop_guard();
    let discovering = discover::workers(conn.clone(), pool.control(), stop.clone());
    let (ack_tx, ack_rx) = tokio::sync::mpsc::channel(ACKS);
    let state = StateHandle::forwarding_acks(ack_tx);
    let sink = ItemSink::start(target, parts::sink_config(&config), state.clone());
    let engine = common::registry::node_id("engine");
    let def = TaskDef::from_config(&config);
    // A scheduled task's seeds are queued at its ticks, by the leader.
    let seeds = match def.schedule {
        Some(_) => Vec::new(),
        None => crate::cluster::seed_urls(&def, config.politeness.robots),
    };
    let admin_addr = operate
        .admin
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string());
    let engine_state = Arc::new(crate::cluster::engines::EngineState::default());
    let robots = config.politeness.robots;
    let history = parts::open_history(&config)?;
    let agent = crawl::agent_of(&pool);
    let node = Node {
        id: engine.clone(),
        addr: cluster.advertise.clone().or(admin_addr).unwrap_or_default(),
    };
    let (role, leading) = leader::spawn(
        redis.clone(),
        node,
        seeds,
        engine_state.clone(),
        stop.clone(),
    );
    let mut shared = SharedFrontier::new(
        redis.clone(),
        SharedConfig {
            engine: engine.clone(),
            robots,
            agent,
            lease: cluster.lease,
            redis_timeout: cluster.redis_timeout,
            state: engine_state,
            role: role.clone(),
            joined_done,
        },
    );
    // A page's lease completes only once its items are durable.
    shared.take_acks(ack_rx);
    let mut crawl = crawl::Crawl::new(
        config,
        shared,
        pool,
        sink,
        format!("itemsaver at {itemsaver}"),
        state,
        false,
        std::mem::take(&mut operate.progress),
    );
    if let Some(store) = history {
        crawl = crawl.with_history(store);
    }
    let role_at_end = role.clone();
    crawl.handle_mut().cluster = Some(Arc::new(crate::cluster::engines::ClusterHandle {
        conn: redis.connection(),
        prefix: prefix.clone(),
        engine: engine.clone(),
        role,
        forward_wait: std::time::Duration::from_secs(10),
        admin_https: operate.admin_tls.is_some(),
        admin_trust: match operate.admin_tls_ca.clone() {
            Some(pem) => crate::cluster::engines::AdminTrust::Only(pem),
            None => crate::cluster::engines::AdminTrust::SystemAnd(cluster.redis_tls.ca.clone()),
        },
    }));
    // Its itemsaver and workers are reached: the crawl runs with these settings now.
    settings::mark_ran(&mut conn.clone(), &prefix).await?;
    info!(crawl = %cluster.crawl, engine = %engine, itemsaver = %itemsaver, "joined the shared crawl");
    Ok(Built::Ready(Box::new(Parts {
        crawl,
        restored: Default::default(),
        end: End::Cluster(ClusterEnd {
            stop,
            stop_guard: stop_on_failure,
            leading,
            discovering,
            role_at_end,
            conn,
            prefix,
            engine,
        }),
    })))
}

/// What an engine of a shared crawl does once its crawl loop ended: it leaves its figures
/// (the leader adds them up), and stops its leader and discovery jobs.
pub(super) struct ClusterEnd {
    stop: CancellationToken,
    /// Stops the jobs if the crawl never reaches its end (a panic, or its future dropped).
    stop_guard: tokio_util::sync::DropGuard,
    leading: tokio::task::JoinHandle<()>,
    discovering: tokio::task::JoinHandle<()>,
    role_at_end: tokio::sync::watch::Receiver<leader::Role>,
    conn: common::redis_conn::RedisConn,
    prefix: String,
    engine: String,
}

impl ClusterEnd {
    /// Finishes after the crawl loop ended with `result`.
    pub(super) async fn finish(
        self,
        result: Result<(Stopped, Summary), EngineError>,
    ) -> Result<Summary, EngineError> {
        let ClusterEnd {
            stop,
            stop_guard: _stop_guard,
            leading,
            discovering,
            role_at_end,
            conn,
            prefix,
            engine,
        } = self;
        let led = matches!(*role_at_end.borrow(), leader::Role::Leader(_));
        let (stopped, mut summary) = match result {
            Ok(done) => done,
            Err(e) => {
                stop.cancel();
                let _ = leading.await;
                return Err(e);
            }
        };
        let mut figures = conn.clone();
        crate::cluster::totals::leave_figures(&mut figures, &prefix, &engine, &summary).await;
        if led && matches!(stopped, Stopped::Done | Stopped::MaxPages) {
            summary.cluster = crate::cluster::totals::add_up(&mut figures, &prefix, &engine).await;
        }
        stop.cancel();
        let _ = leading.await;
        let _ = discovering.await;
        summary.redis_commands = Some(conn.commands_sent());
        Ok(summary)
    }
}
