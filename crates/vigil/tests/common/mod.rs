//! The real `vigil` binary for the client-compatibility suites, over a throw-away database of each backend
//! (SQLite always, PostgreSQL when TEST_DATABASE_URL is set), with its log kept for inspection.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use vigil_store::testing::TestDb;

pub struct Server {
    child: Child,
    pub base: String,
    pub label: &'static str,
    log: PathBuf,
    _dir: tempfile::TempDir,
    _db: TestDb,
}

impl Server {
    /// One server per available backend, each started with `env` on a free port.
    pub async fn all(env: &[(&str, &str)]) -> Vec<Server> {
        let mut servers = Vec::new();
        for db in TestDb::all().await {
            servers.push(Server::start(db, env));
        }
        servers
    }

    fn start(db: TestDb, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("vigil.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.args(["serve", "--port", "0", "--data-dir"])
            .arg(dir.path())
            .env("DATABASE_URL", &db.url)
            .env_remove("JWT_SECRET")
            .env_remove("VIGIL_ENV")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start vigil");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("vigil listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "no listening line; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_owned();
        Server {
            child,
            base,
            label: db.label,
            log,
            _dir: dir,
            _db: db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{}", self.base.replacen("http://", "ws://", 1), path)
    }

    /// Everything the server logged so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
