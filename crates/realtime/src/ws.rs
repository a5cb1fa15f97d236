//! `WS /ws/stream`: the dashboard's socket (protocol in the crate docs).

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use futures_util::stream::SplitSink;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use vigil_http::{ApiResult, AppState};
use vigil_stream::Event;

use crate::Realtime;
use crate::hub::Shared;
use crate::pipeline::{Lane, Outcome, parse_event};
use crate::session::{
    Caller, ConnectionGauge, TokenQuery, header_token, presented_token, recheck_interval,
    still_valid, stream_caller,
};

/// A client that does not take a frame within this long is disconnected.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// WebSocket close code "policy violation", used when a slow subscriber is dropped.
const CLOSE_POLICY: u16 = 1008;
/// Most frames, already received on one socket, that are handled together (one pipeline batch for their events).
const MAX_PIPELINED: usize = 100;

/// Upgrades to the stream socket. `?token=` identifies the user (for `websocket` alerts); it is required
/// when `STREAM_REQUIRE_AUTH` is set, and an invalid token is refused before the upgrade.
#[utoipa::path(get, path = "/ws/stream", tag = "streams", params(TokenQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request (plain text body, from the WebSocket library)"),
        (status = 401, description = "A token is required (STREAM_REQUIRE_AUTH) or the given one is invalid"),
    ))]
pub(crate) async fn ws(
    State(app): State<AppState>,
    State(rt): State<Realtime>,
    Query(q): Query<TokenQuery>,
    parts: Parts,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let token = presented_token(header_token(&parts), q.token);
    let user = stream_caller(&app, &rt, token.as_deref()).await?;
    let caller = Caller { user, token };
    Ok(upgrade.on_upgrade(move |socket| run(socket, app, rt, caller)))
}

/// Per-socket state.
struct Session {
    caller: Caller,
    threshold: Option<f64>,
    subscription: Option<tokio::sync::broadcast::Receiver<Shared>>,
}

async fn run(socket: WebSocket, app: AppState, rt: Realtime, caller: Caller) {
    metrics::gauge!("topoforge_stream_connections", "kind" => "websocket").increment(1.0);
    let _gauge = ConnectionGauge("websocket");
    // Anomalies and socket alerts of other replicas reach this socket through the relay.
    rt.start(&app);
    // `websocket` alerts for the socket's user; the registration is removed when this function returns.
    let (_registration, mut alerts) = match &caller.user {
        Some(u) => {
            let (reg, rx) = rt.inner.hub.register(&u.id);
            (Some(reg), Some(rx))
        }
        None => (None, None),
    };
    let (mut sink, mut source) = socket.split();
    let mut session = Session {
        caller,
        threshold: None,
        subscription: None,
    };
    let shutdown = app.shutdown.clone();
    let mut recheck = recheck_interval(&rt);
    loop {
        let (outgoing, closing): (Vec<Reply>, bool) = tokio::select! {
            frame = source.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    // Frames the client has already sent are analysed together (see `handle_frames`).
                    let mut frames = vec![Frame::Text(text, Instant::now())];
                    let mut closing = false;
                    while frames.len() < MAX_PIPELINED {
                        match source.next().now_or_never() {
                            Some(Some(Ok(Message::Text(t)))) => frames.push(Frame::Text(t, Instant::now())),
                            Some(Some(Ok(Message::Binary(_)))) => frames.push(Frame::Binary),
                            Some(Some(Ok(Message::Close(_))) | None | Some(Err(_))) => {
                                closing = true;
                                break;
                            }
                            Some(Some(Ok(_))) => {}
                            None => break,
                        }
                    }
                    (handle_frames(&app, &rt, &mut session, frames).await, closing)
                }
                Some(Ok(Message::Binary(_))) => (vec![Reply::error(BINARY)], false),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => (Vec::new(), false), // ping/pong are answered by the protocol layer
            },
            broadcast = recv_subscription(&mut session.subscription) => match broadcast {
                Ok(data) => (vec![Reply::plain(format!("{{\"type\":\"anomaly\",\"data\":{data}}}"))], false),
                Err(RecvError::Lagged(n)) => {
                    metrics::counter!("topoforge_subscribers_dropped_total", "reason" => "lagged").increment(1);
                    tracing::warn!(missed = n, "dropping a slow WebSocket subscriber");
                    let reason = format!("subscriber too slow: {n} anomalies missed");
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: CLOSE_POLICY, reason: reason.into() }))).await;
                    break;
                }
                Err(RecvError::Closed) => { session.subscription = None; (Vec::new(), false) }
            },
            alert = recv_alert(&mut alerts) => (alert.map(|a| Reply::plain(a.to_string())).into_iter().collect(), false),
            _ = recheck.tick(), if session.caller.token.is_some() => {
                match still_valid(&app, &session.caller).await {
                    Ok(Some(user)) => session.caller.user = Some(user),
                    Ok(None) => {}
                    Err(reason) => {
                        metrics::counter!("topoforge_sessions_ended_total", "kind" => "websocket").increment(1);
                        let _ = sink.send(Message::Close(Some(CloseFrame { code: CLOSE_POLICY, reason: reason.into() }))).await;
                        break;
                    }
                }
                (Vec::new(), false)
            }
            _ = shutdown.cancelled() => {
                let _ = sink.send(Message::Close(Some(CloseFrame { code: 1001, reason: "server shutting down".into() }))).await;
                break;
            }
        };
        if !outgoing.is_empty() && !send_all(&mut sink, outgoing).await {
            break;
        }
        if closing {
            break;
        }
    }
}

