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

/// Every SSE event (name, data as JSON, when it was read) read from `body` until `want` `analysis` events arrived (or `limit`
/// passes), then whatever arrives within `quiet` after them (which should be nothing).
async fn sse_all<S, B>(
    body: &mut S,
    want: usize,
    limit: Duration,
    quiet: Duration,
) -> Vec<(String, Value, tokio::time::Instant)>
where
    S: futures_util::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut buf = String::new();
    let mut out: Vec<(String, Value, tokio::time::Instant)> = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut quiet_until = None;
    loop {
        let analyses = out.iter().filter(|(e, _, _)| e == "analysis").count();
        if analyses >= want && quiet_until.is_none() {
            quiet_until = Some(tokio::time::Instant::now() + quiet);
        }
        let until = quiet_until.unwrap_or(deadline);
        let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(until, body.next()).await else {
            return out;
        };
        let read_at = tokio::time::Instant::now();
        buf.push_str(&String::from_utf8_lossy(chunk.as_ref()));
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = Some(e.trim().to_owned());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if let Some(event) = event {
                out.push((
                    event,
                    serde_json::from_str(&data).expect("event data is JSON"),
                    read_at,
                ));
            }
        }
    }
}

/// Opens `?stream=` SSE on `app` as `token`.
async fn watch_on(
    app: &TestApp,
    token: &str,
    stream: &str,
) -> impl futures_util::Stream<Item = reqwest::Result<impl AsRef<[u8]> + use<>>> + Unpin + use<> {
    let sse = app
        .client
        .get(app.url(&format!("/api/realtime/stream?stream={stream}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    sse.bytes_stream()
}

/// Waits (5 s at most) until `ok` holds.
async fn wait_for(what: &str, ok: impl Fn() -> bool) {
    for _ in 0..250 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Two replicas on one PostgreSQL database; the stream is analysed on B. A watcher on A receives every analysis
/// (compact, relayed) in order exactly once; a watcher on B receives every analysis whole, once; B relays
/// nothing for a stream nobody watches, and only the watched stream's analyses while it is watched.
#[tokio::test]
async fn a_stream_analysed_on_another_replica_is_watched_analysis_by_analysis() {
    let Some(((a, rt_a), (b, rt_b))) =
        crate::replicas::two_replicas("the cross-replica watch test").await
    else {
        return;
    };
    let (_, analyst) = a.user_with_role("xwatcher", Role::Analyst).await;
    let (_, viewer) = a.user_with_role("xlooker", Role::Viewer).await;
    assert_eq!(
        b.api_as(&analyst)
            .put("/api/streams/xw/config", &quick_config())
            .await
            .0,
        200
    );
    rt_a.start(&a.state);
    rt_b.start(&b.state);
    wait_for("both replicas listen", || {
        rt_a.relay_listening() && rt_b.relay_listening()
    })
    .await;

    // Nobody watches anywhere: B analyses, stores and announces nothing for the feed.
    let before: Vec<Value> = noise(20, 9)
        .iter()
        .map(|v| json!({"stream": "xw", "value": v}))
        .collect();
    assert_eq!(
        b.api_as(&analyst)
            .post("/api/ingest", &json!(before))
            .await
            .0,
        200
    );
    assert_eq!(rt_b.pipeline().watchers().relayed(), 0, "nobody watches");

    // Watchers on A (another replica than the analysing one) and on B (the analysing one).
    let mut on_a = watch_on(&a, &viewer, "xw").await;
    let mut on_b = watch_on(&b, &viewer, "xw").await;
    wait_for("B knows A watches the stream", || {
        rt_a.pipeline().watchers().is_watched("xw")
            && rt_b.pipeline().watchers().is_watched("xw")
            && rt_b.pipeline().watchers().interest("xw").remote
    })
    .await;

    let values = noise(30, 10);
    let events: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"stream": "xw", "value": v, "timestamp": 1_700_000_000 + i as i64}))
        .collect();
    let (s1, _) = b
        .api_as(&analyst)
        .post("/api/ingest", &json!(events[..12]))
        .await;
    let (s2, _) = b
        .api_as(&analyst)
        .post("/api/ingest?detail=scores", &json!(events[12..]))
        .await;
    assert_eq!((s1.as_u16(), s2.as_u16()), (200, 200));
    // Another stream's events are neither this feed's nor relayed.
    b.api_as(&analyst)
        .post("/api/ingest", &json!({"stream": "xother", "value": 1}))
        .await;

    let quiet = Duration::from_millis(1500);
    let got_a = sse_all(&mut on_a, 30, Duration::from_secs(10), quiet).await;
    let got_b = sse_all(&mut on_b, 30, Duration::from_secs(10), quiet).await;
    let analyses = |got: &[(String, Value, tokio::time::Instant)]| -> Vec<Value> {
        let names: Vec<&str> = got
            .iter()
            .map(|(e, _, _)| e.as_str())
            .filter(|e| *e != "anomaly")
            .collect();
        assert!(names.iter().all(|e| *e == "analysis"), "no gap: {names:?}");
        got.iter()
            .filter(|(e, _, _)| e == "analysis")
            .map(|(_, d, _)| d.clone())
            .collect()
    };
    let (remote, local) = (analyses(&got_a), analyses(&got_b));
    assert_eq!(remote.len(), 30, "A: every analysis, exactly once");
    assert_eq!(local.len(), 30, "B: every analysis, exactly once");
    for ((r, l), v) in remote.iter().zip(&local).zip(&values) {
        assert_eq!(r["value"].as_f64(), Some(*v), "A: in order");
        assert_eq!(l["value"].as_f64(), Some(*v), "B: in order");
        assert_eq!(r["timestamp"], l["timestamp"]);
        // The same analysis: A's is compact, B's whole.
        let (rc, lc) = (&r["analysis"], &l["analysis"]);
        assert_eq!(rc["compact"], true, "{rc}");
        assert!(rc.get("persistence").is_none());
        assert!(lc["persistence"]["h0"].is_array(), "{lc}");
        assert!(lc.get("compact").is_none());
        for k in [
            "scores",
            "betti_numbers",
            "window_size",
            "calibrated",
            "is_anomaly",
        ] {
            assert_eq!(rc[k], lc[k], "{k}");
        }
        assert_eq!(rc["risk_level"], lc["security_analysis"]["risk_level"]);
    }
    assert_eq!(
        rt_b.pipeline().watchers().relayed(),
        30,
        "B relays the watched stream's analyses only"
    );
    assert_eq!(rt_a.pipeline().watchers().relayed(), 0);
    drop((on_a, on_b));
    b.stop().await;
    a.stop().await;
}

/// The console's pace across replicas: 200 events/s ingested on B (batches of 10 every 50 ms, for 3 s) reach a
/// watcher on A, every one, in order, with no `lagged`. Prints how long after each batch's answer on B its last
/// analysis was read on A (information only, not asserted: the machine is shared).
#[tokio::test]
async fn a_watched_stream_at_200_events_per_second_crosses_replicas_whole() {
    let Some(((a, rt_a), (b, rt_b))) =
        crate::replicas::two_replicas("the cross-replica watch pace test").await
    else {
        return;
    };
    let (_, analyst) = a.user_with_role("xpacer", Role::Analyst).await;
    assert_eq!(
        b.api_as(&analyst)
            .put("/api/streams/xpace/config", &quick_config())
            .await
            .0,
        200
    );
    rt_a.start(&a.state);
    rt_b.start(&b.state);
    let mut on_a = watch_on(&a, &analyst, "xpace").await;
    wait_for("B knows A watches the stream", || {
        rt_a.relay_listening()
            && rt_b.relay_listening()
            && rt_b.pipeline().watchers().interest("xpace").remote
    })
    .await;

    const BATCHES: usize = 60;
    const PER_BATCH: usize = 10;
    let values = noise(BATCHES * PER_BATCH, 11);
    let reader = tokio::spawn(async move {
        sse_all(
            &mut on_a,
            BATCHES * PER_BATCH,
            Duration::from_secs(60),
            Duration::from_millis(1000),
        )
        .await
    });
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let started = tokio::time::Instant::now();
    let mut answered = Vec::new();
    for chunk in values.chunks(PER_BATCH) {
        tick.tick().await;
        let batch: Vec<Value> = chunk
            .iter()
            .map(|v| json!({"stream": "xpace", "value": v}))
            .collect();
        let (s, _) = b
            .api_as(&analyst)
            .post("/api/ingest?detail=scores", &json!(batch))
            .await;
        assert_eq!(s, 200);
        answered.push(tokio::time::Instant::now());
    }
    let sent = started.elapsed();
    let got = reader.await.unwrap();
    let names: Vec<&str> = got
        .iter()
        .map(|(e, _, _)| e.as_str())
        .filter(|e| *e != "anomaly")
        .collect();
    assert!(
        names.iter().all(|e| *e == "analysis"),
        "no analysis missed: {:?}",
        names
            .iter()
            .filter(|e| **e != "analysis")
            .collect::<Vec<_>>()
    );
    let arrived: Vec<(f64, tokio::time::Instant)> = got
        .iter()
        .filter(|(e, _, _)| e == "analysis")
        .map(|(_, d, at)| (d["value"].as_f64().unwrap(), *at))
        .collect();
    let in_order: Vec<f64> = arrived.iter().map(|(v, _)| *v).collect();
    assert_eq!(in_order, values, "every analysis, in order, once");
    // Each batch's delay: from its answer on B to its last analysis read on A.
    let mut delays: Vec<Duration> = arrived
        .chunks(PER_BATCH)
        .zip(&answered)
        .map(|(c, answered)| c[PER_BATCH - 1].1.saturating_duration_since(*answered))
        .collect();
    delays.sort_unstable();
    eprintln!(
        "{} events at 200/s sent in {sent:?}; B relayed {}; answer on B -> read on A, per batch: median {:?}, p90 {:?}, max {:?}",
        values.len(),
        rt_b.pipeline().watchers().relayed(),
        delays[delays.len() / 2],
        delays[delays.len() * 9 / 10],
        delays[delays.len() - 1]
    );
    b.stop().await;
    a.stop().await;
}
