//! Headless Chromium, driven over the DevTools protocol with `chromiumoxide`: a bounded set
//! of tabs, a tab per page, and the browser recycled after a number of pages, when its memory
//! passes a cap, or at once when it crashes or hangs. Every request it makes goes through the
//! worker's guard proxy.

use super::archive::Archive;
use super::capture::{Intercepting, Interception};
use super::process::{dying_with_the_worker, kill_tree, running_as_root, tree_memory_mb};
use super::{RenderError, RenderSettings, RenderSpec, Rendered, Wait};
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::inspector::{
    EnableParams as InspectorEnable, EventTargetCrashed,
};
use chromiumoxide::cdp::browser_protocol::page::NavigateParams;
use chromiumoxide::cdp::browser_protocol::target::CloseTargetParams;
use futures::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

/// Time kept, before a page's deadline, to tell a page that never loads from a script
/// that never yields.
const PROBE: Duration = Duration::from_secs(2);
/// Time kept, before a page's deadline, to close its tab.
const CLOSE: Duration = Duration::from_secs(2);
/// How often a browser's memory is read (reading it walks `/proc`): before its first page,
/// then at most this often.
const MEMORY_EVERY: Duration = Duration::from_secs(1);

/// How a rendering worker runs its browser.
#[derive(Clone, Debug)]
pub struct BrowserSettings {
    /// The worker's rendering flags: Chromium, tabs, recycling, memory cap (the anonymous
    /// and shared resident pages of the browser and its children) and JavaScript heap.
    pub render: RenderSettings,
    /// The guard proxy every request of the browser goes through.
    pub proxy: SocketAddr,
    /// The crawler's User-Agent, sent after the browser's own.
    pub crawler: String,
    /// The most body bytes kept of one response archived.
    pub max_body_bytes: u64,
    /// Where the browser's responses are archived (`--warc`), if anywhere.
    pub archive: Option<Archive>,
}

/// One running browser, shared by the pages rendering in it.
struct Live {
    browser: Browser,
    /// Set when its connection ended: it exited or crashed.
    dead: tokio::sync::watch::Receiver<bool>,
    pid: Option<u32>,
    /// Pages started in it.
    pages: std::sync::atomic::AtomicU64,
    /// Set when it must not take more pages (it hung, or is past its recycle count or cap).
    retired: std::sync::atomic::AtomicBool,
    /// The User-Agent its pages send: the browser's own, then the crawler's.
    user_agent: String,
    /// When its memory was last read, if it was.
    memory_read: std::sync::Mutex<Option<Instant>>,
    _profile: tempfile::TempDir,
}

impl Live {
    /// Whether its memory is to be read now (see [`MEMORY_EVERY`]); if so, it counts as read.
    fn memory_due(&self) -> bool {
        let mut read = self.memory_read.lock().unwrap_or_else(|e| e.into_inner());
        let due = read.is_none_or(|at| at.elapsed() >= MEMORY_EVERY);
        if due {
            *read = Some(Instant::now());
        }
        due
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // The browser's process tree goes with it (chromiumoxide kills the child on drop;
        // its renderers are killed here, by pid, in case they outlive it).
        if let Some(pid) = self.pid {
            kill_tree(pid);
        }
    }
}

/// The browser and its tabs.
pub struct Chromium {
    settings: BrowserSettings,
    tabs: Semaphore,
    live: Mutex<Option<Arc<Live>>>,
    /// Browsers started so far.
    pub launches: std::sync::atomic::AtomicU64,
}

impl Chromium {
    /// A browser to be started on first use, as `settings` say.
    pub fn new(settings: BrowserSettings) -> Chromium {
        Chromium {
            tabs: Semaphore::new(settings.render.tabs.max(1)),
            settings,
            live: Mutex::new(None),
            launches: Default::default(),
        }
    }

    /// Pages it renders at once.
    pub fn tabs(&self) -> usize {
        self.settings.render.tabs.max(1)
    }

    /// The memory of the running browser and its children, MiB (see [`tree_memory_mb`]);
    /// `None` when no browser runs.
    pub async fn memory_mb(&self) -> Option<u64> {
        let live = self.live.lock().await.clone()?;
        live.pid.map(tree_memory_mb)
    }

