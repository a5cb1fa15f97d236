//! `GET /api/streams`: the overview follows calibration.

use crate::helpers::{apps, noise, quick_config};
use serde_json::Value;
use serde_json::json;
use vigil_http::Role;
use vigil_realtime::RealtimeConfig;

/// `GET /api/streams`: each stream's window, event count and status move from buffering through calibrating to
/// live as events arrive; viewers may read it, anonymous callers may not; `?stream=` narrows the list.
#[tokio::test]
async fn stream_overview_follows_calibration() {
    for (app, _rt) in apps(RealtimeConfig::default()).await {
        let (_, analyst) = app.user_with_role("ov_analyst", Role::Analyst).await;
        let (_, viewer) = app.user_with_role("ov_viewer", Role::Viewer).await;
        let list = |token: String, query: &'static str| {
            let (client, url) = (app.client.clone(), app.url(&format!("/api/streams{query}")));
            async move {
                let r = client
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("list");
                assert_eq!(r.status().as_u16(), 200);
                r.json::<Vec<Value>>().await.expect("json")
            }
        };
        assert!(list(viewer.clone(), "").await.is_empty());
        let anon = app
            .client
            .get(app.url("/api/streams"))
            .send()
            .await
            .expect("anon");
        assert_eq!(anon.status().as_u16(), 401);

        let (s, _) = app
            .api_as(&analyst)
            .put("/api/streams/ov/config", &quick_config())
            .await;
        assert_eq!(s, 200);
        let values = noise(40, 3);
        let batch = |xs: &[f64]| -> Value {
            xs.iter()
                .map(|x| json!({"stream": "ov", "value": x}))
                .collect::<Vec<_>>()
                .into()
        };
        let (s, _) = app
            .api_as(&analyst)
            .post("/api/ingest", &batch(&values[..5]))
            .await;
        assert_eq!(s, 200);
        let (s, _) = app
            .api_as(&analyst)
            .post("/api/ingest", &json!({"stream": "other", "value": 1}))
            .await;
        assert_eq!(s, 200);
        let rows = list(viewer.clone(), "").await;
        let names: Vec<&str> = rows.iter().filter_map(|r| r["stream"].as_str()).collect();
        assert_eq!(names, ["other", "ov"]);
        let ov = &rows[1];
        assert_eq!(ov["status"], "buffering");
        assert_eq!(ov["events"], 5);
        assert_eq!(ov["anomaly_threshold"], 80.0);
        assert_eq!(ov["values"].as_array().map(Vec::len), Some(5));

        let (s, _) = app
            .api_as(&analyst)
            .post("/api/ingest", &batch(&values[5..12]))
            .await;
        assert_eq!(s, 200);
        let ov = list(viewer.clone(), "?stream=ov").await;
        assert_eq!(ov.len(), 1);
        assert_eq!(ov[0]["status"], "calibrating");

        let (s, results) = app
            .api_as(&analyst)
            .post("/api/ingest", &batch(&values[12..]))
            .await;
        assert_eq!(s, 200);
        // The overview says `live` exactly when the next result will be scored: the last result was.
        assert_eq!(
            results
                .as_array()
                .and_then(|r| r.last())
                .map(|r| r["calibrated"].clone()),
            Some(json!(true))
        );
        let ov = list(viewer.clone(), "?stream=ov").await;
        assert_eq!(ov[0]["status"], "live");
        assert_eq!(ov[0]["events"], 40);
        // The current score is the last result's total.
        let last = results.as_array().and_then(|r| r.last()).expect("a result");
        assert_eq!(ov[0]["score"], last["scores"]["total"]);
        // The window holds the last `window_size` (20) values, oldest first, exactly as sent.
        let window: Vec<f64> = ov[0]["values"]
            .as_array()
            .expect("values")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(window, values[20..].to_vec());
        assert!(list(viewer.clone(), "?stream=nope").await.is_empty());
        app.stop().await;
    }
}
