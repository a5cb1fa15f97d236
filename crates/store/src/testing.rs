//! Databases for tests: every storage-touching test runs once per backend.
//!
//! [`TestDb::all`] yields a fresh SQLite file, plus — when `TEST_DATABASE_URL` names a PostgreSQL server — a fresh
//! database created on that server for this test alone (dropped again when the [`TestDb`] is dropped), so tests run
//! in parallel without seeing each other's rows. Without the variable the PostgreSQL half is skipped with a message.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, Executor};

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
