//! Periodic purge of expired tokens and rows.

use crate::helpers::{apps, lax_limits};
use reqwest::StatusCode;
use std::time::Duration;
use vigil_accounts::AccountsConfig;
use vigil_http::Role;

#[tokio::test]
async fn expired_rows_are_purged_periodically() {
    let config = AccountsConfig {
        token_purge_interval_secs: 1,
        ..lax_limits()
    };
    for app in apps(config).await {
        let l = app.label;
        let (user_id, token) = app.user_with_role("pat", Role::Viewer).await;
        let pool = app.state.store.pool();
        let now = vigil_store::time::now_ms();
        // One expired and one live row in each table the purge looks after.
        for (sql, live_expiry) in [
            (
                "INSERT INTO refresh_tokens (token_hash, user_id, expires_at, revoked, created_at) \
                 VALUES ($1, $2, $3, 0, 0)",
                now + 3_600_000,
            ),
            (
                "INSERT INTO auth_tokens (token_hash, user_id, purpose, expires_at, used_at, created_at) \
                 VALUES ($1, $2, 'reset_password', $3, NULL, 0)",
                now + 3_600_000,
            ),
            (
                "INSERT INTO revoked_access_tokens (jti, user_id, expires_at) VALUES ($1, $2, $3)",
                now + 3_600_000,
            ),
        ] {
            for (key, expires_at) in [("old", now - 1), ("live", live_expiry)] {
                vigil_store::sqlx::query(sql)
                    .bind(format!("{key}-{user_id}"))
                    .bind(&user_id)
                    .bind(expires_at)
                    .execute(pool)
                    .await
                    .expect("insert");
            }
        }
        vigil_store::sqlx::query(
            "INSERT INTO rate_limits (bucket, window_start, hits, expires_at) VALUES ('x', 0, 1, $1)",
        )
        .bind(now - 1)
        .execute(pool)
        .await
        .expect("insert");

        let count = |table: &'static str| async move {
            let (n,): (i64,) = vigil_store::sqlx::query_as(&format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"
            ))
            .fetch_one(pool)
            .await
            .expect("count");
            n
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = count("refresh_tokens").await
                + count("auth_tokens").await
                + count("revoked_access_tokens").await
                + count("rate_limits").await;
            if left == 3 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{l}: {left} rows left, expected the 3 live ones"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (s, _) = app.api_as(&token).get("/api/auth/me").await;
        assert_eq!(s, StatusCode::OK, "{l}: live sessions are untouched");
        app.stop().await;
    }
}
