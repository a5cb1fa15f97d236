//! Browser downloads of the export: `POST /api/anomalies/export/link` mints a short-lived link whose ticket stands
//! in for the bearer header that `window.open` cannot send. Once per backend.

mod common;

use common::{bulk, call, test_config};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use vigil_anomalies::AnomaliesConfig;
use vigil_http::Role;
use vigil_http::testing::TestApp;

const T0: i64 = 1_768_204_800_000; // 2026-01-12T08:00:00Z

async fn apps_with(config: AnomaliesConfig) -> Vec<TestApp> {
    TestApp::all(move |state| vigil_anomalies::Anomalies::new(&config).router(state)).await
}

/// `(status, body)` of opening `path` the way a browser does: no Authorization header.
async fn open(app: &TestApp, path: &str) -> (StatusCode, String) {
    let r = app.client.get(app.url(path)).send().await.expect("open");
    (r.status(), r.text().await.expect("body"))
}

async fn link(app: &TestApp, token: &str, query: &str) -> Value {
    let (s, b) = call(
        app,
        Method::POST,
        &format!("/api/anomalies/export/link?{query}"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}: {b}", app.label);
    b
}

#[tokio::test]
async fn signed_links_download_once_bound_and_die_with_the_session() {
    for app in apps_with(test_config()).await {
        let l = app.label;
        let (user_id, viewer) = app.user_with_role("vic", Role::Viewer).await;
        bulk(&app, 30, T0, "{}").await;

        // What the bearer export gives, for comparison.
        let with_header = app
            .client
            .get(app.url("/api/anomalies/export?format=csv&source=src1"))
            .bearer_auth(&viewer)
            .send()
            .await
            .expect("export")
            .text()
            .await
            .expect("csv");
        assert_eq!(with_header.lines().count(), 11, "{l}");

        let b = link(&app, &viewer, "source=src1&format=csv").await;
        let path = b["path"].as_str().expect("path").to_owned();
        assert!(
            path.starts_with("/api/anomalies/export?format=csv&source=src1&ticket="),
            "{l}: {path}"
        );
        assert_eq!(
            b["url"],
            format!("http://127.0.0.1:8000{path}"),
            "{l}: absolute, from PUBLIC_URL"
        );
        assert!(
            b["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{l}: {b}"
        );
        assert!(
            (1..=60).contains(&b["expires_in"].as_i64().expect("secs")),
            "{l}: {b}"
        );
        // Opened without a header, twice (a browser may retry a download within the minute): the same bytes.
        for _ in 0..2 {
            let r = app.client.get(app.url(&path)).send().await.expect("open");
            assert_eq!(r.status(), StatusCode::OK, "{l}");
            assert!(
                r.headers()["content-disposition"]
                    .to_str()
                    .expect("ascii")
                    .starts_with("attachment;")
            );
            assert_eq!(r.text().await.expect("csv"), with_header, "{l}");
        }

        // Bound to its parameters: another filter, another format, or no ticket at all is refused.
        for tampered in [
            path.replace("source=src1", "source=src2"),
            path.replace("format=csv", "format=json"),
            path.replace("&source=src1", ""),
            format!("{path}&min_score=0"),
            path.split("&ticket=").next().expect("prefix").to_owned(),
            format!(
                "{}&ticket=garbage",
                path.split("&ticket=").next().expect("prefix")
            ),
        ] {
            let (s, body) = open(&app, &tampered).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{l}: {tampered}: {body}");
            assert!(body.contains("detail"), "{l}: {body}");
        }
        // The same parameters in another order are the same export.
        let ticket = path.split("&ticket=").nth(1).expect("ticket");
        let (s, _) = open(
            &app,
            &format!("/api/anomalies/export?source=src1&ticket={ticket}&format=csv"),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{l}");
        // A ticket is not a bearer token, and a bearer token is not a ticket.
        let (s, _) = call(&app, Method::GET, "/api/anomalies", Some(ticket), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{l}");
        let (s, _) = open(
            &app,
            &format!("/api/anomalies/export?format=csv&source=src1&ticket={viewer}"),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{l}");

        // Minting needs a signed-in viewer and valid parameters.
        let (s, _) = call(
            &app,
            Method::POST,
            "/api/anomalies/export/link?format=csv",
            None,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{l}");
        for bad in ["format=xml", "min_score=abc", "start_date=yesterday"] {
            let (s, b) = call(
                &app,
                Method::POST,
                &format!("/api/anomalies/export/link?{bad}"),
                Some(&viewer),
                None,
            )
            .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{l}: {bad}: {b}");
        }
        // No parameters at all: the whole log, CSV.
        let all = link(&app, &viewer, "").await;
        let all_path = all["path"].as_str().expect("path");
        assert!(
            all_path.starts_with("/api/anomalies/export?ticket="),
            "{l}: {all_path}"
        );
        let (s, csv) = open(&app, all_path).await;
        assert_eq!((s, csv.lines().count()), (StatusCode::OK, 31), "{l}");

        // The session behind the link decides on every use: logging the token out refuses its links at once.
        let claims = app.state.tokens.verify(&viewer).expect("claims");
        vigil_store::tokens::revoke_access(
            &app.state.store,
            &claims.jti,
            &user_id,
            claims.exp * 1000,
        )
        .await
        .expect("revoke");
        let (s, _) = open(&app, &path).await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{l}: a logged-out session's link"
        );

        // Ending every session (logout everywhere, password change) and deactivation refuse them too.
        let (uid2, token2) = app.user_with_role("val", Role::Viewer).await;
        let p2 = link(&app, &token2, "format=json").await["path"]
            .as_str()
            .expect("path")
            .to_owned();
        assert_eq!(open(&app, &p2).await.0, StatusCode::OK, "{l}");
        vigil_store::tokens::end_sessions(&app.state.store, &uid2)
            .await
            .expect("end");
        assert_eq!(
            open(&app, &p2).await.0,
            StatusCode::UNAUTHORIZED,
            "{l}: ended sessions"
        );
        let (uid3, token3) = app.user_with_role("vera", Role::Viewer).await;
        let p3 = link(&app, &token3, "format=json").await["path"]
            .as_str()
            .expect("path")
            .to_owned();
        vigil_store::sqlx::query("UPDATE users SET is_active = 0 WHERE id = $1")
            .bind(&uid3)
            .execute(app.state.store.pool())
            .await
            .expect("deactivate");
        assert_eq!(
            open(&app, &p3).await.0,
            StatusCode::UNAUTHORIZED,
            "{l}: deactivated"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn signed_links_expire() {
    let config = AnomaliesConfig {
        export_link_ttl_secs: 1,
        ..test_config()
    };
    for app in apps_with(config).await {
        let (_, viewer) = app.user_with_role("vic", Role::Viewer).await;
        let b = link(&app, &viewer, "format=csv").await;
        assert_eq!(b["expires_in"], 1, "{}", app.label);
        let path = b["path"].as_str().expect("path");
        assert_eq!(open(&app, path).await.0, StatusCode::OK, "{}", app.label);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let (s, body) = open(&app, path).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{}: {body}", app.label);
        assert!(body.contains("Invalid or expired download link"), "{body}");
        app.stop().await;
    }
}
