//! What the crawl does with each answer: store, follow, retry, slow down, or give up.

use super::tally::Outcome;
use super::{Answer, Completion, Crawl, Found, Unanswered, retry_delay};
use crate::error::EngineError;
use crate::frontier::Frontier;
use crate::frontier::{Dispatched, Kind};
use crate::robots::{self, Rules, Verdict};
use crate::state::SpooledPage;
use common::{FetchError, ParseResult, Request, RobotsFile, canonicalize, transport};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use url::Url;

impl Answer {
    /// Whether the worker refused the request because it is shutting down.
    fn worker_unavailable(&self) -> bool {
        matches!(
            self,
            Answer::Page(Err(FetchError::Unavailable(_)))
                | Answer::Robots(Err(FetchError::Unavailable(_)))
        )
    }
}

impl<F: Frontier> Crawl<F> {
    pub(super) async fn complete(&mut self, done: Completion) -> Result<(), EngineError> {
        let now = Instant::now();
        let Completion {
            dispatched,
            lease,
            outcome,
            sent,
        } = done;
        let worker = lease.worker().index;
        lease.worker().in_flight.fetch_sub(1, Ordering::Relaxed);
        if !dispatched.deaths.is_empty() {
            self.slots.suspect_answered();
        }
        let addr = lease.worker().addr.clone();
        self.figures
            .meter(worker, &addr)
            .1
            .observe((now - sent).as_secs_f64());
        self.frontier.done(&dispatched.host, now);
        let current = self.is_current(&dispatched);
        if dispatched.kind == Kind::Page
            && let Some(t) = self.tasks.named_mut(&dispatched.request.task)
        {
            // A page of an earlier run left this count when its run ended here.
            if current {
                t.in_flight = t.in_flight.saturating_sub(1);
            }
        }
        let node = lease.node();
        // A killed task's answers are discarded, never half-saved: a call cancelled, or one
        // whose answer came in just as the task was killed.
        let killed = dispatched.kind == Kind::Page
            && self.tasks.named(&dispatched.request.task).is_some_and(|t| {
                if current {
                    t.state == crate::tasks::TaskState::Killed
                } else {
                    t.killed_run == Some(dispatched.run)
                }
            });
        if !killed && matches!(outcome, Err(Unanswered::OverBudget)) {
            // Never sent: the crawl's engines fetched (or hold) the task's every page. It
            // goes back to its lane, which Redis holds from now on (left queued, as one
            // engine leaves a capped task's requests), and the task takes no more links here.
            if let Some(t) = self.tasks.named_mut(&dispatched.request.task) {
                t.budget_spent = true;
                t.settle();
            }
            self.pool.release(lease);
            self.frontier.requeue_front(dispatched, now);
            return Ok(());
        }
        let skipped =
            (killed || matches!(outcome, Err(Unanswered::Killed))).then_some("task_killed");
        if let Some(reason) = skipped {
            self.pool.release(lease);
            self.tally_of(&dispatched, Outcome::Skipped { reason });
            self.finished(&dispatched);
            return Ok(());
        }
        if matches!(outcome, Err(Unanswered::NoRenderer)) {
            self.pool.release(lease);
            self.no_renderer(dispatched, now);
            return Ok(());
        }
        if matches!(outcome, Err(Unanswered::LeaseGone)) {
            // Never sent, and another engine's to send now: nothing to count or complete.
            self.pool.release(lease);
            return Ok(());
        }
        let answer = match outcome {
            Ok(answer) if answer.worker_unavailable() => {
                // A worker that is draining refused it: it gets no more, its calls in flight
                // finish, and this request simply goes elsewhere.
                self.pool
                    .withdraw(lease, "it refused a request while draining");
                self.unanswered(dispatched, worker, node, Unanswered::Left, now);
                return Ok(());
            }
            Ok(answer) => {
                self.pool.release(lease);
                answer
            }
            Err(miss) => {
                match &miss {
                    // The worker is alive but slow, or refused the call: keep it.
                    Unanswered::Overran
                    | Unanswered::Refused(_)
                    | Unanswered::Killed
                    | Unanswered::OverBudget
                    | Unanswered::NoRenderer
                    | Unanswered::LeaseGone => self.pool.release(lease),
                    Unanswered::Left => self.pool.withdraw(lease, "it left"),
                    Unanswered::Died => self.pool.retire(lease, "its connection broke"),
                }
                debug!(url = %dispatched.request.url, %addr, ?miss, "call unanswered");
                self.unanswered(dispatched, worker, node, miss, now);
                return Ok(());
            }
        };
        match answer {
            Answer::Robots(result) => self.robots_answer(dispatched, result, now),
            Answer::Page(Ok(result)) => {
                self.frontier.recovered(&dispatched.host);
                if result.fetch.rendered {
                    self.figures.rendered(result.fetch.elapsed_ms);
                }
                let status = result.fetch.status;
                match &result.redirect {
                    Some(target) => match redirect_target(&dispatched, target, &self.config) {
                        // A redirect that cannot be followed ends its chain: one failure.
                        Err(reason) => {
                            self.tally_of(&dispatched, Outcome::Failed { status, reason })
                        }
                        Ok(url) => {
                            self.tally_of(&dispatched, Outcome::Redirect { status });
                            self.follow_redirect(&dispatched, url, now);
                        }
                    },
                    None => {
                        let page = Outcome::Page {
                            status,
                            items: result.items.len() as u64,
                            dropped: result.items_dropped,
                            truncated: result.items_truncated,
                        };
                        self.tally_of(&dispatched, page);
                        self.follow(&dispatched, &result, now);
                    }
                }
                // The request leaves the queue with its links and items, in one transaction.
                self.fetched(&dispatched);
                let ParseResult {
                    items,
                    mut yields,
                    fetch,
                    ..
                } = result;
                // A page's yields speak for its own task and URL only.
                yields.retain(|y| y.task == dispatched.request.task && y.url == fetch.final_url);
                let page = SpooledPage { items, yields };
                if !page.items.is_empty() || !page.yields.is_empty() {
                    self.figures.items_sent(page.items.len() as u64);
                    let spooled = self.spool(page);
                    self.flush_pending().await?;
                    self.sink.send(vec![spooled]).await?;
                }
            }
            Answer::Page(Err(FetchError::UnknownSpider(_))) => {
                // The worker forgot the spider: send it again, then retry there or elsewhere,
                // within the page's retries.
                self.reload_spider(worker, dispatched.request.spider).await;
                self.retry_or_fail(dispatched, worker, "unknown_spider".into(), now);
            }
            Answer::Page(Err(FetchError::RenderCrashed)) => {
                // The page took its browser down: a process died holding it, as when a
                // worker dies, so it counts toward poison_page instead of spending a retry.
                // Each crash is a browser of its own.
                let browser = node ^ (dispatched.deaths.len() as u64 + 1).wrapping_mul(BROWSER);
                warn!(url = %dispatched.request.url, %addr, "the page crashed its browser (render_crashed)");
                self.died_holding(dispatched, worker, browser, now);
            }
            Answer::Page(Err(error)) => self.page_failed(dispatched, worker, error, now),
        }
        Ok(())
    }

