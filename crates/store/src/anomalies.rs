//! The anomaly log: what the stream pipeline flags and what analysts record by hand.
//!
//! This module holds the rows and the writes every producer shares; listing, filtering, statistics and export
//! live here too as the analyst API grows.

use serde_json::Value;

use crate::{Store, StoreError, time::now_ms};

/// One stored anomaly, as the API returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub id: String,
    /// The event's time, Unix ms.
    pub ts: i64,
    pub source_type: String,
    pub event_data: Value,
    pub betti: [i64; 3],
    pub anomaly_score: f64,
    pub is_anomaly: bool,
    pub risk_level: String,
    pub entropy: Option<f64>,
    pub metadata: Value,
    pub created_by: Option<String>,
    pub created_at: i64,
}

/// An anomaly about to be stored; the store assigns `id` and `created_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAnomaly {
    pub ts: i64,
    pub source_type: String,
    pub event_data: Value,
    pub betti: [i64; 3],
    pub anomaly_score: f64,
    pub is_anomaly: bool,
    pub risk_level: String,
    pub entropy: Option<f64>,
    pub metadata: Value,
    pub created_by: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct AnomalyRow {
    id: String,
    ts: i64,
    source_type: String,
    event_data: String,
    betti_h0: i64,
    betti_h1: i64,
    betti_h2: i64,
    anomaly_score: f64,
    is_anomaly: i64,
    risk_level: String,
    entropy: Option<f64>,
    metadata: String,
    created_by: Option<String>,
    created_at: i64,
}

/// The column list every anomaly query selects, in [`AnomalyRow`]'s order.
pub(crate) const COLUMNS: &str = "id, ts, source_type, event_data, betti_h0, betti_h1, betti_h2, anomaly_score, \
     is_anomaly, risk_level, entropy, metadata, created_by, created_at";

impl TryFrom<AnomalyRow> for Anomaly {
    type Error = StoreError;

    fn try_from(r: AnomalyRow) -> Result<Self, StoreError> {
        Ok(Anomaly {
            id: r.id,
            ts: r.ts,
            source_type: r.source_type,
            event_data: serde_json::from_str(&r.event_data)?,
            betti: [r.betti_h0, r.betti_h1, r.betti_h2],
            anomaly_score: r.anomaly_score,
            is_anomaly: r.is_anomaly != 0,
            risk_level: r.risk_level,
            entropy: r.entropy,
            metadata: serde_json::from_str(&r.metadata)?,
            created_by: r.created_by,
            created_at: r.created_at,
        })
    }
}

/// Stores `new` and returns it with its id.
pub async fn insert(store: &Store, new: &NewAnomaly) -> Result<Anomaly, StoreError> {
    let id = uuid::Uuid::new_v4().to_string();
    let created_at = now_ms();
    sqlx::query(
        "INSERT INTO anomalies (id, ts, source_type, event_data, betti_h0, betti_h1, betti_h2, anomaly_score, \
         is_anomaly, risk_level, entropy, metadata, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&id)
    .bind(new.ts)
    .bind(&new.source_type)
    .bind(new.event_data.to_string())
    .bind(new.betti[0])
    .bind(new.betti[1])
    .bind(new.betti[2])
    .bind(new.anomaly_score)
    .bind(i64::from(new.is_anomaly))
    .bind(&new.risk_level)
    .bind(new.entropy)
    .bind(new.metadata.to_string())
    .bind(&new.created_by)
    .bind(created_at)
    .execute(store.pool())
    .await?;
    Ok(Anomaly {
        id,
        ts: new.ts,
        source_type: new.source_type.clone(),
        event_data: new.event_data.clone(),
        betti: new.betti,
        anomaly_score: new.anomaly_score,
        is_anomaly: new.is_anomaly,
        risk_level: new.risk_level.clone(),
        entropy: new.entropy,
        metadata: new.metadata.clone(),
        created_by: new.created_by.clone(),
        created_at,
    })
}

/// The anomaly with this id, if any.
pub async fn get(store: &Store, id: &str) -> Result<Option<Anomaly>, StoreError> {
    let row: Option<AnomalyRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM anomalies WHERE id = $1"))
            .bind(id)
            .fetch_optional(store.pool())
            .await?;
    row.map(Anomaly::try_from).transpose()
}

/// Deletes one anomaly; `false` when there was none.
pub async fn delete(store: &Store, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM anomalies WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::TestDb;

    fn sample(score: f64) -> NewAnomaly {
        NewAnomaly {
            ts: 1_767_225_600_000,
            source_type: "netflow".into(),
            event_data: json!({"value": 3.5, "host": "db-1"}),
            betti: [1, 2, 0],
            anomaly_score: score,
            is_anomaly: true,
            risk_level: "High".into(),
            entropy: Some(1.25),
            metadata: json!({"scores": {"total": 71.0}}),
            created_by: None,
        }
    }

    #[tokio::test]
    async fn insert_get_delete_round_trip_on_every_backend() {
        for db in TestDb::all().await {
            let stored = insert(&db.store, &sample(0.71)).await.expect("insert");
            let fetched = get(&db.store, &stored.id)
                .await
                .expect("get")
                .expect("present");
            assert_eq!(fetched, stored, "{}", db.label);
            assert!(
                delete(&db.store, &stored.id).await.expect("delete"),
                "{}",
                db.label
            );
            assert!(
                !delete(&db.store, &stored.id).await.expect("delete again"),
                "{}",
                db.label
            );
            assert_eq!(
                get(&db.store, &stored.id).await.expect("get"),
                None,
                "{}",
                db.label
            );
        }
    }

    #[tokio::test]
    async fn data_survives_reopening_the_database() {
        let db = TestDb::sqlite().await;
        let stored = insert(&db.store, &sample(0.9)).await.expect("insert");
        db.store.close().await;
        let reopened = Store::connect(&db.url, &crate::StoreOptions::default())
            .await
            .expect("reopen");
        assert_eq!(get(&reopened, &stored.id).await.expect("get"), Some(stored));
    }

    #[tokio::test]
    async fn a_second_instance_on_the_same_database_sees_the_same_rows() {
        let Some(db) = TestDb::postgres().await else {
            return;
        };
        let replica = Store::connect(&db.url, &crate::StoreOptions::default())
            .await
            .expect("second instance");
        let stored = insert(&db.store, &sample(0.42))
            .await
            .expect("insert through the first");
        assert_eq!(
            get(&replica, &stored.id)
                .await
                .expect("get through the second"),
            Some(stored)
        );
        replica.close().await;
    }
}
