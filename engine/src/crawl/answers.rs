//! What the crawl does with each answer: store, follow, retry, slow down, or give up.

use super::{Answer, Completion, Crawl, retry_delay};
use crate::error::EngineError;
use crate::frontier::{Dispatched, Kind};
use crate::robots::{self, Rules, Verdict};
use common::{FetchError, ParseResult, Request, RobotsFile, canonicalize, transport};
use std::time::Duration;
use tarpc::client::RpcError;
use tokio::time::Instant;
use tracing::{debug, info, warn};

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

impl Crawl {
    pub(super) async fn complete(&mut self, done: Completion) -> Result<(), EngineError> {
        let now = Instant::now();
        let Completion {
            dispatched,
            lease,
            outcome,
        } = done;
        let worker = lease.worker().index;
        self.frontier.done(&dispatched.host, now);
        if dispatched.kind == Kind::Page {
            self.pages_in_flight -= 1;
        }
        let answer = match outcome {
            Ok(answer) if answer.worker_unavailable() => {
                // A worker that is shutting down refused it: take the worker out of the
                // rotation and send the request elsewhere.
                self.pool.retire(lease, "the worker is shutting down");
                // Not a failure of the request or of the work: it simply goes elsewhere.
                let mut d = dispatched;
                d.last_worker = Some(worker);
                self.summary.worker_retries += 1;
                self.frontier.requeue_front(d, now);
                return Ok(());
            }
            Ok(answer) => {
                self.pool.release(lease);
                answer
            }
            Err(error) => {
                let addr = lease.worker().addr.clone();
                match error {
                    // The worker is alive but slow or refused the call: keep it.
                    RpcError::DeadlineExceeded | RpcError::Server(_) => self.pool.release(lease),
                    // The connection is gone (or was marked down).
                    _ => self.pool.retire(lease, &error.to_string()),
                }
                self.worker_failed(dispatched, worker, &addr, &error, now);
                return Ok(());
            }
        };
        match answer {
            Answer::Robots(result) => self.robots_answer(dispatched, result, now),
            Answer::Page(Ok(result)) => {
                self.outcomes += 1;
                self.frontier.recovered(&dispatched.host);
                match &result.redirect {
                    Some(target) => {
                        self.summary.pages_redirected += 1;
                        self.follow_redirect(&dispatched, target, now);
                    }
                    None => {
                        self.summary.pages_ok += 1;
                        self.summary.items_dropped += u64::from(result.items_dropped);
                        self.follow(&dispatched.request, &result, now);
                    }
                }
                // The request leaves the queue with its links and items, in one transaction.
                self.finished(dispatched.id);
                let items = self.spool(result.items);
                self.flush_pending().await?;
                self.items_sent += items.len() as u64;
                self.sink.send(items).await?;
            }
            Answer::Page(Err(FetchError::UnknownSpider(_))) => {
                // The worker restarted or forgot the spider: send it again, then retry there
                // or elsewhere, as for any worker failure.
                self.reload_spider(worker).await;
                let addr = self.pool.workers()[worker].addr.clone();
                self.worker_failed(
                    dispatched,
                    worker,
                    &addr,
                    &"the worker did not have the spider",
                    now,
                );
            }
            Answer::Page(Err(error)) => self.page_failed(dispatched, worker, error, now),
        }
        Ok(())
    }

    async fn reload_spider(&self, worker: usize) {
        let (Some(spider), Some(conn)) = (&self.config.spider, self.pool.workers().get(worker))
        else {
            return;
        };
        let ctx = transport::deadline(self.config.connect_timeout);
        match conn.client().load_spider(ctx, spider.source.clone()).await {
            Ok(Ok(_)) => info!(worker = %conn.addr, "spider sent again"),
            Ok(Err(why)) => warn!(worker = %conn.addr, %why, "worker refused the spider"),
            Err(e) => warn!(worker = %conn.addr, cause = %e, "could not send the spider"),
        }
    }

    /// A page fetch the site failed: slow the host on 429/503, retry what may pass next time.
    fn page_failed(&mut self, mut d: Dispatched, worker: usize, error: FetchError, now: Instant) {
        if let FetchError::Http {
            status: 429 | 503,
            retry_after_secs,
        } = &error
        {
            self.frontier
                .throttle(&d.host, retry_after_secs.map(Duration::from_secs), now);
        }
        if error.is_retryable() && d.attempts < self.config.retries {
            d.attempts += 1;
            d.last_worker = Some(worker);
            self.summary.retries += 1;
            let at = now + retry_delay(&d.request.url, d.attempts);
            debug!(url = %d.request.url, %error, attempt = d.attempts, "retrying later");
            self.frontier.defer(d, at);
        } else {
            self.outcomes += 1;
            debug!(url = %d.request.url, %error, "page failed");
            *self.summary.pages_failed.entry(error.reason()).or_default() += 1;
            self.finished(d.id);
        }
    }

