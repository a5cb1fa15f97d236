//! The texts sockets and SSE clients receive, built from a stored anomaly row. The local delivery
//! ([`crate::alerts`]) and the cross-replica relay ([`crate::relay`]) both use these, so a message is the same text
//! wherever it is delivered (and neither module needs the other).

use std::sync::Arc;

use serde_json::json;
use vigil_store::anomalies::Anomaly;

use crate::hub::Shared;

/// An incident's row as its opening message showed it (open, one event, no end), for a replica that reads the
/// row after it grew. The peak fields are the row's: the same as at the opening unless a later event of the
/// incident scored higher before the row was read (rare: the detector caps scores after an alarm).
pub(crate) fn as_opened(row: &Anomaly) -> Anomaly {
    let mut a = row.clone();
    if a.event_count.is_some() {
        a.event_count = Some(1);
        a.ended_at = None;
        a.incident_open = true;
    }
    a
}

/// The broadcast message of a stored pipeline anomaly: its analysis result (the `analysis` of its metadata), as
/// subscribed sockets (wrapped in `{"type":"anomaly"}`) and SSE clients receive it.
pub(crate) fn broadcast_text(stored: &Anomaly) -> Option<Shared> {
    let analysis = stored.metadata.get("analysis");
    if analysis.is_none() {
        tracing::error!(anomaly = %stored.id, "stored pipeline anomaly has no analysis; not broadcast");
    }
    analysis.map(|a| Arc::from(a.to_string()))
}

/// The `websocket` alert message of a stored anomaly: `{"type":"alert","data":<anomaly document>}`.
pub(crate) fn alert_text(stored: &Anomaly) -> Option<Shared> {
    match serde_json::to_value(vigil_anomalies::AnomalyDoc::from(stored)) {
        Ok(doc) => Some(Arc::from(json!({"type": "alert", "data": doc}).to_string())),
        Err(e) => {
            tracing::error!(error = %e, "anomaly did not serialise; socket alerts skipped");
            None
        }
    }
}
