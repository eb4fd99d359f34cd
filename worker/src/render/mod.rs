//! Rendering pages that build their content in the browser: headless Chromium behind the
//! worker's address guard ([`proxy`]), with a bounded set of tabs and a browser recycled
//! when it is worn, heavy, crashed or hung ([`browser`]). The rendered DOM goes to the same
//! parsers and spider rules as a fetched page.

pub mod archive;
pub mod browser;
pub mod capture;
pub mod process;
pub mod proxy;

/// What a page waits for before its DOM is taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The load event.
    Load,
    /// The load event, then the network quiet for a moment.
    NetworkIdle,
    /// An element matching this CSS selector (with the spec's `wait_ms` as a cap).
    Selector(String),
}

/// How a page is rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderSpec {
    /// What to wait for.
    pub wait: Wait,
    /// The longest wait for the selector, ms (0: the request's deadline).
    pub wait_ms: u64,
    /// Times to scroll to the bottom, for lazy lists.
    pub scroll: u32,
    /// Whether images, fonts and media are downloaded too.
    pub all_resources: bool,
}

impl Default for RenderSpec {
    fn default() -> Self {
        RenderSpec {
            wait: Wait::Load,
            wait_ms: 0,
            scroll: 0,
            all_resources: false,
        }
    }
}

/// A rendered page.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The DOM, serialised after the wait.
    pub html: String,
    /// The page's URL at the end (after `history.pushState` or a change of fragment).
    pub final_url: String,
    /// Where the page sent the browser instead (an HTTP redirect of its own response, or a
    /// script or meta refresh navigating its frame elsewhere): reported to the engine as a
    /// plain fetch's redirect, with no DOM.
    pub redirect: Option<String>,
    /// The HTTP status of the main document's response.
    pub status: u16,
    /// Time from taking a tab to the DOM, ms.
    pub render_ms: u64,
}

/// Why a page was not rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The browser could not be started.
    #[error("chromium could not be started: {0}")]
    Launch(String),
    /// The browser crashed (or was killed) while rendering the page.
    #[error("the browser crashed while rendering the page")]
    Crashed,
    /// The page did not render by its deadline (it never loaded, or its script never
    /// yielded).
    #[error("the page did not render by its deadline")]
    Timeout,
    /// The page's script never yielded: its renderer stopped answering.
    #[error("the page's script did not yield by its deadline")]
    ScriptHung,
    /// The browser refused a step (a navigation that failed, a command it did not answer).
    #[error("the browser failed: {0}")]
    Navigation(String),
    /// A response the browser received could not be written to the WARC archive.
    #[error(transparent)]
    Archive(#[from] crate::warc::WarcError),
    /// The page's own body passed the body limit.
    #[error("the page is over the body limit of {limit} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit: u64,
    },
    /// The browser exited (or its connection broke) while rendering the page, with every
    /// page in it.
    #[error("the browser exited while rendering the page")]
    BrowserExited,
}

/// A worker's renderer: the browser, and the guard proxy that is its only way out.
pub struct Renderer {
    chromium: std::sync::Arc<browser::Chromium>,
    _proxy: proxy::GuardProxy,
}

/// How a rendering worker is set up (`worker --render` and its flags).
#[derive(Clone, Debug)]
pub struct RenderSettings {
    /// The Chromium executable.
    pub chromium: std::path::PathBuf,
    /// Pages rendered at once.
    pub tabs: usize,
    /// Pages a browser renders before it is replaced.
    pub recycle: u64,
    /// Memory past which the browser is replaced, MiB.
    pub max_mb: u64,
    /// Each page's JavaScript heap, MiB.
    pub js_heap_mb: u64,
}

impl Renderer {
    /// Starts the guard proxy (applying the fetcher's address policy) and the browser, so
    /// that a worker that cannot render says so at start. The browser keeps the fetcher's
    /// limits, archive and User-Agent (after its own, so that sites see a browser and the
    /// crawler it works for, and robots.txt is obeyed for the name it announces).
    pub async fn start(
        settings: RenderSettings,
        fetcher: &crate::fetch::Fetcher,
    ) -> Result<Renderer, RenderError> {
        let config = fetcher.config();
        let proxy =
            proxy::GuardProxy::start(config.addresses.clone(), proxy::ProxyLimits::default())
                .await
                .map_err(|e| RenderError::Launch(format!("the browser's proxy: {e}")))?;
        let chromium = browser::Chromium::new(browser::BrowserSettings {
            render: settings,
            proxy: proxy.addr(),
            crawler: config.user_agent.clone(),
            max_body_bytes: config.max_body_bytes,
            archive: fetcher.warc_writer().map(|writer| archive::Archive {
                writer,
                subresources: config.warc.as_ref().is_some_and(|w| w.subresources),
            }),
        });
        chromium.warm_up().await?;
        Ok(Renderer {
            chromium: std::sync::Arc::new(chromium),
            _proxy: proxy,
        })
    }

    /// Pages it renders at once (its tabs).
    pub fn tabs(&self) -> u32 {
        u32::try_from(self.chromium.tabs()).unwrap_or(u32::MAX)
    }

    /// Renders `url` as the request asks, by `deadline`.
    pub async fn render(
        &self,
        url: &str,
        how: &common::RenderRequest,
        deadline: std::time::Instant,
    ) -> Result<Rendered, RenderError> {
        let spec = RenderSpec {
            wait: match &how.wait {
                common::RenderWait::Load => Wait::Load,
                common::RenderWait::NetworkIdle => Wait::NetworkIdle,
                common::RenderWait::Selector(s) => Wait::Selector(s.clone()),
            },
            wait_ms: how.wait_ms,
            scroll: how.scroll,
            all_resources: how.all_resources,
        };
        // On a task of its own: a call the engine gave up on (its deadline, a killed task)
        // still closes its tab and retires a hung browser.
        let chromium = self.chromium.clone();
        let url = url.to_owned();
        tokio::spawn(async move { chromium.render(&url, &spec, deadline).await })
            .await
            // A panic in the render: not the page's fault, as far as anyone can tell.
            .unwrap_or_else(|e| Err(RenderError::Navigation(format!("the render failed: {e}"))))
    }
}

impl From<RenderError> for common::FetchError {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::Crashed => common::FetchError::RenderCrashed,
            RenderError::ScriptHung => common::FetchError::RenderHung,
            RenderError::Timeout => common::FetchError::RenderTimeout,
            RenderError::Archive(e) => common::FetchError::Archive(e.to_string()),
            RenderError::TooLarge { limit } => common::FetchError::TooLarge { limit },
            other => common::FetchError::Render(other.to_string()),
        }
    }
}
