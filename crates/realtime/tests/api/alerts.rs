//! Alerts from the pipeline and from hand-recorded anomalies: webhooks and owners' sockets.

use crate::helpers::{
    apps, connect, incident_messages, ingest_spike, next_json, open, quick_config,
};
use serde_json::Value;
use serde_json::json;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use vigil_anomalies::{Anomalies, AnomaliesConfig};
use vigil_http::Role;
use vigil_http::axum;
use vigil_http::testing::TestApp;
use vigil_realtime::Realtime;

#[tokio::test]
async fn alerts_fire_to_webhooks_and_the_owners_sockets() {
    // A webhook receiver that records what it gets.
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await });

    for (app, rt) in apps(open()).await {
        received.lock().unwrap().clear();
        let (user_id, analyst) = app.user_with_role("alerter", Role::Analyst).await;
        vigil_store::alert_configs::create(
            &app.state.store,
            &vigil_store::alert_configs::NewAlertConfig {
                user_id: user_id.clone(),
                threshold: 0.5,
                notification_channels: vec![
                    "websocket".to_owned(),
                    format!("webhook:http://{hook_addr}/hook"),
                ],
                is_active: true,
            },
        )
        .await
        .unwrap();
        let mut mine = connect(&app, &format!("?token={analyst}")).await;
        for _ in 0..50 {
            if rt.hub().registered_sockets() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(rt.hub().registered_sockets(), 1);
        assert_eq!(
            app.api_as(&analyst)
                .put("/api/streams/alerty/config", &quick_config())
                .await
                .0,
            200
        );
        let body = ingest_spike(&app, &analyst, "alerty").await;
        let flagged = body
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["is_anomaly"] == true)
            .count();
        assert!(flagged > 0);
        let alert = next_json(&mut mine, Duration::from_secs(5))
            .await
            .expect("alert push");
        assert_eq!(alert["type"], "alert", "{}", app.label);
        assert_eq!(alert["data"]["source_type"], "alerty");
        let messages = incident_messages(&app, "alerty").await;
        assert!(messages >= 1 && messages <= 2 * flagged, "{messages}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while received.lock().unwrap().len() < messages && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let got = received.lock().unwrap().clone();
        assert_eq!(
            got.len(),
            messages,
            "{}: one webhook POST per incident when it opens, one when it closes",
            app.label
        );
        assert_eq!(got[0]["source_type"], "alerty");
        assert!(got[0]["id"].is_string());
        mine.close(None).await.ok();
        app.stop().await;
    }
}

#[tokio::test]
async fn hand_recorded_anomalies_reach_the_owners_sockets() {
    for db in vigil_store::testing::TestDb::all().await {
        // The process wiring of `vigil serve`: one dispatcher shared by the anomalies routes and the stream side.
        let anomalies = Anomalies::new(&AnomaliesConfig::default());
        let rt = Realtime::new(open(), &anomalies);
        let rt2 = rt.clone();
        let app = TestApp::start(db, move |state| {
            rt2.router(state).merge(anomalies.router(state))
        })
        .await;
        let (_, analyst) = app.user_with_role("recorder", Role::Analyst).await;
        let (s, cfg) = app
            .api_as(&analyst)
            .post(
                "/api/alerts",
                &json!({"threshold": 0.8, "notification_channels": ["websocket"]}),
            )
            .await;
        assert_eq!(s, 201, "{}: {cfg}", app.label);
        let mut mine = connect(&app, &format!("?token={analyst}")).await;
        for _ in 0..50 {
            if rt.hub().registered_sockets() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let record = |score: f64| {
            json!({
                "timestamp": "2026-01-12T08:00:00Z", "source_type": "manual", "event_data": {"value": 1},
                "betti_h0": 1, "betti_h1": 0, "betti_h2": 0, "anomaly_score": score
            })
        };
        let (s, low) = app
            .api_as(&analyst)
            .post("/api/anomalies", &record(0.5))
            .await;
        assert_eq!(s, 201, "{}: {low}", app.label);
        let (s, high) = app
            .api_as(&analyst)
            .post("/api/anomalies", &record(0.9))
            .await;
        assert_eq!(s, 201, "{}: {high}", app.label);
        let alert = next_json(&mut mine, Duration::from_secs(5))
            .await
            .expect("alert push");
        assert_eq!(
            (alert["type"].as_str(), &alert["data"]["id"]),
            (Some("alert"), &high["id"]),
            "{}: only the anomaly above the threshold is pushed",
            app.label
        );
        assert!(
            next_json(&mut mine, Duration::from_millis(300))
                .await
                .is_none(),
            "{}: one push",
            app.label
        );
        mine.close(None).await.ok();
        app.stop().await;
    }
}