    /// Starts the browser now (a worker checks it can before it serves).
    pub async fn warm_up(&self) -> Result<(), RenderError> {
        self.browser().await.map(|_| ())
    }

    /// The browser to render in: the running one, unless it must be replaced.
    async fn browser(&self) -> Result<Arc<Live>, RenderError> {
        use std::sync::atomic::Ordering;
        let mut slot = self.live.lock().await;
        if let Some(live) = slot.as_ref() {
            let worn = live.pages.load(Ordering::Relaxed) >= self.settings.render.recycle.max(1);
            let heavy = live.pid.is_some_and(|pid| {
                live.memory_due() && tree_memory_mb(pid) > self.settings.render.max_mb
            });
            if *live.dead.borrow() || live.retired.load(Ordering::Relaxed) || worn || heavy {
                tracing::debug!(worn, heavy, "replacing the browser");
                *slot = None;
            }
        }
        if let Some(live) = slot.as_ref() {
            return Ok(live.clone());
        }
        let live = Arc::new(self.launch().await?);
        self.launches.fetch_add(1, Ordering::Relaxed);
        *slot = Some(live.clone());
        Ok(live)
    }

    async fn launch(&self) -> Result<Live, RenderError> {
        let s = &self.settings;
        let profile = tempfile::tempdir().map_err(|e| RenderError::Launch(e.to_string()))?;
        let executable = dying_with_the_worker(&s.render.chromium, profile.path())
            .map_err(|e| RenderError::Launch(e.to_string()))?;
        let mut builder = BrowserConfig::builder()
            .chrome_executable(&executable)
            .new_headless_mode()
            .user_data_dir(profile.path())
            // Each step is bounded by the page's own deadline (see `render`): the crate's
            // timeout only stops a command it lost track of.
            .request_timeout(Duration::from_secs(600))
            .launch_timeout(Duration::from_secs(20))
            .viewport(None)
            // Each flag as (name, value): chromiumoxide writes the leading dashes.
            .arg(("proxy-server", format!("http://{}", s.proxy).as_str()))
            // Chromium sends loopback past its proxy unless told not to.
            .arg(("proxy-bypass-list", "<-loopback>"))
            .arg("disable-quic")
            .arg("dns-prefetch-disable")
            .arg(("force-webrtc-ip-handling-policy", "disable_non_proxied_udp"))
            .arg((
                "js-flags",
                format!("--max-old-space-size={}", s.render.js_heap_mb.max(16)).as_str(),
            ))
            .arg("disable-dev-shm-usage");
        // disable-background-networking is among chromiumoxide's default flags.
        if running_as_root() {
            // Chromium's sandbox refuses root; see docs/rendering.md for the risk.
            builder = builder.no_sandbox();
        }
        let config = builder.build().map_err(RenderError::Launch)?;
        let (mut browser, mut handler) = Browser::launch(config)
            .await
            .map_err(|e| RenderError::Launch(e.to_string()))?;
        let (dead_tx, dead) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            // Polled for the browser's whole life; unknown messages are skipped.
            while let Some(event) = handler.next().await {
                if let Err(chromiumoxide::error::CdpError::Ws(_)) = event {
                    break;
                }
            }
            let _ = dead_tx.send(true);
        });
        let pid = browser
            .get_mut_child()
            .and_then(|child| child.as_mut_inner().id());
        let own = browser
            .user_agent()
            .await
            .map_err(|e| RenderError::Launch(e.to_string()))?;
        Ok(Live {
            browser,
            dead,
            pid,
            pages: Default::default(),
            retired: Default::default(),
            user_agent: format!("{own} {}", s.crawler).trim().to_owned(),
            memory_read: std::sync::Mutex::new(None),
            _profile: profile,
        })
    }

    /// Renders `url` as `spec` says, by `deadline`.
    pub async fn render(
        &self,
        url: &str,
        spec: &RenderSpec,
        deadline: Instant,
    ) -> Result<Rendered, RenderError> {
        use std::sync::atomic::Ordering;
        let left = || deadline.saturating_duration_since(Instant::now());
        let _tab = tokio::time::timeout(left(), self.tabs.acquire())
            .await
            .map_err(|_| RenderError::Timeout)?
            .map_err(|_| RenderError::Crashed)?;
        // Render time runs from the tab, not from the wait for one.
        let started = Instant::now();
        let live = self.browser().await?;
        live.pages.fetch_add(1, Ordering::Relaxed);
        // The page's own work ends before the deadline, leaving time to tell a page that
        // never loads from a script that never yields (PROBE), and to close the tab (CLOSE).
        let inner = left().saturating_sub(PROBE + CLOSE);
        let page = tokio::time::timeout(inner, live.browser.new_page("about:blank"))
            .await
            .map_err(|_| RenderError::Timeout)?
            .map_err(|e| RenderError::Navigation(e.to_string()))?;
        let target = page.target_id().clone();
        let inner = left().saturating_sub(PROBE + CLOSE);
        let mut crashes = page
            .event_listener::<EventTargetCrashed>()
            .await
            .map_err(|e| RenderError::Navigation(e.to_string()))?;
        let _ = page.execute(InspectorEnable::default()).await;
        let result = tokio::select! {
            done = tokio::time::timeout(inner, self.render_in(&page, url, spec, &live, deadline)) => match done {
                Ok(rendered) => rendered,
                Err(_) => {
                    // Past its time: a renderer that still answers had a page that never
                    // loaded; one that does not is running a script that never yields (the
                    // browser is replaced then: its renderer is spinning).
                    let answers = tokio::time::timeout(PROBE, page.evaluate("1")).await;
                    match answers {
                        Ok(Ok(_)) => Err(RenderError::Timeout),
                        _ => {
                            live.retired.store(true, Ordering::Relaxed);
                            Err(RenderError::ScriptHung)
                        }
                    }
                }
            },
            Some(_) = crashes.next() => Err(RenderError::Crashed),
        };
        // A tab per page: closed by its target, which works while its script still runs.
        let closed =
            tokio::time::timeout(CLOSE, live.browser.execute(CloseTargetParams::new(target))).await;
        if !matches!(closed, Ok(Ok(_))) {
            live.retired.store(true, Ordering::Relaxed);
        }
        let exited = *live.dead.borrow();
        if exited || matches!(result, Err(RenderError::Crashed)) {
            // The browser is replaced: it is gone, or the page's renderer died (out of
            // memory, say).
            live.retired.store(true, Ordering::Relaxed);
        }
        match result {
            // Rendered before the browser went: the page is had.
            Ok(mut rendered) => {
                rendered.render_ms = started.elapsed().as_millis() as u64;
                Ok(rendered)
            }
            // The page's own renderer crashed: the page's fault, as far as anyone can tell.
            Err(RenderError::Crashed) => Err(RenderError::Crashed),
            // The whole browser went, with every page in it: no page's fault in particular.
            Err(_) if exited => Err(RenderError::BrowserExited),
            Err(e) => Err(e),
        }
    }

    async fn render_in(
        &self,
        page: &chromiumoxide::Page,
        url: &str,
        spec: &RenderSpec,
        live: &Live,
        deadline: Instant,
    ) -> Result<Rendered, RenderError> {
        let nav = |e: chromiumoxide::error::CdpError| RenderError::Navigation(e.to_string());
        page.set_user_agent(live.user_agent.as_str())
            .await
            .map_err(nav)?;
        let main_frame = page.mainframe().await.map_err(nav)?;
        let intercepting = Intercepting::start(
            page,
            main_frame,
            Interception {
                page_url: url.to_owned(),
                block_heavy: !spec.all_resources,
                archive: self.settings.archive.clone(),
                max_body_bytes: self.settings.max_body_bytes,
                // The page's own work ends before its deadline (see `render`).
                deadline: deadline.checked_sub(PROBE + CLOSE).unwrap_or(deadline),
            },
        )
        .await?;
        // The page loads and waits, unless its load ends early (sent elsewhere, too large).
        let loaded = tokio::select! {
            loaded = load(page, url, spec) => loaded,
            () = intercepting.stopped() => Ok(()),
        };
        if let Some(stopped) = stopped_early(&intercepting, url, self.settings.max_body_bytes) {
            return stopped;
        }
        loaded?;
        let html = page.content().await.map_err(nav);
        // Sent elsewhere while its DOM was taken (a timer, an onload): a redirect all the
        // same, whether the DOM could be had or not.
        if let Some(stopped) = stopped_early(&intercepting, url, self.settings.max_body_bytes) {
            return stopped;
        }
        let html = html?;
        let final_url = page
            .url()
            .await
            .map_err(nav)?
            .unwrap_or_else(|| url.to_owned());
        Ok(Rendered {
            html,
            final_url,
            redirect: None,
            // No response seen (a page answered from the browser itself): as loaded.
            status: intercepting.main().status.unwrap_or(200),
            render_ms: 0,
        })
    }
}