    async fn reload_spider(&self, worker: usize, hash: Option<u64>) {
        let (Some(source), Some(conn)) = (
            hash.and_then(|h| self.tasks.spider_source(h)),
            self.pool.worker(worker),
        ) else {
            return;
        };
        let ctx = transport::deadline(self.config.connect_timeout);
        match conn.client().load_spider(ctx, source.to_owned()).await {
            Ok(Ok(_)) => info!(worker = %conn.addr, "spider sent again"),
            Ok(Err(why)) => warn!(worker = %conn.addr, %why, "worker refused the spider"),
            Err(e) => warn!(worker = %conn.addr, cause = %e, "could not send the spider"),
        }
    }

    /// A page fetch the site failed: slow the host on 429/503, retry what may pass next time.
    fn page_failed(&mut self, d: Dispatched, worker: usize, error: FetchError, now: Instant) {
        if let FetchError::Http {
            status: 429 | 503,
            retry_after_secs,
        } = &error
        {
            self.frontier
                .throttle(&d.host, retry_after_secs.map(Duration::from_secs), now);
            self.figures.throttled(&d.host);
        }
        if error.is_retryable() && d.attempts < self.config.retries {
            debug!(url = %d.request.url, %error, attempt = d.attempts + 1, "retrying later");
            self.retry_later(d, worker, now);
        } else {
            if let FetchError::BlockedAddress(why) = &error
                && !self.warned_blocked
            {
                self.warned_blocked = true;
                warn!(url = %d.request.url, %why, "a worker's SSRF guard refused a page (more are counted as blocked_address)");
            }
            debug!(url = %d.request.url, %error, "page failed");
            let status = match &error {
                FetchError::Http { status, .. } => *status,
                _ => 0,
            };
            self.fail(&d, status, &error.reason());
        }
    }

