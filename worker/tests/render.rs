//! Rendering against real headless Chromium and the scripted test site: what a plain fetch
//! cannot see, the rendered DOM holds; the address guard holds for the browser's own
//! requests; a page that never loads fails by its deadline.

use spinneret_tests::scripted::{self, ScriptedSite};
use spinneret_tests::warc::{records as warc_records, response_of};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use worker::addresses::AddressPolicy;
use worker::render::archive::Archive;
use worker::render::browser::{BrowserSettings, Chromium};
use worker::render::proxy::{GuardProxy, ProxyLimits};
use worker::render::{RenderError, RenderSettings, RenderSpec, Wait};
use worker::warc::{DEFAULT_MAX_BYTES, WarcConfig, WarcWriter};

async fn chromium(policy: AddressPolicy) -> (Chromium, GuardProxy) {
    chromium_with(policy, |_| {}).await
}

/// A browser behind a guard proxy applying `policy`, its settings changed by `change`.
async fn chromium_with(
    policy: AddressPolicy,
    change: impl FnOnce(&mut BrowserSettings),
) -> (Chromium, GuardProxy) {
    let path = spinneret_tests::require_program("CHROMIUM", "/usr/lib/chromium/chromium");
    let proxy = GuardProxy::start(policy, ProxyLimits::default())
        .await
        .expect("proxy");
    let mut settings = BrowserSettings {
        render: RenderSettings {
            chromium: path,
            tabs: 2,
            recycle: 50,
            max_mb: 2048,
            js_heap_mb: 64,
        },
        proxy: proxy.addr(),
        crawler: "Spinneret-test".into(),
        max_body_bytes: 1 << 20,
        archive: None,
    };
    change(&mut settings);
    let browser = Chromium::new(settings);
    // Started before the clock of any deadline runs.
    browser.warm_up().await.expect("chromium starts");
    (browser, proxy)
}

fn loopback() -> AddressPolicy {
    AddressPolicy {
        allowed: vec!["127.0.0.1/32".parse().expect("net")],
        ..AddressPolicy::default()
    }
}

