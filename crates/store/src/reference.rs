//! The reference MaxiDOM backend's SQLite database, read once by `vigil import-maxidom`: its
//! `users(profile_id, password_hash)` table. Opened read-only, on its own connection, whatever this store's engine
//! is; nothing here writes to it.

use std::path::Path;

use sqlx::{Connection, Row};

/// Why the reference users could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot open the reference database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot read the reference users table: {0}")]
    Read(#[source] sqlx::Error),
}

/// One row of the reference `users` table, as stored (the importer validates both columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceUser {
    /// Empty when the row's id is NULL.
    pub profile_id: String,
    pub password_hash: Option<String>,
}

/// Every row of the `users` table of the reference database at `path`.
pub async fn read_users(path: &Path) -> Result<Vec<ReferenceUser>, ReferenceError> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .map_err(|source| ReferenceError::Open {
            path: path.display().to_string(),
            source,
        })?;
    // Untyped rows: the reference declares no types we can rely on, so each cell is read as optional text.
    let rows = sqlx::query("SELECT profile_id, password_hash FROM users")
        .fetch_all(&mut conn)
        .await
        .map_err(ReferenceError::Read)?;
    let mut users = Vec::with_capacity(rows.len());
    for row in rows {
        let id: Option<String> = row.try_get(0).map_err(ReferenceError::Read)?;
        let hash: Option<String> = row.try_get(1).map_err(ReferenceError::Read)?;
        users.push(ReferenceUser {
            profile_id: id.unwrap_or_default(),
            password_hash: hash,
        });
    }
    // A failed close loses nothing: the connection was read-only.
    conn.close().await.ok();
    Ok(users)
}

/// Creates a reference-shaped database at `path` holding `users` (`(profile_id, password_hash)`), for tests of the
/// import.
#[cfg(any(test, feature = "testing"))]
pub async fn create_for_tests(
    path: &Path,
    users: &[(&str, &str)],
) -> Result<(), crate::StoreError> {
    use sqlx::Executor;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    conn.execute("CREATE TABLE users (profile_id TEXT PRIMARY KEY, password_hash TEXT)")
        .await?;
    for (id, hash) in users {
        sqlx::query("INSERT INTO users VALUES ($1, $2)")
            .bind(*id)
            .bind(*hash)
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_the_reference_users_and_names_a_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("maxidom.db");
        create_for_tests(&path, &[("a", "h1"), ("b", "h2")])
            .await
            .expect("create");
        let users = read_users(&path).await.expect("read");
        assert_eq!(
            users,
            vec![
                ReferenceUser {
                    profile_id: "a".into(),
                    password_hash: Some("h1".into())
                },
                ReferenceUser {
                    profile_id: "b".into(),
                    password_hash: Some("h2".into())
                },
            ]
        );
        let missing = dir.path().join("none.db");
        let err = read_users(&missing).await.expect_err("no file");
        assert!(
            err.to_string()
                .contains("cannot open the reference database"),
            "{err}"
        );
    }
}
