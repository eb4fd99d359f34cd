//! Security: tokens proven at each connection's set-up, protocol versions checked, and servers
//! that refuse to listen off loopback unprotected.

use spinneret_tests::admin::AdminEngine;
use spinneret_tests::binaries::{
    Server, closed_port, export, run_bin, run_engine, run_engine_with_env,
};
use spinneret_tests::certs::Pki;
use spinneret_tests::redis::RedisServer;
use spinneret_tests::{TestSite, eventually};
use std::path::Path;

fn s(v: &str) -> String {
    v.to_owned()
}

/// Writes a token file and returns its path.
fn token_file(dir: &Path, name: &str, token: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, token).expect("write token");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_with_a_token_serve_only_engines_that_prove_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(10).await.expect("site");
    let token = token_file(dir.path(), "token", "a-long-shared-secret-0123456789");
    let wrong = token_file(dir.path(), "wrong", "another-secret-entirely-98765432");
    let store = dir.path().join("items.db").display().to_string();
    let saver_metrics = format!("127.0.0.1:{}", closed_port());
    let worker_metrics = format!("127.0.0.1:{}", closed_port());
    let saver = Server::start(
        "itemsaver",
        &[
            "--store",
            &store,
            "--token",
            &token,
            "--metrics",
            &saver_metrics,
        ],
        dir.path(),
    )
    .await;
    let worker = Server::start(
        "worker",
        &["--token", &token, "--metrics", &worker_metrics],
        dir.path(),
    )
    .await;
    let hosts = |token: Option<&str>| {
        let mut args = vec![
            format!("--itemsaver_host={}", saver.addr),
            format!("--worker_hosts={}", worker.addr),
            s("--seed"),
            site.url("/"),
            s("--no_state"),
        ];
        if let Some(t) = token {
            args.extend([s("--token"), t.to_owned()]);
        }
        args
    };

    let ok = run_engine(dir.path(), &hosts(Some(&token)))
        .await
        .succeeded("the same token");
    assert_eq!(ok.summary()["pages_ok"], site.site.ok_paths().len() as u64);
    assert_eq!(
        export(Path::new(&store)).await.len(),
        site.site.ok_paths().len()
    );

    // Refused by the itemsaver (the engine connects to it first), then by the worker (with
    // the items stored in the engine's own process).
    let local_store = dir.path().join("local.db").display().to_string();
    for (what, token) in [("a wrong token", Some(wrong.as_str())), ("no token", None)] {
        let refused = run_engine(dir.path(), &hosts(token)).await;
        assert_error_names(&refused.stderr, refused.status, what, &["token"]);
        let mut args: Vec<String> = hosts(token)
            .into_iter()
            .filter(|a| !a.starts_with("--itemsaver_host"))
            .collect();
        args.extend([s("--store"), local_store.clone()]);
        let refused = run_engine(dir.path(), &args).await;
        assert_error_names(
            &refused.stderr,
            refused.status,
            what,
            &["token", &worker.addr],
        );
    }
    for server in [&saver, &worker] {
        wait_for_log(server, &["refused a peer", "wrong_token", "no_token"]).await;
    }
    // Both count their refusals by reason.
    for (metrics, name) in [(&saver_metrics, "itemsaver"), (&worker_metrics, "worker")] {
        let text = reqwest::get(format!("http://{metrics}/metrics"))
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("body");
        for reason in ["wrong_token", "no_token"] {
            let series = format!("spinneret_{name}_peers_refused_total{{reason=\"{reason}\"}}");
            assert!(text.contains(&series), "{series} in:\n{text}");
        }
    }
}

/// Checks that a run exited 1 with an `error:` line naming each of `words`.
fn assert_error_names(stderr: &str, status: std::process::ExitStatus, what: &str, words: &[&str]) {
    assert_eq!(status.code(), Some(1), "{what}: {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{what}: no error line in {stderr}"));
    for word in words {
        assert!(
            line.contains(word),
            "{what}: the error names {word:?}: {line}"
        );
    }
}

