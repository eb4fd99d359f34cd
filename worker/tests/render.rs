//! Rendering against real headless Chromium and the scripted test site: what a plain fetch
//! cannot see, the rendered DOM holds; the address guard holds for the browser's own
//! requests; a page that never loads fails by its deadline.

use spinneret_tests::scripted::{self, ScriptedSite};
use std::time::{Duration, Instant};
use worker::addresses::AddressPolicy;
use worker::render::browser::{BrowserSettings, Chromium};
use worker::render::proxy::{GuardProxy, ProxyLimits};
use worker::render::{RenderError, RenderSpec, Wait};

async fn chromium(policy: AddressPolicy) -> (Chromium, GuardProxy) {
    let path = spinneret_tests::require_program("CHROMIUM", "/usr/lib/chromium/chromium");
    let proxy = GuardProxy::start(policy, ProxyLimits::default())
        .await
        .expect("proxy");
    let browser = Chromium::new(BrowserSettings {
        chromium: path,
        tabs: 2,
        recycle: 50,
        max_mb: 2048,
        js_heap_mb: 64,
        proxy: proxy.addr(),
    });
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
    let (browser, _proxy) = chromium(loopback()).await;
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
