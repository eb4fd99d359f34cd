//! Rendering pages that build their content in the browser: headless Chromium behind the
//! worker's address guard ([`proxy`]), with a bounded set of tabs and a browser recycled
//! when it is worn, heavy, crashed or hung ([`browser`]). The rendered DOM goes to the same
//! parsers and spider rules as a fetched page.

pub mod browser;
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
    /// The page's URL at the end (after redirects and script navigation).
    pub final_url: String,
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
}
