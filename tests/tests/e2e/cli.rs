//! What users see when they get something wrong: one line naming the problem, non-zero exit.

use spinneret_tests::binaries::{Server, closed_port, run_bin, run_engine};

fn s(v: &str) -> String {
    v.to_owned()
}

/// Asserts a failed run printed exactly one `error:` line that contains `needle`.
fn assert_one_error(status: std::process::ExitStatus, stderr: &str, needle: &str) {
    assert!(!status.success(), "expected failure; stderr: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected, got: {stderr}");
    assert!(
        errors[0].contains(needle),
        "error {:?} should mention {needle:?}",
        errors[0]
    );
}

#[tokio::test]
async fn invalid_seed_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (seed, needle) in [
        ("ftp://example.invalid/", "scheme \"ftp\""),
        ("not a url", "not a valid URL"),
    ] {
        let run = run_engine(dir.path(), &[s("--seed"), s(seed)]).await;
        assert_one_error(run.status, &run.stderr, "invalid seed URL");
        assert_one_error(run.status, &run.stderr, needle);
        assert!(
            !dir.path().join("items.db").exists(),
            "nothing is created for a bad seed"
        );
    }
}

#[tokio::test]
async fn seed_from_the_environment_is_used() {
    let (status, _, stderr) = run_bin(
        "engine",
        &[],
        &[("SPINNERET_SEEDS", "gopher://example.invalid/")],
    )
    .await;
    assert_one_error(status, &stderr, "gopher://example.invalid/");
}

#[tokio::test]
async fn unreachable_workers_are_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (closed_port(), closed_port());
    let run = run_engine(
        dir.path(),
        &[
            format!("--worker_hosts=:{a},:{b}"),
            s("--seed"),
            s("http://127.0.0.1:1/"),
            s("--store"),
            dir.path().join("x.db").display().to_string(),
        ],
    )
    .await;
    assert_one_error(run.status, &run.stderr, "no worker could be reached");
    assert_one_error(run.status, &run.stderr, &format!("127.0.0.1:{a}"));
}

#[tokio::test]
async fn unreachable_itemsaver_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = closed_port();
    let run = run_engine(
        dir.path(),
        &[
            format!("--itemsaver_host=:{port}"),
            s("--seed"),
            s("http://127.0.0.1:1/"),
        ],
    )
    .await;
    assert_one_error(
        run.status,
        &run.stderr,
        &format!("cannot reach the itemsaver at 127.0.0.1:{port}"),
    );
}

#[tokio::test]
async fn a_worker_is_not_an_itemsaver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = Server::start("worker", &[], dir.path()).await;
    let run = run_engine(
        dir.path(),
        &[
            format!("--itemsaver_host={}", worker.addr),
            s("--seed"),
            s("http://127.0.0.1:1/"),
        ],
    )
    .await;
    assert_one_error(run.status, &run.stderr, "did not answer as an itemsaver");
}

#[tokio::test]
async fn malformed_host_specs_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = run_engine(
        dir.path(),
        &[
            s("--worker_hosts=box-without-port"),
            s("--seed"),
            s("http://127.0.0.1:1/"),
        ],
    )
    .await;
    assert_one_error(run.status, &run.stderr, "invalid worker host");
}

#[tokio::test]
async fn unknown_flag_exits_with_usage_error() {
    let (status, _, stderr) = run_bin("engine", &[s("--bogus")], &[]).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--bogus"), "{stderr}");
}

#[tokio::test]
async fn help_shows_environment_variables() {
    for name in ["engine", "worker", "itemsaver"] {
        let (status, stdout, _) = run_bin(name, &[s("--help")], &[]).await;
        assert!(status.success());
        assert!(
            stdout.contains("[env: SPINNERET_"),
            "{name} --help lacks env vars:\n{stdout}"
        );
    }
}

#[tokio::test]
async fn worker_lists_its_parsers() {
    let (status, stdout, _) = run_bin("worker", &[s("--list-parsers")], &[]).await;
    assert!(status.success());
    let names: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with('('))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, vec!["links", "links-dom"]);
    assert!(
        stdout.contains("spiders"),
        "the spider kind is mentioned: {stdout}"
    );
}

