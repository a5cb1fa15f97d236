//! `/api/anomalies`: create, get, list, filters, paging, and SQL injection in filters.

use crate::helpers::{T0, anomaly};
use common::apps;
use common::bulk;
use reqwest::StatusCode;
use serde_json::json;
use vigil_http::Role;

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn create_get_list_filter_and_page() {
    for app in apps().await {
        let (_, analyst) = app.user_with_role("ana", Role::Analyst).await;
        let mut ids = Vec::new();
        for (i, (source, score)) in [
            ("netflow", 0.1),
            ("netflow", 0.6),
            ("dns", 0.9),
            ("dns", 0.3),
            ("auth", 0.7),
        ]
        .iter()
        .enumerate()
        {
            let ts = format!("2026-01-12T08:0{i}:00Z");
            let (s, v) = app.api_as(&analyst).post("/api/anomalies/", &anomaly(&ts, source, *score))
            .await;
            assert_eq!(s, StatusCode::CREATED, "{}: {v}", app.label);
            assert_eq!(v["timestamp"], ts.as_str());
            assert_eq!(v["source_type"], *source);
            ids.push(v["id"].as_str().expect("id").to_owned());
        }
        let (s, one) = app.api_as(&analyst).get(&format!("/api/anomalies/{}", ids[2]))
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            one,
            json!({
                "id": ids[2], "timestamp": "2026-01-12T08:02:00Z", "source_type": "dns", "event_data": {"value": 3.5},
                "betti_h0": 1, "betti_h1": 2, "betti_h2": 0, "anomaly_score": 0.9, "is_anomaly": true,
                "risk_level": "Critical", "metadata": {"topology_features": {"entropy": 0.75}}
            }),
            "{}",
            app.label
        );
        let (s, v) = app.api_as(&analyst).get("/api/anomalies/no-such-id")
        .await;
        assert_eq!(
            (s, v),
            (
                StatusCode::NOT_FOUND,
                json!({"detail": "Anomaly not found"})
            )
        );

        let (_, page) = app.api_as(&analyst).get("/api/anomalies?limit=2&page=2")
        .await;
        assert_eq!(
            (
                page["page"].clone(),
                page["limit"].clone(),
                page["total"].clone()
            ),
            (json!(2), json!(2), json!(5))
        );
        let got: Vec<&str> = page["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|d| d["id"].as_str())
            .collect();
        assert_eq!(
            got,
            vec![ids[2].as_str(), ids[1].as_str()],
            "{}: newest first",
            app.label
        );
        let (_, page) = app.api_as(&analyst).get("/api/anomalies").await;
        assert_eq!(
            (page["limit"].clone(), page["data"].as_array().map(Vec::len)),
            (json!(20), Some(5))
        );

        for (query, expect) in [
            ("source=dns", 2),
            ("is_anomaly=true", 2),
            ("is_anomaly=false", 3),
            ("risk_level=High", 2),
            ("min_score=0.65", 2),
            (
                "start_date=2026-01-12T08:01:00Z&end_date=2026-01-12T08:03:00",
                3,
            ),
            ("start_date=2026-01-12T09:01:00%2B01:00", 4),
            ("start_date=2026-01-13", 0),
            ("source=netflow&min_score=0.5&is_anomaly=false", 1),
        ] {
            let (s, v) = app.api_as(&analyst).get(&format!("/api/anomalies?{query}"))
            .await;
            assert_eq!(s, StatusCode::OK, "{query}: {v}");
            assert_eq!(v["total"], expect, "{} {query}", app.label);
            assert_eq!(
                v["data"].as_array().map(Vec::len),
                Some(expect as usize),
                "{query}"
            );
        }
        for query in [
            "limit=0",
            "limit=101",
            "page=0",
            "page=x",
            "is_anomaly=maybe",
            "min_score=abc",
            "start_date=tomorrow",
            "end_date=2026-02-30",
        ] {
            let (s, v) = app.api_as(&analyst).get(&format!("/api/anomalies?{query}"))
            .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {v}");
            assert!(v["detail"].is_string(), "{query}");
        }
        for bad in [
            json!({"source_type": "s"}),
            json!({"source_type": "s", "anomaly_score": 2}),
            json!({"source_type": "s", "anomaly_score": 0.5, "risk_level": "Apocalyptic"}),
            json!({"source_type": "s", "anomaly_score": 0.5, "event_data": "text"}),
            json!([1, 2]),
        ] {
            let (s, v) = app.api_as(&analyst).post("/api/anomalies", &bad)
            .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn sql_injection_in_filters_is_inert() {
    for app in apps().await {
        let (_, viewer) = app.user_with_role("vic", Role::Viewer).await;
        bulk(&app, 30, T0, "{}").await;
        let attacks = [
            "' OR '1'='1",
            "src0' OR 1=1 --",
            "src0'; DROP TABLE anomalies; --",
            "\" OR \"\"=\"",
            "src0) UNION SELECT id, username, email, password_hash FROM users --",
        ];
        for attack in attacks {
            let enc: String = url_encode(attack);
            // Free text: matched as a value, so nothing matches.
            for param in ["source"] {
                for path in [
                    "/api/anomalies",
                    "/api/anomalies/stats",
                    "/api/anomalies/export?format=json&x=1",
                ] {
                    let sep = if path.contains('?') { '&' } else { '?' };
                    let (s, v) = app.api_as(&viewer).get(&format!("{path}{sep}{param}={enc}"))
                    .await;
                    assert_eq!(
                        s,
                        StatusCode::OK,
                        "{} {path} {param}={attack}: {v}",
                        app.label
                    );
                    let n = v
                        .get("total")
                        .or_else(|| v.get("total_anomalies"))
                        .cloned()
                        .unwrap_or_else(|| json!(v.as_array().map(Vec::len)));
                    assert_eq!(n, json!(0), "{} {path} {param}={attack}", app.label);
                }
            }
            // Typed filters (risk_level is one of four words): refused before any query.
            for param in [
                "start_date",
                "min_score",
                "is_anomaly",
                "page",
                "limit",
                "risk_level",
            ] {
                let (s, _) = app.api_as(&viewer).get(&format!("/api/anomalies?{param}={enc}"))
                .await;
                assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{param}={attack}");
            }
        }
        let (_, v) = app.api_as(&viewer).get("/api/anomalies").await;
        assert_eq!(v["total"], 30, "{}: the table is intact", app.label);
        app.stop().await;
    }
}
