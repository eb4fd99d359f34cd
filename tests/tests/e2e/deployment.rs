//! The one-machine walkthrough of docs/deployment.md, run as written: its marked shell blocks,
//! in one bash, against a real redis-server and a PostgreSQL that asks for passwords, with
//! the ports it names moved to free ones. A user who follows it gets the test site's pages in
//! PostgreSQL, twice (the seeded task and the one added through the admin API).

use spinneret_tests::Site;
use spinneret_tests::binaries::bin;
use spinneret_tests::postgres::PostgresServer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What marks a block of the page that this test runs (an HTML comment, which the rendered
/// page does not show), on the line before its opening fence.
const MARKER: &str = "<!-- test: one-machine -->";

/// The test site's port in the walkthrough.
const SITE_PORT: u16 = 8000;

/// The ports the walkthrough names: Redis, PostgreSQL, the test site, the itemsaver, the two
/// workers and the two engines' admin servers.
const PORTS: [u16; 8] = [6380, 5432, SITE_PORT, 1234, 9000, 9001, 8080, 8081];

/// Pages of the test site the walkthrough starts (`testsite`'s default).
const SITE_PAGES: usize = 200;

/// Longest the whole walkthrough may take before it counts as hung.
const WALKTHROUGH_TIMEOUT: Duration = Duration::from_secs(120);

/// The bodies of the fenced blocks marked with [`MARKER`], in the page's order.
fn marked_blocks(page: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        if line.trim() != MARKER {
            continue;
        }
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```sh"),
            "{MARKER} must come right before a ```sh block, not {fence:?}"
        );
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        blocks.push(body.join("\n"));
    }
    blocks
}

/// `script` with every number that is one of `ports`' keys replaced by its value (a number
/// is a whole run of digits, so `127.0.0.1` or a longer port is left alone), and how many of
/// each it replaced.
fn with_ports(script: &str, ports: &HashMap<u16, u16>) -> (String, HashMap<u16, usize>) {
    let mut out = String::with_capacity(script.len());
    let mut replaced = HashMap::new();
    let mut rest = script;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number = &rest[..end];
        match number
            .parse::<u16>()
            .ok()
            .and_then(|n| ports.get_key_value(&n))
        {
            Some((named, free)) => {
                out.push_str(&free.to_string());
                *replaced.entry(*named).or_insert(0) += 1;
            }
            None => out.push_str(number),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    (out, replaced)
}

/// Free loopback ports, one for each of [`PORTS`], none of them one of [`PORTS`] (each is
/// bound until all are picked, so no two are the same).
fn free_ports() -> HashMap<u16, u16> {
    let mut held = Vec::new();
    while held.len() < PORTS.len() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("local addr").port();
        if !PORTS.contains(&port) {
            held.push(listener);
        }
    }
    PORTS
        .iter()
        .zip(&held)
        .map(|(&named, l)| (named, l.local_addr().expect("local addr").port()))
        .collect()
}

/// The directory holding `program` (found as [`spinneret_tests::require_program`] does).
fn dir_of(env: &str, default: &str) -> PathBuf {
    spinneret_tests::require_program(env, default)
        .parent()
        .map(Path::to_path_buf)
        .expect("a program's directory")
}

/// Kills a process group when dropped: the walkthrough's background processes (Redis, the
/// test site, the itemsaver, the workers, the engines) whatever became of the script.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let Ok(group) = libc::pid_t::try_from(self.0) else {
            return;
        };
        // SAFETY: kill(2) takes plain integers and touches no memory of ours. The group is
        // gone already when the walkthrough stopped its processes itself: that error is fine.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
}

