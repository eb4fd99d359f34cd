//! Items on their way to the store: batches the itemsaver refuses are split, an item it can
//! never take is kept as a dead letter, and a page that yields fewer items leaves none stale.

use spinneret_tests::TestSite;
use spinneret_tests::binaries::{Server, export, run_engine};
use spinneret_tests::hostile::{HostileOptions, HostileServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_itemsaver_taking_small_batches_still_gets_every_item() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(120).await.expect("site");
    let store = dir.path().join("items.db");
    let saver = Server::start(
        "itemsaver",
        &["--store", &store.display().to_string(), "--max_batch", "10"],
        dir.path(),
    )
    .await;
    let run = run_engine(
        dir.path(),
        &[
            format!("--itemsaver_host={}", saver.addr),
            "--batch_size=500".into(),
            "--itemsaver_timeout=20".into(),
            format!("--seed={}", site.url("/")),
        ],
    )
    .await;
    let run = run.succeeded("engine failed");
    let pages = site.site.ok_paths().len() as u64;
    assert_eq!(run.summary()["items_saved"], pages);
    assert_eq!(export(&store).await.len() as u64, pages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_the_store_refuses_is_a_dead_letter_and_the_crawl_goes_on() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("items.db");
    let saver = Server::start(
        "itemsaver",
        &[
            "--store",
            &store.display().to_string(),
            "--max_item_bytes",
            "600",
        ],
        dir.path(),
    )
    .await;
    let state = dir.path().join("crawl.state");
    let run = run_engine(
        dir.path(),
        &[
            format!("--itemsaver_host={}", saver.addr),
            format!("--seed={}", server.url("/long-title")),
            format!("--state={}", state.display()),
            "--max_depth=1".into(),
            "--itemsaver_timeout=20".into(),
        ],
    )
    .await;
    let run = run.succeeded("engine failed");
    let s = run.summary();
    assert_eq!(s["items_rejected"], 1, "{s}");
    assert_eq!(s["items_saved"], 4, "the slow pages: {s}");
    assert_eq!(export(&store).await.len(), 4);
    let letters = dir.path().join("crawl.dead-letters.jsonl");
    assert_eq!(s["dead_letters"], letters.display().to_string());
    let text = std::fs::read_to_string(&letters).expect("dead letters");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["url"], server.url("/long-title"));
    assert!(
        lines[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("max_item_bytes")),
        "{text}"
    );
    assert_eq!(
        run.stderr.matches("kept as a dead letter").count(),
        1,
        "logged once"
    );

    // Without a state, a refused item goes to the dead-letters file at once.
    let run = run_engine(
        dir.path(),
        &[
            format!("--itemsaver_host={}", saver.addr),
            format!("--seed={}", server.url("/long-title")),
            "--no_state".into(),
            "--task=again".into(),
            "--max_depth=0".into(),
        ],
    )
    .await;
    let run = run.succeeded("engine failed");
    let letters = dir.path().join("again.dead-letters.jsonl");
    assert_eq!(run.summary()["dead_letters"], letters.display().to_string());
    let text = std::fs::read_to_string(&letters).expect("dead letters without a state");
    assert!(text.contains("\"task\":\"again\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_yields_fewer_items_leaves_no_stale_item() {
    let server = HostileServer::start(HostileOptions::default())
        .await
        .expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let spider = dir.path().join("rows.toml");
    std::fs::write(
        &spider,
        "name = \"rows\"\n[[rule]]\nname = \"list\"\n[[rule.extract]]\nkind = \"row\"\n\
         scope = \"div.row\"\nfields.text = {}\n",
    )
    .expect("spider");
    let store = dir.path().join("items.db");
    let rows_after_crawl = |items: Vec<serde_json::Value>| {
        items
            .iter()
            .filter(|i| i["kind"] == "row")
            .map(|i| i["id"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    let mut stored = Vec::new();
    for _ in 0..3 {
        let run = run_engine(
            dir.path(),
            &[
                format!("--spider={}", spider.display()),
                format!("--seed={}", server.url("/shrinking")),
                format!("--store={}", store.display()),
                "--ignore_robots".into(),
            ],
        )
        .await;
        run.succeeded("engine failed");
        stored.push(rows_after_crawl(export(&store).await).len());
    }
    assert_eq!(
        stored,
        vec![5, 2, 0],
        "each re-crawl keeps exactly the rows the page lists now"
    );
}
