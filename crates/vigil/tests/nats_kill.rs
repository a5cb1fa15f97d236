//! Fault test of the NATS JetStream ingest path with real processes: two `vigil serve` replicas on one
//! PostgreSQL database (`TEST_DATABASE_URL`) consume a NATS server (`TEST_NATS_URL`); one is killed with SIGKILL
//! while a producer publishes; the other takes its streams over within seconds, and in the end every published
//! event is stored exactly once, in order, and every message is acknowledged. Skipped (with a message) without
//! either variable. Prints its timings (`--nocapture`).

mod support;

use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::{Value, json};
use support::Server;
use vigil_store::testing::TestDb;

const ADMIN_PASSWORD: &str = "Nats-kill-pass1!";
const STREAMS: [&str; 4] = ["n0", "n1", "n2", "n3"];
const PER_STREAM: usize = 800;
const PER_MESSAGE: usize = 10;

async fn get(http: &reqwest::Client, server: &Server, token: &str, path: &str) -> Value {
    http.get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .unwrap_or(Value::Null)
}

/// A gauge or counter from a replica's `/metrics` (0 when absent).
async fn metric(http: &reqwest::Client, server: &Server, name: &str) -> f64 {
    let text = http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0.0)
}

/// Every stream's stored event count, from `GET /api/streams`.
async fn counts(http: &reqwest::Client, server: &Server, token: &str) -> Vec<u64> {
    let rows = get(http, server, token, "/api/streams").await;
    STREAMS
        .iter()
        .map(|s| {
            rows.as_array()
                .and_then(|r| r.iter().find(|x| x["stream"] == *s))
                .and_then(|x| x["events"].as_u64())
                .unwrap_or(0)
        })
        .collect()
}

#[tokio::test]
async fn a_replica_killed_with_sigkill_mid_stream_loses_nothing_and_applies_nothing_twice() {
    let Ok(nats_url) = std::env::var("TEST_NATS_URL") else {
        eprintln!(
            "skipping the NATS kill test: it needs a NATS server with JetStream (set TEST_NATS_URL)"
        );
        return;
    };
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipping the NATS kill test: it needs PostgreSQL (set TEST_DATABASE_URL)");
        return;
    };
    let tag = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
            ^ u128::from(std::process::id())
    );
    let (name, prefix) = (format!("VIGIL_KILL_{tag}"), format!("vk{tag}.events"));
    let env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", db.url.clone()),
        ("JWT_SECRET", "nats-kill-test-secret-nats-kill-test!".into()),
        ("ADMIN_EMAIL", "admin@example.com".into()),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
        ("API_RATE_LIMIT", "0".into()),
        ("NATS_URL", nats_url.clone()),
        ("NATS_STREAM", name.clone()),
        ("NATS_SUBJECT_PREFIX", prefix.clone()),
        ("NATS_LEASE_TTL_MS", "2000".into()),
        ("NATS_DISCOVER_MS", "250".into()),
        ("NATS_FETCH_BATCH", "20".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = Server::start(dir_a.path(), &env);
    let b = Server::start(dir_b.path(), &env);
    let http = reqwest::Client::new();
    let token = b.admin_token(&http, ADMIN_PASSWORD).await;

    let js = jetstream::new(async_nats::connect(nats_url.as_str()).await.expect("NATS"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while js.get_stream(&name).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no replica created the JetStream stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publish = {
        let prefix = prefix.clone();
        move |js: jetstream::Context, s: &'static str, from: usize, to: usize| {
            let subject = format!("{prefix}.{s}");
            async move {
                for start in (from..to).step_by(PER_MESSAGE) {
                    let body: Vec<Value> = (start..(start + PER_MESSAGE).min(to))
                        .map(|i| json!({"value": i as f64}))
                        .collect();
                    js.publish(
                        subject.clone(),
                        serde_json::to_vec(&body).expect("json").into(),
                    )
                    .await
                    .expect("publish")
                    .await
                    .expect("stored");
                }
            }
        }
    };
    for s in STREAMS {
        publish(js.clone(), s, 0, PER_MESSAGE).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ha, hb) = (
            metric(&http, &a, "topoforge_nats_streams_held").await,
            metric(&http, &b, "topoforge_nats_streams_held").await,
        );
        if ha + hb == STREAMS.len() as f64 && ha > 0.0 && hb > 0.0 {
            eprintln!("before the kill: replica A holds {ha} streams, replica B {hb}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas did not share the streams ({ha} + {hb})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let producer = tokio::spawn({
        let js = js.clone();
        let publish = publish.clone();
        async move {
            let jobs = STREAMS.map(|s| publish(js.clone(), s, PER_MESSAGE, PER_STREAM));
            futures_util::future::join_all(jobs).await;
        }
    });
    // Kill A once a third of the events are stored.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored: u64 = counts(&http, &b, &token).await.iter().sum();
        if stored >= (STREAMS.len() * PER_STREAM / 3) as u64 {
            eprintln!("killing replica A with {stored} events stored");
            break;
        }
        assert!(Instant::now() < deadline, "consumption did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill9();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(30);
    while metric(&http, &b, "topoforge_nats_streams_held").await < STREAMS.len() as f64 {
        assert!(
            Instant::now() < deadline,
            "replica B did not take the streams over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let takeover = killed.elapsed();
    eprintln!("replica B holds every stream {takeover:?} after the kill");
    producer.await.expect("producer");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let c = counts(&http, &b, &token).await;
        assert!(
            c.iter().all(|n| *n <= PER_STREAM as u64),
            "an event applied twice: {c:?}"
        );
        if c.iter().all(|n| *n == PER_STREAM as u64) {
            break;
        }
        assert!(Instant::now() < deadline, "not every event applied: {c:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = killed.elapsed();
    for s in STREAMS {
        let body = get(&http, &b, &token, &format!("/api/streams/{s}/analysis")).await;
        let window: Vec<f64> = body["values"]
            .as_array()
            .expect("values")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        let expected: Vec<f64> = (PER_STREAM - window.len()..PER_STREAM)
            .map(|i| i as f64)
            .collect();
        assert_eq!(window, expected, "{s}: applied in order");
    }
    let stream = js.get_stream(&name).await.expect("stream");
    let deadline = Instant::now() + Duration::from_secs(10);
    for s in STREAMS {
        let durable = vigil_realtime::nats::message::durable_name(s);
        loop {
            let i = stream.consumer_info(&durable).await.expect("consumer");
            if i.num_pending == 0 && i.num_ack_pending == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{s}: messages left unacknowledged"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!(
        "all {} events applied once {done:?} after the kill; replica B dropped {} redelivered events as duplicates",
        STREAMS.len() * PER_STREAM,
        metric(&http, &b, "topoforge_nats_duplicate_events_total").await
    );
    b.terminate();
    let _ = js.delete_stream(&name).await;
}
