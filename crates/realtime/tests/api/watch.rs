//! `GET /api/realtime/stream?stream=`: one stream's analyses, event by event; `GET /api/streams/{s}/analysis`.

use std::time::Duration;

use crate::helpers::{apps, noise, open, quick_config};
use futures_util::StreamExt;
use serde_json::Value;
use serde_json::json;
use vigil_http::Role;
use vigil_http::testing::TestApp;

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

/// Step: before anything is watched, the current window is 404; an anonymous watcher is refused even where the
/// broadcast is open to it, and an over-long stream name is invalid.
async fn watch_refusals(app: &TestApp, viewer: &str) {
    let get = |path: &str| app.client.get(app.url(path)).bearer_auth(viewer).send();
    assert_eq!(
        get("/api/streams/w/analysis").await.unwrap().status(),
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
        get(&format!("/api/realtime/stream?stream={long}"))
            .await
            .unwrap()
            .status(),
        422
    );
}

/// Step: 30 events of stream `w` in two requests (the second compact) and one of another stream; returns the
/// values of `w`'s events in order.
async fn ingest_watched_events(app: &TestApp, analyst: &str) -> Vec<f64> {
    let values = noise(30, 5);
    let events: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"stream": "w", "value": v, "timestamp": 1_700_000_000 + i as i64}))
        .collect();
    // Two requests, the second compact: the watcher still gets whole results, in the stored order.
    let (s1, _) = app
        .api_as(analyst)
        .post("/api/ingest", &json!(events[..12]))
        .await;
    let (s2, _) = app
        .api_as(analyst)
        .post("/api/ingest?detail=scores", &json!(events[12..]))
        .await;
    assert_eq!((s1.as_u16(), s2.as_u16()), (200, 200), "{}", app.label);
    // Another stream's events are not this feed's.
    app.api_as(analyst)
        .post("/api/ingest", &json!({"stream": "other", "value": 1}))
        .await;
    values
}

/// Step: the stored current window agrees with the last streamed analysis `last`; anonymous callers are refused.
async fn current_window_matches(app: &TestApp, viewer: &str, last: &Value) {
    let current: Value = app
        .client
        .get(app.url("/api/streams/w/analysis"))
        .bearer_auth(viewer)
        .send()
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

/// `?stream=` adds every analysis of that stream to the SSE feed, in order, whatever form the ingesting client
/// asked for; anonymous callers are refused even where the broadcast is open to them; the current window's
/// topology is read from the stored state.
#[tokio::test]
async fn a_stream_is_watched_analysis_by_analysis() {
    for (app, rt) in apps(open()).await {
        let (_, analyst) = app.user_with_role("watcher", Role::Analyst).await;
        let (_, viewer) = app.user_with_role("looker", Role::Viewer).await;
        assert_eq!(
            app.api_as(&analyst)
                .put("/api/streams/w/config", &quick_config())
                .await
                .0,
            200
        );
        watch_refusals(&app, &viewer).await;

        let sse = app
            .client
            .get(app.url("/api/realtime/stream?stream=w"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(sse.status(), 200, "{}", app.label);
        let mut body = sse.bytes_stream();
        for _ in 0..50 {
            if rt.pipeline().watchers().is_watched("w") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(rt.pipeline().watchers().is_watched("w"), "{}", app.label);

        let values = ingest_watched_events(&app, &analyst).await;
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

        current_window_matches(&app, &viewer, last).await;
    }
}
