//! Shared setup and request helpers of these tests.

use serde_json::Value;
use serde_json::json;

pub(crate) const T0: i64 = 1_768_204_800_000; // 2026-01-12T08:00:00Z

pub(crate) fn anomaly(ts: &str, source: &str, score: f64) -> Value {
    json!({
        "timestamp": ts, "source_type": source, "event_data": {"value": 3.5},
        "betti_h0": 1, "betti_h1": 2, "betti_h2": 0, "anomaly_score": score,
        "metadata": {"topology_features": {"entropy": 0.75}}
    })
}