/// Writes `replies` in order and flushes once; `false` when the client is gone or does not read.
async fn send_all(sink: &mut SplitSink<WebSocket, Message>, replies: Vec<Reply>) -> bool {
    let write = async {
        let mut analysed = Vec::with_capacity(replies.len());
        for r in replies {
            if let Some(t) = r.received {
                analysed.push(t);
            }
            sink.feed(Message::Text(r.text.into())).await?;
        }
        sink.flush().await?;
        for t in analysed {
            metrics::histogram!("topoforge_ws_reply_seconds").record(t.elapsed().as_secs_f64());
        }
        Ok::<(), axum::Error>(())
    };
    match tokio::time::timeout(SEND_TIMEOUT, write).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            metrics::counter!("topoforge_subscribers_dropped_total", "reason" => "send_timeout")
                .increment(1);
            tracing::warn!("dropping a WebSocket client that does not read");
            false
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

/// The reply to a binary frame.
const BINARY: &str = "binary frames are not supported; send JSON text";

fn error_frame(detail: &str) -> String {
    json!({"type": "error", "detail": detail}).to_string()
}

/// A frame as read from the socket, with when it was read.
enum Frame {
    Text(Utf8Bytes, Instant),
    Binary,
}

/// One frame sent to the client.
struct Reply {
    text: String,
    /// For an analysis: when its event was read (the `topoforge_ws_reply_seconds` histogram runs from there to
    /// the flush of the reply).
    received: Option<Instant>,
}

impl Reply {
    fn plain(text: String) -> Reply {
        Reply {
            text,
            received: None,
        }
    }

    fn error(detail: &str) -> Reply {
        Reply::plain(error_frame(detail))
    }
}

/// What a text frame asks for.
enum Request {
    Config(f64),
    Subscribe,
    Event {
        event: Event,
        original: Value,
        received: Instant,
    },
    /// Unusable: the reply is an error frame.
    Invalid(String),
}

fn parse_frame(text: &str, received: Instant) -> Request {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Request::Invalid(format!("invalid JSON: {e}")),
    };
    let Some(obj) = value.as_object() else {
        return Request::Invalid("expected a JSON object".into());
    };
    let original = match obj.get("type").and_then(Value::as_str) {
        Some("config") => {
            let t = obj
                .get("payload")
                .and_then(|p| p.get("anomaly_threshold"))
                .and_then(Value::as_f64);
            return match t {
                Some(t) if (0.0..=100.0).contains(&t) => Request::Config(t),
                _ => Request::Invalid(
                    "config.payload.anomaly_threshold must be a number from 0 to 100".into(),
                ),
            };
        }
        Some("subscribe") => return Request::Subscribe,
        Some("event") => match obj.get("payload") {
            Some(p) if p.is_object() => p.clone(),
            _ => return Request::Invalid("event.payload must be a JSON object".into()),
        },
        _ => value,
    };
    match parse_event(&original, None) {
        Ok(event) => Request::Event {
            event,
            original,
            received,
        },
        Err(e) => Request::Invalid(e.to_string()),
    }
}

