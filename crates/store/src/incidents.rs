//! Pipeline incidents in the anomaly log: one row per incident, inserted when it opens and updated as it grows
//! (event count, peak) and when it closes (migration 0010).
//!
//! The writes run on a connection the caller holds inside its own transaction — the stream-state write's (see
//! `crate::streams`) — so a stream's state and its incidents are committed, or lost, together. The
//! database keeps at most one open incident per stream (`anomalies_open_incident`, a unique partial index).

use serde_json::Value;

use crate::StoreError;
use crate::anomalies::Anomaly;

/// What an incident's row shows of its peak event (the highest score, the first of equals).
#[derive(Debug, Clone, PartialEq)]
pub struct Peak {
    pub event_data: Value,
    pub betti: [i64; 3],
    pub anomaly_score: f64,
    pub risk_level: String,
    pub entropy: Option<f64>,
    /// `{"analysis": <the peak event's analysis>, "anomaly_threshold": t}`.
    pub metadata: Value,
}

/// An incident's whole row.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRow {
    /// Also the incident's id.
    pub id: String,
    /// The stream.
    pub source_type: String,
    /// Unix ms of the opening event (the row's `ts`).
    pub started_at: i64,
    /// Unix ms the row was first written (its `created_at`).
    pub created_at: i64,
    pub peak: Peak,
    /// Events from the first to the last anomalous event.
    pub event_count: i64,
    /// Unix ms of the last anomalous event, once closed.
    pub ended_at: Option<i64>,
    pub open: bool,
}

impl IncidentRow {
    /// The row as an anomaly-log entry (for alerts and broadcasts).
    pub fn to_anomaly(&self) -> Anomaly {
        let p = &self.peak;
        Anomaly {
            id: self.id.clone(),
            ts: self.started_at,
            source_type: self.source_type.clone(),
            event_data: p.event_data.clone(),
            betti: p.betti,
            anomaly_score: p.anomaly_score,
            is_anomaly: true,
            risk_level: p.risk_level.clone(),
            entropy: p.entropy,
            metadata: p.metadata.clone(),
            created_by: None,
            created_at: self.created_at,
            event_count: Some(self.event_count),
            ended_at: self.ended_at,
            incident_open: self.open,
        }
    }
}

/// One statement's worth of change to an incident row.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentWrite {
    /// The incident opened in this batch: insert its row.
    Insert(IncidentRow),
    /// The incident was already stored: update its counters and end, and its peak when `peak` is set.
    Update {
        id: String,
        event_count: i64,
        ended_at: Option<i64>,
        open: bool,
        peak: Option<Peak>,
    },
}

/// The `incident_open` column of a row (NULL when closed, so the partial unique index ignores it).
fn open_flag(open: bool) -> Option<i64> {
    open.then_some(1)
}

