//! TopoForge's per-stream state (`stream_states`, migrations 0004 and 0010, and `stream_segments`, 0016): the
//! analysis state, model, configuration overrides and incident tracker of every stream, written with optimistic
//! concurrency, and the segments of its rings (vigil-stream's `ring` module), written in the same transaction.
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

use crate::args::{Arg, Args};
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
    /// The segments of the state's rings, read in the same snapshot as the row.
    pub segments: Vec<StoredSegment>,
}

/// One stored segment of a stream's ring (`stream_segments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSegment {
    pub ring: String,
    pub seg: i64,
    /// Index of the segment's first entry.
    pub first: i64,
    pub data: Vec<u8>,
}

/// A segment to write (inserted, or replacing the stored one of the same ring and number).
#[derive(Debug, Clone, Copy)]
pub struct SegmentWrite<'a> {
    pub ring: &'a str,
    pub seg: i64,
    pub first: i64,
    pub data: &'a [u8],
}

/// Which of a ring's stored segments stay: `keep_from ≤ seg < keep_until`; the ring's others are deleted.
#[derive(Debug, Clone, Copy)]
pub struct SegmentKeep<'a> {
    pub ring: &'a str,
    pub keep_from: i64,
    pub keep_until: i64,
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

fn from_row(r: Row, segments: Vec<StoredSegment>) -> StoredStream {
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
        segments,
    }
}

/// The stored state of `stream`, if it has one, with its segments: both read in one snapshot (a transaction,
/// repeatable-read on PostgreSQL), so a checkpoint committed between the two reads cannot pair a row with segments
/// it has already pruned.
pub async fn load(store: &Store, stream: &str) -> Result<Option<StoredStream>, StoreError> {
    let mut tx = store.pool().begin().await?;
    if store.backend() == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM stream_states WHERE stream = $1"
    ))
    .bind(stream)
    .fetch_optional(&mut *tx)
    .await?;
    let loaded = match row {
        Some(row) => Some(from_row(row, segments_on(&mut *tx, stream).await?)),
        None => None,
    };
    tx.commit().await?;
    Ok(loaded)
}

async fn segments_on<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    stream: &str,
) -> Result<Vec<StoredSegment>, StoreError> {
    let rows: Vec<(String, i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT ring, seg, first, data FROM stream_segments WHERE stream = $1 ORDER BY ring, seg",
    )
    .bind(stream)
    .fetch_all(exec)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(ring, seg, first, data)| StoredSegment {
            ring,
            seg,
            first,
            data,
        })
        .collect())
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
                // The row's lock keeps every other checkpoint of the stream out until this turn ends, so the
                // segments read next are the row's.
                match row {
                    Some(row) => Ok(Some(from_row(
                        row,
                        segments_on(&mut **tx, &self.stream).await?,
                    ))),
                    None => Ok(None),
                }
            }
            None => load(store, &self.stream).await,
        }
    }

    /// [`save`], committing the turn when it wrote.
    pub async fn save(mut self, store: &Store, w: Write<'_>) -> Result<Saved, StoreError> {
        match self.tx.take() {
            Some(mut tx) => {
                let saved = save_on(&mut *tx, Backend::Postgres, w).await?;
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
    /// Ring segments written since the stored version (inserted or replaced).
    pub segments: &'a [SegmentWrite<'a>],
    /// Rings whose oldest stored segments left them.
    pub keep: &'a [SegmentKeep<'a>],
}

/// Writes a stream's state if nobody else wrote since `expected_version` was read, and with it its ring segments
/// and the batch's incident rows: all are stored, or (a lost race, a crash) none.
pub async fn save(store: &Store, w: Write<'_>) -> Result<Saved, StoreError> {
    let backend = store.backend();
    // One statement is atomic by itself: PostgreSQL's (see `save_on`), or SQLite's when there are no segments.
    let one_statement = match backend {
        Backend::Postgres => true,
        Backend::Sqlite => w.segments.is_empty() && w.keep.is_empty(),
    };
    if w.incidents.is_empty() && one_statement {
        return save_on(store.pool(), backend, w).await;
    }
    let mut tx = store.pool().begin().await?;
    let saved = save_on(&mut *tx, backend, w).await?;
    if saved == Saved::Conflict {
        // Dropping the transaction rolls it back; nothing of the batch is stored.
        return Ok(saved);
    }
    incidents::apply(&mut tx, w.incidents).await?;
    tx.commit().await?;
    Ok(saved)
}

/// A statement's text and its arguments.
#[derive(Default)]
struct Sql<'a> {
    text: String,
    args: Args<'a>,
}

impl<'a> Sql<'a> {
    /// Adds `arg` and returns its placeholder.
    fn arg(&mut self, arg: Arg<'a>) -> String {
        self.args.placeholder(arg)
    }

    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }
}

