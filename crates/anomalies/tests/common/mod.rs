//! Helpers shared by the integration tests.
#![allow(dead_code)]

use reqwest::{Method, StatusCode};
use serde_json::Value;
use vigil_anomalies::AnomaliesConfig;
use vigil_http::testing::TestApp;

pub async fn apps() -> Vec<TestApp> {
    TestApp::all(|state| vigil_anomalies::Anomalies::new(&test_config()).router(state)).await
}

/// Fast retries so delivery tests finish quickly.
pub fn test_config() -> AnomaliesConfig {
    AnomaliesConfig {
        webhook_timeout_secs: 0.5,
        webhook_max_attempts: 3,
        webhook_backoff_ms: 20,
        // The delivery tests' receivers listen on loopback.
        webhook_allow_private: true,
        ..AnomaliesConfig::default()
    }
}

pub async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut r = app.client.request(method, app.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Inserts `n` synthetic anomalies in one statement (a recursive CTE both engines run): row i has ts = t0 - i s,
/// source `src{i % 3}`, score (i % 100) / 100, and every 4th is flagged.
pub async fn bulk(app: &TestApp, n: i64, t0: i64, event_data: &str) {
    bulk_with_source(app, n, t0, event_data, "src").await;
}

/// [`bulk`] with sources named `{source_prefix}{i % 3}`.
pub async fn bulk_with_source(
    app: &TestApp,
    n: i64,
    t0: i64,
    event_data: &str,
    source_prefix: &str,
) {
    vigil_store::sqlx::query(
        "INSERT INTO anomalies (id, ts, source_type, event_data, betti_h0, betti_h1, betti_h2, anomaly_score, \
         is_anomaly, risk_level, entropy, metadata, created_by, created_at) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         SELECT 'bulk-' || CAST(i AS TEXT), $2 - i * 1000, $4 || CAST(i % 3 AS TEXT), $3, 1, i % 4, 0, \
         CAST(i % 100 AS DOUBLE PRECISION) / 100.0, CASE WHEN i % 4 = 0 THEN 1 ELSE 0 END, \
         CASE WHEN i % 100 > 80 THEN 'Critical' WHEN i % 100 > 50 THEN 'High' WHEN i % 100 > 20 THEN 'Medium' ELSE 'Low' END, \
         1.5, '{}', NULL, 0 FROM n",
    )
    .bind(n)
    .bind(t0)
    .bind(event_data)
    .bind(source_prefix)
    .execute(app.state.store.pool())
    .await
    .expect("bulk insert");
}
