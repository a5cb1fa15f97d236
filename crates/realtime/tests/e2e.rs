//! End-to-end tests over HTTP, WebSocket and SSE against the real router on a random port, on SQLite and (when
//! `TEST_DATABASE_URL` is set) PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use vigil_anomalies::{Anomalies, AnomaliesConfig};
use vigil_http::Role;
use vigil_http::testing::TestApp;
use vigil_realtime::{Realtime, RealtimeConfig};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A fast-calibrating stream configuration, so tests reach scored windows after a few dozen events.
fn quick_config() -> Value {
    // Short shapes and history so the detector scores from event 17 on (the default needs 52 events).
    json!({"window_size": 20, "min_events": 10, "calibration_windows": 12, "refit_period": 20,
           "detector": {"dim": 5, "min_history": 5}})
}

/// Deterministic noise around 10.
fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut r = vigil_stream::bench_data::SplitMix::new(seed);
    (0..n).map(|_| 10.0 + r.normal()).collect()
}

/// The protocol tests' configuration: anonymous sockets may feed any stream and receive the broadcast, so each
/// test exercises its own subject; who may do what is tested with the shipped defaults in
/// `socket_roles_and_session_end`.
fn open() -> RealtimeConfig {
    RealtimeConfig {
        stream_anonymous_streams: "*".into(),
        stream_anonymous_subscribe: true,
        ..RealtimeConfig::default()
    }
}

/// A stream side with an alert dispatcher of its own, at the default delivery settings.
fn realtime(config: RealtimeConfig) -> Realtime {
    Realtime::new(config, &Anomalies::new(&AnomaliesConfig::default()))
}