/// Handles frames in the order they were sent and returns the replies in that order.
///
/// Consecutive events go through the pipeline as one batch, the way an `/api/ingest` array does: a client that
/// pipelines events gets batch throughput, while a client that waits for each answer sends batches of one.
/// `config` and `subscribe` end a batch, so every event is analysed with the threshold in force when it was
/// sent and only anomalies of later events reach a socket that subscribed. A batch with more than one event runs
/// on the bulk lane: its sender is moving volume, not waiting on one answer.
async fn handle_frames(
    app: &AppState,
    rt: &Realtime,
    session: &mut Session,
    frames: Vec<Frame>,
) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(frames.len());
    let mut batch: Vec<(Event, Value, Instant)> = Vec::new();
    for frame in frames {
        let request = match frame {
            Frame::Text(text, received) => parse_frame(text.as_str(), received),
            Frame::Binary => Request::Invalid(BINARY.into()),
        };
        match request {
            Request::Event {
                event,
                original,
                received,
            } => match session.caller.may_feed(rt, &event.stream) {
                Ok(()) => batch.push((event, original, received)),
                Err(detail) => {
                    analyse(app, rt, session.threshold, &mut batch, &mut replies).await;
                    replies.push(Reply::error(&detail));
                }
            },
            Request::Invalid(detail) => {
                analyse(app, rt, session.threshold, &mut batch, &mut replies).await;
                replies.push(Reply::error(&detail));
            }
            Request::Config(t) => {
                analyse(app, rt, session.threshold, &mut batch, &mut replies).await;
                session.threshold = Some(t);
            }
            Request::Subscribe => {
                analyse(app, rt, session.threshold, &mut batch, &mut replies).await;
                match session.caller.may_subscribe(rt) {
                    Ok(()) if session.subscription.is_none() => {
                        session.subscription = Some(rt.inner.hub.subscribe());
                    }
                    Ok(()) => {}
                    Err(detail) => replies.push(Reply::error(&detail)),
                }
            }
        }
    }
    analyse(app, rt, session.threshold, &mut batch, &mut replies).await;
    replies
}

/// Analyses the pending `batch` (emptying it) and appends one reply per event, in order: its analysis, or the
/// error of its stream's batch (a failed stream stored nothing; the other streams' events are answered normally).
async fn analyse(
    app: &AppState,
    rt: &Realtime,
    threshold: Option<f64>,
    batch: &mut Vec<(Event, Value, Instant)>,
    replies: &mut Vec<Reply>,
) {
    if batch.is_empty() {
        return;
    }
    let lane = if batch.len() > 1 {
        Lane::Bulk
    } else {
        Lane::Interactive
    };
    let (events, frames): (Vec<Event>, Vec<(Value, Instant)>) = std::mem::take(batch)
        .into_iter()
        .map(|(e, v, t)| (e, (v, t)))
        .unzip();
    let (results, notices) = rt
        .inner
        .pipeline
        .process_each(app, events, threshold, lane)
        .await;
    crate::alerts::handle_incidents(app, rt, notices);
    for (result, (original, received)) in results.iter().zip(&frames) {
        replies.push(match result {
            Ok(o) => analysis_reply(o, original, *received),
            Err(detail) => Reply::error(detail),
        });
    }
}

fn analysis_reply(o: &Outcome, original: &Value, received: Instant) -> Reply {
    let frame = AnalysisFrame {
        kind: "analysis",
        data: &o.json,
        original_event: original,
    };
    match serde_json::to_string(&frame) {
        Ok(text) => Reply {
            text,
            received: Some(received),
        },
        Err(e) => Reply::error(&format!("could not encode the analysis: {e}")),
    }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A malformed frame is an error reply, never a panic (a panic would kill the socket).
        #[test]
        fn frames_never_panic(text in prop_oneof![
            any::<String>(),
            r#"\{"type":"(config|subscribe|event|x)","payload":\{("anomaly_threshold"|"value"|"stream"):[^}]{0,12}\}\}"#,
            r#"\{"value":[-0-9.eE]{0,12},"stream":".{0,6}","timestamp":".{0,20}"\}"#,
        ]) {
            let _ = parse_frame(&text, Instant::now());
        }
    }
}
