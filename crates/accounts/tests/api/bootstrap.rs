//! The first admin from configuration and the built-in source catalogue (`/api/sources`).

use crate::helpers::{apps, lax_limits, login_form};
use reqwest::StatusCode;
use serde_json::Value;
use vigil_accounts::AccountsConfig;

#[tokio::test]
async fn first_admin_from_configuration_and_catalogue() {
    let config = AccountsConfig {
        admin_email: Some("Boss@Example.com".into()),
        admin_password: Some("B00tstrap!pw".into()),
        admin_username: "boss".into(),
        ..lax_limits()
    };
    for app in apps(config.clone()).await {
        let l = app.label;
        vigil_accounts::bootstrap_admin(&app.state, &config)
            .await
            .expect("bootstrap");
        // A second start (or a second replica) leaves it alone.
        vigil_accounts::bootstrap_admin(&app.state, &config)
            .await
            .expect("again");
        let r = login_form(&app, "boss@example.com", "B00tstrap!pw").await;
        assert_eq!(r.status(), StatusCode::OK, "{l}");
        let b: Value = r.json().await.expect("json");
        assert_eq!(
            (
                b["user"]["role"].as_str(),
                b["user"]["is_verified"].as_bool()
            ),
            (Some("admin"), Some(true))
        );
        let weak = AccountsConfig {
            admin_email: Some("other@example.com".into()),
            admin_password: Some("weak".into()),
            ..config.clone()
        };
        assert!(
            vigil_accounts::bootstrap_admin(&app.state, &weak)
                .await
                .is_err(),
            "{l}: a weak admin password refuses to start"
        );

        let (added, total) = vigil_accounts::catalog::load_catalog(&app.state.store)
            .await
            .expect("catalog");
        assert_eq!(added, total);
        let token = b["access_token"].as_str().expect("token");
        let (s, list) = app.api_as(token).get("/api/sources").await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            list.as_array()
                .is_some_and(|a| a.iter().any(|s| s["id"] == "wikipedia-recentchange")),
            "{l}"
        );

        let doc = app
            .client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .expect("openapi")
            .text()
            .await
            .expect("text");
        for path in [
            "/api/auth/login",
            "/api/auth/verify-reset-token/{token}",
            "/api/users/{id}",
            "/api/sources/{id}",
        ] {
            assert!(
                doc.contains(path),
                "{path} missing from the OpenAPI document"
            );
        }
        app.stop().await;
    }
}