#[tokio::test]
async fn the_rendered_listing_holds_what_its_script_wrote_and_scrolling_loads_more() {
    let site = ScriptedSite::start().await.expect("site");
    let (browser, _proxy) = chromium(loopback()).await;
    let spec = RenderSpec {
        wait: Wait::Selector("div.product".into()),
        wait_ms: 5_000,
        scroll: 2,
        ..RenderSpec::default()
    };
    let rendered = browser
        .render(
            &site.url("/"),
            &spec,
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .expect("rendered");
    for i in 0..scripted::PRODUCTS {
        assert!(
            rendered.html.contains(&scripted::product_name(i)),
            "product {i} missing from {}",
            rendered.html
        );
    }
    assert!(
        rendered.html.contains("href=\"/later\""),
        "{}",
        rendered.html
    );
}

#[tokio::test]
async fn a_page_that_never_loads_fails_by_its_deadline_and_the_next_renders() {
    let site = ScriptedSite::start().await.expect("site");
    let (browser, _proxy) = chromium(loopback()).await;
    let started = Instant::now();
    let spec = RenderSpec {
        all_resources: true,
        ..RenderSpec::default()
    };
    let error = browser
        .render(
            &site.url("/never-loads"),
            &spec,
            Instant::now() + Duration::from_secs(3),
        )
        .await
        .expect_err("never loads");
    assert!(matches!(error, RenderError::Timeout), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let rendered = browser
        .render(
            &site.url("/item/1"),
            &RenderSpec::default(),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .expect("the next page renders");
    assert!(rendered.html.contains(&scripted::product_name(1)));
}

#[tokio::test]
async fn the_browsers_own_requests_pass_the_address_guard() {
    // The page is on 127.0.0.1, allowed; its script asks 127.0.0.2, which is not.
    let site = ScriptedSite::start().await.expect("site");
    let secret = ScriptedSite::start_on("127.0.0.2")
        .await
        .expect("second site");
    let (browser, proxy) = chromium(loopback()).await;
    let probe = site.url(&format!("/probe?target={}", secret.url("/secret")));
    let spec = RenderSpec {
        wait: Wait::NetworkIdle,
        all_resources: true,
        ..RenderSpec::default()
    };
    browser
        .render(&probe, &spec, Instant::now() + Duration::from_secs(30))
        .await
        .expect("rendered");
    assert_eq!(secret.hits().get("/secret"), None, "{:?}", secret.hits());
    assert!(
        proxy
            .stats()
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn an_endless_script_and_endless_allocation_fail_with_their_own_reasons() {
    let site = ScriptedSite::start().await.expect("site");
    // A low cap and a small JavaScript heap (64 MiB), as a worker short of memory runs.
    const CAP_MB: u64 = 768;
    let (browser, _proxy) = chromium_with(loopback(), |s| s.render.max_mb = CAP_MB).await;
    let launched = browser.launches.load(Ordering::Relaxed);
    let error = browser
        .render(
            &site.url("/loop"),
            &RenderSpec::default(),
            Instant::now() + Duration::from_secs(8),
        )
        .await
        .expect_err("never yields");
    assert!(matches!(error, RenderError::ScriptHung), "{error}");
    let started = Instant::now();
    let error = browser
        .render(
            &site.url("/memory"),
            &RenderSpec::default(),
            Instant::now() + Duration::from_secs(20),
        )
        .await
        .expect_err("runs out of memory");
    assert!(matches!(error, RenderError::Crashed), "{error}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // A fresh browser takes the next page.
    let rendered = browser
        .render(
            &site.url("/item/2"),
            &RenderSpec::default(),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .expect("the next page renders");
    assert!(rendered.html.contains(&scripted::product_name(2)));
    // Each failure retired its browser: the memory page ran in a second one, the next page
    // in a third.
    assert_eq!(browser.launches.load(Ordering::Relaxed), launched + 2);
    // The browser that hoarded memory is gone: the one running now is under the cap.
    let memory = browser.memory_mb().await.expect("a browser runs");
    assert!(memory < CAP_MB, "{memory} MiB after the recycle");
}

#[tokio::test]
async fn a_rendered_page_carries_its_documents_status() {
    let site = ScriptedSite::start().await.expect("site");
    let (browser, _proxy) = chromium(loopback()).await;
    let deadline = || Instant::now() + Duration::from_secs(30);
    let ok = browser
        .render(&site.url("/item/3"), &RenderSpec::default(), deadline())
        .await
        .expect("rendered");
    assert_eq!(ok.status, 200);
    let gone = browser
        .render(&site.url("/gone"), &RenderSpec::default(), deadline())
        .await
        .expect("rendered");
    assert_eq!(gone.status, 404, "{}", gone.html);
}

#[tokio::test]
async fn a_redirect_or_a_navigation_elsewhere_is_reported_and_not_followed() {
    let site = ScriptedSite::start().await.expect("site");
    let (browser, _proxy) = chromium(loopback()).await;
    let deadline = || Instant::now() + Duration::from_secs(30);
    let moved = browser
        .render(&site.url("/moved"), &RenderSpec::default(), deadline())
        .await
        .expect("rendered");
    assert_eq!(
        moved.redirect.as_deref(),
        Some(site.url("/item/1").as_str())
    );
    assert_eq!(moved.status, 302);
    let away = browser
        .render(&site.url("/away"), &RenderSpec::default(), deadline())
        .await
        .expect("rendered");
    assert_eq!(away.redirect.as_deref(), Some(site.url("/item/2").as_str()));
    // The engine decides whether to follow: the browser asked for neither target.
    let hits = site.hits();
    assert_eq!(hits.get("/item/1"), None, "{hits:?}");
    assert_eq!(hits.get("/item/2"), None, "{hits:?}");
    // A page that stays is not a redirect, and its requests name the crawler after the
    // browser.
    let stays = browser
        .render(&site.url("/item/3"), &RenderSpec::default(), deadline())
        .await
        .expect("rendered");
    assert_eq!(stays.redirect, None);
    // A page that reloads itself (a script challenge, say) is no redirect: it renders.
    let reloads = browser
        .render(&site.url("/reload"), &RenderSpec::default(), deadline())
        .await
        .expect("rendered");
    assert_eq!(reloads.redirect, None);
    assert!(reloads.html.contains("Reloaded"), "{}", reloads.html);
    // A challenge answers 503 and reloads: the page's status is the reload's.
    let challenged = browser
        .render(&site.url("/challenge"), &RenderSpec::default(), deadline())
        .await
        .expect("rendered");
    assert_eq!(
        (challenged.status, challenged.redirect.as_deref()),
        (200, None),
        "{}",
        challenged.html
    );
    assert!(
        challenged.html.contains("Passed the challenge"),
        "{}",
        challenged.html
    );
    let agents = site.agents();
    let agent = agents["/item/3"].iter().next().expect("an agent");
    assert!(
        agent.contains("HeadlessChrome") && agent.ends_with(" Spinneret-test"),
        "{agent}"
    );
}

#[tokio::test]
async fn the_pages_own_response_is_archived_and_its_subrequests_when_asked() {
    let site = ScriptedSite::start().await.expect("site");
    let deadline = || Instant::now() + Duration::from_secs(30);
    let base = site.url("");
    let base = base.trim_end_matches('/');
    for subresources in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = WarcWriter::new(WarcConfig {
            dir: dir.path().to_path_buf(),
            max_bytes: DEFAULT_MAX_BYTES,
            subresources,
        })
        .expect("writer");
        let (browser, _proxy) = chromium_with(loopback(), |s| {
            s.archive = Some(Archive {
                writer: Arc::new(writer),
                subresources,
            })
        })
        .await;
        let rendered = browser
            .render(&site.url("/scripted"), &RenderSpec::default(), deadline())
            .await
            .expect("rendered");
        assert!(rendered.html.contains("From app.js"), "{}", rendered.html);
        browser
            .render(&site.url("/moved"), &RenderSpec::default(), deadline())
            .await
            .expect("rendered");
        let records = warc_records(dir.path());
        // The page as the server sent it, not the DOM its script made.
        let page = response_of(&records, base, "/scripted");
        assert!(page.contains("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("<script src=\"/app.js\">"), "{page}");
        assert!(!page.contains("From app.js"), "{page}");
        let request = records
            .iter()
            .find(|r| r.contains("WARC-Type: request\r\n") && r.contains("GET /scripted "))
            .expect("its request record");
        assert!(request.contains("HeadlessChrome"), "{request}");
        let moved = response_of(&records, base, "/moved");
        assert!(moved.contains("HTTP/1.1 302 Found\r\n"), "{moved}");
        assert!(moved.contains("location: /item/1\r\n"), "{moved}");
        let script = format!("WARC-Target-URI: {base}/app.js\r\n");
        let archived = records.iter().any(|r| r.contains(&script));
        assert_eq!(archived, subresources, "/app.js archived: {archived}");
        if subresources {
            assert!(response_of(&records, base, "/app.js").contains("From app.js"));
        }
    }
}

#[tokio::test]
async fn a_browser_past_its_memory_cap_is_replaced_before_its_next_page() {
    let site = ScriptedSite::start().await.expect("site");
    // Any browser weighs more than a megabyte: each page starts a fresh one.
    let (browser, _proxy) = chromium_with(loopback(), |s| s.render.max_mb = 1).await;
    let before = browser.launches.load(Ordering::Relaxed);
    for i in 0..3 {
        browser
            .render(
                &site.url(&format!("/item/{i}")),
                &RenderSpec::default(),
                Instant::now() + Duration::from_secs(30),
            )
            .await
            .expect("rendered");
    }
    assert_eq!(browser.launches.load(Ordering::Relaxed), before + 3);
}

#[tokio::test]
async fn archiving_bounds_bodies_keeps_posts_and_never_waits_on_a_stream() {
    let site = ScriptedSite::start().await.expect("site");
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = WarcWriter::new(WarcConfig {
        dir: dir.path().to_path_buf(),
        max_bytes: DEFAULT_MAX_BYTES,
        subresources: true,
    })
    .expect("writer");
    let (browser, _proxy) = chromium_with(loopback(), |s| {
        s.max_body_bytes = (scripted::BIG_BYTES / 2) as u64;
        s.archive = Some(Archive {
            writer: Arc::new(writer),
            subresources: true,
        })
    })
    .await;
    let deadline = || Instant::now() + Duration::from_secs(20);
    let base = site.url("");
    let base = base.trim_end_matches('/');
    // A page over the body limit fails as a plain fetch's would; its record is cut there.
    let error = browser
        .render(&site.url("/big"), &RenderSpec::default(), deadline())
        .await
        .expect_err("too large");
    assert!(matches!(error, RenderError::TooLarge { .. }), "{error}");
    let records = warc_records(dir.path());
    let big = response_of(&records, base, "/big");
    assert!(big.contains("WARC-Truncated: length\r\n"), "{big}");
    // A request's body is archived with it.
    browser
        .render(&site.url("/post"), &RenderSpec::default(), deadline())
        .await
        .expect("rendered");
    let records = warc_records(dir.path());
    let post = records
        .iter()
        .find(|r| r.contains("WARC-Type: request\r\n") && r.contains("POST /item/1 HTTP/1.1"))
        .expect("the POST's request record");
    assert!(post.ends_with("\r\n\r\nq=1\r\n\r\n"), "{post}");
    // An event stream never ends: its headers are archived, and the page's other requests
    // do not wait on it.
    let events = browser
        .render(&site.url("/events"), &RenderSpec::default(), deadline())
        .await
        .expect("rendered");
    assert!(events.html.contains("From app.js"), "{}", events.html);
    let records = warc_records(dir.path());
    let stream = response_of(&records, base, "/stream");
    assert!(
        stream.contains("WARC-Truncated: unspecified\r\n"),
        "{stream}"
    );
}