/// How the page's render ends when its interception stopped it, or an archive write failed:
/// a redirect, `too_large` or `archive_failed`; `None` when it goes on.
fn stopped_early(
    intercepting: &Intercepting,
    url: &str,
    limit: u64,
) -> Option<Result<Rendered, RenderError>> {
    if let Some(failed) = intercepting.archive_failure() {
        return Some(Err(RenderError::Archive(failed)));
    }
    let main = intercepting.main();
    if main.too_large {
        return Some(Err(RenderError::TooLarge { limit }));
    }
    if main.broke_off {
        return Some(Err(RenderError::Navigation(
            "the page's response broke off".into(),
        )));
    }
    let target = main.redirect?;
    Some(Ok(Rendered {
        html: String::new(),
        final_url: url.to_owned(),
        redirect: Some(target),
        // A redirect, or the page's own status when a script navigated away.
        status: main.status.unwrap_or(302),
        render_ms: 0,
    }))
}

/// Navigates `page` to `url`, waits as `spec` says, and scrolls.
async fn load(page: &chromiumoxide::Page, url: &str, spec: &RenderSpec) -> Result<(), RenderError> {
    let nav = |e: chromiumoxide::error::CdpError| RenderError::Navigation(e.to_string());
    match &spec.wait {
        Wait::Load => {
            page.goto(url).await.map_err(nav)?;
        }
        Wait::NetworkIdle => {
            page.goto(url).await.map_err(nav)?;
            wait_quiet(page).await;
        }
        Wait::Selector(selector) => {
            let navigated = page.execute(NavigateParams::new(url)).await.map_err(nav)?;
            if let Some(error) = navigated.result.error_text.clone() {
                return Err(RenderError::Navigation(error));
            }
            wait_for_selector(page, selector, spec.wait_ms).await?;
        }
    }
    for _ in 0..spec.scroll {
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            .await
            .map_err(nav)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

/// Waits until `selector` matches in `page`, up to `cap_ms` (0: until the deadline).
async fn wait_for_selector(
    page: &chromiumoxide::Page,
    selector: &str,
    cap_ms: u64,
) -> Result<(), RenderError> {
    let probe = format!(
        "document.querySelector({}) !== null",
        serde_json::to_string(selector).unwrap_or_default()
    );
    let cap = (cap_ms > 0).then(|| Instant::now() + Duration::from_millis(cap_ms));
    loop {
        let found = page
            .evaluate(probe.as_str())
            .await
            .ok()
            .and_then(|r| r.into_value::<bool>().ok())
            .unwrap_or(false);
        if found || cap.is_some_and(|cap| Instant::now() >= cap) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits a little for the page's network to go quiet: half a second with no request
/// started, as the page's resource timing says, or two seconds at most.
async fn wait_quiet(page: &chromiumoxide::Page) {
    let count = "performance.getEntriesByType('resource').length";
    let until = Instant::now() + Duration::from_secs(2);
    let mut last = -1i64;
    while Instant::now() < until {
        let now = page
            .evaluate(count)
            .await
            .ok()
            .and_then(|r| r.into_value::<i64>().ok())
            .unwrap_or(0);
        if now == last {
            return;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
