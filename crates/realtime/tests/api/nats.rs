//! The NATS JetStream ingest path against a real NATS server (`TEST_NATS_URL`, e.g. `nats://127.0.0.1:4222`;
//! skipped with a message without it): publish → analysed once, in order, acknowledged; a malformed message does
//! not stall its stream; a replica killed mid-stream hands its streams over and nothing is lost or applied twice.
//! Each test uses its own JetStream stream and subject prefix, deleted at the end.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use serde_json::{Value, json};
use vigil_http::Role;
use vigil_http::testing::TestApp;
use vigil_realtime::nats::message::durable_name;
use vigil_realtime::{Realtime, RealtimeConfig};
use vigil_store::testing::TestDb;

use crate::helpers::{incident_rows, noise, open, quick_config, realtime};

/// A JetStream stream and subject prefix of one test.
struct Js {
    url: String,
    js: jetstream::Context,
    stream: String,
    prefix: String,
}

impl Js {
    /// `None` (after saying so) without `TEST_NATS_URL`.
    async fn new(test: &str) -> Option<Js> {
        let Ok(url) = std::env::var("TEST_NATS_URL") else {
            eprintln!("skipping {test}: it needs a NATS server with JetStream (set TEST_NATS_URL)");
            return None;
        };
        let client = async_nats::connect(url.as_str())
            .await
            .expect("TEST_NATS_URL answers");
        let id = uuid::Uuid::new_v4().simple().to_string();
        Some(Js {
            url,
            js: jetstream::new(client),
            stream: format!("VIGIL_TEST_{}", &id[..12]),
            prefix: format!("vt{}.events", &id[..12]),
        })
    }

    /// Replicas consuming this test's stream, with short leases and discovery rounds.
    fn config(&self) -> RealtimeConfig {
        RealtimeConfig {
            nats_url: Some(self.url.clone()),
            nats_stream: self.stream.clone(),
            nats_subject_prefix: self.prefix.clone(),
            nats_lease_ttl_ms: 1_500,
            nats_discover_ms: 200,
            nats_fetch_batch: 20,
            ..open()
        }
    }

