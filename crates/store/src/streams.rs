//! TopoForge's per-stream state (`stream_states`, migrations 0004 and 0010): the analysis state, model,
//! configuration overrides and incident tracker of every stream, written with optimistic concurrency.
//!
//! Every replica may analyse any stream. A writer remembers the `version` it read and writes with
//! `UPDATE … WHERE stream = $s AND version = $v`; zero rows updated means another replica wrote first, and the
//! caller re-reads and recomputes ([`save`] returns [`Saved::Conflict`]). The model column is rewritten only when
//! the caller says it changed, so the per-event write stays a few kilobytes.
//!
//! Contention: a writer that loses the race once retries in a [`StreamLock`] turn (on PostgreSQL a transaction
//! that reads the row `FOR UPDATE` and writes it on the same connection): other writers' updates wait for the turn
//! and then miss, so the turn's write lands. Contention costs a wait instead of an error, and a pool of one
//! connection cannot deadlock on it.

use sqlx::{Any, Executor};

use crate::incidents::{self, IncidentWrite};
use crate::time::now_ms;
use crate::{Backend, Store, StoreError};

/// A stream's stored state.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStream {
    pub stream: String,
    pub version: i64,
    pub state: Vec<u8>,
    pub model: Option<Vec<u8>>,
    pub model_generation: i64,
    pub config: Option<String>,
    pub updated_at: i64,
    /// The incident tracker (JSON, written by `vigil-realtime`'s `incident` module); `None` when no incident is
    /// open.
    pub incident: Option<String>,
    /// What the stream remembers of applied client event ids and sequence numbers (JSON, see [`crate::dedup`]).
    pub dedup: Option<String>,
}

/// A row as selected by [`COLUMNS`].
type Row = (
    String,
    i64,
    String,
    Option<Vec<u8>>,
    i64,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
);

const COLUMNS: &str =
    "stream, version, state, model, model_generation, config, updated_at, incident, dedup";

fn from_row(r: Row) -> StoredStream {
    let (stream, version, state, model, model_generation, config, updated_at, incident, dedup) = r;
    StoredStream {
        stream,
        version,
        state: state.into_bytes(),
        model,
        model_generation,
        config,
        updated_at,
        incident,
        dedup,
    }
}

/// The stored state of `stream`, if it has one.
pub async fn load(store: &Store, stream: &str) -> Result<Option<StoredStream>, StoreError> {
    load_on(store.pool(), stream).await
}

async fn load_on<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    stream: &str,
) -> Result<Option<StoredStream>, StoreError> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM stream_states WHERE stream = $1"
    ))
    .bind(stream)
    .fetch_optional(exec)
    .await?;
    Ok(row.map(from_row))
}

/// One writer's exclusive turn at a stream across all replicas (see the module docs): on PostgreSQL a transaction
/// that reads the row `FOR UPDATE`, so a concurrent optimistic `UPDATE` waits for it and then misses, and the turn's
/// own write cannot. On SQLite, where one process owns the database, it holds nothing. One turn covers one read and
/// one write; dropping it uncommitted rolls back.
pub struct StreamLock {
    stream: String,
    tx: Option<sqlx::Transaction<'static, Any>>,
}

/// Starts a turn at `stream`.
pub async fn lock(store: &Store, stream: &str) -> Result<StreamLock, StoreError> {
    let tx = match store.backend() {
        Backend::Sqlite => None,
        Backend::Postgres => Some(store.pool().begin().await?),
    };
    Ok(StreamLock {
        stream: stream.to_owned(),
        tx,
    })
}

impl StreamLock {
    /// [`load`], locking the row until [`StreamLock::save`].
    pub async fn load(&mut self, store: &Store) -> Result<Option<StoredStream>, StoreError> {
        match self.tx.as_mut() {
            Some(tx) => {
                let row: Option<Row> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM stream_states WHERE stream = $1 FOR UPDATE"
                ))
                .bind(&self.stream)
                .fetch_optional(&mut **tx)
                .await?;
                Ok(row.map(from_row))
            }
            None => load(store, &self.stream).await,
        }
    }

    /// [`save`], committing the turn when it wrote.
    pub async fn save(mut self, store: &Store, w: Write<'_>) -> Result<Saved, StoreError> {
        match self.tx.take() {
            Some(mut tx) => {
                let saved = save_on(&mut *tx, w).await?;
                if saved != Saved::Conflict {
                    incidents::apply(&mut tx, w.incidents).await?;
                    tx.commit().await?;
                }
                Ok(saved)
            }
            None => save(store, w).await,
        }
    }
}

/// Outcome of [`save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Written; the row now has this version.
    Ok(i64),
    /// Another writer got there first (the row's version is no longer the expected one, or the row already
    /// exists when none was expected). Re-read and recompute.
    Conflict,
}

