//! Databases for tests: every storage-touching test runs once per backend.
//!
//! [`TestDb::all`] yields a fresh SQLite file, plus — when `TEST_DATABASE_URL` names a PostgreSQL server — a fresh
//! database created on that server for this test alone (dropped again when the [`TestDb`] is dropped), so tests run
//! in parallel without seeing each other's rows. Without the variable the PostgreSQL half is skipped with a message.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, Executor};

use crate::tokens::Purpose;
use crate::{Store, StoreOptions};

/// The environment variable that points the tests at a PostgreSQL server (any database on it; trust or password auth).
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// A store for one test, and what must be cleaned up after it.
pub struct TestDb {
    pub store: Store,
    /// `"sqlite"` or `"postgres"`, for assertion messages.
    pub label: &'static str,
    /// The URL the store was opened with (for tests that start a second instance on the same data).
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

impl TestDb {
    /// A fresh SQLite database in a temporary directory.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = Store::data_dir_url(dir.path());
        let store = Store::open_data_dir(dir.path(), &StoreOptions::default())
            .await
            .expect("open SQLite");
        TestDb {
            store,
            label: "sqlite",
            url,
            _dir: Some(dir),
            pg_drop: None,
        }
    }

    /// The database a benchmark example asked for with its `--postgres` flag: a fresh PostgreSQL database (the
    /// example cannot run without `TEST_DATABASE_URL` then, and stops saying so), else SQLite.
    pub async fn for_bench(postgres: bool) -> TestDb {
        if !postgres {
            return TestDb::sqlite().await;
        }
        match TestDb::postgres().await {
            Some(db) => db,
            None => {
                eprintln!("--postgres needs {TEST_DATABASE_URL}");
                std::process::exit(2);
            }
        }
    }

