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
        let store = &app.state.store;
        let now = vigil_store::time::now_ms();
        use vigil_store::tokens::{self, Purpose};
        // One expired and one live row in each table the purge looks after.
        for (key, expires_at) in [("old", now - 1), ("live", now + 3_600_000)] {
            let key = format!("{key}-{user_id}");
            tokens::insert_refresh(store, &key, &user_id, expires_at, 0)
                .await
                .expect("insert");
            tokens::insert_mailed(store, &key, &user_id, Purpose::ResetPassword, expires_at, 0)
                .await
                .expect("insert");
            tokens::revoke_access(store, &key, &user_id, expires_at)
                .await
                .expect("insert");
        }
        vigil_store::rate_limits::hit(store, "x", 0, now - 1)
            .await
            .expect("insert");

        let count = |table: &'static str| vigil_store::testing::row_count(store, table);
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
