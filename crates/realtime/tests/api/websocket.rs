//! `WS /ws/stream`: protocol errors, pipelining, metrics.

use crate::helpers::{apps, calibrate_then_spike, connect, next_json, open, quick_config};
use futures_util::SinkExt;
use serde_json::Value;
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use vigil_http::Role;
use vigil_http::testing::TestApp;

/// The value of an unlabelled sample in the process's Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
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

/// A reply without the event's time (results carry the time they were analysed at).
fn timeless(mut reply: Value) -> Value {
    if let Some(d) = reply.get_mut("data").and_then(Value::as_object_mut) {
        d.remove("timestamp");
    }
    reply
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
        reference
            .api_as(&analyst)
            .put(path, &quick_config())
            .await
            .0,
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
        assert_eq!(app.api_as(&analyst).put(path, &quick_config()).await.0, 200);
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
        vigil_store::streams::set_config(&app.state.store, "broken", Some(r#"{"window_size":0}"#))
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
