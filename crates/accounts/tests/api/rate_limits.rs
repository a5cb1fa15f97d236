//! The login, registration, forgot-password and general API limits: 429 with `Retry-After`.

use crate::helpers::{YEAR, apps, login_form, register};
use reqwest::StatusCode;
use serde_json::json;
use vigil_accounts::AccountsConfig;

#[tokio::test]
async fn rate_limits_trip_with_retry_after() {
    let config = AccountsConfig {
        login_rate_limit: 2,
        register_rate_limit: 1,
        forgot_rate_limit: 1,
        api_rate_limit: 15,
        // Windows are aligned to the epoch; year-long ones keep a boundary from falling inside the test.
        login_rate_window_secs: YEAR,
        register_rate_window_secs: YEAR,
        forgot_rate_window_secs: YEAR,
        api_rate_window_secs: YEAR,
        ..AccountsConfig::default()
    };
    for app in apps(config).await {
        let l = app.label;
        for _ in 0..2 {
            assert_eq!(
                login_form(&app, "mallory", "Guess!ng1").await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        let r = login_form(&app, "mallory", "Guess!ng1").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{l}");
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=YEAR).contains(&wait), "{wait}");
        // Per account: another account from the same address is not affected.
        assert_eq!(
            login_form(&app, "someone-else", "Guess!ng1").await.status(),
            StatusCode::UNAUTHORIZED
        );

        assert_eq!(
            register(&app, "first", "first@example.com").await.0,
            StatusCode::CREATED,
            "{l}"
        );
        let (s, b) = register(&app, "second", "second@example.com").await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{l}: {b}");
        // One bucket per account, whether its username or its email is typed.
        for login in ["first", "FIRST@example.com"] {
            assert_eq!(
                login_form(&app, login, "Guess!ng1").await.status(),
                StatusCode::UNAUTHORIZED,
                "{l}"
            );
        }
        let r = login_form(&app, "first@example.com", "Guess!ng1").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{l}");

        let forgot_body = json!({"email": "a@example.com"});
        let forgot = || app.api().post("/api/auth/forgot-password", &forgot_body);
        assert_eq!(forgot().await.0, StatusCode::OK);
        assert_eq!(forgot().await.0, StatusCode::TOO_MANY_REQUESTS);

        // The public catalogue listing is outside the general limit: any number of reads, no token.
        for _ in 0..20 {
            assert_eq!(app.api().get("/api/sources").await.0, StatusCode::OK, "{l}");
        }
        // The general limit: 15 per window across every other route of the router, 11 used above.
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(app.api().get("/api/auth/me").await.0);
        }
        assert_eq!(
            statuses[..4],
            [StatusCode::UNAUTHORIZED; 4],
            "{l}: {statuses:?}"
        );
        assert_eq!(
            statuses[4],
            StatusCode::TOO_MANY_REQUESTS,
            "{l}: {statuses:?}"
        );
        app.stop().await;
    }
}