    /// A fresh PostgreSQL database, or `None` (after saying so) when `TEST_DATABASE_URL` is unset.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(admin_url) = std::env::var(TEST_DATABASE_URL) else {
            eprintln!("skipping the PostgreSQL half of this test: {TEST_DATABASE_URL} is not set");
            return None;
        };
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "vigil_test_{}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..8)
                .unwrap_or("x")
        );
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to TEST_DATABASE_URL");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create a test database");
        admin.close().await.ok();
        let url = with_database(&admin_url, &name);
        let store = Store::connect(
            &url,
            &StoreOptions {
                max_connections: 8,
                ..StoreOptions::default()
            },
        )
        .await
        .expect("open the PostgreSQL test database");
        Some(TestDb {
            store,
            label: "postgres",
            url,
            _dir: None,
            pg_drop: Some((admin_url, name)),
        })
    }

    /// Another handle on this same database with its own pool, as a second replica would open it. Cleanup stays
    /// with `self`: drop the replica first.
    pub async fn replica(&self) -> TestDb {
        self.handle_with_connections(8).await
    }

    /// Another handle on this database whose pool has one connection, so every statement of a test meets the
    /// same connection and its statement cache (as a server with `DATABASE_MAX_CONNECTIONS=1` does). Cleanup
    /// stays with `self`.
    pub async fn single_connection(&self) -> TestDb {
        self.handle_with_connections(1).await
    }

    async fn handle_with_connections(&self, max_connections: u32) -> TestDb {
        let store = Store::connect(
            &self.url,
            &StoreOptions {
                max_connections,
                ..StoreOptions::default()
            },
        )
        .await
        .expect("open a second handle on the test database");
        TestDb {
            store,
            label: self.label,
            url: self.url.clone(),
            _dir: None,
            pg_drop: None,
        }
    }

    /// SQLite always, PostgreSQL when configured.
    pub async fn all() -> Vec<TestDb> {
        let mut dbs = vec![TestDb::sqlite().await];
        dbs.extend(TestDb::postgres().await);
        dbs
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg_drop.take() {
            // Dropping cannot await on the test's runtime (this thread may be the one driving it), so a private
            // runtime on another thread drops the database; FORCE ends the pool's connections server-side.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                        let _ = admin
                            .execute(
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                            )
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

// Fixtures: states that no public function produces on purpose (a crashed trainer's claim, an expired link, a
// listener killed server-side) and counts that only tests need. They live here, not in the tests, because all SQL
// lives in this crate; they panic on failure like the rest of a test.

/// Sets a MaxiDOM profile's training claim as a process that died mid-training would have left it.
pub async fn set_training_claim(
    store: &Store,
    profile_id: &str,
    claim: Option<&str>,
    claimed_at: Option<i64>,
) {
    sqlx::query(
        "UPDATE maxidom_profiles SET training_claim = $2, training_claimed_at = $3 WHERE profile_id = $1",
    )
    .bind(profile_id)
    .bind(claim)
    .bind(claimed_at)
    .execute(store.pool())
    .await
    .expect("set the training claim");
}

/// Sets a MaxiDOM profile's pooled-vector count (a full pool whose retraining never ran).
pub async fn set_pool_count(store: &Store, profile_id: &str, pool_count: i64) {
    sqlx::query("UPDATE maxidom_profiles SET pool_count = $2 WHERE profile_id = $1")
        .bind(profile_id)
        .bind(pool_count)
        .execute(store.pool())
        .await
        .expect("set the pool count");
}

/// MaxiDOM profiles claimed for training that still have no model (what a killed trainer leaves behind).
pub async fn orphaned_training_claims(store: &Store) -> i64 {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM maxidom_profiles \
         WHERE training_claim IS NOT NULL AND model_trained_at IS NULL",
    )
    .fetch_one(store.pool())
    .await
    .expect("count claims");
    n
}

/// Holds the store's connection (SQLite's only one) in a transaction for `duration`, as a long write would.
pub async fn occupy_connection(store: &Store, duration: std::time::Duration) {
    let mut tx = store.pool().begin().await.expect("begin");
    tokio::time::sleep(duration).await;
    sqlx::query("SELECT 1")
        .execute(&mut *tx)
        .await
        .expect("use the connection");
    tx.commit().await.expect("commit");
}

/// Makes every unused mailed token for `purpose` expire at `expires_at`.
pub async fn expire_mailed_tokens(store: &Store, purpose: Purpose, expires_at: i64) {
    sqlx::query("UPDATE auth_tokens SET expires_at = $1 WHERE purpose = $2 AND used_at IS NULL")
        .bind(expires_at)
        .bind(purpose.as_str())
        .execute(store.pool())
        .await
        .expect("expire tokens");
}

/// How many rows `table` holds.
pub async fn row_count(store: &Store, table: &str) -> i64 {
    // A table name cannot be a bound parameter; allow identifiers only.
    assert!(
        table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "not a table name: {table:?}"
    );
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .expect("count rows");
    n
}

/// Inserts `n` anomaly-log rows in one statement: row `i` (1-based) at `t0 - i` seconds, source
/// `{source_prefix}{i % 3}`, score `(i % 100) / 100`, flagged when `i % 4 == 0`, risk level by score, entropy 1.5,
/// the given `event_data` (JSON text). The rollup triggers fire for every row as in production.
pub async fn insert_synthetic_anomalies(
    store: &Store,
    n: i64,
    t0: i64,
    event_data: &str,
    source_prefix: &str,
) {
    sqlx::query(
        "INSERT INTO anomalies (id, ts, source_type, event_data, betti_h0, betti_h1, betti_h2, anomaly_score, \
         is_anomaly, risk_level, entropy, metadata, created_by, created_at) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         SELECT 'bulk-' || CAST(i AS TEXT), $2 - i * 1000, $4 || CAST(i % 3 AS TEXT), $3, 1, i % 4, 0, \
         CAST(i % 100 AS DOUBLE PRECISION) / 100.0, CASE WHEN i % 4 = 0 THEN 1 ELSE 0 END, \
         CASE WHEN i % 100 > 80 THEN 'Critical' WHEN i % 100 > 50 THEN 'High' WHEN i % 100 > 20 THEN 'Medium' ELSE 'Low' END, \
         1.5, '{}', NULL, 0 FROM n",
    )
    .bind(n)
    .bind(t0)
    .bind(event_data)
    .bind(source_prefix)
    .execute(store.pool())
    .await
    .expect("bulk insert");
}

/// The anomaly-log benchmark's data: `rows` rows in one INSERT … SELECT, in time order as a live feed would write
/// them: row i at `t_end - i * step`, source `source-{i·7 mod 8}`, a score spread uniformly over [0, 1) by a
/// multiplicative hash, flagged above 0.65. The rollup triggers fire for every row as in production.
pub async fn insert_benchmark_anomalies(
    store: &Store,
    rows: i64,
    t_end: i64,
    step: i64,
) -> Result<(), crate::StoreError> {
    sqlx::query(
        "INSERT INTO anomalies (id, ts, source_type, event_data, betti_h0, betti_h1, betti_h2, anomaly_score, \
         is_anomaly, risk_level, entropy, metadata, created_by, created_at) \
         WITH RECURSIVE n(i) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < $1), \
         g(i, score) AS (SELECT i, CAST((i * 7919) % 1000 AS DOUBLE PRECISION) / 1000.0 FROM n) \
         SELECT 'bench-' || CAST(i AS TEXT), $2 - i * $3, 'source-' || CAST((i * 7) % 8 AS TEXT), \
         '{\"value\": ' || CAST(i % 100 AS TEXT) || ', \"host\": \"h' || CAST(i % 50 AS TEXT) || '\"}', \
         1, i % 4, 0, score, CASE WHEN score > 0.65 THEN 1 ELSE 0 END, \
         CASE WHEN score > 0.8 THEN 'Critical' WHEN score > 0.5 THEN 'High' WHEN score > 0.2 THEN 'Medium' ELSE 'Low' END, \
         score * 3.0, '{\"scores\": {}}', NULL, 0 FROM g",
    )
    .bind(rows)
    .bind(t_end)
    .bind(step)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Gathers full planner statistics now (`ANALYZE`; PostgreSQL: `VACUUM ANALYZE`), as a long-running database
/// would have them. Returns the statement run.
pub async fn analyze(store: &Store) -> Result<&'static str, crate::StoreError> {
    let sql = match store.backend() {
        crate::Backend::Postgres => "VACUUM ANALYZE",
        crate::Backend::Sqlite => "ANALYZE",
    };
    sqlx::query(sql).execute(store.pool()).await?;
    Ok(sql)
}

/// Drops the index `name` (benchmarks measure what it is worth).
pub async fn drop_index(store: &Store, name: &str) -> Result<(), crate::StoreError> {
    assert!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "not an index name: {name:?}"
    );
    sqlx::query(&format!("DROP INDEX {name}"))
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Server process ids of this database's sessions that are `LISTEN`ing (PostgreSQL).
pub async fn postgres_listener_pids(store: &Store) -> Vec<i64> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT CAST(pid AS BIGINT) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(store.pool())
    .await
    .expect("list listeners");
    rows.into_iter().map(|(pid,)| pid).collect()
}

/// Ends, server-side, every session of this database that is `LISTEN`ing (PostgreSQL): a lost connection.
pub async fn terminate_postgres_listeners(store: &Store) {
    sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%') AS t",
    )
    .execute(store.pool())
    .await
    .expect("terminate listeners");
}

/// Replaces the database name in a PostgreSQL URL, keeping credentials, host and query.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_database_name() {
        use super::with_database;
        assert_eq!(
            with_database("postgres://127.0.0.1:5432/test", "x"),
            "postgres://127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
