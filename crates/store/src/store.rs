use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::StoreError;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which engine a [`Store`] talks to. Queries are shared; only pool sizing and a few pragmas differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redact(url)))
        }
    }
}

/// Pool settings. The defaults suit one server process.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// PostgreSQL pool size (SQLite always uses one connection; see the crate docs).
    pub max_connections: u32,
    /// How long a request may wait for a pooled connection before failing.
    pub acquire_timeout: Duration,
}

impl StoreOptions {
    /// The default pool size (also `vigil serve`'s `DATABASE_MAX_CONNECTIONS` default).
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// Read-only connections beside SQLite's one writer (see [`Store::reader`]).
const SQLITE_READERS: u32 = 2;

/// A handle to the database: cheap to clone, shared by every request and background job.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where the hot reads go: on SQLite its own read-only connections, on PostgreSQL the same pool.
    reader: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens (creating if needed) the database at `url`, then brings its schema up to date.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let url = match backend {
            Backend::Sqlite => sqlite_url_creating(url),
            Backend::Postgres => url.to_owned(),
        };
        let connect =
            AnyConnectOptions::from_str(&url)?.log_statements(tracing::log::LevelFilter::Trace);
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(options.acquire_timeout)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // WAL lets the file be read while it is written and survives a process crash with every
                            // committed transaction; NORMAL sync skips the per-commit fsync of the main file only.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            // Checkpoints happen in the background (see `checkpoint`); this is the safety net.
                            conn.execute(
                                format!(
                                    "PRAGMA wal_autocheckpoint = {}",
                                    crate::checkpoint::FALLBACK_PAGES
                                )
                                .as_str(),
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(connect.clone())
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(options.acquire_timeout)
                    .connect_with(connect.clone())
                    .await?
            }
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await?;
        let reader = if backend == Backend::Sqlite && !is_in_memory(&url) {
            crate::checkpoint::spawn(&url, pool.clone());
            // Opened after the migrations: a reader never sees a schema older than the code's.
            AnyPoolOptions::new()
                .max_connections(SQLITE_READERS)
                .acquire_timeout(options.acquire_timeout)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        // WAL readers read the last committed snapshot beside the writer; `query_only` makes a
                        // write sent here by mistake fail at once instead of racing the writer for the lock.
                        conn.execute("PRAGMA query_only = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        Ok(())
                    })
                })
                .connect_with(connect)
                .await?
        } else {
            // An in-memory SQLite database exists only on its own connection; PostgreSQL pools already read in
            // parallel.
            pool.clone()
        };
        let store = Store {
            pool,
            reader,
            backend,
        };
        store.refresh_planner_stats().await?;
        tracing::info!(backend = ?backend, "database ready");
        Ok(store)
    }

    /// Keeps the query planner's statistics current, so it picks the indexes the list and stats queries were built
    /// for (without statistics SQLite prefers an equality index over a better covering range index, e.g. for a
    /// `source` + `min_score` count). SQLite never gathers them by itself: this runs its `PRAGMA optimize`, which
    /// re-analyses only tables whose size changed a lot, with a bounded effort. Called at start and by the periodic
    /// housekeeping. PostgreSQL's autovacuum keeps its own statistics, so there it does nothing.
    pub async fn refresh_planner_stats(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            // 0x10000: look at every table, not only those this connection used; 0x02: analyse where it helps.
            sqlx::query("PRAGMA optimize=0x10002")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Opens the embedded SQLite database `vigil.db` inside `data_dir`, creating the directory if needed.
    pub async fn open_data_dir(
        data_dir: &Path,
        options: &StoreOptions,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let file = data_dir.join("vigil.db");
        Store::connect(&format!("sqlite://{}", file.display()), options).await
    }

    /// The SQLite URL `open_data_dir` would use, for logs and for commands that print where data lives.
    pub fn data_dir_url(data_dir: &Path) -> String {
        format!("sqlite://{}", data_dir.join("vigil.db").display())
    }

    /// The pool, for this crate's modules only: keeping it private is what keeps every statement in this crate.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for reads on a hot path that must not queue behind writes, for this crate's modules only.
    ///
    /// SQLite has one writing connection, served by one worker thread: a read sent there waits for every
    /// transaction queued before it (with the MaxiDOM feedback loop on, `/score`'s group commits). WAL mode lets
    /// other connections read the last committed state meanwhile, so these reads get [`SQLITE_READERS`]
    /// read-only connections of their own. A read sent here sees every transaction committed before it started
    /// (the same as on the writer once that write is acknowledged), never one still open: use it only outside
    /// transactions, for reads that do not need to see a write of their own that is not committed yet.
    pub(crate) fn reader(&self) -> &AnyPool {
        &self.reader
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Round-trips a trivial query: the readiness probe.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Waits for in-flight queries and closes every connection (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        self.reader.close().await;
        self.pool.close().await;
    }
}

/// An in-memory SQLite database: a second connection would open another, empty database.
pub(crate) fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// SQLite opens read-write-create only when asked; a fresh machine has no file yet.
fn sqlite_url_creating(url: &str) -> String {
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Hides a password in a database URL before it reaches a log or an error message.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;

    /// The audit behind `anomalies::NULLABLE_FLOAT_STATEMENTS_CACHED`: through sqlx's `Any` driver a NULL `i64` or
    /// text parameter is declared with its own type, so a cached statement that met NULL first still takes a value
    /// next (the store binds `Option<i64>` and `Option<String>` in cached statements). A NULL `f64` is not, which is
    /// why the statements that bind one are not cached.
    #[tokio::test]
    async fn null_integer_and_text_binds_stay_usable_in_cached_statements() {
        for db in TestDb::all().await {
            let one = db.single_connection().await;
            let pool = one.store.pool();
            sqlx::query("CREATE TABLE bind_probe (i BIGINT, t TEXT)")
                .execute(pool)
                .await
                .expect("create");
            let insert = "INSERT INTO bind_probe (i, t) VALUES ($1, $2)";
            for (i, t) in [
                (None, None),
                (Some(7_i64), Some("x")),
                (None, Some("y")),
                (Some(8), None),
            ] {
                sqlx::query(insert)
                    .bind(i)
                    .bind(t)
                    .execute(pool)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {i:?} {t:?}: {e}", db.label));
            }
            let n: i64 = sqlx::query_scalar("SELECT CAST(COUNT(i) AS BIGINT) FROM bind_probe")
                .fetch_one(pool)
                .await
                .expect("count");
            assert_eq!(n, 2, "{}", db.label);
            drop(one);
        }
    }

    /// SQLite's readers read the last committed state while the one writing connection is held by an open
    /// transaction (the reason they exist), never see that transaction's rows before it commits, see them right
    /// after, and refuse writes.
    #[tokio::test]
    async fn sqlite_readers_read_beside_an_open_write_and_cannot_write() {
        let db = TestDb::sqlite().await;
        let (writer, reader) = (db.store.pool(), db.store.reader());
        sqlx::query("CREATE TABLE reader_probe (i BIGINT)")
            .execute(writer)
            .await
            .expect("create");
        let count = || async {
            let n: i64 = sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM reader_probe")
                .fetch_one(reader)
                .await
                .expect("count on a reader");
            n
        };
        let mut tx = writer.begin().await.expect("begin");
        sqlx::query("INSERT INTO reader_probe (i) VALUES (1)")
            .execute(&mut *tx)
            .await
            .expect("insert");
        // The writer's only connection is held by `tx`: a read that needed it would wait for the timeout.
        let before = tokio::time::timeout(Duration::from_secs(5), count())
            .await
            .expect("a reader does not wait for the open transaction");
        assert_eq!(before, 0, "an uncommitted row is not visible");
        tx.commit().await.expect("commit");
        assert_eq!(count().await, 1, "a committed row is visible at once");
        let refused = sqlx::query("INSERT INTO reader_probe (i) VALUES (2)")
            .execute(reader)
            .await;
        assert!(refused.is_err(), "a reader refuses writes");
        assert_eq!(count().await, 1);
    }

    /// Both engines must get the same schema steps: a migration added on one side only would leave the other
    /// engine's deployments without it, and nothing else would notice until a query failed there.
    #[test]
    fn both_migration_folders_hold_the_same_file_names() {
        let names = |engine: &str| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(engine);
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|entry| {
                    entry
                        .expect("a directory entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            names.sort();
            names
        };
        let sqlite = names("sqlite");
        assert!(!sqlite.is_empty(), "no migrations found");
        assert_eq!(sqlite, names("postgres"));
        // And what is compiled in agrees with the folders.
        let versions = |m: &Migrator| m.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(versions(&SQLITE_MIGRATIONS), versions(&POSTGRES_MIGRATIONS));
        assert_eq!(versions(&SQLITE_MIGRATIONS).len(), sqlite.len());
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("sqlite://./data/vigil.db"),
            "sqlite://./data/vigil.db"
        );
    }

    #[test]
    fn recognises_backends() {
        assert_eq!(Backend::of_url("sqlite://x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of_url("postgresql://h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(matches!(
            Backend::of_url("mysql://h/db"),
            Err(StoreError::UnsupportedUrl(_))
        ));
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        assert_eq!(
            sqlite_url_creating("sqlite://a.db"),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url_creating("sqlite://a.db?cache=shared"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url_creating("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
    }
}
