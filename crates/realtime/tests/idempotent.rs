//! Idempotent events end to end (issue #18 item 4): a batch retried after a partial failure applies each event
//! once, by `event_id` and by `seq`, over HTTP and the WebSocket, on SQLite and (with `TEST_DATABASE_URL`)
//! PostgreSQL. The kill -9 variant (a retry after the process died mid-ingest) is in `crates/vigil/tests/kill.rs`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use vigil_anomalies::{Anomalies, AnomaliesConfig};
use vigil_http::Role;
use vigil_http::testing::TestApp;
use vigil_realtime::{Realtime, RealtimeConfig};

async fn apps() -> Vec<TestApp> {
    let mut out = Vec::new();
    for db in vigil_store::testing::TestDb::all().await {
        let rt = Realtime::new(
            RealtimeConfig {
                stream_anonymous_streams: "*".into(),
                ..RealtimeConfig::default()
            },
            &Anomalies::new(&AnomaliesConfig::default()),
        );
        out.push(TestApp::start(db, move |state| rt.router(state)).await);
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

/// Deterministic noise around 10.
fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut r = vigil_stream::bench_data::SplitMix::new(seed);
    (0..n).map(|_| 10.0 + r.normal()).collect()
}

fn is_duplicate(answer: &Value) -> bool {
    answer["status"] == "duplicate"
}

/// Positions of the duplicate answers in a batch's answer.
fn duplicates(answers: &Value) -> Vec<usize> {
    answers
        .as_array()
        .expect("an array")
        .iter()
        .enumerate()
        .filter(|(_, a)| is_duplicate(a))
        .map(|(i, _)| i)
        .collect()
}

/// The event count of `stream` from `GET /api/streams`.
async fn event_count(app: &TestApp, token: &str, stream: &str) -> u64 {
    let r: Value = app
        .client
        .get(app.url("/api/streams"))
        .bearer_auth(token)
        .send()
        .await
        .expect("overview")
        .json()
        .await
        .expect("overview json");
    r.as_array()
        .expect("stream list")
        .iter()
        .find(|s| s["stream"] == stream)
        .and_then(|s| s["events"].as_u64())
        .unwrap_or(0)
}

/// A batch retried after only its first part was applied applies the rest once, and the stream ends exactly
/// where a stream that got the batch once ends (same scores for the next events).
#[tokio::test]
async fn a_retried_batch_applies_each_event_once() {
    for app in apps().await {
        let l = app.label;
        let (_, token) = app.user_with_role("producer", Role::Analyst).await;
        let vals = noise(120, 1);
        let by_id = |stream: &str, range: std::ops::Range<usize>| -> Value {
            range
                .map(|i| json!({"stream": stream, "value": vals[i], "event_id": format!("e-{i}")}))
                .collect()
        };
        let by_seq = |stream: &str, range: std::ops::Range<usize>| -> Value {
            range
                .map(|i| json!({"stream": stream, "value": vals[i], "seq": i + 1}))
                .collect()
        };
        let plain = |stream: &str, range: std::ops::Range<usize>| -> Value {
            range
                .map(|i| json!({"stream": stream, "value": vals[i]}))
                .collect()
        };
        type Batch<'a> = &'a dyn Fn(&str, std::ops::Range<usize>) -> Value;
        let identified: [(&str, Batch<'_>); 2] = [("ids", &by_id), ("seqs", &by_seq)];
        // The first 70 events arrive; the client never hears back and retries all 100.
        for (stream, batch) in identified {
            let (s, first) = post(&app, &token, "/api/ingest", &batch(stream, 0..70)).await;
            assert_eq!((s, duplicates(&first).len()), (200, 0), "{l}: {first}");
            let (s, retry) = post(&app, &token, "/api/ingest", &batch(stream, 0..100)).await;
            assert_eq!(s, 200, "{l}: {retry}");
            assert_eq!(
                duplicates(&retry),
                (0..70).collect::<Vec<_>>(),
                "{l}: {stream}"
            );
            assert_eq!(
                retry[0],
                json!({"stream": stream, "status": "duplicate",
                       "event_id": if stream == "ids" { json!("e-0") } else { Value::Null },
                       "seq": if stream == "seqs" { json!(1) } else { Value::Null }}),
                "{l}"
            );
            assert!(retry[70]["anomaly_score"].is_number(), "{l}: {}", retry[70]);
            // Retried again in full, in the compact form: nothing new.
            let (_, again) = post(
                &app,
                &token,
                "/api/ingest?detail=compact",
                &batch(stream, 0..100),
            )
            .await;
            assert_eq!(duplicates(&again).len(), 100, "{l}: {stream}");
            assert_eq!(
                event_count(&app, &token, stream).await,
                100,
                "{l}: {stream}"
            );
        }
        let (_, once) = post(&app, &token, "/api/ingest", &plain("once", 0..100)).await;
        assert_eq!(once.as_array().map(Vec::len), Some(100), "{l}");
        // The next events score identically on the retried streams and on the one fed once.
        let scores = |a: &Value| -> Vec<Value> {
            a.as_array()
                .expect("array")
                .iter()
                .map(|x| x["anomaly_score"].clone())
                .collect()
        };
        let (_, reference) = post(
            &app,
            &token,
            "/api/ingest?detail=scores",
            &plain("once", 100..120),
        )
        .await;
        for (stream, batch) in identified {
            let (_, next) = post(
                &app,
                &token,
                "/api/ingest?detail=scores",
                &batch(stream, 100..120),
            )
            .await;
            assert_eq!(scores(&next), scores(&reference), "{l}: {stream}");
        }
    }
}

/// Duplicates within one batch, per stream, older sequence numbers, and bad identities.
#[tokio::test]
async fn duplicates_are_judged_per_stream_and_identities_are_validated() {
    for app in apps().await {
        let l = app.label;
        let (_, token) = app.user_with_role("producer", Role::Analyst).await;
        let batch = json!([
            {"stream": "a", "value": 1, "event_id": "x"},
            {"stream": "b", "value": 1, "event_id": "x"},
            {"stream": "a", "value": 2, "event_id": "x"},
            {"stream": "a", "value": 3, "seq": 10},
            {"stream": "a", "value": 4, "seq": 4},
            {"stream": "a", "value": 5, "event_id": 7},
            {"stream": "a", "value": 6, "event_id": "7"},
        ]);
        let (s, answer) = post(&app, &token, "/api/ingest", &batch).await;
        assert_eq!(s, 200, "{l}: {answer}");
        // The same id on another stream is another event; integer and text ids are the same id.
        assert_eq!(duplicates(&answer), vec![2, 4, 6], "{l}: {answer}");
        // A single event answers with an object.
        let (_, one) = post(
            &app,
            &token,
            "/api/ingest",
            &json!({"stream": "a", "seq": 9, "value": 1}),
        )
        .await;
        assert!(is_duplicate(&one), "{l}: {one}");
        for (bad, field) in [
            (json!({"event_id": ""}), "event_id"),
            (json!({"event_id": {"a": 1}}), "event_id"),
            (json!({"seq": -3}), "seq"),
            (json!({"seq": "12"}), "seq"),
        ] {
            let (s, body) = post(&app, &token, "/api/ingest", &json!([{"value": 1}, bad])).await;
            assert_eq!(s, 422, "{l}: {body}");
            let detail = body["detail"].as_str().unwrap_or_default();
            assert!(
                detail.starts_with("event 1:") && detail.contains(field),
                "{l}: {detail}"
            );
        }
    }
}

/// On the socket, a resent event is answered as a duplicate and leaves the stream as it was.
#[tokio::test]
async fn a_resent_socket_event_is_a_duplicate() {
    for app in apps().await {
        let l = app.label;
        let (_, token) = app.user_with_role("producer", Role::Analyst).await;
        let (mut ws, _) = tokio_tungstenite::connect_async(app.ws_url("/ws/stream"))
            .await
            .expect("connect");
        let frame =
            json!({"type": "event", "payload": {"stream": "w", "value": 1.5, "event_id": "w-1"}});
        let mut data = Vec::new();
        for _ in 0..2 {
            ws.send(Message::text(frame.to_string()))
                .await
                .expect("send");
            let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("a reply in time")
                .expect("open")
                .expect("frame");
            let reply: Value = serde_json::from_str(reply.to_text().expect("text")).expect("json");
            assert_eq!(reply["type"], "analysis", "{l}: {reply}");
            assert_eq!(reply["original_event"], frame["payload"], "{l}");
            data.push(reply["data"].clone());
        }
        assert_eq!(data[0]["status"], "buffering", "{l}: {}", data[0]);
        assert_eq!(
            data[1],
            json!({"stream": "w", "status": "duplicate", "event_id": "w-1", "seq": null}),
            "{l}"
        );
        assert_eq!(event_count(&app, &token, "w").await, 1, "{l}");
    }
}