    /// Spends one of the request's retries: it is sent again after a back-off, to another
    /// worker when one is free.
    fn retry_later(&mut self, mut d: Dispatched, worker: usize, now: Instant) {
        d.attempts += 1;
        d.last_worker = Some(worker);
        self.figures.retried();
        let at = now + retry_delay(&d.request.url, d.attempts);
        self.frontier.defer(d, at, now);
    }

    /// Retries a request within its retries, or gives it up under `reason`.
    fn retry_or_fail(&mut self, d: Dispatched, worker: usize, reason: String, now: Instant) {
        match d.kind {
            Kind::Robots => self.robots_answer(d, Err(FetchError::Other(reason)), now),
            Kind::Page if d.attempts < self.config.retries => self.retry_later(d, worker, now),
            Kind::Page => self.fail(&d, 0, &reason),
        }
    }

    /// Reads a host's robots.txt on a blocking thread (a hostile file is CPU work the crawl
    /// loop must not do), or schedules another try when the fetch failed. The host sends
    /// nothing until the rules are known.
    fn robots_answer(
        &mut self,
        d: Dispatched,
        result: Result<RobotsFile, FetchError>,
        now: Instant,
    ) {
        let file = match result {
            Ok(file) => file,
            // A host the worker may not reach has no robots.txt to wait for: its pages are
            // sent, and each comes back refused as blocked_address. The other engines of a
            // shared crawl read the record as "no robots.txt" (a 404), which allows all too.
            Err(FetchError::BlockedAddress(_)) => {
                let record = self.frontier.keeps_robots_files().then(|| RobotsFile {
                    status: 404,
                    body: Vec::new(),
                });
                return self
                    .frontier
                    .robots_known(&d, Rules::AllowAll, None, record, now);
            }
            Err(_) => return self.apply_robots(d, Verdict::TryLater, None, now),
        };
        let agent = self.agent.clone();
        let host = d.host.clone();
        // The other engines of a shared crawl read the rules from the file as fetched.
        let kept = self.frontier.keeps_robots_files().then(|| file.clone());
        // Polled by the crawl loop: all the work is on the blocking thread.
        let read = tokio::task::spawn_blocking({
            let host = host.clone();
            move || {
                let (verdict, dropped) = robots::read(&file, &agent);
                if dropped > 0 {
                    warn!(%host, dropped, kept = robots::MAX_RULES, "robots.txt has too many rules; only the first are applied");
                }
                verdict
            }
        });
        self.parsing.push(Box::pin(async move {
            let verdict = read.await.unwrap_or_else(|e| {
                warn!(%host, cause = %e, "reading robots.txt failed; no rules applied");
                Verdict::Known(Rules::AllowAll, None)
            });
            (d, verdict, kept)
        }));
    }

