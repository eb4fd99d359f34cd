//! `itemsaver export` and the stores it reads: three formats with filters on odd payloads,
//! a million items in bounded memory, and a crawl stored as JSON Lines.

use common::{Item, Payload, Scalar, Value};
use itemsaver::ItemStore;
use itemsaver::store::{JsonlStore, SqliteStore};
use spinneret_tests::TestSite;
use spinneret_tests::binaries::{assert_items_match_site, run_bin, run_engine};
use std::path::Path;

fn s(v: &str) -> String {
    v.to_owned()
}

/// Items with odd payloads: unicode, nested lists, fields some items lack, in two tasks and
/// two kinds.
pub fn odd_items() -> Vec<Item> {
    let mut first = Payload::new();
    first.insert(
        "title".into(),
        Value::Text("Ünïcödé ✓ 漢字, \"quoted\"\nline".into()),
    );
    first.insert(
        "tags".into(),
        Value::List(vec![Scalar::Text("a".into()), Scalar::Int(2)]),
    );
    let mut second = Payload::new();
    second.insert("price".into(), Value::Float(9.5));
    let mut third = Payload::new();
    third.insert("title".into(), Value::Text("other task".into()));
    third.insert("empty".into(), Value::Null);
    let item = |id: &str, kind: &str, task: &str, payload: Payload| Item {
        id: id.into(),
        url: format!("http://a.test/{id}"),
        kind: kind.into(),
        task: task.into(),
        payload,
    };
    vec![
        item("1", "page", "news", first),
        item("2", "offer", "news", second),
        item("3", "page", "shop", third),
    ]
}

/// Runs `itemsaver export` on `store` with `args`; its stdout.
pub async fn export_with(store: &str, args: &[&str]) -> String {
    let mut all = vec![s("export"), s("--store"), s(store)];
    all.extend(args.iter().map(|a| s(a)));
    let (status, stdout, stderr) = run_bin("itemsaver", &all, &[]).await;
    assert!(status.success(), "export {args:?} failed: {stderr}");
    stdout
}

pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The formats and filters every store reads the same way.
pub async fn assert_exports(store: &str) {
    let all = json_lines(&export_with(store, &[]).await);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert_eq!(all[0]["title"], "Ünïcödé ✓ 漢字, \"quoted\"\nline");
    assert_eq!(all[0]["tags"], serde_json::json!(["a", 2]));
    assert_eq!(all[1]["price"], 9.5);
    assert!(
        all[1].get("title").is_none(),
        "a missing field stays missing"
    );
    for item in &all {
        let stored = item["stored_at"].as_str().expect("stored_at");
        assert!(
            chrono::DateTime::parse_from_rfc3339(stored).is_ok(),
            "{stored}"
        );
    }
    // Filters.
    let news = json_lines(&export_with(store, &["--task", "news"]).await);
    assert_eq!(news.len(), 2);
    let pages = json_lines(&export_with(store, &["--kind", "page"]).await);
    let ids: Vec<&str> = pages.iter().filter_map(|i| i["id"].as_str()).collect();
    assert_eq!(ids, ["1", "3"]);
    let future = json_lines(&export_with(store, &["--since", "2999-01-01T00:00:00Z"]).await);
    assert!(future.is_empty(), "{future:#?}");
    let past = json_lines(&export_with(store, &["--since", "2000-01-01T00:00:00+02:00"]).await);
    assert_eq!(past.len(), 3);
    // One JSON array, the same objects.
    let array: Vec<serde_json::Value> =
        serde_json::from_str(&export_with(store, &["--format", "json"]).await).expect("array");
    assert_eq!(array, all);
    let empty: Vec<serde_json::Value> =
        serde_json::from_str(&export_with(store, &["--format", "json", "--task", "none"]).await)
            .expect("an empty array");
    assert!(empty.is_empty());
    // CSV: the union of the exported items' fields, in a stable order.
    let csv_text = export_with(store, &["--format", "csv", "--task", "news"]).await;
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "id",
            "url",
            "kind",
            "task",
            "stored_at",
            "updated_at",
            "price",
            "tags",
            "title"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][8], "Ünïcödé ✓ 漢字, \"quoted\"\nline");
    assert_eq!(&rows[0][7], r#"["a",2]"#);
    assert_eq!(&rows[0][6], "");
    assert_eq!(&rows[1][6], "9.5");
}

