//! `WS /ws/stream`: the dashboard's socket (protocol in the crate docs).

use std::time::Duration;

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use vigil_http::{ApiResult, AppState, AuthUser};

use crate::Realtime;
use crate::engine::Lane;
use crate::hub::Shared;
use crate::routes::{ConnectionGauge, TokenQuery, header_token, parse_event, stream_caller};

/// A client that does not take a frame within this long is disconnected.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// WebSocket close code "policy violation", used when a slow subscriber is dropped.
const CLOSE_POLICY: u16 = 1008;

/// Upgrades to the stream socket. `?token=` identifies the user (for `websocket` alert pushes); it is required
/// when `STREAM_REQUIRE_AUTH` is set, and an invalid token is refused before the upgrade.
#[utoipa::path(get, path = "/ws/stream", tag = "streams", params(TokenQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 401, description = "A token is required (STREAM_REQUIRE_AUTH) or the given one is invalid"),
    ))]
pub(crate) async fn ws(
    State(app): State<AppState>,
    Extension(rt): Extension<Realtime>,
    Query(q): Query<TokenQuery>,
    parts: Parts,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let user = stream_caller(
        &app,
        &rt,
        header_token(&parts).as_deref(),
        q.token.as_deref(),
    )
    .await?;
    Ok(upgrade.on_upgrade(move |socket| run(socket, app, rt, user)))
}

/// Per-socket state.
struct Session {
    threshold: Option<f64>,
    subscription: Option<tokio::sync::broadcast::Receiver<Shared>>,
}

async fn run(socket: WebSocket, app: AppState, rt: Realtime, user: Option<AuthUser>) {
    metrics::gauge!("topoforge_stream_connections", "kind" => "websocket").increment(1.0);
    let _gauge = ConnectionGauge("websocket");
    // Anomalies and alert pushes of other replicas reach this socket through the relay.
    rt.start(&app);
    // Alert pushes for the socket's user; the registration is removed when this function returns.
    let (_registration, mut alerts) = match &user {
        Some(u) => {
            let (reg, rx) = rt.inner.hub.register(&u.id);
            (Some(reg), Some(rx))
        }
        None => (None, None),
    };
    let (mut sink, mut source) = socket.split();
    let mut session = Session {
        threshold: None,
        subscription: None,
    };
    let shutdown = app.shutdown.clone();
    loop {
        let outgoing: Option<String> = tokio::select! {
            frame = source.next() => match frame {
                Some(Ok(Message::Text(text))) => handle_text(&app, &rt, &mut session, text.as_str()).await,
                Some(Ok(Message::Binary(_))) => Some(error_frame("binary frames are not supported; send JSON text")),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => None, // ping/pong are answered by the protocol layer
            },
            pushed = recv_subscription(&mut session.subscription) => match pushed {
                Ok(data) => Some(format!("{{\"type\":\"anomaly\",\"data\":{data}}}")),
                Err(RecvError::Lagged(n)) => {
                    metrics::counter!("topoforge_subscribers_dropped_total", "reason" => "lagged").increment(1);
                    tracing::warn!(missed = n, "dropping a slow WebSocket subscriber");
                    let reason = format!("subscriber too slow: {n} anomalies missed");
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: CLOSE_POLICY, reason: reason.into() }))).await;
                    break;
                }
                Err(RecvError::Closed) => { session.subscription = None; None }
            },
            alert = recv_alert(&mut alerts) => alert.map(|a| a.to_string()),
            _ = shutdown.cancelled() => {
                let _ = sink.send(Message::Close(Some(CloseFrame { code: 1001, reason: "server shutting down".into() }))).await;
                break;
            }
        };
        if let Some(text) = outgoing {
            match tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Text(text.into()))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    metrics::counter!("topoforge_subscribers_dropped_total", "reason" => "send_timeout").increment(1);
                    tracing::warn!("dropping a WebSocket client that does not read");
                    break;
                }
            }
        }
    }
}

async fn recv_subscription(
    sub: &mut Option<tokio::sync::broadcast::Receiver<Shared>>,
) -> Result<Shared, RecvError> {
    match sub {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_alert(rx: &mut Option<tokio::sync::mpsc::Receiver<Shared>>) -> Option<Shared> {
    match rx {
        Some(r) => match r.recv().await {
            Some(m) => Some(m),
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

fn error_frame(detail: &str) -> String {
    json!({"type": "error", "detail": detail}).to_string()
}

/// Handles one text frame; returns the reply, if any.
async fn handle_text(
    app: &AppState,
    rt: &Realtime,
    session: &mut Session,
    text: &str,
) -> Option<String> {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Some(error_frame(&format!("invalid JSON: {e}"))),
    };
    let Some(obj) = value.as_object() else {
        return Some(error_frame("expected a JSON object"));
    };
    let event_value = match obj.get("type").and_then(Value::as_str) {
        Some("config") => {
            let t = obj
                .get("payload")
                .and_then(|p| p.get("anomaly_threshold"))
                .and_then(Value::as_f64);
            return match t {
                Some(t) if (0.0..=100.0).contains(&t) => {
                    session.threshold = Some(t);
                    None
                }
                _ => Some(error_frame(
                    "config.payload.anomaly_threshold must be a number from 0 to 100",
                )),
            };
        }
        Some("subscribe") => {
            if session.subscription.is_none() {
                session.subscription = Some(rt.inner.hub.subscribe());
            }
            return None;
        }
        Some("event") => match obj.get("payload") {
            Some(p) if p.is_object() => p.clone(),
            _ => return Some(error_frame("event.payload must be a JSON object")),
        },
        _ => value.clone(),
    };
    let event = match parse_event(&event_value, None) {
        Ok(e) => e,
        Err(e) => return Some(error_frame(&e.to_string())),
    };
    let outcomes = match rt
        .inner
        .engine
        .process(app, vec![event], session.threshold, Lane::Interactive)
        .await
    {
        Ok(o) => o,
        Err(e) => return Some(error_frame(&e.to_string())),
    };
    if let Err(e) = crate::alerts::handle_anomalies(app, rt, &outcomes).await {
        tracing::error!(error = %e, "storing an anomaly failed");
    }
    let o = outcomes.first()?;
    let frame = AnalysisFrame {
        kind: "analysis",
        data: &o.json,
        original_event: &event_value,
    };
    serde_json::to_string(&frame).ok()
}

/// `{"type":"analysis","data":…,"original_event":…}`, written straight from the analysis serialised on the
/// blocking pool (no intermediate `Value` tree per reply).
#[derive(serde::Serialize)]
struct AnalysisFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    data: &'a RawValue,
    original_event: &'a Value,
}