    /// Applies a host's robots.txt, or schedules another try when the server failed.
    pub(super) fn apply_robots(
        &mut self,
        mut d: Dispatched,
        verdict: Verdict,
        file: Option<RobotsFile>,
        now: Instant,
    ) {
        match verdict {
            Verdict::Known(rules, crawl_delay) => {
                debug!(host = %d.host, ?rules, ?crawl_delay, "robots.txt");
                self.figures.robots_fetched();
                self.frontier
                    .robots_known(&d, rules, crawl_delay, file, now);
            }
            Verdict::TryLater if d.attempts < self.config.retries => {
                d.attempts += 1;
                let at = now + retry_delay(&d.request.url, d.attempts);
                info!(host = %d.host, attempt = d.attempts, "robots.txt unavailable; trying the host again later");
                self.frontier.defer(d, at, now);
            }
            Verdict::TryLater => {
                warn!(host = %d.host, "robots.txt stayed unavailable; not crawling the host");
                self.frontier
                    .robots_known(&d, Rules::DisallowAll, None, None, now);
            }
        }
    }

    /// Deals with a call its worker did not answer. A worker that left, or that overran the
    /// deadline, costs the request nothing but a retry for the overrun; a worker that died
    /// holding it counts against it only as one of `--max_worker_deaths` different workers.
    fn unanswered(
        &mut self,
        d: Dispatched,
        worker: usize,
        node: u64,
        miss: Unanswered,
        now: Instant,
    ) {
        match miss {
            Unanswered::Overran => {
                let elapsed_ms = self.config.rpc_timeout.as_millis() as u64;
                match d.kind {
                    Kind::Page => {
                        self.page_failed(d, worker, FetchError::Timeout { elapsed_ms }, now)
                    }
                    Kind::Robots => {
                        self.robots_answer(d, Err(FetchError::Timeout { elapsed_ms }), now)
                    }
                }
                return;
            }
            Unanswered::Refused(why) => {
                debug!(url = %d.request.url, %why, "the worker refused the call");
                self.retry_or_fail(d, worker, "worker_refused".into(), now);
                return;
            }
            // Handled before (see `complete`): a killed task's request ends there.
            Unanswered::Left
            | Unanswered::Killed
            | Unanswered::OverBudget
            | Unanswered::NoRenderer
            | Unanswered::LeaseGone => {}
            Unanswered::Died => return self.died_holding(d, worker, node, now),
        }
        self.requeue_uncharged(d, worker, now);
    }

    /// A process died holding `d`: the worker `node`, or a browser. Past
    /// `--max_worker_deaths` different ones, the request is given up as a poison page;
    /// before, it goes back to the front of its queue, uncharged.
    fn died_holding(&mut self, mut d: Dispatched, worker: usize, node: u64, now: Instant) {
        if !d.deaths.contains(&node) {
            d.deaths.push(node);
        }
        let limit = self.config.max_worker_deaths.max(1) as usize;
        if d.deaths.len() >= limit {
            warn!(url = %d.request.url, deaths = d.deaths.len(), "every process holding this request died; giving it up as a poison page");
            match d.kind {
                Kind::Page => self.fail(&d, 0, "poison_page"),
                Kind::Robots => self
                    .frontier
                    .robots_known(&d, Rules::DisallowAll, None, None, now),
            }
            return;
        }
        self.requeue_uncharged(d, worker, now);
    }

    /// Not the request's fault: back to the front of its queue, uncharged.
    fn requeue_uncharged(&mut self, mut d: Dispatched, worker: usize, now: Instant) {
        d.requeues = d.requeues.saturating_add(1);
        d.last_worker = Some(worker);
        self.figures.worker_retried();
        self.frontier.requeue_front(d, now);
    }

