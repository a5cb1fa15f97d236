//! What happens to an anomalous result: it is stored in `anomalies` (with the whole analysis in `metadata`),
//! broadcast to subscribers, and checked against the alert configurations through the shared
//! [`vigil_anomalies::AlertDispatcher`] — `webhook:<url>` channels get an HTTP POST of the anomaly document (queued
//! and retried by the dispatcher), `websocket` channels a push to the owner's open stream sockets.
//! Storing happens before the event is answered; alerting runs in a background task (tracked, so graceful shutdown
//! waits for it) and never holds up ingestion.
//!
//! Broadcasts and socket pushes reach this replica's sockets directly and the other replicas' through the
//! [`crate::relay`] (PostgreSQL only); both build their messages from the stored row with [`broadcast_text`] and
//! [`alert_text`], so a message is the same text wherever it is delivered.

use std::sync::{Arc, Weak};

use serde_json::json;
use vigil_http::{AppState, Error};
use vigil_store::anomalies::{self, Anomaly, NewAnomaly};

use crate::Realtime;
use crate::engine::Outcome;
use crate::hub::Shared;
use crate::relay::Item;

/// Stores, broadcasts and alerts on every anomalous outcome of a batch.
pub async fn handle_anomalies<'a>(
    app: &AppState,
    rt: &Realtime,
    outcomes: impl IntoIterator<Item = &'a Outcome>,
) -> Result<(), Error> {
    for o in outcomes {
        let Some(r) = o.analysis.result() else {
            continue;
        };
        if !r.is_anomaly {
            continue;
        }
        metrics::counter!("topoforge_anomalies_total").increment(1);
        let result_json = serde_json::to_value(r).map_err(Error::internal)?;
        let ts = o
            .event
            .timestamp
            .or(o.event.received_at)
            .map_or_else(vigil_store::time::now_ms, |t| t.timestamp_millis());
        let new = NewAnomaly {
            ts,
            source_type: r.stream.clone(),
            event_data: o.event.raw.clone(),
            betti: [r.betti_numbers.h0, r.betti_numbers.h1, r.betti_numbers.h2]
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            anomaly_score: r.anomaly_score,
            is_anomaly: true,
            risk_level: r.security_analysis.risk_level.as_str().to_owned(),
            entropy: Some(r.topology_features.entropy),
            metadata: json!({"analysis": result_json, "anomaly_threshold": o.threshold}),
            created_by: None,
        };
        let stored = anomalies::insert(&app.store, &new).await?;
        if let Some(text) = broadcast_text(&stored) {
            rt.inner.hub.publish(text);
        }
        rt.announce(app, Item::Anomaly(stored.id.clone()));
        let (app2, rt2) = (app.clone(), rt.clone());
        // Webhooks are queued by the dispatcher; its `websocket` channels come back to [`SocketSink`].
        app.spawn(async move { rt2.inner.dispatcher.fire_and_push(&app2, &stored).await });
    }
    Ok(())
}

/// Delivers `websocket` alert channels, for the pipeline's anomalies and for those recorded through
/// `POST /api/anomalies` alike: a push to the users' stream sockets here, and an announcement for the other
/// replicas. Holds the realtime side weakly, since the dispatcher it is registered with is owned by that side.
pub(crate) struct SocketSink(pub(crate) Weak<crate::Inner>);

impl vigil_anomalies::SocketAlerts for SocketSink {
    fn push(&self, app: &AppState, stored: &Anomaly, users: Vec<String>) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let rt = Realtime { inner };
        if let Some(push) = alert_text(stored) {
            for user in &users {
                let n = rt.inner.hub.push_to_user(user, &push);
                metrics::counter!("topoforge_alert_pushes_total").increment(1);
                tracing::debug!(%user, sockets = n, "alert pushed to the user's stream sockets");
            }
        }
        rt.announce(
            app,
            Item::Alert {
                id: stored.id.clone(),
                users,
            },
        );
    }
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

/// The `websocket` alert push of a stored anomaly: `{"type":"alert","data":<anomaly document>}`.
pub(crate) fn alert_text(stored: &Anomaly) -> Option<Shared> {
    match serde_json::to_value(vigil_anomalies::AnomalyDoc::from(stored)) {
        Ok(doc) => Some(Arc::from(json!({"type": "alert", "data": doc}).to_string())),
        Err(e) => {
            tracing::error!(error = %e, "anomaly did not serialise; socket alerts skipped");
            None
        }
    }
}
