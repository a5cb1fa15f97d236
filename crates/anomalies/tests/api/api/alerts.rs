//! `/api/alerts`: ownership, and webhooks fired when an anomaly is recorded.

use crate::helpers::{anomaly};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use common::apps;
use reqwest::Method;
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use vigil_http::Role;

#[tokio::test]
async fn alert_configs_are_owned() {
    for app in apps().await {
        let (ana_id, ana) = app.user_with_role("ana", Role::Analyst).await;
        let (_, bob) = app.user_with_role("bob", Role::Analyst).await;
        let (_, admin) = app.user_with_role("adm", Role::Admin).await;
        let (s, mine) = app.api_as(&ana).post("/api/alerts", &json!({"threshold": 0.7, "notification_channels": ["webhook:https://hooks.example.com/a", "websocket"]})).await;
        assert_eq!(s, StatusCode::CREATED, "{mine}");
        assert_eq!(mine["user_id"], ana_id.as_str());
        assert_eq!(mine["is_active"], true);
        let id = mine["id"].as_str().expect("id").to_owned();
        app.api_as(&bob).post("/api/alerts", &json!({"threshold": 0.2, "notification_channels": ["websocket"], "is_active": false})).await;
        let (_, list) = app.api_as(&ana).get("/api/alerts").await;
        assert_eq!(list, json!([mine.clone()]));
        let (_, all) = app.api_as(&admin).get("/api/alerts/").await;
        assert_eq!(all.as_array().map(Vec::len), Some(2));
        for method in [Method::GET, Method::DELETE] {
            let (s, v) = app.api_as(&bob).send(method, &format!("/api/alerts/{id}"), None).await;
            assert_eq!(
                (s, v),
                (
                    StatusCode::NOT_FOUND,
                    json!({"detail": "Alert config not found"})
                )
            );
        }
        let (s, _) = app.api_as(&bob).put(&format!("/api/alerts/{id}"), &json!({"threshold": 0.1}))
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, v) = app.api_as(&admin).put(&format!("/api/alerts/{id}"), &json!({"threshold": 0.95}))
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            (v["threshold"].clone(), v["notification_channels"].clone()),
            (json!(0.95), mine["notification_channels"].clone())
        );
        let (_, v) = app.api_as(&ana).put(&format!("/api/alerts/{id}"), &json!({"is_active": false, "notification_channels": ["websocket"]}))
        .await;
        assert_eq!(
            (
                v["threshold"].clone(),
                v["is_active"].clone(),
                v["notification_channels"].clone()
            ),
            (json!(0.95), json!(false), json!(["websocket"]))
        );
        for bad in [
            json!({"threshold": 1.5, "notification_channels": ["websocket"]}),
            json!({"threshold": -0.1, "notification_channels": ["websocket"]}),
            json!({"threshold": 0.5, "notification_channels": []}),
            json!({"threshold": 0.5, "notification_channels": ["email:a@b.c"]}),
            json!({"threshold": 0.5, "notification_channels": ["webhook:ftp://h/x"]}),
            json!({"threshold": 0.5, "notification_channels": ["webhook:not a url"]}),
            json!({"threshold": "high", "notification_channels": ["websocket"]}),
            json!({"threshold": 0.5, "notification_channels": ["websocket"], "user_id": "someone-else"}),
        ] {
            let (s, v) = app.api_as(&ana).post("/api/alerts", &bad).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        }
        let (s, _) = app.api_as(&ana).put(&format!("/api/alerts/{id}"), &json!({"threshold": 2}))
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let (s, _) = app.api_as(&admin).put("/api/alerts/nope", &json!({"threshold": 0.2}))
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = app.api_as(&admin).delete(&format!("/api/alerts/{id}"))
        .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, _) = app.api_as(&ana).get(&format!("/api/alerts/{id}"))
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        app.stop().await;
    }
}

#[tokio::test]
async fn creating_an_anomaly_fires_webhooks_in_the_background() {
    for app in apps().await {
        let hits = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(tokio::sync::Mutex::new(Vec::<Value>::new()));
        let (h, r) = (hits.clone(), received.clone());
        let receiver = vigil_http::axum::Router::new().route(
            "/hook",
            vigil_http::axum::routing::post(move |body: vigil_http::axum::Json<Value>| {
                let (h, r) = (h.clone(), r.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    r.lock().await.push(body.0);
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { vigil_http::axum::serve(listener, receiver).await });
        let (_, ana) = app.user_with_role("ana", Role::Analyst).await;
        let hook = format!("webhook:http://{addr}/hook");
        app.api_as(&ana).post("/api/alerts", &json!({"threshold": 0.8, "notification_channels": [hook]}))
        .await;
        let (_, low) = app.api_as(&ana).post("/api/anomalies", &anomaly("2026-01-12T08:00:00Z", "s", 0.5))
        .await;
        let (_, high) = app.api_as(&ana).post("/api/anomalies", &anomaly("2026-01-12T08:00:00Z", "s", 0.85))
        .await;
        assert!(low["id"].is_string() && high["id"].is_string());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while hits.load(Ordering::SeqCst) < 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "{}: only the anomaly above the threshold",
            app.label
        );
        assert_eq!(received.lock().await[0], high);
        let metrics = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        assert!(
            metrics.contains("alert_webhook_deliveries_total{outcome=\"delivered\"}"),
            "{metrics}"
        );
        app.stop().await;
    }
}
