//! The real `vigil` binary as a child process, for the end-to-end tests of this crate: [`Server`] over an
//! embedded SQLite in a given folder (serve, kill tests), [`BackendServer`] over a throw-away database of each
//! backend with its log kept for inspection (the client-compatibility suites).

#![allow(dead_code)] // each test binary uses its own part of this

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vigil_store::testing::TestDb;

/// Starts `vigil serve` on a free port over `data_dir` (and `database_url`, else the embedded SQLite) and waits
/// for its "listening" line; answers the child and its base URL. `log` receives stderr (else inherited).
fn spawn(
    data_dir: &Path,
    database_url: Option<&str>,
    log: Option<&Path>,
    extra_env: &[(&str, &str)],
) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.args(["serve", "--port", "0", "--data-dir"])
        .arg(data_dir)
        .env_remove("JWT_SECRET")
        .env_remove("VIGIL_ENV")
        .stdout(Stdio::piped());
    match database_url {
        Some(url) => cmd.env("DATABASE_URL", url),
        None => cmd.env_remove("DATABASE_URL"),
    };
    match log {
        Some(path) => cmd
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(path).expect("log file")),
        None => cmd.env("RUST_LOG", "warn").stderr(Stdio::inherit()),
    };
    for (k, v) in extra_env {
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
            let logged = log.map(|p| std::fs::read_to_string(p).unwrap_or_default());
            panic!("no listening line; log: {}", logged.unwrap_or_default())
        })
        .to_owned();
    (child, base)
}

pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Starts `vigil serve` on a free port over `data_dir` and waits for its "listening" line.
    pub fn start(data_dir: &Path, extra_env: &[(&str, &str)]) -> Server {
        let (child, base) = spawn(data_dir, None, None, extra_env);
        Server { child, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Signs in as the bootstrap admin (the `ADMIN_PASSWORD` the server was started with): its access token.
    pub async fn admin_token(&self, http: &reqwest::Client, password: &str) -> String {
        let r: serde_json::Value = http
            .post(self.url("/api/auth/login"))
            .json(&serde_json::json!({"username": "admin", "password": password}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("login json");
        r["access_token"].as_str().expect("access token").to_owned()
    }

    /// SIGTERM, then wait: a graceful shutdown exits 0.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("send SIGTERM");
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("vigil did not exit within 10 s of SIGTERM");
    }

    /// SIGKILL (`kill -9`): no shutdown code runs, whatever was in flight is cut where it stood.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server over a throw-away database of one backend (SQLite always, PostgreSQL when TEST_DATABASE_URL is set),
/// with its log kept for inspection.
pub struct BackendServer {
    child: Child,
    pub base: String,
    pub label: &'static str,
    log: PathBuf,
    _dir: tempfile::TempDir,
    _db: TestDb,
}

impl BackendServer {
    /// One server per available backend, each started with `env` on a free port.
    pub async fn all(env: &[(&str, &str)]) -> Vec<BackendServer> {
        let mut servers = Vec::new();
        for db in TestDb::all().await {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = dir.path().join("vigil.log");
            let (child, base) = spawn(dir.path(), Some(&db.url), Some(&log), env);
            servers.push(BackendServer {
                child,
                base,
                label: db.label,
                log,
                _dir: dir,
                _db: db,
            });
        }
        servers
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

impl Drop for BackendServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
