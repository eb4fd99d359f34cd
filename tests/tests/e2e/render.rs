//! Rendering end to end: a spider whose rules render crawls the scripted shop and finds
//! what its scripts made; without rendering it finds none.

use spinneret_tests::binaries::{Server, export, run_engine};
use spinneret_tests::scripted::{self, ScriptedSite};
use std::collections::BTreeSet;

/// A spider for the scripted shop; `render` says whether its rules render.
fn shop_spider(site: &ScriptedSite, render: bool) -> String {
    let render_listing = if render {
        "render = true\nwait_for = \"div.product\"\nwait_ms = 5000\nscroll = 2\n"
    } else {
        ""
    };
    let render_item = if render {
        "render = true\nwait_for = \".product\"\nwait_ms = 5000\n"
    } else {
        ""
    };
    format!(
        r#"name = "shop"
start_urls = ["{start}"]

[[rule]]
name = "listing"
{render_listing}
[[rule.follow]]
selector = "div.product a"
rule = "item"

[[rule.follow]]
selector = "a[href='/later']"
rule = "item"

[[rule]]
name = "item"
{render_item}
[[rule.extract]]
kind = "product"
fields.name = {{ selector = ".product", required = true }}
"#,
        start = site.url("/"),
    )
}

/// The products' names stored, and the pages they came from.
fn names(items: &[serde_json::Value]) -> BTreeSet<String> {
    items
        .iter()
        .filter(|i| i["kind"] == "product")
        .map(|i| i["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn expected() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = (0..scripted::PRODUCTS)
        .map(scripted::product_name)
        .collect();
    names.insert("Found later".into());
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendering_spider_finds_what_scripts_made_and_a_plain_one_finds_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = ScriptedSite::start().await.expect("site");
    for (render, task) in [(true, "rendered"), (false, "plain")] {
        let spider = dir.path().join(format!("{task}.toml"));
        std::fs::write(&spider, shop_spider(&site, render)).expect("spider");
        let store = dir.path().join(format!("{task}.db"));
        let run = run_engine(
            dir.path(),
            &[
                format!("--spider={}", spider.display()),
                format!("--store={}", store.display()),
                format!("--task={task}"),
                "--no_state".into(),
            ],
        )
        .await;
        assert!(run.status.success(), "{}", run.stderr);
        let items = export(&store).await;
        if render {
            assert_eq!(
                names(&items),
                expected(),
                "{items:?}\n{}\n{}",
                run.stdout,
                run.stderr
            );
        } else {
            assert_eq!(names(&items), BTreeSet::new(), "{items:?}");
        }
    }
}

/// Crawls with `spider` through an itemsaver and a worker that renders (preceded by a plain
/// one when `with_plain`), all in `dir`; returns the run and the store.
async fn distributed_crawl(
    dir: &std::path::Path,
    spider: &std::path::Path,
    with_plain: bool,
) -> (spinneret_tests::binaries::EngineRun, std::path::PathBuf) {
    let store = dir.join("items.db");
    let store_arg = store.display().to_string();
    let saver = Server::start("itemsaver", &["--store", &store_arg], dir).await;
    let guard = ["--allow_addr", "127.0.0.1/32"];
    let plain = match with_plain {
        true => Some(Server::start("worker", &guard, dir).await),
        false => None,
    };
    let renderer = Server::start("worker", &["--render", guard[0], guard[1]], dir).await;
    // The plain worker first: its slots come first, so a page routed wrongly would meet it.
    let workers: Vec<&str> = plain
        .iter()
        .chain([&renderer])
        .map(|w| w.addr.as_str())
        .collect();
    let run = run_engine(
        dir,
        &[
            format!("--spider={}", spider.display()),
            format!("--itemsaver_host={}", saver.addr),
            format!("--worker_hosts={}", workers.join(",")),
            "--no_state".into(),
        ],
    )
    .await;
    (run, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendering_worker_gives_the_same_items_as_the_engines_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = ScriptedSite::start().await.expect("site");
    let spider = dir.path().join("shop.toml");
    std::fs::write(&spider, shop_spider(&site, true)).expect("spider");
    let (run, store) = distributed_crawl(dir.path(), &spider, false).await;
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(names(&export(&store).await), expected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_pages_go_only_to_the_worker_that_renders_and_plain_pages_to_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = ScriptedSite::start().await.expect("site");
    // The listing renders; the item pages are fetched plainly (their names are in a script,
    // so only the listing's links are checked here).
    let spider = format!(
        r#"name = "shop"
start_urls = ["{start}"]

[[rule]]
name = "listing"
render = true
wait_for = "div.product"
wait_ms = 5000
scroll = 2

[[rule.follow]]
selector = "div.product a"
rule = "item"

[[rule]]
name = "item"

[[rule.extract]]
kind = "page"
fields.title = {{ selector = "title", required = true }}
"#,
        start = site.url("/"),
    );
    let path = dir.path().join("shop.toml");
    std::fs::write(&path, spider).expect("spider");
    let (run, store) = distributed_crawl(dir.path(), &path, true).await;
    assert!(run.status.success(), "{}", run.stderr);
    let summary = run.summary.expect("summary");
    assert_eq!(
        summary["pages_failed"],
        serde_json::json!({}),
        "{summary:#}"
    );
    // Every item page was stored: the rendered listing's links were all followed.
    let titles: BTreeSet<String> = export(&store)
        .await
        .iter()
        .filter_map(|i| i["title"].as_str().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = (0..scripted::PRODUCTS)
        .map(|i| format!("Item {i}"))
        .collect();
    assert_eq!(titles, expected);
    // The listing was only ever requested by a browser: the rendering worker's.
    let agents = site.agents();
    assert!(
        agents["/"].iter().all(|a| a.contains("HeadlessChrome")),
        "{agents:?}"
    );
    // Plain pages went to both workers.
    let workers = summary["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2, "{summary:#}");
    for w in workers {
        assert!(w["requests"].as_u64().unwrap_or(0) > 0, "{summary:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_crashes_its_browser_is_given_up_as_a_poison_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = ScriptedSite::start().await.expect("site");
    let run = run_engine(
        dir.path(),
        &[
            "--render".into(),
            format!("--seed={}", site.url("/memory")),
            format!("--seed={}", site.url("/item/1")),
            "--max_worker_deaths=2".into(),
            "--no_state".into(),
        ],
    )
    .await;
    let summary = run.summary();
    // Two browsers died holding it, and it spent no retry; the other page was unharmed.
    assert_eq!(
        summary["pages_failed"],
        serde_json::json!({"poison_page": 1}),
        "{summary:#}"
    );
    assert_eq!(summary["pages_ok"], 1, "{summary:#}");
    assert_eq!(summary["retries"], 0, "{summary:#}");
    assert_eq!(summary["worker_retries"], 1, "{summary:#}");
    assert_eq!(site.hits()["/memory"], 2, "{:?}", site.hits());
    assert!(run.stderr.contains("render_crashed"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendered_pages_redirects_go_through_the_engine_like_a_plain_fetchs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = ScriptedSite::start().await.expect("site");
    let run = run_engine(
        dir.path(),
        &[
            "--render".into(),
            // One by HTTP, one by script: each target is crawled once, as a page of its own.
            format!("--seed={}", site.url("/moved")),
            format!("--seed={}", site.url("/away")),
            "--no_state".into(),
        ],
    )
    .await;
    let summary = run.summary();
    assert_eq!(summary["pages_redirected"], 2, "{summary:#}");
    assert_eq!(summary["pages_ok"], 2, "{summary:#}");
    let hits = site.hits();
    assert_eq!((hits["/item/1"], hits["/item/2"]), (1, 1), "{hits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_waiting_for_a_busy_renderer_count_once_against_their_hosts_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = ScriptedSite::start().await.expect("site");
    let store = dir.path().join("items.db");
    let saver = Server::start(
        "itemsaver",
        &["--store", &store.display().to_string()],
        dir.path(),
    )
    .await;
    let guard = ["--allow_addr", "127.0.0.1/32"];
    let plain = Server::start("worker", &guard, dir.path()).await;
    // One page at a time: the pages to render that meet the plain worker's free slots go
    // back to wait, again and again.
    let renderer = Server::start(
        "worker",
        &["--render", "--concurrency", "1", guard[0], guard[1]],
        dir.path(),
    )
    .await;
    let spider = dir.path().join("shop.toml");
    std::fs::write(&spider, shop_spider(&site, true)).expect("spider");
    let run = run_engine(
        dir.path(),
        &[
            format!("--spider={}", spider.display()),
            format!("--itemsaver_host={}", saver.addr),
            format!("--worker_hosts={},{}", plain.addr, renderer.addr),
            "--max_pages_per_host=6".into(),
            "--no_state".into(),
        ],
    )
    .await;
    let summary = run.summary();
    // The listing links to eleven pages, each rendered: six are fetched, however often
    // they waited.
    assert_eq!(summary["pages_ok"], 6, "{summary:#}");
}
