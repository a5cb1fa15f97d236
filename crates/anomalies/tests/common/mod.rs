//! Helpers shared by the integration tests.
#![allow(dead_code)]

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
    vigil_store::testing::insert_synthetic_anomalies(
        &app.state.store,
        n,
        t0,
        event_data,
        source_prefix,
    )
    .await;
}