#[tokio::test]
async fn busy_port_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = Server::start("worker", &[], dir.path()).await;
    let port = taken.port().to_string();
    for name in ["worker", "itemsaver"] {
        let store = dir.path().join("s.db").display().to_string();
        let mut args = vec![s("--port"), port.clone()];
        if name == "itemsaver" {
            args.extend([s("--store"), store]);
        }
        let (status, _, stderr) = run_bin(name, &args, &[]).await;
        assert_one_error(
            status,
            &stderr,
            &format!("cannot listen on 127.0.0.1:{port}"),
        );
    }
}

#[tokio::test]
async fn export_of_a_missing_store_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("none.db").display().to_string();
    let (status, _, stderr) = run_bin(
        "itemsaver",
        &[s("export"), s("--store"), missing.clone()],
        &[],
    )
    .await;
    assert_one_error(status, &stderr, &missing);
}

#[tokio::test]
async fn absurd_durations_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let huge = u64::MAX.to_string();
    for (flag, value) in [
        ("--delay", huge.as_str()),
        ("--rpc_timeout", huge.as_str()),
        ("--drain_timeout", huge.as_str()),
        ("--max_backoff", huge.as_str()),
        ("--connect_timeout", huge.as_str()),
        ("--no_workers_timeout", huge.as_str()),
        ("--itemsaver_timeout", huge.as_str()),
        ("--heartbeat_ms", huge.as_str()),
        ("--state_sync_ms", huge.as_str()),
        ("--timeout", huge.as_str()),
        ("--fetch_connect_timeout", huge.as_str()),
        ("--progress_secs", "0"),
        ("--batch_interval_ms", "0"),
        ("--heartbeat_ms", "0"),
    ] {
        let run = run_engine(
            dir.path(),
            &[s(flag), s(value), s("--seed"), s("http://127.0.0.1:1/")],
        )
        .await;
        assert_eq!(
            run.status.code(),
            Some(2),
            "{flag} {value} must be a usage error: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(flag) && !run.stderr.contains("panicked"),
            "{flag} {value}: {}",
            run.stderr
        );
    }
    for (flag, value) in [("--timeout", huge.as_str()), ("--max_body_bytes", "0")] {
        let (status, _, stderr) = run_bin("worker", &[s(flag), s(value)], &[]).await;
        assert_eq!(status.code(), Some(2), "worker {flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "worker {flag} {value}: {stderr}");
    }
}

#[tokio::test]
async fn a_mistyped_store_url_is_refused_without_printing_its_password() {
    for bin in ["engine", "itemsaver"] {
        let (status, _, stderr) = run_bin(
            bin,
            &[s("--store"), s("postgress://spin:hunter2@db.example/items")],
            &[],
        )
        .await;
        assert_eq!(status.code(), Some(2), "{bin}: {stderr}");
        assert!(stderr.contains("postgress://"), "{bin}: {stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "{bin} printed the password: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_short_admin_token_is_refused() {
    let (status, _, stderr) = run_bin(
        "engine",
        &[
            s("--admin"),
            s("127.0.0.1:0"),
            s("--admin_token"),
            s("abc"),
            s("--seed"),
            s("http://127.0.0.1:1/"),
            s("--no_state"),
        ],
        &[],
    )
    .await;
    assert_one_error(
        status,
        &stderr,
        "--admin_token has 3 bytes; use at least 16",
    );
}

#[tokio::test]
async fn a_rendering_worker_without_chromium_exits_1_naming_the_install_command() {
    let s = |v: &str| v.to_string();
    let (status, _, stderr) = run_bin(
        "worker",
        &[
            s("--port"),
            s("0"),
            s("--render"),
            s("--chromium"),
            s("/nonexistent/chromium"),
        ],
        &[],
    )
    .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_one_error(
        status,
        &stderr,
        "--render needs Chromium, which is not installed here (/nonexistent/chromium does not exist): apt-get install -y chromium (or give --chromium PATH)",
    );
}
