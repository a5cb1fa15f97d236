//! Fixed-window request counters (`rate_limits`, migration 0002), shared by every replica. The policy (limits,
//! buckets, what a refusal says) is `vigil-accounts`' `ratelimit` module; this is its storage.

use crate::{Store, StoreError};

/// Counts one hit against `bucket` in the window starting at `window_start` (Unix ms) and returns the window's
/// count including it: one upsert, so concurrent hits on any replica are all counted. `window_end` is when the
/// row may be purged.
pub async fn hit(
    store: &Store,
    bucket: &str,
    window_start: i64,
    window_end: i64,
) -> Result<i64, StoreError> {
    let (hits,): (i64,) = sqlx::query_as(
        "INSERT INTO rate_limits (bucket, window_start, hits, expires_at) VALUES ($1, $2, 1, $3) \
         ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1 RETURNING hits",
    )
    .bind(bucket)
    .bind(window_start)
    .bind(window_end)
    .fetch_one(store.pool())
    .await?;
    Ok(hits)
}

/// Deletes the counters of windows that ended at or before `now`; returns how many. A counter is only ever read
/// inside its own window, so deleting late is harmless.
pub async fn purge_ended(store: &Store, now: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM rate_limits WHERE expires_at <= $1")
        .bind(now)
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;

    #[tokio::test]
    async fn hits_count_per_window_and_ended_windows_are_purged() {
        for db in TestDb::all().await {
            let s = &db.store;
            assert_eq!(hit(s, "a", 0, 10).await.unwrap(), 1, "{}", db.label);
            assert_eq!(hit(s, "a", 0, 10).await.unwrap(), 2, "{}", db.label);
            assert_eq!(hit(s, "b", 0, 10).await.unwrap(), 1, "{}", db.label);
            assert_eq!(hit(s, "a", 10, 20).await.unwrap(), 1, "{}", db.label);
            assert_eq!(purge_ended(s, 10).await.unwrap(), 2, "{}", db.label);
            assert_eq!(hit(s, "a", 10, 20).await.unwrap(), 2, "{}", db.label);
        }
    }
}