/// What to write.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    pub stream: &'a str,
    /// The version read before computing (`None`: the stream had no row).
    pub expected_version: Option<i64>,
    /// The state without its model (UTF-8 JSON).
    pub state: &'a [u8],
    /// `Some` when the model changed (or is stored for the first time).
    pub model: Option<(&'a [u8], i64)>,
    /// The incident tracker after the batch (`stream_states.incident`; `None`: no open incident).
    pub incident: Option<&'a str>,
    /// The batch's anomaly-log incident rows, written in the state's transaction and only if the state write lands.
    pub incidents: &'a [IncidentWrite],
    /// The stream's applied event ids and sequence (`stream_states.dedup`) when the batch changed them; `None`
    /// keeps the stored value.
    pub dedup: Option<&'a str>,
}

/// Writes a stream's state if nobody else wrote since `expected_version` was read, and with it, in one
/// transaction, the batch's incident rows: both are stored, or (a lost race, a crash) neither.
pub async fn save(store: &Store, w: Write<'_>) -> Result<Saved, StoreError> {
    if w.incidents.is_empty() {
        return save_on(store.pool(), w).await;
    }
    let mut tx = store.pool().begin().await?;
    let saved = save_on(&mut *tx, w).await?;
    if saved == Saved::Conflict {
        // Dropping the transaction rolls it back; nothing of the batch is stored.
        return Ok(saved);
    }
    incidents::apply(&mut tx, w.incidents).await?;
    tx.commit().await?;
    Ok(saved)
}

async fn save_on<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    w: Write<'_>,
) -> Result<Saved, StoreError> {
    let state = std::str::from_utf8(w.state)
        .map_err(|e| StoreError::Conflict(format!("state is not UTF-8: {e}")))?;
    let now = now_ms();
    let done = match (w.expected_version, w.model) {
        (None, model) => {
            // Insert-if-absent: a concurrent first writer makes this a no-op, which we report as a conflict.
            sqlx::query(
                "INSERT INTO stream_states (stream, version, state, model, model_generation, updated_at, incident, dedup) \
                 VALUES ($1, 1, $2, $3, $4, $5, $6, $7) ON CONFLICT (stream) DO NOTHING",
            )
            .bind(w.stream)
            .bind(state)
            .bind(model.map(|m| m.0.to_vec()))
            .bind(model.map_or(0, |m| m.1))
            .bind(now)
            .bind(w.incident)
            .bind(w.dedup)
            .execute(exec)
            .await?
        }
        (Some(v), None) => {
            sqlx::query(
                "UPDATE stream_states SET version = version + 1, state = $1, updated_at = $2, incident = $3, \
                 dedup = COALESCE($6, dedup) WHERE stream = $4 AND version = $5",
            )
            .bind(state)
            .bind(now)
            .bind(w.incident)
            .bind(w.stream)
            .bind(v)
            .bind(w.dedup)
            .execute(exec)
            .await?
        }
        (Some(v), Some((model, generation))) => {
            sqlx::query(
                "UPDATE stream_states SET version = version + 1, state = $1, model = $2, model_generation = $3, \
                 updated_at = $4, incident = $5, dedup = COALESCE($8, dedup) WHERE stream = $6 AND version = $7",
            )
            .bind(state)
            .bind(model.to_vec())
            .bind(generation)
            .bind(now)
            .bind(w.incident)
            .bind(w.stream)
            .bind(v)
            .bind(w.dedup)
            .execute(exec)
            .await?
        }
    };
    if done.rows_affected() == 1 {
        Ok(Saved::Ok(w.expected_version.map_or(1, |v| v + 1)))
    } else {
        Ok(Saved::Conflict)
    }
}

/// The stream's configuration overrides (JSON), if any were set.
pub async fn config(store: &Store, stream: &str) -> Result<Option<String>, StoreError> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT config FROM stream_states WHERE stream = $1")
            .bind(stream)
            .fetch_optional(store.pool())
            .await?;
    Ok(row.and_then(|r| r.0))
}

/// Sets (or clears, with `None`) a stream's configuration overrides. Bumps the version so every replica's cache
/// notices. Creates the row (with an empty state) when the stream has none yet.
pub async fn set_config(
    store: &Store,
    stream: &str,
    config: Option<&str>,
) -> Result<(), StoreError> {
    let now = now_ms();
    let updated = sqlx::query(
        "UPDATE stream_states SET config = $1, version = version + 1, updated_at = $2 WHERE stream = $3",
    )
    .bind(config)
    .bind(now)
    .bind(stream)
    .execute(store.pool())
    .await?;
    if updated.rows_affected() == 0 {
        sqlx::query(
            "INSERT INTO stream_states (stream, version, state, model_generation, config, updated_at) \
             VALUES ($1, 1, '', 0, $2, $3) ON CONFLICT (stream) DO UPDATE SET config = $2, version = stream_states.version + 1",
        )
        .bind(stream)
        .bind(config)
        .bind(now)
        .execute(store.pool())
        .await?;
    }
    Ok(())
}

