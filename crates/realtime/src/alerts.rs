//! What happens when an incident opens or closes (see [`crate::incident`]). Its row is already stored, in the
//! transaction of the stream's state; here it is broadcast to subscribers (once, when it opens: the opening
//! event's analysis result) and checked against the alert configurations through the shared
//! [`vigil_anomalies::AlertDispatcher`] — once when it opens (the row as first written, `"status":"open"`) and once
//! when it closes (the final row: peak, `event_count`, `ended_at`, `"status":"closed"`). A config fires for an
//! incident's message when the message's `anomaly_score` reaches its threshold: the opening score for the open
//! message, the peak for the close, so a config whose threshold only the peak reaches gets the close alone.
//! `webhook:<url>` channels get an HTTP POST of the anomaly document (queued, signed and retried by the
//! dispatcher), `websocket` channels a message to the owner's open stream sockets. Alerting runs in background tasks
//! (tracked, so graceful shutdown waits for them) and never holds up ingestion.
//!
//! Broadcasts and socket alerts reach this replica's sockets directly and the other replicas' through the
//! [`crate::relay`] (PostgreSQL only); both build their messages from the stored row with
//! [`crate::messages`], so a message is the same text wherever it is delivered.

use std::sync::Weak;

use vigil_http::AppState;
use vigil_store::anomalies::{self, Anomaly};

use crate::Realtime;
use crate::incident::Notice;
use crate::messages::{alert_text, broadcast_text};
use crate::relay::Item;

/// Broadcasts and alerts on the incidents a stored batch opened or closed, in order.
pub fn handle_incidents(app: &AppState, rt: &Realtime, notices: Vec<Notice>) {
    for notice in notices {
        match notice {
            Notice::Opened { row } => {
                metrics::counter!("topoforge_anomalies_total").increment(1);
                metrics::counter!("topoforge_incidents_total", "event" => "opened").increment(1);
                if let Some(text) = broadcast_text(&row) {
                    rt.inner.hub.publish(text);
                }
                rt.announce(app, Item::Anomaly(row.id.clone()));
                let (app2, rt2) = (app.clone(), rt.clone());
                // Webhooks are queued by the dispatcher; its `websocket` channels come back to [`SocketSink`].
                app.spawn(async move { rt2.inner.dispatcher.fire_and_deliver(&app2, &row).await });
            }
            Notice::Closed { id } => {
                metrics::counter!("topoforge_incidents_total", "event" => "closed").increment(1);
                let (app2, rt2) = (app.clone(), rt.clone());
                app.spawn(async move {
                    match anomalies::get(&app2.store, &id).await {
                        Ok(Some(row)) => rt2.inner.dispatcher.fire_and_deliver(&app2, &row).await,
                        // Deleted by an admin since: nothing left to report.
                        Ok(None) => tracing::debug!(incident = %id, "closed incident's row is gone"),
                        Err(e) => {
                            tracing::warn!(incident = %id, error = %e, "closed incident not read; no alerts sent")
                        }
                    }
                });
            }
        }
    }
}

/// Delivers `websocket` alert channels, for the pipeline's anomalies and for those recorded through
/// `POST /api/anomalies` alike: to the users' stream sockets here, and an announcement for the other
/// replicas. Holds the realtime side weakly, since the dispatcher it is registered with is owned by that side.
pub(crate) struct SocketSink(pub(crate) Weak<crate::Inner>);

impl vigil_anomalies::SocketAlerts for SocketSink {
    fn deliver(&self, app: &AppState, stored: &Anomaly, users: Vec<String>) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let rt = Realtime { inner };
        if let Some(text) = alert_text(stored) {
            for user in &users {
                let n = rt.inner.hub.deliver_to_user(user, &text);
                metrics::counter!("topoforge_alert_pushes_total").increment(1);
                tracing::debug!(%user, sockets = n, "alert delivered to the user's stream sockets");
            }
        }
        rt.announce(
            app,
            Item::Alert {
                id: stored.id.clone(),
                users,
                opening: stored.incident_open,
            },
        );
    }
}
