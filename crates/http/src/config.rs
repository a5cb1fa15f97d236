//! Settings of the HTTP core, parsed once at start from flags, the environment and `.env`.

use std::path::Path;

use anyhow::Context;

/// Development generates what it needs to run with no setup; production refuses to start without explicit secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, clap::Args)]
pub struct HttpConfig {
    /// `production` refuses to start without JWT_SECRET (and other secrets); `development` generates one.
    #[arg(
        long = "env",
        env = "VIGIL_ENV",
        value_enum,
        default_value = "development"
    )]
    pub environment: Environment,

    /// Allowed CORS origins, comma-separated; `*` echoes any origin (credentials allowed), as the browser extension needs.
    #[arg(long, env = "CORS_ORIGINS", default_value = defaults::CORS_ORIGINS)]
    pub cors_origins: String,

    /// Secret for signing access tokens (at least 32 bytes). Development without it: a random one kept in the data dir.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Access-token lifetime in minutes.
    #[arg(long, env = "ACCESS_TOKEN_EXPIRE_MINUTES", default_value_t = defaults::ACCESS_TOKEN_EXPIRE_MINUTES)]
    pub access_token_expire_minutes: i64,

    /// Largest accepted request body in bytes (MaxiDOM payloads reach ~1 MB; the contract requires 8 MiB).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = defaults::MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Take the client address from X-Forwarded-For (only behind a proxy you trust; used by rate limits).
    #[arg(long, env = "TRUST_PROXY_HEADERS", default_value_t = defaults::TRUST_PROXY_HEADERS)]
    pub trust_proxy_headers: bool,

    /// The public base URL of this server, used in links sent by email (e.g. https://vigil.example.com).
    #[arg(long, env = "PUBLIC_URL", default_value = defaults::PUBLIC_URL)]
    pub public_url: String,

    /// Seconds a client has to send a request's headers, counted from the end of the previous response on a
    /// kept-alive connection: a silent or trickling client (slowloris) is disconnected after this.
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT_SECS", default_value_t = defaults::HTTP_HEADER_READ_TIMEOUT_SECS)]
    pub header_read_timeout_secs: u64,

    /// Most open client connections (WebSocket and SSE included); further clients wait in the listen backlog.
    /// 0: derived from the process's open-file limit, keeping a reserve for the database, files and logs.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = defaults::HTTP_MAX_CONNECTIONS)]
    pub max_connections: usize,
}

/// The default of every setting, shared by the command line (`default_value_t`) and [`HttpConfig::for_tests`].
pub mod defaults {
    pub const CORS_ORIGINS: &str = "*";
    pub const ACCESS_TOKEN_EXPIRE_MINUTES: i64 = 1440;
    pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
    pub const TRUST_PROXY_HEADERS: bool = false;
    pub const PUBLIC_URL: &str = "http://127.0.0.1:8000";
    /// Long enough for a slow mobile link to send a few hundred bytes of headers, short enough that idle sockets
    /// do not pile up.
    pub const HTTP_HEADER_READ_TIMEOUT_SECS: u64 = 30;
    /// 0: derived from the open-file limit.
    pub const HTTP_MAX_CONNECTIONS: usize = 0;
}

/// File descriptors kept out of the connection cap for everything else the process opens.
const FD_RESERVE: u64 = 256;

impl HttpConfig {
    /// The connection cap in force: [`HttpConfig::max_connections`], or 7/8 of the open-file limit less a reserve.
    pub fn connection_cap(&self) -> usize {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(65_536);
        let cap = limit.saturating_sub(FD_RESERVE) / 8 * 7;
        usize::try_from(cap.clamp(64, 1_000_000)).unwrap_or(64)
    }

    /// Defaults as if no flag or variable were given (tests start from these).
    pub fn for_tests() -> Self {
        HttpConfig {
            environment: Environment::Development,
            cors_origins: defaults::CORS_ORIGINS.into(),
            jwt_secret: Some("test-secret-test-secret-test-secret!".into()),
            access_token_expire_minutes: 60,
            max_body_bytes: defaults::MAX_BODY_BYTES,
            trust_proxy_headers: defaults::TRUST_PROXY_HEADERS,
            public_url: defaults::PUBLIC_URL.into(),
            header_read_timeout_secs: defaults::HTTP_HEADER_READ_TIMEOUT_SECS,
            max_connections: defaults::HTTP_MAX_CONNECTIONS,
        }
    }

    /// The JWT signing secret: the configured one, or in development a random one created once under `data_dir`.
    pub fn resolve_jwt_secret(&self, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
        if let Some(secret) = self.jwt_secret.as_deref().filter(|s| !s.is_empty()) {
            anyhow::ensure!(
                secret.len() >= 32,
                "JWT_SECRET must be at least 32 bytes long"
            );
            return Ok(secret.as_bytes().to_vec());
        }
        anyhow::ensure!(
            self.environment == Environment::Development,
            "JWT_SECRET is required in production (VIGIL_ENV=production); refusing to start without it"
        );
        let path = data_dir.join("jwt_secret");
        if let Ok(existing) = std::fs::read_to_string(&path) {
            let existing = existing.trim();
            anyhow::ensure!(
                existing.len() >= 32,
                "{} is too short; delete it to regenerate",
                path.display()
            );
            return Ok(existing.as_bytes().to_vec());
        }
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let secret = hex::encode(rand::random::<[u8; 32]>());
        write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
        tracing::warn!(path = %path.display(), "no JWT_SECRET configured: generated a development secret");
        Ok(secret.into_bytes())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_requires_a_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = HttpConfig {
            environment: Environment::Production,
            jwt_secret: None,
            ..HttpConfig::for_tests()
        };
        assert!(cfg.resolve_jwt_secret(dir.path()).is_err());
        assert!(!dir.path().join("jwt_secret").exists());
    }

    #[test]
    fn short_secrets_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = HttpConfig {
            jwt_secret: Some("short".into()),
            ..HttpConfig::for_tests()
        };
        assert!(cfg.resolve_jwt_secret(dir.path()).is_err());
    }

    #[test]
    fn development_generates_once_and_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = HttpConfig {
            jwt_secret: None,
            ..HttpConfig::for_tests()
        };
        let first = cfg.resolve_jwt_secret(dir.path()).expect("generate");
        let second = cfg.resolve_jwt_secret(dir.path()).expect("reuse");
        assert_eq!(first, second);
        assert_eq!(first.len(), 64);
    }
}
