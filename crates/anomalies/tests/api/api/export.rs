//! `/api/anomalies/export`: CSV and JSON, plain and through gzip.

use crate::helpers::{T0};
use common::apps;
use common::bulk;
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use vigil_http::Role;

#[tokio::test]
async fn export_csv_and_json() {
    for app in apps().await {
        let (_, viewer) = app.user_with_role("vic", Role::Viewer).await;
        bulk(&app, 2500, T0, "{\"k\":1}").await;
        let r = app
            .client
            .get(app.url("/api/anomalies/export?format=csv&source=src1"))
            .bearer_auth(&viewer)
            .send()
            .await
            .expect("export");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap_or("")
                .starts_with("text/csv")
        );
        let cd = r.headers()["content-disposition"]
            .to_str()
            .unwrap_or("")
            .to_owned();
        assert!(
            cd.starts_with("attachment; filename=anomalies_")
                && cd.ends_with(".csv")
                && cd.len() == "attachment; filename=anomalies_20260112_080000.csv".len(),
            "{cd}"
        );
        let text = r.text().await.expect("csv");
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines[0],
            "Timestamp,Source,Is Anomaly,Score,Severity,Betti H0,Betti H1,Betti H2,Entropy"
        );
        assert_eq!(lines.len(), 1 + 834, "{}", app.label);
        // Row i=1 is src1, ts T0-1s, score .01, Low, h1 = 1.
        assert_eq!(
            lines[1], "2026-01-12T07:59:59Z,src1,false,0.01,Low,1,1,0,1.5",
            "{}",
            app.label
        );
        let r = app
            .client
            .get(app.url("/api/anomalies/export?format=json"))
            .bearer_auth(&viewer)
            .send()
            .await
            .expect("export");
        assert!(
            r.headers()["content-disposition"]
                .to_str()
                .unwrap_or("")
                .ends_with(".json")
        );
        let docs: Vec<Value> = r.json().await.expect("a JSON array");
        assert_eq!(docs.len(), 2500, "{}", app.label);
        let mut ids: Vec<&str> = docs.iter().filter_map(|d| d["id"].as_str()).collect();
        let ts: Vec<&str> = docs
            .iter()
            .filter_map(|d| d["timestamp"].as_str())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] >= w[1]), "newest first");
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 2500, "every row exactly once");
        assert_eq!(docs[0]["event_data"], json!({"k": 1}));
        let r = app
            .client
            .get(app.url("/api/anomalies/export?format=json&source=none"))
            .bearer_auth(&viewer)
            .send()
            .await
            .expect("export");
        assert_eq!(r.text().await.expect("body"), "[]");
        let (s, v) = app.api_as(&viewer).get("/api/anomalies/export?format=xml")
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        app.stop().await;
    }
}

/// Browsers ask for gzip: the export then runs through the compression layer, which used to poll the body stream
/// after its end and cut every browser download to 0 bytes. Three pages, so the body has several chunks.
#[tokio::test]
async fn export_through_gzip_is_whole() {
    use std::io::Read;
    for app in apps().await {
        let (_, viewer) = app.user_with_role("gus", Role::Viewer).await;
        bulk(&app, 2500, T0, "{\"k\":1}").await;
        for format in ["csv", "json"] {
            let url = app.url(&format!("/api/anomalies/export?format={format}"));
            let plain = app
                .client
                .get(&url)
                .bearer_auth(&viewer)
                .send()
                .await
                .expect("export")
                .bytes()
                .await
                .expect("plain body");
            let r = app
                .client
                .get(&url)
                .bearer_auth(&viewer)
                .header("accept-encoding", "gzip")
                .send()
                .await
                .expect("export");
            assert_eq!(r.status(), StatusCode::OK, "{format} {}", app.label);
            assert_eq!(
                r.headers()
                    .get("content-encoding")
                    .and_then(|v| v.to_str().ok()),
                Some("gzip"),
                "{format} {}",
                app.label
            );
            let packed = r.bytes().await.expect("the whole gzip body");
            let mut unpacked = Vec::new();
            flate2::read::GzDecoder::new(&packed[..])
                .read_to_end(&mut unpacked)
                .expect("a complete gzip stream");
            assert!(plain.len() > 100_000, "{format}: {} bytes", plain.len());
            assert_eq!(unpacked, plain.to_vec(), "{format} {}", app.label);
        }
        app.stop().await;
    }
}