#[tokio::test]
async fn exports_stream_three_formats_with_filters_from_sqlite_and_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = dir.path().join("items.db");
    SqliteStore::open(&sqlite)
        .expect("open")
        .save(&odd_items(), &[])
        .expect("save");
    assert_exports(&sqlite.display().to_string()).await;
    let jsonl = dir.path().join("items.jsonl");
    JsonlStore::open(&jsonl)
        .expect("open")
        .save(&odd_items(), &[])
        .expect("save");
    assert_exports(&format!("jsonl:{}", jsonl.display())).await;
    // --out writes the file whole; a bad --since is refused with the flag named.
    let out = dir.path().join("out.csv");
    let store = sqlite.display().to_string();
    export_with(
        &store,
        &["--format", "csv", "--out", &out.display().to_string()],
    )
    .await;
    let written = std::fs::read_to_string(&out).expect("--out file");
    assert_eq!(
        written.lines().count(),
        1 + 3 + 1,
        "a header, three rows, one with a newline"
    );
    assert!(!dir.path().join("out.csv.partial").exists());
    let args = [
        s("export"),
        s("--store"),
        store,
        s("--since"),
        s("yesterday"),
    ];
    let (status, _, stderr) = run_bin("itemsaver", &args, &[]).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--since") && stderr.contains("RFC 3339"),
        "{stderr}"
    );
}

/// A store of `n` items, written by SQLite itself (the test measures the export, not this).
fn million_item_store(path: &Path, n: u64) {
    drop(SqliteStore::open(path).expect("create"));
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
         INSERT INTO items (task, id, url, kind, payload, saved_at, first_saved_at)
         SELECT 't', 'id-' || x, 'http://a.test/' || x, 'page',
                json_object('title', 'Title ' || x, 'n', x, 'tags', json_array('a', x % 7)),
                1000, 1000
         FROM n",
        [n],
    )
    .expect("fill");
}

/// Runs `itemsaver args` with its stdout in `out`; its exit status and peak resident memory
/// in MiB, from its own rusage.
// The child is reaped by wait4, which also reports its rusage: std's wait cannot.
#[allow(clippy::zombie_processes)]
fn run_measured(args: &[String], out: &Path) -> (i32, f64) {
    let out = std::fs::File::create(out).expect("out");
    let child = std::process::Command::new(spinneret_tests::binaries::bin("itemsaver"))
        .args(args)
        .stdout(out)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, whose pid is live until reaped here.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    (libc::WEXITSTATUS(status), usage.ru_maxrss as f64 / 1024.0)
}

#[tokio::test]
async fn a_million_item_export_runs_in_bounded_memory() {
    const ITEMS: u64 = 1_000_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("million.db");
    million_item_store(&store, ITEMS);
    let store_size_mb = std::fs::metadata(&store).expect("store").len() as f64 / 1048576.0;
    for format in ["csv", "jsonl"] {
        let out = dir.path().join(format!("million.{format}"));
        let args = vec![
            s("export"),
            s("--store"),
            store.display().to_string(),
            s("--format"),
            s(format),
        ];
        let (code, peak_mb) = tokio::task::spawn_blocking(move || run_measured(&args, &out))
            .await
            .expect("run");
        assert_eq!(code, 0, "{format} export failed");
        let written = dir.path().join(format!("million.{format}"));
        let lines = std::io::BufRead::lines(std::io::BufReader::new(
            std::fs::File::open(&written).expect("export"),
        ))
        .count() as u64;
        let header = u64::from(format == "csv");
        assert_eq!(lines, ITEMS + header, "{format}");
        // The store is about 120 MiB: an export that held the items would take more. The
        // bound leaves room for the allocator's per-thread arenas, whose number varies
        // with how the export's threads are scheduled on a loaded machine (48 MiB was
        // passed by 50 MiB peaks under the full suite).
        assert!(
            peak_mb < 64.0,
            "{format} export peaked at {peak_mb:.0} MiB (store {store_size_mb:.0} MiB)"
        );
        std::fs::remove_file(&written).expect("remove");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_stored_as_json_lines_exports_every_page_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(30).await.expect("site");
    let store = format!("jsonl:{}", dir.path().join("items.jsonl").display());
    let run = run_engine(
        dir.path(),
        &[
            format!("--seed={}", site.url("/")),
            format!("--store={store}"),
            s("--no_state"),
        ],
    )
    .await
    .succeeded("a crawl into JSON Lines");
    let pages = site.site.ok_paths().len() as u64;
    assert_eq!(run.summary()["items_saved"], pages);
    let items = json_lines(&export_with(&store, &[]).await);
    assert_items_match_site(&items, &site);
}
