//! Every anomaly-log and alert route, by role (table-driven).

use crate::helpers::{anomaly};
use common::apps;
use reqwest::Method;
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use vigil_http::Role;

#[tokio::test]
async fn every_route_answers_by_role() {
    for app in apps().await {
        let (_, viewer) = app.user_with_role("vic", Role::Viewer).await;
        let (_, analyst) = app.user_with_role("ana", Role::Analyst).await;
        let (_, admin) = app.user_with_role("adm", Role::Admin).await;
        let (s, created) = app.api_as(&analyst).post("/api/anomalies", &anomaly("2026-01-12T08:00:00Z", "netflow", 0.9))
        .await;
        assert_eq!(s, StatusCode::CREATED, "{}: {created}", app.label);
        let id = created["id"].as_str().expect("id").to_owned();
        let (s, alert) = app.api_as(&analyst).post("/api/alerts", &json!({"threshold": 0.5, "notification_channels": ["websocket"]}))
        .await;
        assert_eq!(s, StatusCode::CREATED, "{alert}");
        let alert_id = alert["id"].as_str().expect("id").to_owned();

        let body = anomaly("2026-01-12T08:00:00Z", "x", 0.1);
        let alert_body = json!({"threshold": 0.5, "notification_channels": ["websocket"]});
        let patch = json!({"is_active": true});
        // (method, path, body, minimum role allowed)
        let routes: Vec<(Method, String, Option<&Value>, Role)> = vec![
            (Method::GET, "/api/anomalies".into(), None, Role::Viewer),
            (Method::GET, "/api/anomalies/".into(), None, Role::Viewer),
            (
                Method::GET,
                "/api/anomalies/stats".into(),
                None,
                Role::Viewer,
            ),
            (
                Method::GET,
                "/api/anomalies/export?format=json".into(),
                None,
                Role::Viewer,
            ),
            (
                Method::GET,
                format!("/api/anomalies/{id}"),
                None,
                Role::Viewer,
            ),
            (
                Method::POST,
                "/api/anomalies".into(),
                Some(&body),
                Role::Analyst,
            ),
            (Method::GET, "/api/alerts".into(), None, Role::Analyst),
            (
                Method::POST,
                "/api/alerts".into(),
                Some(&alert_body),
                Role::Analyst,
            ),
            (
                Method::GET,
                format!("/api/alerts/{alert_id}"),
                None,
                Role::Analyst,
            ),
            (
                Method::PUT,
                format!("/api/alerts/{alert_id}"),
                Some(&patch),
                Role::Analyst,
            ),
        ];
        for (method, path, body, min) in &routes {
            let (s, v) = app.api().send(method.clone(), path, *body).await;
            assert_eq!(
                s,
                StatusCode::UNAUTHORIZED,
                "{} {method} {path} anonymous: {v}",
                app.label
            );
            let (s, _) = app.api_as("not-a-token").send(method.clone(), path, *body).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path} bad token");
            for (role, token) in [
                (Role::Viewer, &viewer),
                (Role::Analyst, &analyst),
                (Role::Admin, &admin),
            ] {
                let (s, v) = app.api_as(token).send(method.clone(), path, *body).await;
                if role >= *min {
                    assert!(
                        s.is_success(),
                        "{} {method} {path} as {role}: {s} {v}",
                        app.label
                    );
                } else {
                    assert_eq!(
                        s,
                        StatusCode::FORBIDDEN,
                        "{} {method} {path} as {role}: {v}",
                        app.label
                    );
                    assert!(v["detail"].is_string());
                }
            }
        }
        // Deletes: admin only for anomalies; owner or admin for alerts.
        for token in [&viewer, &analyst] {
            let (s, _) = app.api_as(token).delete(&format!("/api/anomalies/{id}"))
            .await;
            assert_eq!(s, StatusCode::FORBIDDEN);
        }
        let (s, _) = app.api().delete(&format!("/api/anomalies/{id}"))
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = app.api_as(&admin).delete(&format!("/api/anomalies/{id}"))
        .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, v) = app.api_as(&admin).delete(&format!("/api/anomalies/{id}"))
        .await;
        assert_eq!(
            (s, v),
            (
                StatusCode::NOT_FOUND,
                json!({"detail": "Anomaly not found"})
            )
        );
        let (s, _) = app.api_as(&viewer).delete(&format!("/api/alerts/{alert_id}"))
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = app.api_as(&analyst).delete(&format!("/api/alerts/{alert_id}"))
        .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        app.stop().await;
    }
}
