//! `POST /api/ingest`: roles, body shapes and errors.

use crate::helpers::{apps, noise, open};
use serde_json::Value;
use serde_json::json;
use vigil_http::Role;

#[tokio::test]
async fn ingest_roles_shapes_and_errors() {
    for (app, _rt) in apps(open()).await {
        let (_, viewer) = app.user_with_role("viewer1", Role::Viewer).await;
        let (_, analyst) = app.user_with_role("analyst1", Role::Analyst).await;
        let r = app
            .client
            .post(app.url("/api/ingest"))
            .json(&json!({"value": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{}", app.label);
        assert_eq!(
            app.api_as(&viewer)
                .post("/api/ingest", &json!({"value": 1}))
                .await
                .0,
            403,
            "{}",
            app.label
        );

        let (s, body) = app
            .api_as(&analyst)
            .post("/api/ingest", &json!({"value": 1, "source": "web"}))
            .await;
        assert_eq!(
            (s.as_u16(), body),
            (200, json!({"status": "buffering", "count": 1})),
            "{}",
            app.label
        );

        let batch: Vec<Value> = noise(30, 1)
            .into_iter()
            .map(|x| json!({"source": "web", "value": x}))
            .collect();
        let (s, body) = app
            .api_as(&analyst)
            .post("/api/ingest", &Value::Array(batch))
            .await;
        assert_eq!(s, 200, "{}: {body}", app.label);
        let results = body.as_array().expect("array");
        assert_eq!(results.len(), 30);
        assert_eq!(results[7], json!({"status": "buffering", "count": 9}));
        assert_eq!(results[8]["stream"], "web");
        assert_eq!(results[8]["window_size"], 10);
        assert!(results[29]["persistence"]["h0"].is_array());
        // The 31st event of the stream (one single + 30 batched): the window is not full yet.
        assert_eq!(results[29]["window_size"], 31);

        let (s, body) = app
            .api_as(&analyst)
            .post("/api/ingest", &json!([{"value": 1}, {"value": "x"}]))
            .await;
        assert_eq!(s, 422, "{}", app.label);
        assert!(
            body["detail"].as_str().unwrap_or("").contains("event 1"),
            "{body}"
        );
        assert_eq!(
            app.api_as(&analyst)
                .post("/api/ingest", &json!("text"))
                .await
                .0,
            422
        );
        app.stop().await;
    }
}
