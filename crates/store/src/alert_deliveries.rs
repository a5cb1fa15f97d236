//! Alert delivery history (migration 0013): one row per finished webhook delivery, for the console's alerts page.
//!
//! Written off the request path by the dispatcher once a delivery ends (delivered, failed, refused, abandoned,
//! dropped). Kept bounded by [`purge_before`], which the dispatcher runs now and then.

use crate::{Store, StoreError};

/// One finished delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub config_id: String,
    pub user_id: String,
    pub anomaly_id: String,
    /// `webhook` (the only channel with a delivery of its own today).
    pub channel: String,
    /// Where it went, without query or credentials.
    pub target: String,
    /// `delivered`, `failed`, `refused`, `abandoned` or `dropped`.
    pub outcome: String,
    pub attempts: i64,
    /// HTTP status of the last answer, when there was one.
    pub last_status: Option<i64>,
    /// Why the last attempt failed, in a few words.
    pub error: Option<String>,
    pub created_at: i64,
    pub finished_at: i64,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    i64,
    i64,
);

const COLUMNS: &str = "id, config_id, user_id, anomaly_id, channel, target, outcome, attempts, last_status, \
     error, created_at, finished_at";

fn from_row(r: Row) -> Delivery {
    Delivery {
        id: r.0,
        config_id: r.1,
        user_id: r.2,
        anomaly_id: r.3,
        channel: r.4,
        target: r.5,
        outcome: r.6,
        attempts: r.7,
        last_status: r.8,
        error: r.9,
        created_at: r.10,
        finished_at: r.11,
    }
}

/// Stores a finished delivery. A delivery for a user deleted meanwhile is not stored (nothing to show it to).
pub async fn record(store: &Store, d: &Delivery) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO alert_deliveries ({COLUMNS}) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 \
         WHERE EXISTS (SELECT 1 FROM users WHERE id = $3)"
    ))
    .bind(&d.id)
    .bind(&d.config_id)
    .bind(&d.user_id)
    .bind(&d.anomaly_id)
    .bind(&d.channel)
    .bind(&d.target)
    .bind(&d.outcome)
    .bind(d.attempts)
    .bind(d.last_status)
    .bind(d.error.as_deref())
    .bind(d.created_at)
    .bind(d.finished_at)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The newest `limit` deliveries (at most 500), of `owner`'s configs only when given.
pub async fn recent(
    store: &Store,
    owner: Option<&str>,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let limit = limit.clamp(0, 500);
    let rows: Vec<Row> = match owner {
        Some(u) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM alert_deliveries WHERE user_id = $1 \
                 ORDER BY finished_at DESC, id LIMIT $2"
            ))
            .bind(u)
            .bind(limit)
            .fetch_all(store.pool())
            .await?
        }
        None => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM alert_deliveries ORDER BY finished_at DESC, id LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(store.pool())
            .await?
        }
    };
    Ok(rows.into_iter().map(from_row).collect())
}

/// Deletes deliveries that finished before `cutoff` (Unix ms); returns how many.
pub async fn purge_before(store: &Store, cutoff: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM alert_deliveries WHERE finished_at < $1")
        .bind(cutoff)
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;
    use crate::users::{self, NewUser};

    async fn user(s: &Store, name: &str) -> String {
        let u = users::insert(
            s,
            &NewUser {
                id: uuid::Uuid::new_v4().to_string(),
                username: name.into(),
                email: format!("{name}@example.com"),
                password_hash: "h".into(),
                full_name: None,
                organization: None,
                role: crate::users::Role::Analyst,
                is_verified: true,
                created_at: 1,
            },
        )
        .await
        .unwrap();
        u.id
    }

    fn delivery(id: &str, user: &str, at: i64, outcome: &str, status: Option<i64>) -> Delivery {
        Delivery {
            id: id.into(),
            config_id: "c".into(),
            user_id: user.into(),
            anomaly_id: "a".into(),
            channel: "webhook".into(),
            target: "https://example.com/hook".into(),
            outcome: outcome.into(),
            attempts: 2,
            last_status: status,
            error: status.is_none().then(|| "connection refused".into()),
            created_at: at - 5,
            finished_at: at,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_are_recorded_listed_per_owner_and_purged() {
        for db in TestDb::all().await {
            let (s, l) = (&db.store, db.label);
            let u1 = user(s, "owner1").await;
            let u2 = user(s, "owner2").await;
            record(s, &delivery("d1", &u1, 10, "delivered", Some(200)))
                .await
                .unwrap();
            record(s, &delivery("d2", &u2, 20, "failed", None))
                .await
                .unwrap();
            record(s, &delivery("d3", &u1, 30, "failed", Some(500)))
                .await
                .unwrap();
            // A user deleted meanwhile: nothing stored.
            record(s, &delivery("d4", "gone", 40, "delivered", Some(200)))
                .await
                .unwrap();
            let all = recent(s, None, 10).await.unwrap();
            let ids: Vec<&str> = all.iter().map(|d| d.id.as_str()).collect();
            assert_eq!(ids, ["d3", "d2", "d1"], "{l}: newest first");
            assert_eq!(all[1].error.as_deref(), Some("connection refused"));
            assert_eq!(all[0].last_status, Some(500));
            let mine = recent(s, Some(&u1), 10).await.unwrap();
            assert_eq!(mine.len(), 2, "{l}");
            assert_eq!(recent(s, None, 1).await.unwrap().len(), 1);
            assert_eq!(purge_before(s, 25).await.unwrap(), 2, "{l}");
            assert_eq!(recent(s, None, 10).await.unwrap().len(), 1);
        }
    }
}