/// The versioned write of the state row (an insert-if-absent when no version was read), for `save_on`.
fn row_statement<'a>(sql: &mut Sql<'a>, w: &Write<'a>, state: &'a str, stream: &str) -> String {
    let now = now_ms();
    match (w.expected_version, w.model) {
        (None, model) => format!(
            "INSERT INTO stream_states (stream, version, state, model, model_generation, updated_at, incident, dedup) \
             VALUES ({stream}, 1, {}, {}, {}, {}, {}, {}) ON CONFLICT (stream) DO NOTHING",
            sql.arg(Arg::Text(state.into())),
            match model {
                Some((m, _)) => sql.arg(Arg::Bytes(m)),
                None => "NULL".into(),
            },
            sql.arg(Arg::Int(model.map_or(0, |m| m.1))),
            sql.arg(Arg::Int(now)),
            sql.arg(Arg::OptText(w.incident)),
            sql.arg(Arg::OptText(w.dedup)),
        ),
        (Some(v), model) => {
            let model_sets = match model {
                Some((m, generation)) => format!(
                    "model = {}, model_generation = {}, ",
                    sql.arg(Arg::Bytes(m)),
                    sql.arg(Arg::Int(generation))
                ),
                None => String::new(),
            };
            format!(
                "UPDATE stream_states SET version = version + 1, state = {}, {model_sets}updated_at = {}, \
                 incident = {}, dedup = COALESCE({}, dedup) WHERE stream = {stream} AND version = {}",
                sql.arg(Arg::Text(state.into())),
                sql.arg(Arg::Int(now)),
                sql.arg(Arg::OptText(w.incident)),
                sql.arg(Arg::OptText(w.dedup)),
                sql.arg(Arg::Int(v)),
            )
        }
    }
}

