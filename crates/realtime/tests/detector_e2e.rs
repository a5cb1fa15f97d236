//! The stream detector's per-stream choices and explanations over the real HTTP API (issue #13), on SQLite and
//! (when `TEST_DATABASE_URL` is set) PostgreSQL: `detector.kind` selects the autoencoder per stream, a bad kind is
//! a 422 with a detail, and every scored result names the evidence that drove its score.

use serde_json::{Value, json};
use vigil_anomalies::{Anomalies, AnomaliesConfig};
use vigil_http::Role;
use vigil_http::testing::TestApp;
use vigil_realtime::{Realtime, RealtimeConfig};

async fn apps() -> Vec<TestApp> {
    let mut out = Vec::new();
    for db in vigil_store::testing::TestDb::all().await {
        let rt = Realtime::new(
            RealtimeConfig::default(),
            &Anomalies::new(&AnomaliesConfig::default()),
        );
        out.push(TestApp::start(db, move |state| rt.router(state)).await);
    }
    out
}

async fn send(app: &TestApp, token: &str, put: bool, path: &str, body: &Value) -> (u16, Value) {
    let req = if put {
        app.client.put(app.url(path))
    } else {
        app.client.post(app.url(path))
    };
    let r = req
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn autoencoder_is_selectable_per_stream_and_results_explain_their_score() {
    for app in apps().await {
        let (_, analyst) = app.user_with_role("analyst-det", Role::Analyst).await;
        let (status, body) = send(
            &app,
            &analyst,
            true,
            "/api/streams/ae/config",
            &json!({"detector": {"kind": "perceptron"}}),
        )
        .await;
        assert_eq!(status, 422, "{}: {body}", app.label);
        assert!(body["detail"].is_string(), "{body}");
        let cfg =
            json!({"detector": {"kind": "autoencoder", "dim": 5, "min_history": 5, "level": true}});
        let (status, body) = send(&app, &analyst, true, "/api/streams/ae/config", &cfg).await;
        assert_eq!(status, 200, "{}: {body}", app.label);

        // Deterministic noise around 10, then a spike.
        let mut r = vigil_stream::bench_data::SplitMix::new(7);
        let mut events: Vec<Value> = (0..300)
            .map(|_| json!({"stream": "ae", "value": 10.0 + r.normal()}))
            .collect();
        events.push(json!({"stream": "ae", "value": 40.0}));
        let (status, results) = send(&app, &analyst, false, "/api/ingest", &json!(events)).await;
        assert_eq!(status, 200, "{}: {results}", app.label);
        let results = results.as_array().expect("one result per event");
        let last = results.last().expect("the spike's result");
        assert!(
            last["is_anomaly"].as_bool().unwrap(),
            "{}: {last}",
            app.label
        );
        let det = &last["detector"];
        let names: Vec<&str> = det["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert!(names.contains(&"autoencoder"), "{det}");
        assert!(names.contains(&"level"), "{det}");
        let driver = det["driver"].as_str().expect("a driver");
        assert!(["autoencoder", "level"].contains(&driver), "{det}");
        let text = det["explanation"].as_str().unwrap();
        assert!(text.contains("Driven by the"), "{text}");
        assert!(text.contains("above the learned level"), "{text}");
    }
}