/// Applies `writes` in order on `conn` (the caller's transaction).
///
/// An `Update` of a row that is gone (an admin deleted it) changes nothing: the incident goes on without a log row
/// rather than failing the stream's batch.
pub async fn apply(
    conn: &mut sqlx::AnyConnection,
    writes: &[IncidentWrite],
) -> Result<(), StoreError> {
    for w in writes {
        match w {
            IncidentWrite::Insert(r) => {
                // A stream has one open incident. A row still open here belongs to a tracker that was lost (an
                // unreadable stored tracker): close it where it stands instead of refusing the stream's batch.
                sqlx::query(
                    "UPDATE anomalies SET incident_open = NULL, ended_at = COALESCE(ended_at, ts) \
                     WHERE source_type = $1 AND incident_open = 1 AND id <> $2",
                )
                .bind(&r.source_type)
                .bind(&r.id)
                .execute(&mut *conn)
                .await?;
                sqlx::query(&format!(
                    "INSERT INTO anomalies ({}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11, NULL, $12, $13, $14, $15)",
                    crate::anomalies::COLUMNS
                ))
                // Nullable f64 (entropy): see `anomalies::NULLABLE_FLOAT_STATEMENTS_CACHED`.
                .persistent(false)
                .bind(&r.id)
                .bind(r.started_at)
                .bind(&r.source_type)
                .bind(r.peak.event_data.to_string())
                .bind(r.peak.betti[0])
                .bind(r.peak.betti[1])
                .bind(r.peak.betti[2])
                .bind(r.peak.anomaly_score)
                .bind(&r.peak.risk_level)
                .bind(r.peak.entropy)
                .bind(r.peak.metadata.to_string())
                .bind(r.created_at)
                .bind(r.event_count)
                .bind(r.ended_at)
                .bind(open_flag(r.open))
                .execute(&mut *conn)
                .await?;
            }
            IncidentWrite::Update {
                id,
                event_count,
                ended_at,
                open,
                peak: None,
            } => {
                sqlx::query(
                    "UPDATE anomalies SET event_count = $1, ended_at = $2, incident_open = $3 WHERE id = $4",
                )
                .bind(*event_count)
                .bind(*ended_at)
                .bind(open_flag(*open))
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
            IncidentWrite::Update {
                id,
                event_count,
                ended_at,
                open,
                peak: Some(p),
            } => {
                sqlx::query(
                    "UPDATE anomalies SET event_count = $1, ended_at = $2, incident_open = $3, event_data = $4, \
                     betti_h0 = $5, betti_h1 = $6, betti_h2 = $7, anomaly_score = $8, risk_level = $9, \
                     entropy = $10, metadata = $11 WHERE id = $12",
                )
                .persistent(false)
                .bind(*event_count)
                .bind(*ended_at)
                .bind(open_flag(*open))
                .bind(p.event_data.to_string())
                .bind(p.betti[0])
                .bind(p.betti[1])
                .bind(p.betti[2])
                .bind(p.anomaly_score)
                .bind(&p.risk_level)
                .bind(p.entropy)
                .bind(p.metadata.to_string())
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

/// The open incident rows of `stream` (at most one; tests and diagnostics).
pub async fn open_of(store: &crate::Store, stream: &str) -> Result<Vec<Anomaly>, StoreError> {
    let rows: Vec<crate::anomalies::AnomalyRow> = sqlx::query_as(&format!(
        "SELECT {} FROM anomalies WHERE source_type = $1 AND incident_open = 1",
        crate::anomalies::COLUMNS
    ))
    .bind(stream)
    .fetch_all(store.pool())
    .await?;
    rows.into_iter().map(Anomaly::try_from).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::TestDb;

    fn row(id: &str, stream: &str, score: f64, count: i64, open: bool) -> IncidentRow {
        IncidentRow {
            id: id.into(),
            source_type: stream.into(),
            started_at: 1_000,
            created_at: 5,
            peak: peak(score),
            event_count: count,
            ended_at: (!open).then_some(2_000),
            open,
        }
    }

    fn peak(score: f64) -> Peak {
        Peak {
            event_data: json!({"value": score}),
            betti: [1, 0, 0],
            anomaly_score: score,
            risk_level: "Critical".into(),
            entropy: Some(0.5),
            metadata: json!({"analysis": {"anomaly_score": score}}),
        }
    }

    async fn write(db: &TestDb, writes: &[IncidentWrite]) -> Result<(), StoreError> {
        let mut tx = db.store.pool().begin().await?;
        apply(&mut tx, writes).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tokio::test]
    async fn an_incident_opens_grows_and_closes_in_one_row() {
        for db in TestDb::all().await {
            let l = &db.label;
            write(&db, &[IncidentWrite::Insert(row("i1", "s", 0.9, 1, true))])
                .await
                .unwrap();
            let open = open_of(&db.store, "s").await.unwrap();
            assert_eq!(open.len(), 1, "{l}");
            assert_eq!(open[0], row("i1", "s", 0.9, 1, true).to_anomaly(), "{l}");
            write(
                &db,
                &[IncidentWrite::Update {
                    id: "i1".into(),
                    event_count: 30,
                    ended_at: None,
                    open: true,
                    peak: Some(peak(0.95)),
                }],
            )
            .await
            .unwrap();
            write(
                &db,
                &[IncidentWrite::Update {
                    id: "i1".into(),
                    event_count: 42,
                    ended_at: Some(2_000),
                    open: false,
                    peak: None,
                }],
            )
            .await
            .unwrap();
            assert!(open_of(&db.store, "s").await.unwrap().is_empty(), "{l}");
            let stored = crate::anomalies::get(&db.store, "i1")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(stored, row("i1", "s", 0.95, 42, false).to_anomaly(), "{l}");
            let stats = crate::anomalies::stats(&db.store, &Default::default())
                .await
                .unwrap();
            assert_eq!(stats.total, 1, "{l}");
            assert_eq!(stats.by_risk.get("Critical"), Some(&1), "{l}");
        }
    }

    #[tokio::test]
    async fn the_database_holds_one_open_incident_per_stream() {
        for db in TestDb::all().await {
            let l = &db.label;
            write(&db, &[IncidentWrite::Insert(row("a", "s", 0.9, 1, true))])
                .await
                .unwrap();
            // A raw second open row for the same stream is refused by the index.
            let mut tx = db.store.pool().begin().await.unwrap();
            let refused = sqlx::query(
                "INSERT INTO anomalies (id, ts, source_type, event_data, anomaly_score, is_anomaly, risk_level, \
                 metadata, created_at, incident_open) VALUES ('b', 1, 's', '{}', 0.9, 1, 'High', '{}', 1, 1)",
            )
            .execute(&mut *tx)
            .await;
            assert!(refused.is_err(), "{l}");
            drop(tx);
            // Opening through `apply` closes a stale open row first (a lost tracker), so the stream goes on.
            write(&db, &[IncidentWrite::Insert(row("c", "s", 0.9, 1, true))])
                .await
                .unwrap();
            let open = open_of(&db.store, "s").await.unwrap();
            assert_eq!(open.len(), 1, "{l}");
            assert_eq!(open[0].id, "c", "{l}");
            let stale = crate::anomalies::get(&db.store, "a")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (stale.incident_open, stale.ended_at),
                (false, Some(1_000)),
                "{l}"
            );
            // Other streams are independent.
            write(&db, &[IncidentWrite::Insert(row("d", "t", 0.9, 1, true))])
                .await
                .unwrap();
            assert_eq!(open_of(&db.store, "t").await.unwrap().len(), 1, "{l}");
        }
    }
}
