//! A real `redis-server` for the tests: on a free loopback port, in a temporary directory,
//! with the append-only file on, so that it can be killed and restarted from it.

use crate::eventually::{eventually, eventually_every};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its TLS port, when started with [`RedisServer::start_tls`].
    pub tls_port: Option<u16>,
    /// The flags it was started with beyond the defaults, used again by a restart.
    more: Vec<String>,
    dir: tempfile::TempDir,
    binary: PathBuf,
    child: Child,
}

impl RedisServer {
    /// Starts a server (Debian's `redis-server`, or `$REDIS_SERVER`) and waits until it answers.
    pub async fn start() -> RedisServer {
        RedisServer::start_with(&[]).await
    }

    /// A server that also listens with TLS (certificates of `pki`; client certificates
    /// optional) and requires `password` (Redis AUTH).
    pub async fn start_tls(pki: &crate::certs::Pki, password: &str) -> RedisServer {
        let tls_port = free_port();
        let path = |p: &Path| p.display().to_string();
        let more = [
            "--tls-port".to_owned(),
            tls_port.to_string(),
            "--tls-cert-file".to_owned(),
            path(&pki.server_cert),
            "--tls-key-file".to_owned(),
            path(&pki.server_key),
            "--tls-ca-cert-file".to_owned(),
            path(&pki.ca),
            "--tls-auth-clients".to_owned(),
            "optional".to_owned(),
            "--requirepass".to_owned(),
            password.to_owned(),
        ];
        let more: Vec<&str> = more.iter().map(String::as_str).collect();
        let mut server = RedisServer::start_with(&more).await;
        server.tls_port = Some(tls_port);
        server
    }

    /// A server that takes `DEBUG` commands from loopback (`DEBUG SLEEP` freezes it, as a
    /// stalled Redis would).
    pub async fn start_with_debug() -> RedisServer {
        RedisServer::start_with(&["--enable-debug-command", "local"]).await
    }

    /// Sends `line` and returns at once, without waiting for the reply (a `DEBUG SLEEP`
    /// that freezes the server while the test goes on); the connection closes when the
    /// returned handle is dropped.
    pub async fn send(&self, line: &str) -> tokio::net::TcpStream {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect to redis");
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
        stream
    }

    /// [`RedisServer::start`] with more server flags.
    pub async fn start_with(more: &[&str]) -> RedisServer {
        let binary = crate::require_program("REDIS_SERVER", "/usr/bin/redis-server");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = spawn(&binary, dir.path(), port, more);
        let server = RedisServer {
            port,
            tls_port: None,
            more: more.iter().map(|m| m.to_string()).collect(),
            dir,
            binary,
            child,
        };
        server.wait_ready().await;
        server
    }

    /// Its URL, for `--redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its TLS URL with `password`, for `--redis` (a server started with
    /// [`RedisServer::start_tls`]).
    pub fn tls_url(&self, password: &str) -> String {
        let port = self.tls_port.expect("a server started with TLS");
        format!("rediss://:{password}@127.0.0.1:{port}/0")
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub async fn kill9(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts it again on the same port and directory, from its append-only file.
    pub async fn restart(&mut self) {
        let more: Vec<&str> = self.more.iter().map(String::as_str).collect();
        self.child = spawn(&self.binary, self.dir.path(), self.port, &more);
        self.wait_ready().await;
    }

    /// Sends one command (inline syntax) and returns the raw reply.
    pub async fn command(&self, line: &str) -> String {
        let mut stream = self.send(line).await;
        let mut buf = vec![0u8; 64 * 1024];
        let n = stream.read(&mut buf).await.expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    async fn wait_ready(&self) {
        let port = self.port;
        // Polling a starting server: there is no event to wait on but its answer.
        eventually_every(
            Duration::from_secs(20),
            Duration::from_millis(20),
            &format!("redis-server to answer on port {port}"),
            || async move {
                let Ok(Ok(mut stream)) = tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio::net::TcpStream::connect(("127.0.0.1", port)),
                )
                .await
                else {
                    return false;
                };
                let mut reply = [0u8; 7];
                // A server with a password answers, and refuses, before AUTH.
                stream.write_all(b"PING\r\n").await.is_ok()
                    && stream.read_exact(&mut reply).await.is_ok()
                    && (&reply == b"+PONG\r\n" || &reply == b"-NOAUTH")
            },
        )
        .await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn spawn(binary: &Path, dir: &Path, port: u16, more: &[&str]) -> Child {
    Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .args([
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
        ])
        .args([
            "--protected-mode",
            "yes",
            "--maxmemory-policy",
            "noeviction",
        ])
        .args(more)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
}

/// A Redis Cluster of masters without replicas, made with `redis-cli --cluster create`.
pub struct RedisCluster {
    /// Its nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` cluster-enabled servers, joins them into one cluster covering every
    /// slot, and waits until each says the cluster is ok.
    pub async fn start(masters: usize) -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..masters {
            nodes.push(
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .await,
            );
        }
        let cli = crate::require_program("REDIS_CLI", "/usr/bin/redis-cli");
        let mut create = Command::new(cli);
        create.args(["--cluster", "create"]);
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .await
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Polling the nodes' gossip: there is no event to wait on.
        eventually(
            Duration::from_secs(30),
            "the cluster to become ok",
            || async {
                for node in &nodes {
                    if !node
                        .command("CLUSTER INFO")
                        .await
                        .contains("cluster_state:ok")
                    {
                        return false;
                    }
                }
                true
            },
        )
        .await;
        RedisCluster { nodes }
    }

    /// Its `--redis` value: every node, as `redis+cluster://`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }
}
