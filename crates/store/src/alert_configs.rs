//! Alert configurations: who wants to hear about anomalies above which score, and how.

use crate::{Store, StoreError};

/// One alert configuration. `notification_channels` holds entries such as `"webhook:https://…"` or `"websocket"`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    pub id: String,
    pub user_id: String,
    pub threshold: f64,
    pub notification_channels: Vec<String>,
    pub is_active: bool,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
pub(crate) struct AlertConfigRow {
    id: String,
    user_id: String,
    threshold: f64,
    notification_channels: String,
    is_active: i64,
    created_at: i64,
}

pub(crate) const COLUMNS: &str =
    "id, user_id, threshold, notification_channels, is_active, created_at";

impl TryFrom<AlertConfigRow> for AlertConfig {
    type Error = StoreError;

    fn try_from(r: AlertConfigRow) -> Result<Self, StoreError> {
        Ok(AlertConfig {
            id: r.id,
            user_id: r.user_id,
            threshold: r.threshold,
            notification_channels: serde_json::from_str(&r.notification_channels)?,
            is_active: r.is_active != 0,
            created_at: r.created_at,
        })
    }
}

/// The active configurations an anomaly with this score fires (score ≥ threshold).
pub async fn firing_for(store: &Store, anomaly_score: f64) -> Result<Vec<AlertConfig>, StoreError> {
    let rows: Vec<AlertConfigRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM alert_configs WHERE is_active = $1 AND threshold <= $2 ORDER BY created_at, id"
    ))
    .bind(1_i64)
    .bind(anomaly_score)
    .fetch_all(store.pool())
    .await?;
    rows.into_iter().map(AlertConfig::try_from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;

    async fn seed_user(store: &Store, id: &str) {
        sqlx::query(
            "INSERT INTO users (id, username, email, password_hash, role, created_at) VALUES ($1, $2, $3, 'x', 'analyst', 0)",
        )
        .bind(id)
        .bind(format!("user-{id}"))
        .bind(format!("{id}@example.com"))
        .execute(store.pool())
        .await
        .expect("insert user");
    }

    async fn seed_config(store: &Store, id: &str, user: &str, threshold: f64, active: bool) {
        sqlx::query(&format!(
            "INSERT INTO alert_configs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(id)
        .bind(user)
        .bind(threshold)
        .bind(r#"["websocket","webhook:http://127.0.0.1:9/hook"]"#)
        .bind(i64::from(active))
        .bind(1_i64)
        .execute(store.pool())
        .await
        .expect("insert config");
    }

    #[tokio::test]
    async fn only_active_configs_at_or_below_the_score_fire() {
        for db in TestDb::all().await {
            seed_user(&db.store, "u1").await;
            seed_config(&db.store, "low", "u1", 0.3, true).await;
            seed_config(&db.store, "exact", "u1", 0.7, true).await;
            seed_config(&db.store, "high", "u1", 0.9, true).await;
            seed_config(&db.store, "off", "u1", 0.1, false).await;
            let firing = firing_for(&db.store, 0.7).await.expect("query");
            let ids: Vec<_> = firing.iter().map(|c| c.id.as_str()).collect();
            assert_eq!(ids.len(), 2, "{}: {ids:?}", db.label);
            assert!(
                ids.contains(&"low") && ids.contains(&"exact"),
                "{}: {ids:?}",
                db.label
            );
            assert_eq!(
                firing[0].notification_channels,
                vec!["websocket", "webhook:http://127.0.0.1:9/hook"]
            );
        }
    }
}
