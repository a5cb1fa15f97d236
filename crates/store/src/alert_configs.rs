//! Alert configurations: who wants to hear about anomalies above which score, and how.
//!
//! Rows are owned by a user (deleted with them). Channels are stored as a JSON array of strings; this module does
//! not judge them (the HTTP layer validates `webhook:<url>` / `websocket` before anything is written).

use crate::{Store, StoreError, time::now_ms};

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

/// Fields of a new configuration; the store assigns `id` and `created_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlertConfig {
    pub user_id: String,
    pub threshold: f64,
    pub notification_channels: Vec<String>,
    pub is_active: bool,
}

/// A partial update: `None` leaves the field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertConfigPatch {
    pub threshold: Option<f64>,
    pub notification_channels: Option<Vec<String>>,
    pub is_active: Option<bool>,
}

/// Stores a new configuration and returns it.
pub async fn create(store: &Store, new: &NewAlertConfig) -> Result<AlertConfig, StoreError> {
    let config = AlertConfig {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: new.user_id.clone(),
        threshold: new.threshold,
        notification_channels: new.notification_channels.clone(),
        is_active: new.is_active,
        created_at: now_ms(),
    };
    sqlx::query(&format!(
        "INSERT INTO alert_configs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(&config.id)
    .bind(&config.user_id)
    .bind(config.threshold)
    .bind(serde_json::to_string(&config.notification_channels)?)
    .bind(i64::from(config.is_active))
    .bind(config.created_at)
    .execute(store.pool())
    .await
    .map_err(StoreError::from_write)?;
    Ok(config)
}

/// The configuration with this id, if any.
pub async fn get(store: &Store, id: &str) -> Result<Option<AlertConfig>, StoreError> {
    let row: Option<AlertConfigRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM alert_configs WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(store.pool())
    .await?;
    row.map(AlertConfig::try_from).transpose()
}

/// Every configuration of `user_id`, or of everyone when `None`; oldest first.
pub async fn list(store: &Store, user_id: Option<&str>) -> Result<Vec<AlertConfig>, StoreError> {
    let rows: Vec<AlertConfigRow> = match user_id {
        Some(user) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM alert_configs WHERE user_id = $1 ORDER BY created_at, id"
            ))
            .bind(user)
            .fetch_all(store.pool())
            .await?
        }
        None => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM alert_configs ORDER BY created_at, id"
            ))
            .fetch_all(store.pool())
            .await?
        }
    };
    rows.into_iter().map(AlertConfig::try_from).collect()
}

/// Applies `patch` in one statement and returns the updated configuration; `None` when there is no such id.
pub async fn update(
    store: &Store,
    id: &str,
    patch: &AlertConfigPatch,
) -> Result<Option<AlertConfig>, StoreError> {
    // Only the fields the patch carries are written, so concurrent patches of different fields both land. (Binding
    // NULL into `COALESCE($n, col)` instead trips PostgreSQL once sqlx has cached the statement with another type.)
    let mut sets: Vec<String> = Vec::new();
    if patch.threshold.is_some() {
        sets.push(format!("threshold = ${}", sets.len() + 1));
    }
    if patch.notification_channels.is_some() {
        sets.push(format!("notification_channels = ${}", sets.len() + 1));
    }
    if patch.is_active.is_some() {
        sets.push(format!("is_active = ${}", sets.len() + 1));
    }
    if sets.is_empty() {
        return get(store, id).await;
    }
    let sql = format!(
        "UPDATE alert_configs SET {} WHERE id = ${}",
        sets.join(", "),
        sets.len() + 1
    );
    let mut q = sqlx::query(&sql);
    if let Some(t) = patch.threshold {
        q = q.bind(t);
    }
    if let Some(c) = &patch.notification_channels {
        q = q.bind(serde_json::to_string(c)?);
    }
    if let Some(a) = patch.is_active {
        q = q.bind(i64::from(a));
    }
    let done = q.bind(id).execute(store.pool()).await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    get(store, id).await
}

/// Deletes one configuration; `false` when there was none.
pub async fn delete(store: &Store, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM alert_configs WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected() > 0)
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

    #[tokio::test]
    async fn crud_round_trip() {
        for db in TestDb::all().await {
            seed_user(&db.store, "u1").await;
            seed_user(&db.store, "u2").await;
            let new = NewAlertConfig {
                user_id: "u1".into(),
                threshold: 0.5,
                notification_channels: vec!["websocket".into()],
                is_active: true,
            };
            let a = create(&db.store, &new).await.expect("create");
            let b = create(
                &db.store,
                &NewAlertConfig {
                    user_id: "u2".into(),
                    ..new.clone()
                },
            )
            .await
            .expect("create b");
            assert_eq!(get(&db.store, &a.id).await.expect("get"), Some(a.clone()));
            assert_eq!(
                list(&db.store, Some("u1")).await.expect("mine"),
                vec![a.clone()]
            );
            assert_eq!(list(&db.store, None).await.expect("all").len(), 2);
            let patched = update(
                &db.store,
                &a.id,
                &AlertConfigPatch {
                    is_active: Some(false),
                    ..AlertConfigPatch::default()
                },
            )
            .await
            .expect("update")
            .expect("present");
            assert_eq!(
                (
                    patched.threshold,
                    patched.is_active,
                    patched.notification_channels.clone()
                ),
                (0.5, false, vec!["websocket".to_owned()]),
                "{}",
                db.label
            );
            let patched = update(
                &db.store,
                &a.id,
                &AlertConfigPatch {
                    threshold: Some(0.9),
                    notification_channels: Some(vec!["webhook:https://example.com/h".into()]),
                    is_active: None,
                },
            )
            .await
            .expect("update")
            .expect("present");
            assert_eq!((patched.threshold, patched.is_active), (0.9, false));
            assert_eq!(
                update(&db.store, "nope", &AlertConfigPatch::default())
                    .await
                    .expect("update missing"),
                None
            );
            assert!(delete(&db.store, &b.id).await.expect("delete"));
            assert!(!delete(&db.store, &b.id).await.expect("delete again"));
            assert_eq!(get(&db.store, &b.id).await.expect("get"), None);
        }
    }
}