async fn apps(cfg: RealtimeConfig) -> Vec<(TestApp, Realtime)> {
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

async fn post(app: &TestApp, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn put(app: &TestApp, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = app
        .client
        .put(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn connect(app: &TestApp, query: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(app.ws_url(&format!("/ws/stream{query}")))
        .await
        .expect("ws connect");
    ws
}

/// The next text frame as JSON (skipping pings), or `None` on close/timeout.
async fn next_json(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

/// Events that calibrate a quick stream on noise and then go far off it (an obvious anomaly).
fn calibrate_then_spike(stream: &str) -> Vec<Value> {
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

#[tokio::test]
async fn ingest_roles_shapes_and_errors() {
    for (app, _rt) in apps(open()).await {
        let (_, viewer) = app.user_with_role("viewer1", Role::Viewer).await;
        let (_, analyst) = app.user_with_role("analyst1", Role::Analyst).await;
        let r = app
            .client
            .post(app.url("/api/ingest"))
            .json(&json!({"value": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{}", app.label);
        assert_eq!(
            post(&app, &viewer, "/api/ingest", &json!({"value": 1}))
                .await
                .0,
            403,
            "{}",
            app.label
        );

        let (s, body) = post(
            &app,
            &analyst,
            "/api/ingest",
            &json!({"value": 1, "source": "web"}),
        )
        .await;
        assert_eq!(
            (s, body),
            (200, json!({"status": "buffering", "count": 1})),
            "{}",
            app.label
        );

        let batch: Vec<Value> = noise(30, 1)
            .into_iter()
            .map(|x| json!({"source": "web", "value": x}))
            .collect();
        let (s, body) = post(&app, &analyst, "/api/ingest", &Value::Array(batch)).await;
        assert_eq!(s, 200, "{}: {body}", app.label);
        let results = body.as_array().expect("array");
        assert_eq!(results.len(), 30);
        assert_eq!(results[7], json!({"status": "buffering", "count": 9}));
        assert_eq!(results[8]["stream"], "web");
        assert_eq!(results[8]["window_size"], 10);
        assert!(results[29]["persistence"]["h0"].is_array());
        // The 31st event of the stream (one single + 30 batched): the window is not full yet.
        assert_eq!(results[29]["window_size"], 31);

        let (s, body) = post(
            &app,
            &analyst,
            "/api/ingest",
            &json!([{"value": 1}, {"value": "x"}]),
        )
        .await;
        assert_eq!(s, 422, "{}", app.label);
        assert!(
            body["detail"].as_str().unwrap_or("").contains("event 1"),
            "{body}"
        );
        assert_eq!(
            post(&app, &analyst, "/api/ingest", &json!("text")).await.0,
            422
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn websocket_protocol_errors_keep_the_socket_open() {
    for (app, _rt) in apps(open()).await {
        let mut ws = connect(&app, "").await;
        ws.send(Message::text("not json")).await.unwrap();
        let e = next_json(&mut ws, Duration::from_secs(5))
            .await
            .expect("error frame");
        assert_eq!(e["type"], "error", "{}", app.label);
        ws.send(Message::text("[1,2]")).await.unwrap();
        assert_eq!(
            next_json(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
            "error"
        );
        ws.send(Message::text(
            r#"{"type":"config","payload":{"anomaly_threshold":500}}"#,
        ))
        .await
        .unwrap();
        assert_eq!(
            next_json(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
            "error"
        );
        ws.send(Message::text(
            r#"{"type":"config","payload":{"anomaly_threshold":50}}"#,
        ))
        .await
        .unwrap();
        // Config has no reply: the next frame answers the event.
        ws.send(Message::text(
            r#"{"type":"event","payload":{"value":3,"stream":"w"}}"#,
        ))
        .await
        .unwrap();
        let a = next_json(&mut ws, Duration::from_secs(5))
            .await
            .expect("analysis");
        assert_eq!(a["type"], "analysis");
        assert_eq!(a["data"], json!({"status": "buffering", "count": 1}));
        assert_eq!(a["original_event"], json!({"value": 3, "stream": "w"}));
        ws.send(Message::text(r#"{"value":4,"stream":"w","extra":true}"#))
            .await
            .unwrap();
        let a = next_json(&mut ws, Duration::from_secs(5))
            .await
            .expect("analysis");
        assert_eq!(a["data"]["count"], 2);
        assert_eq!(a["original_event"]["extra"], true);
        ws.send(Message::text(r#"{"value":"abc"}"#)).await.unwrap();
        assert_eq!(
            next_json(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
            "error"
        );
        ws.send(Message::text(r#"{"type":"event","payload":5}"#))
            .await
            .unwrap();
        assert_eq!(
            next_json(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
            "error"
        );
        ws.send(Message::binary(vec![1, 2])).await.unwrap();
        assert_eq!(
            next_json(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
            "error"
        );
        ws.close(None).await.ok();
        app.stop().await;
    }
}

/// Ingests [`calibrate_then_spike`] for `stream` as one batch and returns the analyses (the request must succeed).
async fn ingest_spike(app: &TestApp, token: &str, stream: &str) -> Value {
    let batch = Value::Array(calibrate_then_spike(stream));
    let (s, body) = post(app, token, "/api/ingest", &batch).await;
    assert_eq!(s, 200, "{}: {body}", app.label);
    body
}

/// A reply without the event's time (results carry the time they were analysed at).
fn timeless(mut reply: Value) -> Value {
    if let Some(d) = reply.get_mut("data").and_then(Value::as_object_mut) {
        d.remove("timestamp");
    }
    reply
}

/// Sends `frames` on a new socket and collects `replies` answers: all frames first when `pipelined` (so the
/// server finds them queued together), otherwise each frame after the previous answer.
async fn exchange(app: &TestApp, frames: &[String], replies: usize, pipelined: bool) -> Vec<Value> {
    let mut ws = connect(app, "").await;
    let mut got = Vec::new();
    if pipelined {
        for f in frames {
            ws.feed(Message::text(f.clone())).await.unwrap();
        }
        ws.flush().await.unwrap();
    } else {
        for f in frames {
            ws.send(Message::text(f.clone())).await.unwrap();
            if !f.contains("\"config\"") {
                got.push(
                    next_json(&mut ws, Duration::from_secs(10))
                        .await
                        .expect("reply"),
                );
            }
        }
    }
    while got.len() < replies {
        let r = next_json(&mut ws, Duration::from_secs(20)).await;
        got.push(r.unwrap_or_else(|| panic!("{}: reply {} missing", app.label, got.len())));
    }
    ws.close(None).await.ok();
    got.into_iter().map(timeless).collect()
}

#[tokio::test]
async fn websocket_pipelined_frames_are_answered_like_one_at_a_time() {
    // 72 events with a bad frame before event 10 and a threshold change before event 40: 73 replies.
    let mut frames = Vec::new();
    for (i, e) in calibrate_then_spike("twin").iter().enumerate() {
        if i == 10 {
            frames.push(r#"{"value":"abc"}"#.to_owned());
        }
        if i == 40 {
            frames.push(r#"{"type":"config","payload":{"anomaly_threshold":1}}"#.to_owned());
        }
        frames.push(e.to_string());
    }
    // The reference: the same stream on a fresh server, one frame at a time.
    let (reference, _rt) = apps(open()).await.remove(0);
    let (_, analyst) = reference.user_with_role("stepper", Role::Analyst).await;
    let path = "/api/streams/twin/config";
    assert_eq!(
        put(&reference, &analyst, path, &quick_config()).await.0,
        200
    );
    let want = exchange(&reference, &frames, 73, false).await;
    reference.stop().await;
    assert_eq!(want[10]["type"], "error");
    // Each event was judged with the threshold in force when it was sent.
    let mut scored = [0, 0];
    for (i, r) in want.iter().enumerate() {
        let d = &r["data"];
        if d["calibrated"] == true {
            let threshold = if i <= 40 {
                vigil_stream::StreamConfig::default().anomaly_threshold
            } else {
                1.0
            };
            let total = d["scores"]["total"].as_f64().unwrap();
            assert_eq!(d["is_anomaly"], total > threshold, "reply {i}");
            scored[usize::from(i > 40)] += 1;
        }
    }
    assert!(scored[0] > 0 && scored[1] > 0, "{scored:?}");

    for (app, _rt) in apps(open()).await {
        let (_, analyst) = app.user_with_role("piper", Role::Analyst).await;
        assert_eq!(put(&app, &analyst, path, &quick_config()).await.0, 200);
        let got = exchange(&app, &frames, 73, true).await;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // Incident ids are random; whether an event is in an incident is not.
            assert_eq!(
                without_incident_id(g.clone()),
                without_incident_id(w.clone()),
                "{}: reply {i}",
                app.label
            );
        }
        app.stop().await;
    }
}

/// A reply with its analysis's incident id (random) replaced by a marker of whether it had one.
fn without_incident_id(mut reply: Value) -> Value {
    if let Some(d) = reply.get_mut("data").and_then(Value::as_object_mut)
        && let Some(id) = d.get_mut("incident_id")
    {
        *id = Value::Bool(id.is_string());
    }
    reply
}

/// How many alert messages the incidents of `stream` make: one when each opened, one when each closed.
async fn incident_messages(app: &TestApp, stream: &str) -> usize {
    let rows: Vec<(Option<i64>,)> =
        vigil_store::sqlx::query_as("SELECT incident_open FROM anomalies WHERE source_type = $1")
            .bind(stream)
            .fetch_all(app.state.store.pool())
            .await
            .unwrap();
    rows.iter()
        .map(|r| if r.0 == Some(1) { 1 } else { 2 })
        .sum()
}

/// The value of an unlabelled sample in the process's Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn websocket_replies_are_timed_in_metrics() {
    let metrics = vigil_http::metrics::handle();
    for (app, _rt) in apps(open()).await {
        // Other tests in this process record too, so only growth is checked.
        let before = metric(&metrics.render(), "topoforge_ws_reply_seconds_count");
        let frames: Vec<String> = (0..3)
            .map(|i| json!({"stream": "timed", "value": i}).to_string())
            .collect();
        exchange(&app, &frames, 3, false).await;
        let text = metrics.render();
        assert!(
            metric(&text, "topoforge_ws_reply_seconds_count") >= before + 3.0,
            "{}",
            app.label
        );
        assert!(text.contains("topoforge_ws_reply_seconds_bucket{le=\"0.005\"}"));
        assert!(metric(&text, "topoforge_events_total") >= 3.0);
        app.stop().await;
    }
}

#[tokio::test]
async fn websocket_failing_stream_does_not_fail_the_others_in_a_pipeline() {
    for (app, _rt) in apps(open()).await {
        // A configuration the API would refuse, written behind its back: every batch of this stream fails.
        vigil_realtime::db::set_config(&app.state.store, "broken", Some(r#"{"window_size":0}"#))
            .await
            .unwrap();
        let frames: Vec<String> = ["fine", "broken", "fine", "broken", "fine"]
            .iter()
            .enumerate()
            .map(|(i, s)| json!({"stream": s, "value": i}).to_string())
            .collect();
        let got = exchange(&app, &frames, 5, true).await;
        let kinds: Vec<&str> = got.iter().map(|r| r["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["analysis", "error", "analysis", "error", "analysis"],
            "{}",
            app.label
        );
        // Each event of the healthy stream was stored exactly once.
        let counts: Vec<&Value> = got.iter().map(|r| &r["data"]["count"]).collect();
        assert_eq!(
            [counts[0], counts[2], counts[4]],
            [&json!(1), &json!(2), &json!(3)],
            "{}",
            app.label
        );
        let next = exchange(
            &app,
            &[json!({"stream": "fine", "value": 9}).to_string()],
            1,
            false,
        )
        .await;
        assert_eq!(next[0]["data"]["count"], 4, "{}", app.label);
        app.stop().await;
    }
}

#[tokio::test]
async fn anomalies_are_stored_broadcast_and_streamed_over_sse() {
    for (app, rt) in apps(open()).await {
        let (_, analyst) = app.user_with_role("analyst2", Role::Analyst).await;
        assert_eq!(
            put(&app, &analyst, "/api/streams/net/config", &quick_config())
                .await
                .0,
            200
        );
        let got = app
            .client
            .get(app.url("/api/streams/net/config"))
            .bearer_auth(&analyst)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(got["window_size"], 20, "{}", app.label);
        assert_eq!(
            put(
                &app,
                &analyst,
                "/api/streams/net/config",
                &json!({"window_size": 2})
            )
            .await
            .0,
            422
        );
        // A window whose homology would hold an analysis thread for seconds per event is refused with the limit.
        let (status, body) = put(
            &app,
            &analyst,
            "/api/streams/net/config",
            &json!({"window_size": 500, "min_events": 10, "embedding_dim": 5, "max_homology_dim": 2}),
        )
        .await;
        assert_eq!(status, 422, "{}: {body}", app.label);
        assert!(
            body["detail"].as_str().unwrap_or("").contains("4,000,000"),
            "{body}"
        );

        let mut sub = connect(&app, "").await;
        sub.send(Message::text(r#"{"type":"subscribe"}"#))
            .await
            .unwrap();
        let sse = app
            .client
            .get(app.url("/api/realtime/stream"))
            .send()
            .await
            .expect("sse");
        assert_eq!(sse.status().as_u16(), 200);
        let mut sse_body = sse.bytes_stream();
        // Let both subscriptions register before anything is published.
        for _ in 0..50 {
            if rt.hub().subscribers() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(rt.hub().subscribers(), 2, "{}", app.label);

        let body = ingest_spike(&app, &analyst, "net").await;
        let flagged: Vec<&Value> = body
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["is_anomaly"] == true)
            .collect();
        assert!(
            !flagged.is_empty(),
            "{}: spikes far off the baseline alarm",
            app.label
        );
        for r in &flagged {
            assert_eq!(r["calibrated"], true);
            assert!(r["anomaly_score"].as_f64().unwrap() > 0.65);
        }

        let pushed = next_json(&mut sub, Duration::from_secs(5))
            .await
            .expect("anomaly broadcast");
        assert_eq!(pushed["type"], "anomaly");
        assert_eq!(pushed["data"]["stream"], "net");

        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !text.contains("event: anomaly") && tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), sse_body.next()).await {
                Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
                _ => break,
            }
        }
        assert!(
            text.contains("event: anomaly") && text.contains("\"stream\":\"net\""),
            "{}: {text}",
            app.label
        );

        let rows: Vec<(String, String, String)> = vigil_store::sqlx::query_as(
            "SELECT source_type, risk_level, metadata FROM anomalies WHERE source_type = 'net'",
        )
        .fetch_all(app.state.store.pool())
        .await
        .unwrap();
        assert_eq!(rows.len(), flagged.len(), "{}", app.label);
        let meta: Value = serde_json::from_str(&rows[0].2).unwrap();
        assert_eq!(meta["analysis"]["stream"], "net");
        assert!(meta["analysis"]["persistence"]["h0"].is_array());
        app.stop().await;
    }
}

#[tokio::test]
async fn replicas_share_stream_state_through_the_database() {
    for (app, _rt) in apps(open()).await {
        // Two independent processes' worth of caches over one database, fed alternately, must give exactly
        // the results of one pipeline fed everything.
        let (a, b, single) = (
            realtime(RealtimeConfig::default()),
            realtime(RealtimeConfig::default()),
            realtime(RealtimeConfig::default()),
        );
        let values = noise(90, 3);
        let mut alternating = Vec::new();
        for (i, x) in values.iter().enumerate() {
            let rt = if i % 3 == 0 { &a } else { &b };
            let e = vigil_stream::Event::new("shared", *x, None);
            let o = rt
                .pipeline()
                .process(&app.state, vec![e], None, vigil_realtime::Lane::Bulk)
                .await
                .expect("process");
            alternating.push(serde_json::to_string(&o[0].analysis).unwrap());
        }
        let mut reference = Vec::new();
        for x in &values {
            let e = vigil_stream::Event::new("solo", *x, None);
            let o = single
                .pipeline()
                .process(&app.state, vec![e], None, vigil_realtime::Lane::Bulk)
                .await
                .expect("process");
            reference.push(
                serde_json::to_string(&o[0].analysis)
                    .unwrap()
                    .replace("\"solo\"", "\"shared\""),
            );
        }
        assert!(
            alternating == reference,
            "{}: replicas diverged from a single pipeline",
            app.label
        );
        let row = vigil_realtime::db::load(&app.state.store, "shared")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.version, 90, "{}", app.label);
        app.stop().await;
    }
}

/// Two replicas over one PostgreSQL database: separate pools, separate process-local caches and hubs, one JWT
/// secret. `None` (after saying so) without `TEST_DATABASE_URL`.
async fn two_replicas(test: &str) -> Option<((TestApp, Realtime), (TestApp, Realtime))> {
    let Some(db) = vigil_store::testing::TestDb::postgres().await else {
        eprintln!("skipping {test}: it needs PostgreSQL (set TEST_DATABASE_URL)");
        return None;
    };
    let replica = db.replica().await;
    let (rt_a, rt_b) = (realtime(open()), realtime(open()));
    let (a2, b2) = (rt_a.clone(), rt_b.clone());
    let a = TestApp::start(db, move |state| a2.router(state)).await;
    let b = TestApp::start(replica, move |state| b2.router(state)).await;
    Some(((a, rt_a), (b, rt_b)))
}

/// The hardening review's two-replica contention, kept: writers of one stream on two replicas (separate caches,
/// separate pools, one PostgreSQL) used to get 503 after 4 lost races (14 of 160 batches). Contended writers now
/// retry in locked turns (the row read FOR UPDATE): every batch is answered and stored exactly once.
#[tokio::test]
async fn contended_replicas_wait_instead_of_failing() {
    let Some(((a, rt_a), (b, rt_b))) = two_replicas("the replica contention test").await else {
        return;
    };
    const WRITERS: usize = 8;
    const BATCHES: usize = 20;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (rt, state) = if w % 2 == 0 {
            (rt_a.clone(), a.state.clone())
        } else {
            (rt_b.clone(), b.state.clone())
        };
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for (i, x) in noise(BATCHES * 5, w as u64).chunks(5).enumerate() {
                let events = x
                    .iter()
                    .map(|v| vigil_stream::Event::new("contended", *v, None))
                    .collect();
                let lane = if i % 2 == 0 {
                    vigil_realtime::Lane::Bulk
                } else {
                    vigil_realtime::Lane::Interactive
                };
                if let Err(e) = rt.pipeline().process(&state, events, None, lane).await {
                    failures.push(e.to_string());
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.expect("writer task"));
    }
    eprintln!(
        "{} batches of 5 events from {WRITERS} writers on 2 replicas in {:?}",
        WRITERS * BATCHES,
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    let row = vigil_realtime::db::load(&a.state.store, "contended")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.version,
        (WRITERS * BATCHES) as i64,
        "every batch stored exactly once"
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn alerts_fire_to_webhooks_and_the_owners_sockets() {
    // A webhook receiver that records what it gets.
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await });

    for (app, rt) in apps(open()).await {
        received.lock().unwrap().clear();
        let (user_id, analyst) = app.user_with_role("alerter", Role::Analyst).await;
        vigil_store::sqlx::query(
            "INSERT INTO alert_configs (id, user_id, threshold, notification_channels, is_active, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind("cfg1")
        .bind(&user_id)
        .bind(0.5_f64)
        .bind(json!(["websocket", format!("webhook:http://{hook_addr}/hook")]).to_string())
        .bind(1_i64)
        .bind(1_i64)
        .execute(app.state.store.pool())
        .await
        .unwrap();
        let mut mine = connect(&app, &format!("?token={analyst}")).await;
        for _ in 0..50 {
            if rt.hub().registered_sockets() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(rt.hub().registered_sockets(), 1);
        assert_eq!(
            put(
                &app,
                &analyst,
                "/api/streams/alerty/config",
                &quick_config()
            )
            .await
            .0,
            200
        );
        let body = ingest_spike(&app, &analyst, "alerty").await;
        let flagged = body
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["is_anomaly"] == true)
            .count();
        assert!(flagged > 0);
        let alert = next_json(&mut mine, Duration::from_secs(5))
            .await
            .expect("alert push");
        assert_eq!(alert["type"], "alert", "{}", app.label);
        assert_eq!(alert["data"]["source_type"], "alerty");
        let messages = incident_messages(&app, "alerty").await;
        assert!(messages >= 1 && messages <= 2 * flagged, "{messages}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while received.lock().unwrap().len() < messages && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let got = received.lock().unwrap().clone();
        assert_eq!(
            got.len(),
            messages,
            "{}: one webhook POST per incident when it opens, one when it closes",
            app.label
        );
        assert_eq!(got[0]["source_type"], "alerty");
        assert!(got[0]["id"].is_string());
        mine.close(None).await.ok();
        app.stop().await;
    }
}

#[tokio::test]
async fn hand_recorded_anomalies_reach_the_owners_sockets() {
    for db in vigil_store::testing::TestDb::all().await {
        // The process wiring of `vigil serve`: one dispatcher shared by the anomalies routes and the stream side.
        let anomalies = Anomalies::new(&AnomaliesConfig::default());
        let rt = Realtime::new(open(), &anomalies);
        let rt2 = rt.clone();
        let app = TestApp::start(db, move |state| {
            rt2.router(state).merge(anomalies.router(state))
        })
        .await;
        let (_, analyst) = app.user_with_role("recorder", Role::Analyst).await;
        let (s, cfg) = post(
            &app,
            &analyst,
            "/api/alerts",
            &json!({"threshold": 0.8, "notification_channels": ["websocket"]}),
        )
        .await;
        assert_eq!(s, 201, "{}: {cfg}", app.label);
        let mut mine = connect(&app, &format!("?token={analyst}")).await;
        for _ in 0..50 {
            if rt.hub().registered_sockets() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let record = |score: f64| {
            json!({
                "timestamp": "2026-01-12T08:00:00Z", "source_type": "manual", "event_data": {"value": 1},
                "betti_h0": 1, "betti_h1": 0, "betti_h2": 0, "anomaly_score": score
            })
        };
        let (s, low) = post(&app, &analyst, "/api/anomalies", &record(0.5)).await;
        assert_eq!(s, 201, "{}: {low}", app.label);
        let (s, high) = post(&app, &analyst, "/api/anomalies", &record(0.9)).await;
        assert_eq!(s, 201, "{}: {high}", app.label);
        let alert = next_json(&mut mine, Duration::from_secs(5))
            .await
            .expect("alert push");
        assert_eq!(
            (alert["type"].as_str(), &alert["data"]["id"]),
            (Some("alert"), &high["id"]),
            "{}: only the anomaly above the threshold is pushed",
            app.label
        );
        assert!(
            next_json(&mut mine, Duration::from_millis(300))
                .await
                .is_none(),
            "{}: one push",
            app.label
        );
        mine.close(None).await.ok();
        app.stop().await;
    }
}

#[tokio::test]
async fn slow_subscribers_are_dropped_and_disconnects_free_resources() {
    let cfg = RealtimeConfig {
        stream_subscriber_queue: 4,
        ..open()
    };
    for (app, rt) in apps(cfg.clone()).await {
        let (_, analyst) = app.user_with_role("watcher", Role::Viewer).await;
        let mut slow = connect(&app, &format!("?token={analyst}")).await;
        slow.send(Message::text(r#"{"type":"subscribe"}"#))
            .await
            .unwrap();
        for _ in 0..50 {
            if rt.hub().subscribers() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            (rt.hub().subscribers(), rt.hub().registered_sockets()),
            (1, 1),
            "{}",
            app.label
        );
        // Far more than the queue holds, published at once: publishing never waits for the socket.
        let big = Arc::<str>::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(1000)));
        let started = std::time::Instant::now();
        for _ in 0..500 {
            rt.hub().publish(big.clone());
        }
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "publishing blocked"
        );
        // The socket is closed with a policy-violation frame once it notices it lagged.
        let mut closed = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), slow.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => {
                    closed = frame;
                    break;
                }
                Ok(Some(Ok(_))) => continue,
                _ => break,
            }
        }
        let frame = closed.expect("close frame");
        assert_eq!(u16::from(frame.code), 1008, "{}", app.label);
        assert!(frame.reason.as_str().contains("too slow"));
        for _ in 0..100 {
            if rt.hub().subscribers() == 0 && rt.hub().registered_sockets() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            (rt.hub().subscribers(), rt.hub().registered_sockets()),
            (0, 0),
            "{}",
            app.label
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn stream_auth_can_be_required() {
    let cfg = RealtimeConfig {
        stream_require_auth: true,
        ..open()
    };
    for (app, _rt) in apps(cfg.clone()).await {
        assert!(
            tokio_tungstenite::connect_async(app.ws_url("/ws/stream"))
                .await
                .is_err(),
            "{}",
            app.label
        );
        assert!(
            tokio_tungstenite::connect_async(app.ws_url("/ws/stream?token=bogus"))
                .await
                .is_err()
        );
        let (_, analyst) = app.user_with_role("a2", Role::Analyst).await;
        let mut ws = connect(&app, &format!("?token={analyst}")).await;
        ws.send(Message::text(r#"{"value":1}"#)).await.unwrap();
        assert_eq!(
            next_json(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
            "analysis"
        );
        let r = app
            .client
            .get(app.url("/api/realtime/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{}", app.label);
        app.stop().await;
    }
}

/// The next close frame's code and reason, skipping other frames, or `None` when none comes within `wait`.
async fn next_close(ws: &mut Ws, wait: Duration) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                return Some((u16::from(f.code), f.reason.as_str().to_owned()));
            }
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// The hardening review's socket attacks, kept: with the shipped defaults an anonymous socket can neither feed
/// events nor receive the broadcast, a viewer cannot feed events (as on `POST /api/ingest`), and a session that
/// ends in the database (revoked tokens, deactivation) closes its socket with 1008 and ends its SSE stream.
#[tokio::test]
async fn socket_roles_and_session_end() {
    let cfg = RealtimeConfig {
        stream_session_recheck_ms: 100,
        ..RealtimeConfig::default()
    };
    for (app, _rt) in apps(cfg).await {
        let label = app.label;
        let mut anon = connect(&app, "").await;
        anon.send(Message::text(r#"{"value":1}"#)).await.unwrap();
        let e = next_json(&mut anon, Duration::from_secs(5)).await.unwrap();
        assert_eq!(e["type"], "error", "{label}: {e}");
        assert!(
            e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("STREAM_ANONYMOUS_STREAMS"),
            "{e}"
        );
        anon.send(Message::text(r#"{"type":"subscribe"}"#))
            .await
            .unwrap();
        let e = next_json(&mut anon, Duration::from_secs(5)).await.unwrap();
        assert_eq!(e["type"], "error", "{label}: {e}");
        let r = app
            .client
            .get(app.url("/api/realtime/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{label}");

        let (_, viewer) = app.user_with_role("vera", Role::Viewer).await;
        let mut v = connect(&app, &format!("?token={viewer}")).await;
        v.send(Message::text(r#"{"value":1}"#)).await.unwrap();
        let e = next_json(&mut v, Duration::from_secs(5)).await.unwrap();
        assert_eq!(e["type"], "error", "{label}: {e}");
        assert!(
            e["detail"].as_str().unwrap_or("").contains("analyst"),
            "{e}"
        );

        let (analyst_id, analyst) = app.user_with_role("andy", Role::Analyst).await;
        let mut a = connect(&app, &format!("?token={analyst}")).await;
        a.send(Message::text(r#"{"value":1,"stream":"s"}"#))
            .await
            .unwrap();
        let r = next_json(&mut a, Duration::from_secs(5)).await.unwrap();
        assert_eq!(r["type"], "analysis", "{label}: {r}");
        let sse = app
            .client
            .get(app.url(&format!("/api/realtime/stream?token={analyst}")))
            .send()
            .await
            .unwrap();
        assert_eq!(sse.status().as_u16(), 200, "{label}");
        // Logout everywhere, as the accounts routes do it: the account's session generation moves on.
        vigil_store::sqlx::query(
            "UPDATE users SET session_generation = session_generation + 1 WHERE id = $1",
        )
        .bind(&analyst_id)
        .execute(app.state.store.pool())
        .await
        .unwrap();
        let (code, reason) = next_close(&mut a, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{label}: the socket of a revoked session stays open"));
        assert_eq!(code, 1008, "{label}");
        assert!(reason.contains("revoked"), "{label}: {reason}");
        let ended = tokio::time::timeout(Duration::from_secs(5), sse.bytes()).await;
        assert!(
            ended.is_ok(),
            "{label}: the SSE stream of a revoked session goes on"
        );

        // Deactivation ends the viewer's socket too.
        vigil_store::sqlx::query("UPDATE users SET is_active = 0 WHERE username = $1")
            .bind("vera")
            .execute(app.state.store.pool())
            .await
            .unwrap();
        let (code, _) = next_close(&mut v, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{label}: a deactivated account's socket stays open"));
        assert_eq!(code, 1008, "{label}");
        app.stop().await;
    }
}

/// An operator can open named streams to anonymous sockets (the TopoForge dashboard forwards public feed events to
/// `default` over one); every other stream stays closed to them.
#[tokio::test]
async fn anonymous_sockets_feed_only_the_streams_the_operator_names() {
    let cfg = RealtimeConfig {
        stream_anonymous_streams: "default, public".into(),
        ..RealtimeConfig::default()
    };
    for (app, _rt) in apps(cfg).await {
        let mut anon = connect(&app, "").await;
        for (frame, expected) in [
            (r#"{"value":1}"#, "analysis"),
            (r#"{"value":1,"stream":"public"}"#, "analysis"),
            (r#"{"value":1,"stream":"payments"}"#, "error"),
            (
                r#"{"type":"event","payload":{"value":2,"stream":"default"}}"#,
                "analysis",
            ),
        ] {
            anon.send(Message::text(frame)).await.unwrap();
            let r = next_json(&mut anon, Duration::from_secs(5)).await.unwrap();
            assert_eq!(r["type"], expected, "{} {frame}: {r}", app.label);
        }
        app.stop().await;
    }
}

/// Text frames received within `wait` of each other, until `quiet` passes without one (skipping pings).
async fn drain_texts(ws: &mut Ws, first_wait: Duration, quiet: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let mut wait = first_wait;
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                out.push(t.as_str().to_owned());
                wait = quiet;
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return out,
        }
    }
}

#[tokio::test]
async fn anomalies_reach_subscribers_on_other_replicas_exactly_once() {
    let Some(((a, rt_a), (b, rt_b))) = two_replicas("the cross-replica fan-out test").await else {
        return;
    };

    let (user_id, analyst) = a.user_with_role("fanout", Role::Analyst).await;
    vigil_store::sqlx::query(
        "INSERT INTO alert_configs (id, user_id, threshold, notification_channels, is_active, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind("cfg-fanout")
    .bind(&user_id)
    .bind(0.5_f64)
    .bind(json!(["websocket"]).to_string())
    .bind(1_i64)
    .bind(1_i64)
    .execute(a.state.store.pool())
    .await
    .unwrap();

    // Subscribers on both replicas; the alert owner has a socket on each.
    let mut sub_a = connect(&a, "").await;
    let mut sub_b = connect(&b, "").await;
    for ws in [&mut sub_a, &mut sub_b] {
        ws.send(Message::text(r#"{"type":"subscribe"}"#))
            .await
            .unwrap();
    }
    let mut owner_a = connect(&a, &format!("?token={analyst}")).await;
    let mut owner_b = connect(&b, &format!("?token={analyst}")).await;
    let sse = b
        .client
        .get(b.url("/api/realtime/stream"))
        .send()
        .await
        .expect("sse");
    assert_eq!(sse.status().as_u16(), 200);
    let mut sse_body = sse.bytes_stream();
    for _ in 0..250 {
        if (rt_a.hub().subscribers(), rt_b.hub().subscribers()) == (1, 2)
            && (
                rt_a.hub().registered_sockets(),
                rt_b.hub().registered_sockets(),
            ) == (1, 1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((rt_a.hub().subscribers(), rt_b.hub().subscribers()), (1, 2));
    // Each replica started its relay when its first client connected; wait until both listen.
    for _ in 0..250 {
        if rt_a.relay_listening() && rt_b.relay_listening() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rt_a.relay_listening() && rt_b.relay_listening());

    assert_eq!(
        put(&a, &analyst, "/api/streams/xr/config", &quick_config())
            .await
            .0,
        200
    );
    let body = ingest_spike(&a, &analyst, "xr").await;
    let flagged = body
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["is_anomaly"] == true)
        .count();
    assert!(flagged > 0, "spikes far off the baseline alarm");

    // Every anomaly exactly once on each replica, and B's text is A's text, in the same order.
    let quiet = Duration::from_millis(1500);
    let on_a = drain_texts(&mut sub_a, Duration::from_secs(10), quiet).await;
    let on_b = drain_texts(&mut sub_b, Duration::from_secs(10), quiet).await;
    assert_eq!(
        on_a.len(),
        flagged,
        "replica A delivers its own anomalies once"
    );
    assert_eq!(on_b, on_a, "replica B gets the same messages, once each");
    for m in &on_b {
        let v: Value = serde_json::from_str(m).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["data"]["stream"].as_str()),
            (Some("anomaly"), Some("xr"))
        );
    }

    // The SSE stream on B carries the same results.
    let expected_data: Vec<String> = on_a
        .iter()
        .map(|m| {
            m.strip_prefix("{\"type\":\"anomaly\",\"data\":")
                .and_then(|r| r.strip_suffix('}'))
                .expect("anomaly frame shape")
                .to_owned()
        })
        .collect();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while text.matches("event: anomaly").count() < flagged && tokio::time::Instant::now() < deadline
    {
        match tokio::time::timeout(Duration::from_secs(5), sse_body.next()).await {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    // Nothing more arrives.
    if let Ok(Some(Ok(chunk))) = tokio::time::timeout(quiet, sse_body.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let sse_data: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(str::to_owned)
        .collect();
    assert_eq!(sse_data, expected_data, "SSE on replica B");

    // `websocket` alerts reach the owner's sockets on both replicas, once per anomaly, with the same text.
    let mut alerts_a = drain_texts(&mut owner_a, Duration::from_secs(10), quiet).await;
    let mut alerts_b = drain_texts(&mut owner_b, Duration::from_secs(10), quiet).await;
    alerts_a.sort();
    alerts_b.sort();
    assert_eq!(alerts_a.len(), incident_messages(&a, "xr").await);
    assert_eq!(alerts_b, alerts_a);
    let first: Value = serde_json::from_str(&alerts_b[0]).unwrap();
    assert_eq!(first["type"], "alert");
    assert_eq!(first["data"]["source_type"], "xr");

    // The listeners survive losing their connections: kill both server-side, and the next anomalies still cross.
    let listeners =
        "FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'";
    let killed: Vec<(i64,)> =
        vigil_store::sqlx::query_as(&format!("SELECT CAST(pid AS BIGINT) {listeners}"))
            .fetch_all(a.state.store.pool())
            .await
            .unwrap();
    assert_eq!(killed.len(), 2, "one listener per replica");
    vigil_store::sqlx::query(&format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT pg_terminate_backend(pid) {listeners}) AS t"
    ))
    .execute(a.state.store.pool())
    .await
    .unwrap();
    let mut back = Vec::new();
    for _ in 0..250 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        back = vigil_store::sqlx::query_as(&format!("SELECT CAST(pid AS BIGINT) {listeners}"))
            .fetch_all(a.state.store.pool())
            .await
            .unwrap();
        if back.len() == 2
            && back.iter().all(|p| !killed.contains(p))
            && rt_a.relay_listening()
            && rt_b.relay_listening()
        {
            break;
        }
    }
    assert!(
        back.len() == 2 && back.iter().all(|p| !killed.contains(p)),
        "both replicas listen again on new connections: {back:?} (killed {killed:?})"
    );
    assert_eq!(
        put(&a, &analyst, "/api/streams/xr2/config", &quick_config())
            .await
            .0,
        200
    );
    ingest_spike(&a, &analyst, "xr2").await;
    let on_a = drain_texts(&mut sub_a, Duration::from_secs(10), quiet).await;
    let on_b = drain_texts(&mut sub_b, Duration::from_secs(10), quiet).await;
    assert!(!on_a.is_empty());
    assert_eq!(
        on_b, on_a,
        "after reconnecting, replica B gets A's anomalies once each"
    );

    for ws in [sub_a, sub_b, owner_a, owner_b].iter_mut() {
        ws.close(None).await.ok();
    }
    b.stop().await;
    a.stop().await;
}

/// `GET /api/streams`: each stream's window, event count and status move from buffering through calibrating to
/// live as events arrive; viewers may read it, anonymous callers may not; `?stream=` narrows the list.
#[tokio::test]
async fn stream_overview_follows_calibration() {
    for (app, _rt) in apps(RealtimeConfig::default()).await {
        let (_, analyst) = app.user_with_role("ov_analyst", Role::Analyst).await;
        let (_, viewer) = app.user_with_role("ov_viewer", Role::Viewer).await;
        let list = |token: String, query: &'static str| {
            let (client, url) = (app.client.clone(), app.url(&format!("/api/streams{query}")));
            async move {
                let r = client
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("list");
                assert_eq!(r.status().as_u16(), 200);
                r.json::<Vec<Value>>().await.expect("json")
            }
        };
        assert!(list(viewer.clone(), "").await.is_empty());
        let anon = app
            .client
            .get(app.url("/api/streams"))
            .send()
            .await
            .expect("anon");
        assert_eq!(anon.status().as_u16(), 401);

        let (s, _) = put(&app, &analyst, "/api/streams/ov/config", &quick_config()).await;
        assert_eq!(s, 200);
        let values = noise(40, 3);
        let batch = |xs: &[f64]| -> Value {
            xs.iter()
                .map(|x| json!({"stream": "ov", "value": x}))
                .collect::<Vec<_>>()
                .into()
        };
        let (s, _) = post(&app, &analyst, "/api/ingest", &batch(&values[..5])).await;
        assert_eq!(s, 200);
        let (s, _) = post(
            &app,
            &analyst,
            "/api/ingest",
            &json!({"stream": "other", "value": 1}),
        )
        .await;
        assert_eq!(s, 200);
        let rows = list(viewer.clone(), "").await;
        let names: Vec<&str> = rows.iter().filter_map(|r| r["stream"].as_str()).collect();
        assert_eq!(names, ["other", "ov"]);
        let ov = &rows[1];
        assert_eq!(ov["status"], "buffering");
        assert_eq!(ov["events"], 5);
        assert_eq!(ov["anomaly_threshold"], 80.0);
        assert_eq!(ov["values"].as_array().map(Vec::len), Some(5));

        let (s, _) = post(&app, &analyst, "/api/ingest", &batch(&values[5..12])).await;
        assert_eq!(s, 200);
        let ov = list(viewer.clone(), "?stream=ov").await;
        assert_eq!(ov.len(), 1);
        assert_eq!(ov[0]["status"], "calibrating");

        let (s, results) = post(&app, &analyst, "/api/ingest", &batch(&values[12..])).await;
        assert_eq!(s, 200);
        // The overview says `live` exactly when the next result will be scored: the last result was.
        assert_eq!(
            results
                .as_array()
                .and_then(|r| r.last())
                .map(|r| r["calibrated"].clone()),
            Some(json!(true))
        );
        let ov = list(viewer.clone(), "?stream=ov").await;
        assert_eq!(ov[0]["status"], "live");
        assert_eq!(ov[0]["events"], 40);
        // The current score is the last result's total.
        let last = results.as_array().and_then(|r| r.last()).expect("a result");
        assert_eq!(ov[0]["score"], last["scores"]["total"]);
        // The window holds the last `window_size` (20) values, oldest first, exactly as sent.
        let window: Vec<f64> = ov[0]["values"]
            .as_array()
            .expect("values")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(window, values[20..].to_vec());
        assert!(list(viewer.clone(), "?stream=nope").await.is_empty());
        app.stop().await;
    }
}

/// Reads SSE blocks from `body` until `want` events named `name` arrived (or `limit` passes); returns their data.
async fn sse_events<S, B>(body: &mut S, name: &str, want: usize, limit: Duration) -> Vec<Value>
where
    S: futures_util::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while out.len() < want {
        let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, body.next()).await else {
            break;
        };
        buf.push_str(&String::from_utf8_lossy(chunk.as_ref()));
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            let mut event = "message";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = if e.trim() == name { name } else { "other" };
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if event == name {
                out.push(serde_json::from_str(&data).expect("event data is JSON"));
            }
        }
    }
    out
}

/// `?stream=` adds every analysis of that stream to the SSE feed, in order, whatever form the ingesting client
/// asked for; anonymous callers are refused even where the broadcast is open to them; the current window's
/// topology is read from the stored state.
#[tokio::test]
async fn a_stream_is_watched_analysis_by_analysis() {
    for (app, rt) in apps(open()).await {
        let (_, analyst) = app.user_with_role("watcher", Role::Analyst).await;
        let (_, viewer) = app.user_with_role("looker", Role::Viewer).await;
        assert_eq!(
            put(&app, &analyst, "/api/streams/w/config", &quick_config())
                .await
                .0,
            200
        );
        let get = |path: &str, token: &str| app.client.get(app.url(path)).bearer_auth(token).send();
        assert_eq!(
            get("/api/streams/w/analysis", &viewer)
                .await
                .unwrap()
                .status(),
            404,
            "{}: no events yet",
            app.label
        );
        // Anonymous: the broadcast is open in this configuration, a stream's analyses are not.
        let anon = app
            .client
            .get(app.url("/api/realtime/stream?stream=w"))
            .send()
            .await
            .unwrap();
        assert_eq!(anon.status(), 401, "{}", app.label);
        let long = "x".repeat(129);
        assert_eq!(
            get(&format!("/api/realtime/stream?stream={long}"), &viewer)
                .await
                .unwrap()
                .status(),
            422
        );

        let sse = get("/api/realtime/stream?stream=w", &viewer).await.unwrap();
        assert_eq!(sse.status(), 200, "{}", app.label);
        let mut body = sse.bytes_stream();
        for _ in 0..50 {
            if rt.pipeline().watchers().is_watched("w") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(rt.pipeline().watchers().is_watched("w"), "{}", app.label);

        let values = noise(30, 5);
        let events: Vec<Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"stream": "w", "value": v, "timestamp": 1_700_000_000 + i as i64}))
            .collect();
        // Two requests, the second compact: the watcher still gets whole results, in the stored order.
        let (s1, _) = post(&app, &analyst, "/api/ingest", &json!(events[..12])).await;
        let (s2, _) = post(
            &app,
            &analyst,
            "/api/ingest?detail=scores",
            &json!(events[12..]),
        )
        .await;
        assert_eq!((s1, s2), (200, 200), "{}", app.label);
        // Another stream's events are not this feed's.
        post(
            &app,
            &analyst,
            "/api/ingest",
            &json!({"stream": "other", "value": 1}),
        )
        .await;

        let got = sse_events(&mut body, "analysis", 30, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 30, "{}: one message per event", app.label);
        for (m, v) in got.iter().zip(&values) {
            assert_eq!(m["value"].as_f64(), Some(*v));
        }
        assert_eq!(got[0]["analysis"]["status"], "buffering");
        assert_eq!(got[0]["timestamp"], 1_700_000_000_000_i64);
        let last = &got[29]["analysis"];
        assert_eq!(last["stream"], "w");
        assert!(last["persistence"]["h0"].is_array(), "{last}");
        assert!(last["scores"]["total"].is_number());

        let current: Value = get("/api/streams/w/analysis", &viewer)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(current["events"], 30, "{}: {current}", app.label);
        assert_eq!(current["window"]["window_size"], 20);
        let h0 = current["window"]["persistence"]["h0"].as_array().unwrap();
        assert_eq!(
            h0.len(),
            last["persistence"]["h0"].as_array().unwrap().len()
        );
        assert_eq!(
            app.client
                .get(app.url("/api/streams/w/analysis"))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
    }
}