    /// Applies a host's robots.txt, or schedules another try when the server failed.
    fn robots_answer(
        &mut self,
        mut d: Dispatched,
        result: Result<RobotsFile, FetchError>,
        now: Instant,
    ) {
        let verdict = match &result {
            Ok(file) => robots::interpret(file, &self.agent),
            Err(_) => Verdict::TryLater,
        };
        match verdict {
            Verdict::Known(rules, crawl_delay) => {
                debug!(host = %d.host, ?rules, ?crawl_delay, "robots.txt");
                self.summary.robots_fetched += 1;
                self.frontier.robots_known(&d.host, rules, crawl_delay, now);
            }
            Verdict::TryLater if d.attempts < self.config.retries => {
                d.attempts += 1;
                let at = now + retry_delay(&d.request.url, d.attempts);
                info!(host = %d.host, attempt = d.attempts, "robots.txt unavailable; trying the host again later");
                self.frontier.defer(d, at);
            }
            Verdict::TryLater => {
                warn!(host = %d.host, "robots.txt stayed unavailable; not crawling the host");
                self.frontier
                    .robots_known(&d.host, Rules::DisallowAll, None, now);
            }
        }
    }

    /// Sends a request a worker failed to another worker, up to a bound; a worker's failure
    /// does not spend the request's own retries.
    fn worker_failed(
        &mut self,
        mut d: Dispatched,
        worker: usize,
        addr: &str,
        error: &dyn std::fmt::Display,
        now: Instant,
    ) {
        d.worker_failures += 1;
        d.last_worker = Some(worker);
        if d.worker_failures <= self.config.max_worker_failures {
            debug!(url = %d.request.url, %addr, %error, "worker failed the request; requeued");
            self.summary.worker_retries += 1;
            self.frontier.requeue_front(d, now);
            return;
        }
        warn!(url = %d.request.url, %addr, %error, "request failed on too many workers; giving up");
        match d.kind {
            Kind::Page => {
                self.outcomes += 1;
                *self
                    .summary
                    .pages_failed
                    .entry("worker_lost".into())
                    .or_default() += 1;
                self.finished(d.id);
            }
            Kind::Robots => self
                .frontier
                .robots_known(&d.host, Rules::DisallowAll, None, now),
        }
    }

    /// Schedules a redirect's target like a link, at the same depth, within the hop limit.
    fn follow_redirect(&mut self, from: &Dispatched, target: &str, now: Instant) {
        let Ok(url) = canonicalize(target, None) else {
            *self
                .summary
                .pages_failed
                .entry("bad_redirect".into())
                .or_default() += 1;
            return;
        };
        if from.redirects >= self.config.max_redirects {
            *self
                .summary
                .pages_failed
                .entry("too_many_redirects".into())
                .or_default() += 1;
            return;
        }
        if !self.scope.allows(&url) {
            *self
                .summary
                .skipped
                .entry("redirect_offsite".into())
                .or_default() += 1;
            return;
        }
        if url.as_str().len() > self.config.max_url_len {
            self.summary.links_over_limit += 1;
            return;
        }
        let request = Request {
            url: url.to_string(),
            ..from.request.clone()
        };
        self.push(&url, request, from.redirects + 1, now);
    }

    /// Schedules the links of a parsed page that are new, in scope and within the limits.
    fn follow(&mut self, parent: &Request, result: &ParseResult, now: Instant) {
        let depth = parent.depth + 1;
        if self.config.max_depth.is_some_and(|max| depth > max) {
            self.summary.links_over_limit += result.requests.len() as u64;
            return;
        }
        for link in &result.requests {
            // Links come from a peer: check them as untrusted input.
            let Ok(url) = canonicalize(&link.url, None) else {
                continue;
            };
            if url.as_str().len() > self.config.max_url_len {
                self.summary.links_over_limit += 1;
                continue;
            }
            if !self.scope.allows(&url) {
                self.summary.links_offsite += 1;
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
            self.push(&url, request, 0, now);
        }
    }
}
