//! Every anomaly-log and alert route, by role (table-driven).

use reqwest::StatusCode;
use serde_json::json;
use vigil_http::Role;
use vigil_http::testing::{RoleCase, TestApp};

use crate::common::apps;
use crate::helpers::anomaly;

/// Creates one anomaly and one alert config as the analyst; returns their ids.
async fn one_anomaly_and_one_alert(app: &TestApp, analyst: &str) -> (String, String) {
    let (s, created) = app
        .api_as(analyst)
        .post(
            "/api/anomalies",
            &anomaly("2026-01-12T08:00:00Z", "netflow", 0.9),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{}: {created}", app.label);
    let id = created["id"].as_str().expect("id").to_owned();
    let (s, alert) = app
        .api_as(analyst)
        .post(
            "/api/alerts",
            &json!({"threshold": 0.5, "notification_channels": ["websocket"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{alert}");
    let alert_id = alert["id"].as_str().expect("id").to_owned();
    (id, alert_id)
}

#[tokio::test]
async fn every_route_answers_by_role() {
    for app in apps().await {
        let (_, viewer) = app.user_with_role("vic", Role::Viewer).await;
        let (_, analyst) = app.user_with_role("ana", Role::Analyst).await;
        let (_, admin) = app.user_with_role("adm", Role::Admin).await;
        let (id, alert_id) = one_anomaly_and_one_alert(&app, &analyst).await;

        let alert_body = json!({"threshold": 0.5, "notification_channels": ["websocket"]});
        let cases = [
            RoleCase::get("/api/anomalies", Role::Viewer),
            RoleCase::get("/api/anomalies/", Role::Viewer),
            RoleCase::get("/api/anomalies/stats", Role::Viewer),
            RoleCase::get("/api/anomalies/export?format=json", Role::Viewer),
            RoleCase::get(format!("/api/anomalies/{id}"), Role::Viewer),
            RoleCase::post(
                "/api/anomalies",
                anomaly("2026-01-12T08:00:00Z", "x", 0.1),
                Role::Analyst,
            ),
            RoleCase::get("/api/alerts", Role::Analyst),
            RoleCase::post("/api/alerts", alert_body, Role::Analyst),
            RoleCase::get(format!("/api/alerts/{alert_id}"), Role::Analyst),
            RoleCase::put(
                format!("/api/alerts/{alert_id}"),
                json!({"is_active": true}),
                Role::Analyst,
            ),
        ];
        let tokens = [
            (Role::Viewer, viewer.as_str()),
            (Role::Analyst, analyst.as_str()),
            (Role::Admin, admin.as_str()),
        ];
        app.check_roles(&cases, &tokens).await;

        // Deletes, in order (each changes what the next one finds): admin only for anomalies; owner or admin for
        // alerts. (caller, path, expected status)
        let anomaly_path = format!("/api/anomalies/{id}");
        let alert_path = format!("/api/alerts/{alert_id}");
        let deletes = [
            (Some(viewer.as_str()), &anomaly_path, StatusCode::FORBIDDEN),
            (Some(analyst.as_str()), &anomaly_path, StatusCode::FORBIDDEN),
            (None, &anomaly_path, StatusCode::UNAUTHORIZED),
            (Some(admin.as_str()), &anomaly_path, StatusCode::NO_CONTENT),
        ];
        for (token, path, want) in deletes {
            let (s, v) = app.api_with(token).delete(path).await;
            assert_eq!(s, want, "{} DELETE {path}: {v}", app.label);
        }
        let (s, v) = app.api_as(&admin).delete(&anomaly_path).await;
        assert_eq!(
            (s, v),
            (
                StatusCode::NOT_FOUND,
                json!({"detail": "Anomaly not found"})
            )
        );
        let deletes = [
            (viewer.as_str(), StatusCode::FORBIDDEN),
            (analyst.as_str(), StatusCode::NO_CONTENT),
        ];
        for (token, want) in deletes {
            let (s, v) = app.api_as(token).delete(&alert_path).await;
            assert_eq!(s, want, "{} DELETE {alert_path}: {v}", app.label);
        }
        app.stop().await;
    }
}
