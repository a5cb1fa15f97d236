//! `/api/anomalies/stats` over the filters.

use crate::common::apps;
use crate::common::bulk;
use crate::helpers::T0;
use reqwest::StatusCode;
use serde_json::json;
use vigil_http::Role;

#[tokio::test]
async fn stats_are_computed_over_the_filters() {
    for app in apps().await {
        let (_, viewer) = app.user_with_role("vic", Role::Viewer).await;
        let (s, v) = app.api_as(&viewer).get("/api/anomalies/stats").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["total_anomalies"], 0);
        assert_eq!(
            v["severity_distribution"],
            json!({"Low": 0, "Medium": 0, "High": 0, "Critical": 0})
        );
        assert_eq!(v["timeline"], json!([]));
        // 300 rows, one per second back from T0.
        bulk(&app, 300, T0, "{}").await;
        let (_, v) = app.api_as(&viewer).get("/api/anomalies/stats").await;
        assert_eq!(v["total_anomalies"], 300, "{}: {v}", app.label);
        assert_eq!(
            v["by_source"],
            json!({"src0": 100, "src1": 100, "src2": 100})
        );
        // i % 100 over 1..=300: 0..=20 Low (21 values but 0 only thrice… ) — count from the definition instead.
        let mut want = std::collections::BTreeMap::from([
            ("Low", 0),
            ("Medium", 0),
            ("High", 0),
            ("Critical", 0),
        ]);
        for i in 1..=300 {
            let r = i % 100;
            *want
                .entry(if r > 80 {
                    "Critical"
                } else if r > 50 {
                    "High"
                } else if r > 20 {
                    "Medium"
                } else {
                    "Low"
                })
                .or_default() += 1;
        }
        assert_eq!(v["severity_distribution"], json!(want));
        // 299 s of data: one-minute buckets.
        assert_eq!(v["bucket_seconds"], 60);
        let timeline = v["timeline"].as_array().expect("timeline");
        let sum: i64 = timeline.iter().filter_map(|b| b["count"].as_i64()).sum();
        assert_eq!(sum, 300);
        assert_eq!(
            timeline.last().map(|b| b["bucket"].clone()),
            Some(json!("2026-01-12T07:59:00Z"))
        );
        let (_, v) = app
            .api_as(&viewer)
            .get("/api/anomalies/stats?is_anomaly=true&source=src0")
            .await;
        assert_eq!(v["total_anomalies"], 25, "{}: {v}", app.label);
        let (_, v) = app
            .api_as(&viewer)
            .get("/api/anomalies/stats?start_date=2026-01-01&end_date=2026-02-01")
            .await;
        assert_eq!(
            (v["total_anomalies"].clone(), v["bucket_seconds"].clone()),
            (json!(300), json!(86_400)),
            "a month-wide range gets day buckets"
        );
        let (s, _) = app
            .api_as(&viewer)
            .get("/api/anomalies/stats?min_score=high")
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        app.stop().await;
    }
}
