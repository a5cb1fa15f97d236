//! Refused input: NUL characters, non-ASCII dates, form posts.

use common::apps;
use reqwest::StatusCode;
use serde_json::json;
use vigil_http::Role;

/// Attacks from the hardening review, kept: text no database column can hold, and a date with a multi-byte character
/// across the byte offset the parser cuts at, must be refused with a 4xx on every route and change nothing.
#[tokio::test]
async fn nul_characters_non_ascii_dates_and_form_posts_are_refused() {
    for app in apps().await {
        let (_, analyst) = app.user_with_role("ana", Role::Analyst).await;
        for path in [
            "/api/anomalies?start_date=2024-01-01T00:00:0%C3%A9",
            "/api/anomalies/stats?end_date=2024-01-01T00:00:0%C3%A9",
            "/api/anomalies/export?start_date=2024-01-01T00:00:0%C3%A9",
            "/api/anomalies?source=net%00flow",
            "/api/anomalies/stats?source=%00",
            "/api/anomalies/export?source=a%00",
            "/api/anomalies/abc%00def",
        ] {
            let (s, v) = app.api_as(&analyst).get(path).await;
            assert_eq!(
                s,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {}: {v}",
                app.label
            );
            assert!(v["detail"].is_string(), "{path}: {v}");
        }
        for body in [
            json!({"source_type": "x\u{0}y", "anomaly_score": 0.9}),
            json!({"source_type": "x", "anomaly_score": 0.9, "event_data": {"k\u{0}": 1}}),
            json!({"source_type": "x", "anomaly_score": 0.9, "timestamp": "2024-01-01T00:00:0\u{e9}"}),
        ] {
            let (s, v) = app.api_as(&analyst).post("/api/anomalies", &body)
            .await;
            assert_eq!(
                s,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{body} {}: {v}",
                app.label
            );
        }
        // A cross-site form or text/plain post (no CORS preflight) is refused whatever its body.
        for kind in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let r = app
                .client
                .post(app.url("/api/anomalies"))
                .bearer_auth(&analyst)
                .header("content-type", kind)
                .body(r#"{"source_type":"x","anomaly_score":0.9}"#)
                .send()
                .await
                .expect("post");
            assert_eq!(
                r.status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{kind} {}",
                app.label
            );
        }
        let (s, v) = app.api_as(&analyst).get("/api/anomalies").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["total"], 0, "nothing was stored: {v}");
        app.stop().await;
    }
}