    /// Schedules a redirect's target like a link, at the same depth.
    fn follow_redirect(&mut self, from: &Dispatched, url: Url, now: Instant) {
        let Some(task) = self.tasks.index(&from.request.task) else {
            return;
        };
        if !self.tasks.at(task).accepts_links(from.run) {
            return;
        }
        if !self.tasks.at(task).scope.allows(&url) {
            let reason = "redirect_offsite";
            return self.tally_of(from, Outcome::Skipped { reason });
        }
        if url.as_str().len() > self.config.max_url_len {
            self.figures.links_dropped(1, 0);
            return;
        }
        let request = Request {
            url: url.to_string(),
            ..from.request.clone()
        };
        self.push(&url, request, Found::Redirect(from.redirects + 1), now);
    }

    /// Schedules the links of a parsed page that are new, in scope and within the limits.
    fn follow(&mut self, from: &Dispatched, result: &ParseResult, now: Instant) {
        let parent = &from.request;
        let Some(task) = self.tasks.index(&parent.task) else {
            return;
        };
        if !self.tasks.at(task).accepts_links(from.run) {
            // Closed, at its page cap, or of a run that ended: its links would only be
            // fetched to be dropped.
            self.figures.links_dropped(result.requests.len() as u64, 0);
            return;
        }
        let depth = parent.depth + 1;
        if self
            .tasks
            .at(task)
            .def
            .max_depth
            .is_some_and(|max| depth > max)
        {
            self.figures.links_dropped(result.requests.len() as u64, 0);
            return;
        }
        for link in &result.requests {
            // Links come from a peer: check them as untrusted input.
            let Ok(url) = canonicalize(&link.url, None) else {
                continue;
            };
            if url.as_str().len() > self.config.max_url_len {
                self.figures.links_dropped(1, 0);
                continue;
            }
            if !self.tasks.at(task).scope.allows(&url) {
                self.figures.links_dropped(0, 1);
                continue;
            }
            let request = Request {
                url: url.to_string(),
                parser: link.parser.clone().unwrap_or_else(|| parent.parser.clone()),
                depth,
                task: parent.task.clone(),
                meta: parent.meta.clone(),
                spider: parent.spider,
            };
            self.push(&url, request, Found::Link, now);
        }
    }

    /// A page to render found no worker that renders with a slot free. It waits: a moment
    /// when one is connected (busy), else until `--no_workers_timeout` has passed with none,
    /// and then fails `no_render_worker`.
    fn no_renderer(&mut self, mut d: Dispatched, now: Instant) {
        // Never sent: when it comes back it is not counted again against its host's pages.
        d.requeues = d.requeues.saturating_add(1);
        if self.pool.any_renders() {
            self.slots.no_renderer_since = None;
            self.frontier
                .defer(d, now + std::time::Duration::from_millis(200), now);
            return;
        }
        let since = *self.slots.no_renderer_since.get_or_insert_with(|| {
            warn!(timeout = ?self.config.no_workers_timeout, "a page to render waits: no worker that renders is connected (start one with worker --render)");
            now
        });
        if now.duration_since(since) >= self.config.no_workers_timeout {
            warn!(url = %d.request.url, "no worker renders: the page fails no_render_worker");
            self.fail(&d, 0, "no_render_worker");
        } else {
            self.frontier
                .defer(d, now + std::time::Duration::from_secs(1), now);
        }
    }

    /// Counts a page that failed for good, and lets it leave the queue.
    fn fail(&mut self, d: &Dispatched, status: u16, reason: &str) {
        self.tally_of(d, Outcome::Failed { status, reason });
        self.fetched(d);
    }
}

/// Spreads the ids of the browsers a page crashed on one worker apart from each other and
/// from the workers' own ids (the golden ratio's odd multiplier).
const BROWSER: u64 = 0x9E37_79B9_7F4A_7C15;

/// The canonical target of a redirect from `from`, or why it cannot be followed.
fn redirect_target(
    from: &Dispatched,
    target: &str,
    config: &crate::config::EngineConfig,
) -> Result<Url, &'static str> {
    let url = canonicalize(target, None).map_err(|_| "bad_redirect")?;
    if from.redirects >= config.max_redirects {
        return Err("too_many_redirects");
    }
    Ok(url)
}
