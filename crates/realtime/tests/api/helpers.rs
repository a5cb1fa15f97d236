//! Shared setup and request helpers of these tests.

use futures_util::StreamExt;
use serde_json::Value;
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use vigil_anomalies::{Anomalies, AnomaliesConfig};
use vigil_http::testing::TestApp;
use vigil_realtime::Realtime;
use vigil_realtime::RealtimeConfig;

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A fast-calibrating stream configuration, so tests reach scored windows after a few dozen events.
pub(crate) fn quick_config() -> Value {
    // Short shapes and history so the detector scores from event 17 on (the default needs 52 events).
    json!({"window_size": 20, "min_events": 10, "calibration_windows": 12, "refit_period": 20,
           "detector": {"dim": 5, "min_history": 5}})
}

/// Deterministic noise around 10.
pub(crate) fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut r = vigil_stream::bench_data::SplitMix::new(seed);
    (0..n).map(|_| 10.0 + r.normal()).collect()
}

/// The protocol tests' configuration: anonymous sockets may feed any stream and receive the broadcast, so each
/// test exercises its own subject; who may do what is tested with the shipped defaults in
/// `socket_roles_and_session_end`.
pub(crate) fn open() -> RealtimeConfig {
    RealtimeConfig {
        stream_anonymous_streams: "*".into(),
        stream_anonymous_subscribe: true,
        ..RealtimeConfig::default()
    }
}

/// A stream side with an alert dispatcher of its own, at the default delivery settings.
pub(crate) fn realtime(config: RealtimeConfig) -> Realtime {
    Realtime::new(config, &Anomalies::new(&AnomaliesConfig::default()))
}

pub(crate) async fn apps(cfg: RealtimeConfig) -> Vec<(TestApp, Realtime)> {
    let mut out = Vec::new();
    for db in vigil_store::testing::TestDb::all().await {
        // The webhook receivers of these tests listen on loopback, which the default policy refuses.
        let anomalies = Anomalies::new(&AnomaliesConfig {
            webhook_allow_private: true,
            ..AnomaliesConfig::default()
        });
        let rt = Realtime::new(cfg.clone(), &anomalies);
        let rt2 = rt.clone();
        let app = TestApp::start(db, move |state| rt2.router(state)).await;
        out.push((app, rt));
    }
    out
}

pub(crate) async fn connect(app: &TestApp, query: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(app.ws_url(&format!("/ws/stream{query}")))
        .await
        .expect("ws connect");
    ws
}

/// The next text frame as JSON (skipping pings), or `None` on close/timeout.
pub(crate) async fn next_json(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

/// Events that calibrate a quick stream on noise and then go far off it (an obvious anomaly).
pub(crate) fn calibrate_then_spike(stream: &str) -> Vec<Value> {
    let mut v: Vec<Value> = noise(60, 7)
        .into_iter()
        .map(|x| json!({"stream": stream, "value": x}))
        .collect();
    for (i, x) in noise(12, 8).into_iter().enumerate() {
        let spike = if i % 2 == 0 { 80.0 } else { -60.0 };
        v.push(json!({"stream": stream, "value": x + spike}));
    }
    v
}

/// Ingests [`calibrate_then_spike`] for `stream` as one batch and returns the analyses (the request must succeed).
pub(crate) async fn ingest_spike(app: &TestApp, token: &str, stream: &str) -> Value {
    let batch = Value::Array(calibrate_then_spike(stream));
    let (s, body) = app.api_as(token).post("/api/ingest", &batch).await;
    assert_eq!(s, 200, "{}: {body}", app.label);
    body
}

/// How many alert messages the incidents of `stream` make: one when each opened, one when each closed.
pub(crate) async fn incident_messages(app: &TestApp, stream: &str) -> usize {
    let rows = incident_rows(app, stream).await;
    rows.iter()
        .map(|r| if r.incident_open { 1 } else { 2 })
        .sum()
}

/// Every anomaly-log row of `stream`, newest first.
pub(crate) async fn incident_rows(
    app: &TestApp,
    stream: &str,
) -> Vec<vigil_store::anomalies::Anomaly> {
    let filter = vigil_store::anomalies::Filter {
        source: Some(stream.to_owned()),
        ..Default::default()
    };
    vigil_store::anomalies::list(
        &app.state.store,
        &filter,
        0,
        vigil_store::anomalies::MAX_PAGE,
    )
    .await
    .unwrap()
    .rows
}
