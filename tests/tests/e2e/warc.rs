//! WARC archives read back by a real reader: `warcio` (installed by `make test` into
//! target/warcio-venv) checks and indexes the files a crawl with `--warc` wrote, and finds
//! one response record per page fetched, with the bodies the site served.

use spinneret_tests::TestSite;
use spinneret_tests::binaries::run_engine;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The virtual environment `scripts/warcio.sh` makes.
fn warcio_venv() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let venv = target.join("warcio-venv");
    assert!(
        venv.join("bin/warcio").exists(),
        "{} is missing: run scripts/warcio.sh (make test does)",
        venv.display()
    );
    venv
}

/// Dumps every record of `files` as JSON lines: type, target URI, HTTP status and body.
const DUMP: &str = r#"
import base64, json, sys
from warcio.archiveiterator import ArchiveIterator
for path in sys.argv[1:]:
    with open(path, 'rb') as f:
        for rec in ArchiveIterator(f):
            out = {'type': rec.rec_type, 'uri': rec.rec_headers.get_header('WARC-Target-URI')}
            if rec.rec_type == 'response':
                out['status'] = int(rec.http_headers.get_statuscode())
                out['body'] = base64.b64encode(rec.content_stream().read()).decode()
            print(json.dumps(out))
"#;

fn run(program: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .expect("run warcio");
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_with_warc_writes_files_warcio_reads_back_page_for_page() {
    let venv = warcio_venv();
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(25).await.expect("site");
    let archive = dir.path().join("warc");
    run_engine(
        dir.path(),
        &[
            format!("--seed={}", site.url("/")),
            format!("--warc={}", archive.display()),
            "--no_state".into(),
        ],
    )
    .await
    .succeeded("a crawl with --warc");
    let files: Vec<String> = std::fs::read_dir(&archive)
        .expect("the archive directory")
        .map(|e| e.expect("entry").path().display().to_string())
        .filter(|p| p.ends_with(".warc.gz"))
        .collect();
    assert!(!files.is_empty(), "no WARC file written");
    for file in &files {
        run(&venv.join("bin/warcio"), &["check", "-v", file]);
        let index = run(&venv.join("bin/warcio"), &["index", file]);
        assert!(index.lines().count() >= 3, "{index}");
    }
    let mut args = vec!["-c", DUMP];
    args.extend(files.iter().map(String::as_str));
    let dump = run(&venv.join("bin/python"), &args);
    let records: Vec<serde_json::Value> = dump
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record"))
        .collect();
    let mut responses: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
    for r in records.iter().filter(|r| r["type"] == "response") {
        let uri = r["uri"].as_str().expect("uri");
        let path = uri
            .strip_prefix(&format!("http://{}", site.addr))
            .expect("a page of the site");
        responses.entry(path.to_owned()).or_default().push(r);
    }
    let requests = records.iter().filter(|r| r["type"] == "request").count();
    assert_eq!(requests, responses.values().map(Vec::len).sum::<usize>());
    // One response record per page fetched, bodies equal to what the site served.
    use base64::Engine as _;
    for path in site.site.polite_crawl_paths() {
        let found = responses.get(&path).map_or(0, Vec::len);
        assert_eq!(found, 1, "{path}: {found} response records");
        let record = responses[&path][0];
        let body = base64::engine::general_purpose::STANDARD
            .decode(record["body"].as_str().expect("body"))
            .expect("base64");
        match site.site.doc(&path) {
            Some(doc) => {
                assert_eq!(record["status"], 200, "{path}");
                assert_eq!(body, doc.body, "{path}: the body as served");
            }
            None => assert_eq!(record["status"], 404, "{path}"),
        }
    }
    assert_eq!(
        responses.len(),
        site.site.polite_crawl_paths().len(),
        "nothing else was archived: {:?}",
        responses.keys().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendered_crawl_archives_what_the_browser_received_and_warcio_reads_it() {
    let venv = warcio_venv();
    let dir = tempfile::tempdir().expect("tempdir");
    let site = spinneret_tests::scripted::ScriptedSite::start()
        .await
        .expect("site");
    let archive = dir.path().join("warc");
    run_engine(
        dir.path(),
        &[
            "--render".into(),
            format!("--seed={}", site.url("/scripted")),
            format!("--seed={}", site.url("/moved")),
            format!("--warc={}", archive.display()),
            "--warc_subresources".into(),
            "--no_state".into(),
        ],
    )
    .await
    .succeeded("a rendered crawl with --warc");
    let files: Vec<String> = std::fs::read_dir(&archive)
        .expect("the archive directory")
        .map(|e| e.expect("entry").path().display().to_string())
        .collect();
    for file in &files {
        run(&venv.join("bin/warcio"), &["check", "-v", file]);
    }
    let mut args = vec!["-c", DUMP];
    args.extend(files.iter().map(String::as_str));
    let dump = run(&venv.join("bin/python"), &args);
    let statuses: BTreeMap<String, u64> = dump
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a record"))
        .filter(|r| r["type"] == "response")
        .map(|r| {
            let uri = r["uri"].as_str().expect("uri");
            let path = uri
                .strip_prefix(site.url("").trim_end_matches('/'))
                .expect("the site's");
            (path.to_owned(), r["status"].as_u64().expect("status"))
        })
        .collect();
    // The pages (by the browser), the script one loaded, the redirect and where it led,
    // and robots.txt (fetched plainly).
    let expected: BTreeMap<String, u64> = [
        ("/scripted", 200),
        ("/app.js", 200),
        ("/moved", 302),
        ("/item/1", 200),
        ("/robots.txt", 200),
    ]
    .into_iter()
    .map(|(p, s)| (p.to_owned(), s))
    .collect();
    assert_eq!(statuses, expected);
}