/// A stream's row as the streams overview reads it: the state without its model (JSON), the configuration
/// overrides and the last write's time (Unix ms).
#[derive(Debug, Clone, PartialEq)]
pub struct OverviewRow {
    pub stream: String,
    pub state: String,
    pub config: Option<String>,
    pub updated_at: i64,
}

/// The overview's rows: the stream named `only` (none or one row), or every stream by name, at most `limit`.
/// The model column is never read: it is the largest and the overview does not need it.
pub async fn overview(
    store: &Store,
    only: Option<&str>,
    limit: i64,
) -> Result<Vec<OverviewRow>, StoreError> {
    type Row = (String, String, Option<String>, i64);
    let rows: Vec<Row> = match only {
        Some(name) => {
            sqlx::query_as(
                "SELECT stream, state, config, updated_at FROM stream_states WHERE stream = $1",
            )
            .bind(name)
            .fetch_all(store.pool())
            .await?
        }
        None => sqlx::query_as(
            "SELECT stream, state, config, updated_at FROM stream_states ORDER BY stream LIMIT $1",
        )
        .bind(limit)
        .fetch_all(store.pool())
        .await?,
    };
    Ok(rows
        .into_iter()
        .map(|(stream, state, config, updated_at)| OverviewRow {
            stream,
            state,
            config,
            updated_at,
        })
        .collect())
}

/// Names of every stream with stored state.
pub async fn list(store: &Store) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT stream FROM stream_states ORDER BY stream")
        .fetch_all(store.pool())
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;

    #[tokio::test]
    async fn optimistic_writes() {
        for db in TestDb::all().await {
            let s = &db.store;
            assert_eq!(load(s, "a").await.unwrap(), None, "{}", db.label);
            let first = Write {
                stream: "a",
                expected_version: None,
                state: b"{\"n\":1}",
                model: None,
                incident: None,
                incidents: &[],
                dedup: None,
            };
            assert_eq!(save(s, first).await.unwrap(), Saved::Ok(1), "{}", db.label);
            // A second "first" writer loses.
            assert_eq!(
                save(s, first).await.unwrap(),
                Saved::Conflict,
                "{}",
                db.label
            );
            let next = Write {
                stream: "a",
                expected_version: Some(1),
                state: b"{\"n\":2}",
                model: Some((&[1, 2, 3], 1)),
                incident: None,
                incidents: &[],
                dedup: None,
            };
            assert_eq!(save(s, next).await.unwrap(), Saved::Ok(2), "{}", db.label);
            // A writer still holding version 1 loses.
            assert_eq!(
                save(s, next).await.unwrap(),
                Saved::Conflict,
                "{}",
                db.label
            );
            let row = load(s, "a").await.unwrap().unwrap();
            assert_eq!(
                (row.version, row.state.as_slice()),
                (2, &b"{\"n\":2}"[..]),
                "{}",
                db.label
            );
            assert_eq!(
                (row.model.as_deref(), row.model_generation),
                (Some(&[1u8, 2, 3][..]), 1),
                "{}",
                db.label
            );
            // A state-only write keeps the model.
            let third = Write {
                stream: "a",
                expected_version: Some(2),
                state: b"{\"n\":3}",
                model: None,
                incident: None,
                incidents: &[],
                dedup: None,
            };
            assert_eq!(save(s, third).await.unwrap(), Saved::Ok(3), "{}", db.label);
            assert_eq!(
                load(s, "a").await.unwrap().unwrap().model.as_deref(),
                Some(&[1u8, 2, 3][..])
            );
            set_config(s, "a", Some("{\"anomaly_threshold\":70}"))
                .await
                .unwrap();
            assert_eq!(
                config(s, "a").await.unwrap().as_deref(),
                Some("{\"anomaly_threshold\":70}")
            );
            assert_eq!(
                load(s, "a").await.unwrap().unwrap().version,
                4,
                "{}",
                db.label
            );
            set_config(s, "b", None).await.unwrap();
            assert_eq!(list(s).await.unwrap(), vec!["a".to_owned(), "b".to_owned()]);
            let all = overview(s, None, 10).await.unwrap();
            assert_eq!(
                all.iter()
                    .map(|r| (r.stream.as_str(), r.state.as_str()))
                    .collect::<Vec<_>>(),
                vec![("a", "{\"n\":3}"), ("b", "")],
                "{}",
                db.label
            );
            assert_eq!(overview(s, None, 1).await.unwrap().len(), 1, "{}", db.label);
            let b = overview(s, Some("b"), 10).await.unwrap();
            assert_eq!((b.len(), b[0].config.as_deref()), (1, None), "{}", db.label);
            assert!(overview(s, Some("nope"), 10).await.unwrap().is_empty());
        }
    }
}
