//! `GET /api/realtime/stream` (SSE) and the broadcast of stored anomalies.

use crate::helpers::{apps, connect, incident_rows, ingest_spike, next_json, open, quick_config};
use futures_util::SinkExt;
use futures_util::StreamExt;
use serde_json::Value;
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use vigil_http::Role;
use vigil_http::testing::TestApp;

/// Step: a stream's configuration is stored and read back; a too-small window and one whose homology would be
/// too costly are refused.
async fn stream_config_is_stored_and_validated(app: &TestApp, analyst: &str) {
    assert_eq!(
        app.api_as(analyst)
            .put("/api/streams/net/config", &quick_config())
            .await
            .0,
        200
    );
    let got = app
        .client
        .get(app.url("/api/streams/net/config"))
        .bearer_auth(analyst)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(got["window_size"], 20, "{}", app.label);
    assert_eq!(
        app.api_as(analyst)
            .put("/api/streams/net/config", &json!({"window_size": 2}))
            .await
            .0,
        422
    );
    // A window whose homology would hold an analysis thread for seconds per event is refused with the limit.
    let (status, body) = app.api_as(analyst).put("/api/streams/net/config", &json!({"window_size": 500, "min_events": 10, "embedding_dim": 5, "max_homology_dim": 2}))
    .await;
    assert_eq!(status, 422, "{}: {body}", app.label);
    assert!(
        body["detail"].as_str().unwrap_or("").contains("4,000,000"),
        "{body}"
    );
}

/// Step: the SSE text received until an anomaly event arrives (5 s at most).
async fn sse_until_anomaly<S, B>(body: &mut S) -> String
where
    S: futures_util::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !text.contains("event: anomaly") && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), body.next()).await {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(chunk.as_ref())),
            _ => break,
        }
    }
    text
}

#[tokio::test]
async fn anomalies_are_stored_broadcast_and_streamed_over_sse() {
    for (app, rt) in apps(open()).await {
        let (_, analyst) = app.user_with_role("analyst2", Role::Analyst).await;
        stream_config_is_stored_and_validated(&app, &analyst).await;

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

        let text = sse_until_anomaly(&mut sse_body).await;
        assert!(
            text.contains("event: anomaly") && text.contains("\"stream\":\"net\""),
            "{}: {text}",
            app.label
        );

        let rows = incident_rows(&app, "net").await;
        assert_eq!(rows.len(), flagged.len(), "{}", app.label);
        let meta = &rows[0].metadata;
        assert_eq!(meta["analysis"]["stream"], "net");
        assert!(meta["analysis"]["persistence"]["h0"].is_array());
        app.stop().await;
    }
}