/// The segment rows `(ring, seg, first, data), …` of an `INSERT … VALUES` (SQLite) or a `VALUES` list (PostgreSQL),
/// each row prefixed by `lead`.
fn segment_rows<'a>(sql: &mut Sql<'a>, w: &Write<'a>, lead: &str) -> String {
    w.segments
        .iter()
        .map(|s| {
            format!(
                "({lead}{}, {}, {}, {})",
                sql.arg(Arg::Text(s.ring.into())),
                sql.arg(Arg::Int(s.seg)),
                sql.arg(Arg::Int(s.first)),
                sql.arg(Arg::Bytes(s.data))
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(ring = … AND (seg < … OR seg >= …)) OR …`: the stored segments that left their rings.
fn pruned<'a>(sql: &mut Sql<'a>, w: &Write<'a>) -> String {
    w.keep
        .iter()
        .map(|k| {
            format!(
                "(ring = {} AND (seg < {} OR seg >= {}))",
                sql.arg(Arg::Text(k.ring.into())),
                sql.arg(Arg::Int(k.keep_from)),
                sql.arg(Arg::Int(k.keep_until))
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// The row's versioned write with its segments and prunes, in one round trip to the database (under load each
/// round trip waits for the store's thread or server to get a core). A lost race writes nothing: the segments and
/// prunes run only if the row's write landed, since another writer's state may hold other entries at the same
/// ring indexes.
///
/// - PostgreSQL: one statement, atomic by itself. The row's write is a data-modifying `WITH` whose `RETURNING`
///   gates the segments' upsert and the prunes.
/// - SQLite: one command of several statements, gated by `changes()` (the rows the previous data-changing
///   statement changed; a `SELECT` leaves it alone): the row's write; `SELECT changes()`, which tells the caller
///   whether it landed; the upsert, only if it did; the prunes, only if the upsert (or, without one, the row's write)
///   changed anything. Atomic only inside a transaction, which [`save`] opens whenever there are segments or prunes.
///
/// Parameters: 4 per segment; a full state with the largest allowed rings is under 2,000 segments, far below
/// either engine's limit per statement (32,766 and 65,535).
async fn save_on<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    backend: Backend,
    w: Write<'_>,
) -> Result<Saved, StoreError> {
    let state = std::str::from_utf8(w.state)
        .map_err(|e| StoreError::Conflict(format!("state is not UTF-8: {e}")))?;
    let mut sql = Sql::default();
    let stream = sql.arg(Arg::Text(w.stream.into()));
    let row = row_statement(&mut sql, &w, state, &stream);
    match backend {
        Backend::Postgres => {
            sql.push(&format!("WITH up AS ({row} RETURNING 1)"));
            if !w.segments.is_empty() {
                let rows = segment_rows(&mut sql, &w, "");
                sql.push(&format!(
                    ", ins AS (INSERT INTO stream_segments (stream, ring, seg, first, data) \
                     SELECT {stream}, v.ring, v.seg, v.first, v.data FROM (VALUES {rows}) AS v (ring, seg, first, data) \
                     WHERE EXISTS (SELECT 1 FROM up) \
                     ON CONFLICT (stream, ring, seg) DO UPDATE SET first = EXCLUDED.first, data = EXCLUDED.data)"
                ));
            }
            if !w.keep.is_empty() {
                let pruned = pruned(&mut sql, &w);
                sql.push(&format!(
                    ", del AS (DELETE FROM stream_segments WHERE stream = {stream} AND EXISTS (SELECT 1 FROM up) \
                     AND ({pruned}))"
                ));
            }
            sql.push(" SELECT count(*) FROM up");
        }
        Backend::Sqlite => {
            sql.push(&format!("{row}; SELECT changes()"));
            if !w.segments.is_empty() {
                let rows = segment_rows(&mut sql, &w, &format!("{stream}, "));
                // `WHERE` also keeps `ON CONFLICT` from parsing as a join constraint.
                sql.push(&format!(
                    "; INSERT INTO stream_segments (stream, ring, seg, first, data) \
                     SELECT * FROM (VALUES {rows}) WHERE changes() = 1 \
                     ON CONFLICT (stream, ring, seg) DO UPDATE SET first = excluded.first, data = excluded.data"
                ));
            }
            if !w.keep.is_empty() {
                let pruned = pruned(&mut sql, &w);
                sql.push(&format!(
                    "; DELETE FROM stream_segments WHERE stream = {stream} AND changes() > 0 AND ({pruned})"
                ));
            }
        }
    }
    // The only rows are the count of rows the row's write changed (PostgreSQL's `SELECT`, SQLite's `changes()`).
    let rows: Vec<(i64,)> = sql
        .args
        .bind(sqlx::query_as(&sql.text))
        .fetch_all(exec)
        .await?;
    let written = rows.first().map_or(0, |r| r.0);
    if written == 1 {
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
                segments: &[],
                keep: &[],
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
                segments: &[],
                keep: &[],
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
                segments: &[],
                keep: &[],
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

    #[tokio::test]
    async fn segments_are_written_with_the_row_and_read_in_its_snapshot() {
        for db in TestDb::all().await {
            let s = &db.store;
            let seg = |ring, seg, first, data| SegmentWrite {
                ring,
                seg,
                first,
                data,
            };
            let first_write = [
                seg("v", 0, 0, &[1u8; 16][..]),
                seg("v", 1, 2, &[2u8; 8][..]),
                seg("w", 0, 0, &[3u8; 8][..]),
            ];
            let mut w = Write {
                stream: "a",
                expected_version: None,
                state: b"{}",
                model: None,
                incident: None,
                incidents: &[],
                dedup: None,
                segments: &first_write,
                keep: &[],
            };
            assert_eq!(save(s, w).await.unwrap(), Saved::Ok(1), "{}", db.label);
            let row = load(s, "a").await.unwrap().unwrap();
            let got = |row: &StoredStream| {
                row.segments
                    .iter()
                    .map(|x| (x.ring.clone(), x.seg, x.first, x.data.len()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                got(&row),
                vec![
                    ("v".into(), 0, 0, 16),
                    ("v".into(), 1, 2, 8),
                    ("w".into(), 0, 0, 8)
                ],
                "{}",
                db.label
            );
            // The open segment is replaced, a new one added, and the ring's oldest pruned.
            let second = [
                seg("v", 1, 2, &[2u8; 16][..]),
                seg("v", 2, 4, &[4u8; 8][..]),
            ];
            let keep = [SegmentKeep {
                ring: "v",
                keep_from: 1,
                keep_until: 3,
            }];
            w.expected_version = Some(1);
            w.segments = &second;
            w.keep = &keep;
            assert_eq!(save(s, w).await.unwrap(), Saved::Ok(2), "{}", db.label);
            let row = load(s, "a").await.unwrap().unwrap();
            assert_eq!(
                got(&row),
                vec![
                    ("v".into(), 1, 2, 16),
                    ("v".into(), 2, 4, 8),
                    ("w".into(), 0, 0, 8)
                ],
                "{}",
                db.label
            );
            // A lost race writes no segment and prunes nothing.
            let stale = [seg("w", 5, 40, &[9u8; 8][..])];
            let drop_all = [SegmentKeep {
                ring: "v",
                keep_from: 0,
                keep_until: 0,
            }];
            w.segments = &stale;
            w.keep = &drop_all;
            assert_eq!(save(s, w).await.unwrap(), Saved::Conflict, "{}", db.label);
            let mut lock = lock(s, "a").await.unwrap();
            let locked = lock.load(s).await.unwrap().unwrap();
            assert_eq!(got(&locked), got(&row), "{}", db.label);
            // Through a turn, the same write lands.
            w.expected_version = Some(2);
            assert_eq!(lock.save(s, w).await.unwrap(), Saved::Ok(3), "{}", db.label);
            let row = load(s, "a").await.unwrap().unwrap();
            assert_eq!(
                got(&row),
                vec![("w".into(), 0, 0, 8), ("w".into(), 5, 40, 8)],
                "{}",
                db.label
            );
        }
    }
}
