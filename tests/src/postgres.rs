//! A real PostgreSQL server for the tests: Debian's `postgresql` package, `initdb` into a
//! temporary directory and `pg_ctl` on a free loopback port. PostgreSQL refuses to run as
//! root, so as root (CI) the server runs as the `postgres` account the package creates.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running PostgreSQL server, stopped when dropped.
pub struct PostgresServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    dir: tempfile::TempDir,
}

/// Where Debian keeps the server's programs (not on PATH): the newest version's `bin`.
fn server_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return dir.into();
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|versions| {
            versions
                .filter_map(Result::ok)
                .filter_map(|v| v.file_name().to_str()?.parse::<u32>().ok())
                .max()
        })
        .map(|v| format!("/usr/lib/postgresql/{v}/bin/initdb"));
    let initdb = crate::require_program(
        "PG_INITDB",
        newest
            .as_deref()
            .unwrap_or("/usr/lib/postgresql/15/bin/initdb"),
    );
    initdb
        .parent()
        .map(Path::to_path_buf)
        .expect("initdb's directory")
}

/// Whether the tests run as root: then the server runs as `postgres`.
fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

impl PostgresServer {
    /// Makes a database cluster in a temporary directory and starts its server, trusting
    /// every connection.
    pub fn start() -> PostgresServer {
        PostgresServer::start_with_auth("--auth=trust")
    }

    /// A server that asks for a password over TCP (scram-sha-256), as a real one does, and
    /// trusts only its Unix socket (in [`PostgresServer::socket_dir`]), where the superuser
    /// `spin` makes roles.
    pub fn start_with_passwords() -> PostgresServer {
        PostgresServer::start_with_auth("--auth-local=trust --auth-host=scram-sha-256")
    }

    /// Makes a database cluster with `auth` (initdb's authentication flags, space-separated)
    /// and starts its server.
    fn start_with_auth(auth: &str) -> PostgresServer {
        let bin = server_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        if as_root() {
            // The temporary directory is root's with mode 0700: the server's account needs it.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown to postgres failed");
        }
        let server = PostgresServer {
            port: free_port(),
            bin,
            data,
            dir,
        };
        let data = server.data.display().to_string();
        let mut args = vec!["-D", data.as_str(), "-U", "spin", "-E", "UTF8", "--no-sync"];
        args.extend(auth.split_whitespace());
        server.run("initdb", &args);
        server.start_server();
        server
    }

    /// Runs one of the server's programs, as `postgres` when the tests run as root, and
    /// returns what it printed.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let path = self.bin.join(program);
        let mut command = if as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        // A directory postgres may stand in (the tests' own may be root's).
        command.current_dir(self.dir.path());
        let out = command.args(args).output().expect("run a postgres program");
        assert!(
            out.status.success(),
            "{program} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `sql` in `database` as the superuser `spin`, through the Unix socket, and
    /// returns the rows as psql prints them unaligned (`a|b`, one a line).
    pub fn query(&self, database: &str, sql: &str) -> String {
        let socket = self.socket_dir().display().to_string();
        let port = self.port.to_string();
        self.run(
            "psql",
            &[
                "-h", &socket, "-p", &port, "-U", "spin", "-d", database, "-X", "-At", "-c", sql,
            ],
        )
    }

    /// The directory of its Unix socket: `psql -h DIR` reaches it there.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory of its programs, `psql` among them.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-o",
                &options,
                "-l",
                &log.display().to_string(),
                "-w",
                "start",
            ],
        );
    }

    /// Its URL, for `--store`.
    pub fn url(&self) -> String {
        format!("postgres://spin@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast: sessions are cut, what is committed stays).
    pub fn stop(&self) {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }

    /// Starts it again on the same port and data.
    pub fn restart(&self) {
        self.start_server();
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let mut command = if as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = command
            .current_dir(self.dir.path())
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