    /// Waits until a replica created the stream (events published before it exists would be lost).
    async fn wait_for_stream(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.js.get_stream(&self.stream).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "Vigil did not create the JetStream stream"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn publish(&self, stream: &str, body: &Value) {
        self.publish_raw(stream, body.to_string().into_bytes())
            .await;
    }

    async fn publish_raw(&self, stream: &str, body: Vec<u8>) {
        self.js
            .publish(format!("{}.{stream}", self.prefix), body.into())
            .await
            .expect("publish")
            .await
            .expect("stored by JetStream");
    }

    /// `(pending, ack pending)` of a Vigil stream's durable consumer.
    async fn consumer_backlog(&self, stream: &str) -> (u64, usize) {
        let s = self.js.get_stream(&self.stream).await.expect("stream");
        let info = s
            .consumer_info(durable_name(stream))
            .await
            .expect("consumer info");
        (info.num_pending, info.num_ack_pending)
    }

    /// Waits (≤ 10 s) until each of `streams`' consumers has nothing pending and nothing unacknowledged.
    async fn wait_drained(&self, streams: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for s in streams {
            while self.consumer_backlog(s).await != (0, 0) {
                assert!(
                    Instant::now() < deadline,
                    "{s}: messages left unacknowledged"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    async fn delete(self) {
        let _ = self.js.delete_stream(&self.stream).await;
    }
}

/// A stream's stored event count and current window values.
async fn summary(app: &TestApp, token: &str, stream: &str) -> (u64, Vec<f64>) {
    let (s, body) = app
        .api_as(token)
        .get(&format!("/api/streams/{stream}/analysis"))
        .await;
    if s != 200 {
        return (0, Vec::new());
    }
    let events = body["events"].as_u64().unwrap_or(0);
    let values = body["values"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    (events, values)
}

/// Waits until each stream has stored `want` events (failing if it overshoots: an event applied twice).
async fn wait_for_counts(app: &TestApp, token: &str, want: &[(&str, u64)], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut done = true;
        for (stream, n) in want {
            let (got, _) = summary(app, token, stream).await;
            assert!(got <= *n, "{stream}: {got} events stored, {n} published");
            done &= got == *n;
        }
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "events not all applied in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A counter of the process's metrics (tests of one binary share them: compare before and after).
fn metric(name: &str) -> f64 {
    vigil_http::metrics::handle()
        .render()
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0.0)
}

/// Events published to `<prefix>.<stream>` as single objects and arrays are analysed exactly once, in order (the
/// stored window ends with the last values published), the excursion opens an incident in the anomaly log,
/// every message is acknowledged, `/health` shows the connection; then a crash between store and ack
/// ([`crash_between_store_and_ack`]).
#[tokio::test]
async fn published_events_are_applied_once_in_order_and_acknowledged() {
    for db in TestDb::all().await {
        let Some(js) = Js::new("published_events_are_applied_once_in_order_and_acknowledged").await
        else {
            return;
        };
        let rt = realtime(js.config());
        let rt2 = rt.clone();
        let second = db.replica().await;
        let app = TestApp::start(db, move |state| rt2.router(state)).await;
        let (_, analyst) = app.user_with_role("nats_analyst", Role::Analyst).await;
        js.wait_for_stream().await;
        // The health route reports the connection.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, h) = app.api().get("/health").await;
            if h["components"]["nats"] == "connected" {
                break;
            }
            assert!(Instant::now() < deadline, "not connected: {h}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let streams = ["plain", "host.cpu"];
        for s in streams {
            let (code, _) = app
                .api_as(&analyst)
                .put(&format!("/api/streams/{s}/config"), &quick_config())
                .await;
            assert_eq!(code, 200);
        }
        // Calibration, an excursion (as `helpers::calibrate_then_spike`), calm again: 120 events.
        let mut values = noise(60, 7);
        for (i, x) in noise(12, 8).into_iter().enumerate() {
            values.push(x + if i % 2 == 0 { 80.0 } else { -60.0 });
        }
        values.extend(noise(48, 9));
        for (k, s) in streams.iter().enumerate() {
            let mut i = 0;
            let mut n = 0;
            while i < values.len() {
                // Singles and arrays of growing sizes, alternating.
                if n % 2 == 0 {
                    js.publish(s, &json!({"value": values[i]})).await;
                    i += 1;
                } else {
                    let end = (i + 3 + n + k).min(values.len());
                    let batch: Vec<Value> =
                        values[i..end].iter().map(|v| json!({"value": v})).collect();
                    js.publish(s, &Value::from(batch)).await;
                    i = end;
                }
                n += 1;
            }
        }
        wait_for_counts(
            &app,
            &analyst,
            &[("plain", 120), ("host.cpu", 120)],
            Duration::from_secs(60),
        )
        .await;
        for s in streams {
            let (_, window) = summary(&app, &analyst, s).await;
            assert!(!window.is_empty());
            assert_eq!(
                window[..],
                values[values.len() - window.len()..],
                "{s}: the window holds the last events, in order"
            );
        }
        let rows = incident_rows(&app, "plain").await;
        assert!(!rows.is_empty(), "the excursion opened an incident");
        js.wait_drained(&streams).await;

        crash_between_store_and_ack(&js, &app, &rt, second, &analyst, &values).await;
        app.stop().await;
        js.delete().await;
    }
}

/// The holder of stream `plain` stores the events of 10 more messages and dies before acknowledging them; the
/// replica that takes the stream over (after the lease expires) does not apply them again, and goes on.
async fn crash_between_store_and_ack(
    js: &Js,
    app: &TestApp,
    rt: &Realtime,
    second: TestDb,
    token: &str,
    values: &[f64],
) {
    rt.nats().expect("nats").halt();
    // The halted worker's last pull request lives on in the server until it expires (at most a second): a
    // message published before then would be delivered to nobody.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let tail = noise(10, 11);
    for v in &tail {
        js.publish("plain", &json!({"value": v})).await;
    }
    // What the dying holder did: fetch, store, never acknowledge.
    let consumer: jetstream::consumer::PullConsumer = js
        .js
        .get_consumer_from_stream(durable_name("plain"), &js.stream)
        .await
        .expect("the durable consumer");
    let mut fetched = Vec::new();
    while fetched.len() < tail.len() {
        let mut batch = consumer
            .fetch()
            .max_messages(tail.len() - fetched.len())
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .expect("fetch");
        while let Some(Ok(m)) = batch.next().await {
            fetched.push(m);
        }
    }
    for m in &fetched {
        let sequence = m.info().expect("jetstream message").stream_sequence;
        let events =
            vigil_realtime::nats::message::events("plain", sequence, &m.payload).expect("events");
        rt.pipeline()
            .process(&app.state, events, None, vigil_realtime::Lane::Bulk)
            .await
            .expect("stored");
    }
    assert_eq!(summary(app, token, "plain").await.0, 130);
    let rt_b = realtime(js.config());
    let b2 = rt_b.clone();
    let b = TestApp::start(second, move |state| b2.router(state)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !rt_b
        .nats()
        .expect("nats")
        .held_streams()
        .contains(&"plain".to_owned())
    {
        assert!(Instant::now() < deadline, "no takeover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let more = noise(5, 12);
    for v in &more {
        js.publish("plain", &json!({"value": v})).await;
    }
    wait_for_counts(&b, token, &[("plain", 135)], Duration::from_secs(30)).await;
    let mut all: Vec<f64> = values.to_vec();
    all.extend(&tail);
    all.extend(&more);
    let (_, window) = summary(&b, token, "plain").await;
    assert_eq!(window[..], all[all.len() - window.len()..], "in order");
    js.wait_drained(&["plain"]).await;
    b.stop().await;
}

/// Bad JSON, a non-event, an event naming another stream and an event with a bad value are terminated and
/// counted; the events published around them are all applied.
#[tokio::test]
async fn malformed_messages_do_not_stall_a_stream() {
    let Some(js) = Js::new("malformed_messages_do_not_stall_a_stream").await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let rt = realtime(js.config());
    let rt2 = rt.clone();
    let app = TestApp::start(db, move |state| rt2.router(state)).await;
    let (_, analyst) = app.user_with_role("nats_bad", Role::Analyst).await;
    js.wait_for_stream().await;
    let before = metric("topoforge_nats_malformed_messages_total");
    js.publish("m", &json!({"value": 1})).await;
    js.publish_raw("m", b"{not json".to_vec()).await;
    js.publish("m", &json!(42)).await;
    js.publish(
        "m",
        &json!([{"value": 2}, {"value": 3, "stream": "elsewhere"}]),
    )
    .await;
    js.publish("m", &json!({"value": "high"})).await;
    js.publish("m", &json!([{"value": 4}, {"value": 5}])).await;
    wait_for_counts(&app, &analyst, &[("m", 3)], Duration::from_secs(30)).await;
    assert_eq!(summary(&app, &analyst, "m").await.1, vec![1.0, 4.0, 5.0]);
    assert_eq!(summary(&app, &analyst, "elsewhere").await.0, 0);
    assert!(metric("topoforge_nats_malformed_messages_total") - before >= 4.0);
    js.wait_drained(&["m"]).await;
    app.stop().await;
    js.delete().await;
}

/// Two replicas on one PostgreSQL database share the streams; one is killed while it consumes (its leases
/// neither released nor its messages acknowledged): the other takes its streams over within seconds, and in the
/// end every event is applied exactly once.
#[tokio::test]
async fn a_killed_replica_hands_its_streams_over_and_nothing_is_lost_or_applied_twice() {
    let Some(js) = Js::new("a_killed_replica_hands_its_streams_over").await else {
        return;
    };
    let Some(db) = TestDb::postgres().await else {
        eprintln!(
            "skipping a_killed_replica_hands_its_streams_over: it needs PostgreSQL (set TEST_DATABASE_URL)"
        );
        js.delete().await;
        return;
    };
    let replica = db.replica().await;
    let (rt_a, rt_b): (Realtime, Realtime) = (realtime(js.config()), realtime(js.config()));
    let (a2, b2) = (rt_a.clone(), rt_b.clone());
    let a = TestApp::start(db, move |state| a2.router(state)).await;
    let b = TestApp::start(replica, move |state| b2.router(state)).await;
    let (_, analyst) = a.user_with_role("nats_kill", Role::Analyst).await;
    js.wait_for_stream().await;

    let streams = ["k0", "k1", "k2", "k3"];
    let per_stream = 600usize;
    let batch = 10usize;
    // Each stream's first message before the kill, so both replicas hold streams.
    for s in streams {
        let first: Vec<Value> = (0..batch).map(|i| json!({"value": i as f64})).collect();
        js.publish(s, &Value::from(first)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let (na, nb) = loop {
        let (na, nb) = (
            rt_a.nats().map_or(0, |n| n.held_streams().len()),
            rt_b.nats().map_or(0, |n| n.held_streams().len()),
        );
        if na + nb == streams.len() && na > 0 && nb > 0 {
            break (na, nb);
        }
        assert!(
            Instant::now() < deadline,
            "the replicas did not share the streams: {na} + {nb}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("before the kill: replica A holds {na} streams, replica B {nb}");
    // Publish the rest while A consumes; kill A half-way through.
    let js_pub = Js {
        url: js.url.clone(),
        js: js.js.clone(),
        stream: js.stream.clone(),
        prefix: js.prefix.clone(),
    };
    let producer = tokio::spawn(async move {
        for m in 1..per_stream / batch {
            for s in ["k0", "k1", "k2", "k3"] {
                let b: Vec<Value> = (0..batch)
                    .map(|i| json!({"value": (m * batch + i) as f64}))
                    .collect();
                js_pub.publish(s, &Value::from(b)).await;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut applied_by_a = 0;
        for s in rt_a.nats().map(|n| n.held_streams()).unwrap_or_default() {
            applied_by_a += summary(&a, &analyst, &s).await.0;
        }
        if applied_by_a >= (na * per_stream / 3) as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "replica A did not consume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let a_streams = rt_a.nats().expect("nats").held_streams();
    rt_a.nats().expect("nats").halt();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(20);
    loop {
        let held = rt_b.nats().expect("nats").held_streams();
        if a_streams.iter().all(|s| held.contains(s)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica B did not take over: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let takeover = killed.elapsed();
    eprintln!("replica B took over {a_streams:?} {takeover:?} after the kill");
    assert!(
        takeover < Duration::from_secs(10),
        "took over in {takeover:?}"
    );
    producer.await.expect("producer");
    let want: Vec<(&str, u64)> = streams.iter().map(|s| (*s, per_stream as u64)).collect();
    wait_for_counts(&b, &analyst, &want, Duration::from_secs(120)).await;
    for s in streams {
        let (_, window) = summary(&b, &analyst, s).await;
        let expected: Vec<f64> = (per_stream - window.len()..per_stream)
            .map(|i| i as f64)
            .collect();
        assert_eq!(window, expected, "{s}: in order to the end");
    }
    js.wait_drained(&streams).await;
    eprintln!(
        "duplicates dropped: {}, redeliveries: {} (this process, all tests)",
        metric("topoforge_nats_duplicate_events_total"),
        metric("topoforge_nats_redeliveries_total")
    );
    b.stop().await;
    a.stop().await;
    js.delete().await;
}