/// Waits (bounded) until `server`'s log holds every one of `texts`: it logs a refusal just
/// after telling the peer, so the peer may be done before the line is written.
async fn wait_for_log(server: &Server, texts: &[&str]) {
    // A log file has no event to wait on.
    eventually(
        std::time::Duration::from_secs(10),
        &format!("{texts:?} all in the log"),
        || async {
            let logs = server.logs();
            if texts.iter().all(|t| logs.contains(t)) {
                Ok(())
            } else {
                Err(format!("the log:\n{logs}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_version_mismatch_is_refused_naming_both_versions() {
    let ours = format!("protocol {}", common::handshake::PROTOCOL_VERSION);
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(5).await.expect("site");
    let worker = Server::start_with_env(
        "worker",
        &["--port", "0"],
        &[("SPINNERET_TEST_PROTOCOL_VERSION", "99")],
        dir.path(),
    )
    .await;
    let run = run_engine(
        dir.path(),
        &[
            format!("--worker_hosts={}", worker.addr),
            s("--seed"),
            site.url("/"),
            s("--no_state"),
        ],
    )
    .await;
    assert_error_names(
        &run.stderr,
        run.status,
        "a mismatch",
        &["version mismatch", &ours, "protocol 99"],
    );
    wait_for_log(&worker, &["version mismatch", "protocol 99", &ours]).await;
}

#[tokio::test]
async fn servers_refuse_to_listen_off_loopback_unprotected() {
    for name in ["worker", "itemsaver"] {
        let (status, _, stderr) =
            run_bin(name, &[s("--bind"), s("0.0.0.0"), s("--port"), s("0")], &[]).await;
        assert_eq!(status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains("refusing to listen on 0.0.0.0") && stderr.contains("--token"),
            "{name}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_serves_only_engines_with_a_certificate_the_ca_signed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(10).await.expect("site");
    let pki = Pki::new(dir.path(), "crawl");
    let other = Pki::new(dir.path(), "other");
    let token = token_file(dir.path(), "token", "a-long-shared-secret-0123456789");
    let store = dir.path().join("items.db").display().to_string();
    // TLS and the token together on both servers.
    let mut saver_args = vec![s("--store"), store.clone(), s("--token"), token.clone()];
    saver_args.extend(pki.server_args(true));
    let mut worker_args = vec![s("--token"), token.clone()];
    worker_args.extend(pki.server_args(true));
    let saver = Server::start("itemsaver", &strs(&saver_args), dir.path()).await;
    let worker = Server::start("worker", &strs(&worker_args), dir.path()).await;
    let engine = |tls: Vec<String>| {
        let mut args = vec![
            format!("--itemsaver_host={}", saver.addr),
            format!("--worker_hosts={}", worker.addr),
            s("--seed"),
            site.url("/"),
            s("--no_state"),
            s("--token"),
            token.clone(),
        ];
        args.extend(tls);
        args
    };

    let ok = run_engine(dir.path(), &engine(pki.engine_args(true)))
        .await
        .succeeded("a client certificate the CA signed");
    assert_eq!(ok.summary()["pages_ok"], site.site.ok_paths().len() as u64);
    assert_eq!(
        export(Path::new(&store)).await.len(),
        site.site.ok_paths().len()
    );

    for (what, tls) in [
        ("plain TCP to a TLS server", vec![]),
        ("no client certificate", pki.engine_args(false)),
        (
            "servers whose CA this engine does not trust",
            other.engine_args(true),
        ),
        (
            "a client certificate another CA signed",
            vec![
                format!("--tls_ca={}", pki.ca.display()),
                format!("--tls_cert={}", other.client_cert.display()),
                format!("--tls_key={}", other.client_key.display()),
            ],
        ),
    ] {
        let refused = run_engine(dir.path(), &engine(tls)).await;
        assert_error_names(&refused.stderr, refused.status, what, &["TLS", &saver.addr]);
    }
    wait_for_log(&saver, &["refused a peer", "reason=\"tls\""]).await;
    // The refused peers crashed nothing: the servers still serve.
    run_engine(dir.path(), &engine(pki.engine_args(true)))
        .await
        .succeeded("after the refusals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alone_encrypts_and_a_plain_server_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(5).await.expect("site");
    let pki = Pki::new(dir.path(), "crawl");
    let tls_worker = Server::start("worker", &strs(&pki.server_args(false)), dir.path()).await;
    let plain_worker = Server::start("worker", &[], dir.path()).await;
    let engine = |worker: &Server| {
        let mut args = vec![
            format!("--worker_hosts={}", worker.addr),
            s("--seed"),
            site.url("/"),
            s("--no_state"),
        ];
        args.extend(pki.engine_args(false));
        args
    };
    let ok = run_engine(dir.path(), &engine(&tls_worker))
        .await
        .succeeded("server-only TLS");
    assert_eq!(ok.summary()["pages_ok"], site.site.ok_paths().len() as u64);
    let refused = run_engine(dir.path(), &engine(&plain_worker)).await;
    assert_error_names(
        &refused.stderr,
        refused.status,
        "TLS to a plain server",
        &["TLS", &plain_worker.addr],
    );
    wait_for_log(&plain_worker, &["refused a peer", "client speaks TLS"]).await;
}

#[tokio::test]
async fn tls_without_client_certificates_is_not_enough_off_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "crawl");
    let mut args = vec![s("--bind"), s("0.0.0.0"), s("--port"), s("0")];
    args.extend(pki.server_args(false));
    let (status, _, stderr) = run_bin("worker", &args, &[]).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0") && stderr.contains("mutual TLS"),
        "{stderr}"
    );
    let store = dir.path().join("items.db");
    let (status, _, stderr) = run_bin(
        "itemsaver",
        &[
            s("--tls_ca"),
            pki.ca.display().to_string(),
            s("--store"),
            store.display().to_string(),
        ],
        &[],
    )
    .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--tls_ca on a server needs --tls_cert"),
        "{stderr}"
    );
    assert!(!store.exists(), "a refused start leaves no store behind");
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Serves `/go` on `ip` (a free port), redirecting to `target`; returns its address.
async fn redirector(ip: &str, target: String) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route(
        "/go",
        axum::routing::get(move || async move { axum::response::Redirect::temporary(&target) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The SSRF guard on (the harness turns it off for the other tests).
const GUARDED: [(&str, &str); 1] = [("SPINNERET_ALLOW_PRIVATE", "false")];

/// The flags of a crawl of `seeds` through `workers` (none: the in-process worker).
fn ssrf_crawl(workers: Option<&str>, seeds: &[String], more: &[&str]) -> Vec<String> {
    let mut args = vec![s("--no_state")];
    if let Some(w) = workers {
        args.push(format!("--worker_hosts={w}"));
    }
    for seed in seeds {
        args.extend([s("--seed"), seed.clone()]);
    }
    args.extend(more.iter().map(|m| s(m)));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_refuse_private_addresses_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(3).await.expect("site");
    let port = site.addr.port();
    let worker = Server::start_with_env("worker", &["--port", "0"], &GUARDED, dir.path()).await;
    let seeds = [
        site.url("/"),
        s("http://10.0.0.1/"),
        s("http://169.254.169.254/latest/meta-data/"),
        format!("http://localhost:{port}/"),
    ];
    let run = run_engine_with_env(
        dir.path(),
        &ssrf_crawl(Some(&worker.addr), &seeds, &[]),
        &GUARDED,
    )
    .await
    .succeeded("a guarded worker");
    let summary = run.summary();
    assert_eq!(summary["pages_ok"], 0, "{summary}");
    assert_eq!(summary["pages_failed"]["blocked_address"], 4, "{summary}");
    assert_eq!(summary["robots_fetched"], 0, "{summary}");
    assert!(
        run.stderr.contains("--allow_private"),
        "says how to allow: {}",
        run.stderr
    );
    assert!(
        site.hits().is_empty(),
        "nothing reached the site: {:?}",
        site.hits()
    );

    // Allowed, the same kind of worker crawls the site.
    let allowed = Server::start_with_env(
        "worker",
        &["--port", "0", "--allow_private"],
        &GUARDED,
        dir.path(),
    )
    .await;
    let run = run_engine_with_env(
        dir.path(),
        &ssrf_crawl(Some(&allowed.addr), &[site.url("/")], &[]),
        &GUARDED,
    )
    .await
    .succeeded("--allow_private");
    assert_eq!(run.summary()["pages_ok"], site.site.ok_paths().len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_an_allowed_host_to_a_private_one_is_refused_at_the_hop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(3).await.expect("site");
    let hop = redirector("127.0.0.2", site.url("/")).await;
    let worker = Server::start_with_env(
        "worker",
        &["--port", "0", "--allow_addr", "127.0.0.2/32"],
        &GUARDED,
        dir.path(),
    )
    .await;
    let seeds = [format!("http://{hop}/go")];
    let flags = ssrf_crawl(Some(&worker.addr), &seeds, &["--allow_domain=127.0.0.1"]);
    let run = run_engine_with_env(dir.path(), &flags, &GUARDED)
        .await
        .succeeded("a redirect to 127.0.0.1");
    let summary = run.summary();
    assert_eq!(summary["pages_redirected"], 1, "{summary}");
    assert_eq!(summary["pages_failed"]["blocked_address"], 1, "{summary}");
    assert!(
        site.hits().is_empty(),
        "the hop never reached 127.0.0.1: {:?}",
        site.hits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_worker_fetches_its_seeds_hosts_and_no_other_private_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(3).await.expect("site");
    // The seed's own server (127.0.0.1) redirects to a private address no seed named.
    let elsewhere = TestSite::start(3).await.expect("site");
    let target = format!("http://127.0.0.2:{}/", elsewhere.addr.port());
    let hop = redirector("127.0.0.1", target).await;
    let seeds = [site.url("/"), format!("http://{hop}/go")];
    let flags = ssrf_crawl(None, &seeds, &["--allow_domain=127.0.0.1,127.0.0.2"]);
    let run = run_engine_with_env(dir.path(), &flags, &GUARDED)
        .await
        .succeeded("single-machine mode");
    let summary = run.summary();
    assert_eq!(
        summary["pages_ok"],
        site.site.ok_paths().len() as u64,
        "{summary}"
    );
    assert_eq!(summary["pages_failed"]["blocked_address"], 1, "{summary}");
    assert!(elsewhere.hits().is_empty(), "{:?}", elsewhere.hits());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeds_allowance_is_for_its_own_origin_not_another_port_of_its_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Another local server: Docker's API, a metadata service, anything on this machine.
    let other = TestSite::start(3).await.expect("site");
    let target = format!("http://localhost:{}/", other.addr.port());
    // The seed's page links to it, on the same host name.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let seed = format!(
        "http://localhost:{}/",
        listener.local_addr().expect("addr").port()
    );
    let page = format!("<html><body><a href=\"{target}\">elsewhere</a></body></html>");
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let flags = ssrf_crawl(None, &[seed], &["--ignore_robots"]);
    let run = run_engine_with_env(dir.path(), &flags, &GUARDED)
        .await
        .succeeded("single-machine mode");
    let summary = run.summary();
    assert_eq!(summary["pages_ok"], 1, "{summary}");
    assert_eq!(summary["pages_failed"]["blocked_address"], 1, "{summary}");
    assert!(other.hits().is_empty(), "{:?}", other.hits());
}

#[tokio::test]
async fn the_admin_api_refuses_to_listen_off_loopback_without_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = run_engine(
        dir.path(),
        &[
            s("--seed"),
            s("http://127.0.0.1:1/"),
            s("--no_state"),
            s("--admin"),
            s("0.0.0.0:0"),
        ],
    )
    .await;
    assert_error_names(
        &run.stderr,
        run.status,
        "admin off loopback",
        &["0.0.0.0", "--admin_token", "--insecure"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_served_over_tls_with_the_crawls_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(3).await.expect("site");
    let pki = Pki::new(dir.path(), "crawl");
    let ca = std::fs::read(&pki.ca).expect("ca");
    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("pem")])
        .build()
        .expect("client");
    let args = vec![
        s("--seed"),
        site.url("/"),
        s("--no_state"),
        s("--serve"),
        format!("--admin_tls_cert={}", pki.server_cert.display()),
        format!("--admin_tls_key={}", pki.server_key.display()),
    ];
    let browser = trusting.clone();
    let engine =
        AdminEngine::start_with_client(dir.path(), &args, Some("t0ken-t0ken-t0ken"), trusting)
            .await;
    assert!(
        engine.base.starts_with("https://127.0.0.1:"),
        "{}",
        engine.base
    );
    let status = engine.call("GET", "/api/status", None, false).await;
    assert_eq!(status.status, 200, "{}", status.text);
    // Changes still need the admin token, over TLS as without.
    let change = engine
        .call("POST", "/api/tasks/999/pause", None, false)
        .await;
    assert_eq!(change.status, 401, "{}", change.text);
    let change = engine
        .call("POST", "/api/tasks/999/pause", None, true)
        .await;
    assert_eq!(change.status, 404, "{}", change.text);
    // A browser's change from the dashboard's own origin is let through over HTTP/2, which
    // names the server in the authority, not in a Host header.
    let answer = browser
        .post(format!("{}/api/tasks/999/pause", engine.base))
        .header("origin", engine.base.clone())
        .bearer_auth("t0ken-t0ken-t0ken")
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    assert_eq!(answer.status(), 404);
    // Plain HTTP on the same port gets no answer from the API.
    let plain = engine.base.replacen("https://", "http://", 1);
    let answer = reqwest::get(format!("{plain}/api/status")).await;
    assert!(
        answer.as_ref().map_or(true, |a| !a.status().is_success()),
        "plain HTTP must not be served: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_crawl_runs_over_rediss_with_a_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(10).await.expect("site");
    let pki = Pki::new(dir.path(), "crawl");
    let redis = RedisServer::start_tls(&pki, "redis-secret").await;
    let url = redis.tls_url("redis-secret");
    let store = dir.path().join("items.db").display().to_string();
    // The itemsaver and the worker register over rediss:// too, trusting the crawl's CA.
    let mut saver_args = vec![s("--store"), store.clone(), s("--redis"), url.clone()];
    saver_args.extend(pki.server_args(true));
    let mut worker_args = vec![s("--redis"), url.clone()];
    worker_args.extend(pki.server_args(true));
    let _saver = Server::start("itemsaver", &strs(&saver_args), dir.path()).await;
    let _worker = Server::start("worker", &strs(&worker_args), dir.path()).await;
    let engine = |redis: &str, crawl: &str| {
        let mut args = vec![
            s("--redis"),
            redis.to_owned(),
            s("--crawl"),
            crawl.to_owned(),
            s("--seed"),
            site.url("/"),
        ];
        args.extend(pki.engine_args(true));
        args
    };
    let ok = run_engine(dir.path(), &engine(&url, "secure"))
        .await
        .succeeded("rediss:// with the password");
    assert_eq!(ok.summary()["pages_ok"], site.site.ok_paths().len() as u64);
    assert_eq!(
        export(Path::new(&store)).await.len(),
        site.site.ok_paths().len()
    );

    let wrong = redis.tls_url("not-the-password");
    let refused = run_engine(dir.path(), &engine(&wrong, "wrong-password")).await;
    assert_error_names(
        &refused.stderr,
        refused.status,
        "a wrong password",
        &["--redis", ":***@", "authentication failed"],
    );
    assert!(
        !refused.stderr.contains("not-the-password"),
        "{}",
        refused.stderr
    );
    let plain = wrong.replacen("rediss://:not-the-password@", "redis://", 1);
    let refused = run_engine(dir.path(), &engine(&plain, "plain")).await;
    assert_error_names(
        &refused.stderr,
        refused.status,
        "plain TCP to TLS",
        &["--redis"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_certificate_recipe_makes_a_working_mutual_tls_crawl() {
    spinneret_tests::require_program("OPENSSL", "/usr/bin/openssl");
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(5).await.expect("site");
    let pki = dir.path().join("pki");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/certs.sh");
    let made = tokio::process::Command::new(&script)
        .arg(&pki)
        .args(["server:127.0.0.1", "client:engine"])
        .output()
        .await
        .expect("run scripts/certs.sh");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let file = |name: &str| pki.join(name).display().to_string();
    let token = token_file(dir.path(), "token", "a-long-shared-secret-0123456789");
    let worker_args = [
        s("--token"),
        token.clone(),
        format!("--tls_cert={}", file("127.0.0.1.pem")),
        format!("--tls_key={}", file("127.0.0.1.key")),
        format!("--tls_ca={}", file("ca.pem")),
    ];
    let worker = Server::start("worker", &strs(&worker_args), dir.path()).await;
    let run = run_engine(
        dir.path(),
        &[
            format!("--worker_hosts={}", worker.addr),
            s("--seed"),
            site.url("/"),
            s("--no_state"),
            s("--token"),
            token,
            format!("--tls_ca={}", file("ca.pem")),
            format!("--tls_cert={}", file("engine.pem")),
            format!("--tls_key={}", file("engine.key")),
        ],
    )
    .await
    .succeeded("certificates from scripts/certs.sh");
    assert_eq!(run.summary()["pages_ok"], site.site.ok_paths().len() as u64);

    // A certificate for servers only (the worker's own), or one that names no purpose (as
    // the script made them before), does not pass for an engine.
    let openssl = spinneret_tests::require_program("OPENSSL", "/usr/bin/openssl");
    let ext = pki.join("old.ext");
    std::fs::write(&ext, "subjectAltName=DNS:old\n").expect("write");
    for step in [
        vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=old",
            "-keyout",
            &file("old.key"),
            "-out",
            &file("old.csr"),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &file("old.csr"),
            "-CA",
            &file("ca.pem"),
            "-CAkey",
            &file("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &file("old.ext"),
            "-out",
            &file("old.pem"),
        ],
    ] {
        let made = std::process::Command::new(&openssl)
            .args(&step)
            .output()
            .expect("openssl");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    for (what, cert) in [
        ("a server certificate", "127.0.0.1"),
        ("a certificate with no purpose", "old"),
    ] {
        let refused = run_engine(
            dir.path(),
            &[
                format!("--worker_hosts={}", worker.addr),
                s("--seed"),
                site.url("/"),
                s("--no_state"),
                s("--token"),
                token_file(dir.path(), "token", "a-long-shared-secret-0123456789"),
                format!("--tls_ca={}", file("ca.pem")),
                format!("--tls_cert={}", file(&format!("{cert}.pem"))),
                format!("--tls_key={}", file(&format!("{cert}.key"))),
            ],
        )
        .await;
        assert_error_names(&refused.stderr, refused.status, what, &["TLS"]);
    }
}