/// What the walkthrough printed, and the tail of every log it left, for a failure message.
fn what_happened(dir: &Path) -> String {
    let mut text = String::new();
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    logs.push(dir.join("redis/redis.log"));
    logs.sort();
    for log in logs
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
    {
        let content = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = content.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        text.push_str(&format!("--- {}\n{tail}\n", log.display()));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_machine_deployment_walkthrough_stores_every_page_in_postgres() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let page = std::fs::read_to_string(root.join("docs/deployment.md")).expect("read the page");
    let blocks = marked_blocks(&page);
    assert!(
        blocks.len() >= 8,
        "docs/deployment.md marks {} blocks with {MARKER}; the walkthrough has more",
        blocks.len()
    );
    let pg = PostgresServer::start_with_passwords();
    let mut ports = free_ports();
    // The page's PostgreSQL is the test's server.
    ports.insert(5432, pg.port);
    let (script, replaced) = with_ports(&blocks.join("\n"), &ports);
    for named in PORTS {
        assert!(
            replaced.contains_key(&named),
            "the walkthrough no longer names port {named}: update PORTS"
        );
    }

    // The page makes its role as PostgreSQL's superuser through `sudo -u postgres psql`:
    // here the superuser is `spin`, on the test server's socket.
    let prelude = format!(
        "set -eu\nsudo() {{ [ \"$1\" = -u ] && shift 2; PGHOST='{}' PGPORT={} PGUSER=spin \
         PGDATABASE=postgres \"$@\"; }}\n",
        pg.socket_dir().display(),
        pg.port
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let script_path = dir.path().join("walkthrough.sh");
    std::fs::write(&script_path, format!("{prelude}{script}\n")).expect("write the script");
    spinneret_tests::require_program("CURL", "/usr/bin/curl");
    spinneret_tests::require_program("OPENSSL", "/usr/bin/openssl");
    let path = std::env::join_paths(
        [
            bin("engine")
                .parent()
                .map(Path::to_path_buf)
                .expect("bin dir"),
            // PostgreSQL's own psql before a wrapper in /usr/bin.
            pg.bin_dir().to_path_buf(),
            dir_of("REDIS_SERVER", "/usr/bin/redis-server"),
            dir_of("REDIS_CLI", "/usr/bin/redis-cli"),
        ]
        .into_iter()
        .chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .expect("PATH");

    let out = std::fs::File::create(dir.path().join("walkthrough.log")).expect("log file");
    let mut command = tokio::process::Command::new("bash");
    command
        .arg(&script_path)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("src", root.canonicalize().expect("the checkout"));
    // Nothing from the caller's environment may stand in for what the page sets.
    let inherited = std::env::vars_os().map(|(name, _)| name).filter(|name| {
        let name = name.to_string_lossy();
        name.starts_with("SPINNERET_") || name.starts_with("PG") || name == "REDISCLI_AUTH"
    });
    for name in inherited {
        command.env_remove(name);
    }
    let mut child = command
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("run bash");
    let group = ProcessGroup(child.id().expect("the script's pid"));
    let status = tokio::time::timeout(WALKTHROUGH_TIMEOUT, child.wait()).await;
    drop(group);
    let printed = std::fs::read_to_string(dir.path().join("walkthrough.log")).unwrap_or_default();
    match status {
        Ok(Ok(status)) if status.success() => {}
        other => panic!(
            "the walkthrough failed ({other:?}):\n{}",
            what_happened(dir.path())
        ),
    }

    // The admin API answered: two engines, one leading, and the task added with the token.
    assert!(
        printed.contains("\"role\":\"leader\"") && printed.contains("\"role\":\"follower\""),
        "GET /api/engines did not list a leader and a follower:\n{printed}"
    );
    assert!(
        printed.contains("\"id\":2,\"name\":\"again\""),
        "POST /api/tasks with the admin token did not answer the new task:\n{printed}"
    );
    // Every page of the site is in PostgreSQL, once, for each task.
    let pages = Site {
        pages: SITE_PAGES,
        port: ports[&SITE_PORT],
    }
    .ok_paths()
    .len();
    let counts = pg.query(
        "crawl",
        "SELECT task, count(*), count(DISTINCT url) FROM items GROUP BY task ORDER BY task",
    );
    assert_eq!(
        counts.trim(),
        format!("again|{pages}|{pages}\ntestsite|{pages}|{pages}"),
        "items per task in PostgreSQL\n{}",
        what_happened(dir.path())
    );
    // And the export the page makes holds the added task's items, from the site.
    let mut csv = csv::Reader::from_path(dir.path().join("again.csv")).expect("again.csv");
    let site = format!("http://127.0.0.1:{}/", ports[&SITE_PORT]);
    let mut exported = 0;
    for record in csv.records() {
        let record = record.expect("a CSV record");
        assert!(
            record.get(1).is_some_and(|url| url.starts_with(&site)),
            "an exported item not from the site: {record:?}"
        );
        exported += 1;
    }
    assert_eq!(exported, pages, "items in again.csv");
}

#[test]
fn ports_are_replaced_only_as_whole_numbers() {
    let ports = HashMap::from([(8000, 41000), (1234, 8000)]);
    let (out, replaced) = with_ports("curl http://127.0.0.1:8000/ :1234 18000 80001 8000", &ports);
    assert_eq!(out, "curl http://127.0.0.1:41000/ :8000 18000 80001 41000");
    assert_eq!(replaced, HashMap::from([(8000, 2), (1234, 1)]));
}
