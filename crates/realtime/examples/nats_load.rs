//! Events/s through the NATS JetStream ingest path (issue #18 item 5), on the real application (SQLite in a
//! temporary directory, or PostgreSQL with `--postgres` and `TEST_DATABASE_URL`; default stream configuration).
//!
//! `cargo run --release -p vigil-realtime --example nats_load -- [streams] [events] [per_message] [fetch_batch]`
//! (defaults 8, 50,000, 100, 100; `NATS_URL` or `TEST_NATS_URL`, default `nats://127.0.0.1:4222`).
//!
//! A producer publishes `events` events spread over `streams` streams, in arrays of `per_message`, as fast as
//! JetStream stores them (one publish acknowledgement awaited per stream at a time, the streams in parallel);
//! the clock runs from the first publish until every stream's durable consumer has nothing pending and nothing
//! unacknowledged and every stream's stored event count is complete. The streams are calibrated through the same
//! path first (200 events each), so timed events get full, scored analyses. Prints the events/s of each run and
//! the median. Uses its own JetStream stream and subject prefix, deleted at the end.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::{Value, json};
use vigil_anomalies::{Anomalies, AnomaliesConfig};
use vigil_http::testing::TestApp;
use vigil_realtime::nats::message::durable_name;
use vigil_realtime::{Realtime, RealtimeConfig};

fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut r = vigil_stream::bench_data::SplitMix::new(seed);
    (0..n).map(|_| 10.0 + r.normal()).collect()
}

/// Publishes `per_stream` events to each stream in arrays of `per_message`, streams in parallel.
async fn publish(
    js: &jetstream::Context,
    prefix: &str,
    streams: &[String],
    per_stream: usize,
    per_message: usize,
    seed: u64,
) {
    let jobs = streams.iter().enumerate().map(|(k, s)| {
        let js = js.clone();
        let subject = format!("{prefix}.{s}");
        let vals = values(per_stream, seed + k as u64);
        async move {
            for chunk in vals.chunks(per_message) {
                let body: Vec<Value> = chunk.iter().map(|v| json!({"value": v})).collect();
                let body = serde_json::to_vec(&body).expect("json");
                js.publish(subject.clone(), body.into())
                    .await
                    .expect("publish")
                    .await
                    .expect("stored");
            }
        }
    });
    futures_util::future::join_all(jobs).await;
}

/// Waits until every stream's consumer has nothing pending and nothing unacknowledged (a message is
/// acknowledged only after its events' state is stored).
async fn drained(js: &jetstream::Context, name: &str, streams: &[String]) {
    let st = js.get_stream(name).await.expect("stream");
    loop {
        let mut done = true;
        for s in streams {
            match st.consumer_info(durable_name(s)).await {
                Ok(i) => done &= i.num_pending == 0 && i.num_ack_pending == 0,
                Err(_) => done = false,
            }
        }
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The baseline: the same events through `POST /api/ingest?detail=scores`, batches of `per_message`, each
/// stream's batches in sequence and the streams in parallel.
async fn http_ingest(
    app: &TestApp,
    token: &str,
    streams: &[String],
    per_stream: usize,
    per_message: usize,
    seed: u64,
) {
    let jobs = streams.iter().enumerate().map(|(k, s)| {
        let vals = values(per_stream, seed + k as u64);
        async move {
            for chunk in vals.chunks(per_message) {
                let body: Vec<Value> = chunk
                    .iter()
                    .map(|v| json!({"stream": s, "value": v}))
                    .collect();
                let r = app
                    .client
                    .post(app.url("/api/ingest?detail=scores"))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .expect("ingest");
                assert!(r.status().is_success(), "ingest: {}", r.status());
                r.bytes().await.expect("answer");
            }
        }
    });
    futures_util::future::join_all(jobs).await;
}

/// The stored event count of `stream`.
async fn stored(app: &TestApp, stream: &str) -> u64 {
    vigil_store::streams::load(&app.state.store, stream)
        .await
        .expect("load")
        .and_then(|r| vigil_realtime::pipeline::restore(&r).ok())
        .map_or(0, |st| st.events())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--postgres");
    let streams: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let per_message: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let fetch_batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let postgres = std::env::args().any(|a| a == "--postgres");
    let url = std::env::var("NATS_URL")
        .or_else(|_| std::env::var("TEST_NATS_URL"))
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (name, prefix) = (
        format!("VIGIL_BENCH_{}", &id[..12]),
        format!("vb{}.events", &id[..12]),
    );
    let db = vigil_store::testing::TestDb::for_bench(postgres).await;
    let rt = Realtime::new(
        RealtimeConfig {
            nats_url: Some(url.clone()),
            nats_stream: name.clone(),
            nats_subject_prefix: prefix.clone(),
            nats_fetch_batch: fetch_batch,
            nats_discover_ms: 200,
            ..RealtimeConfig::default()
        },
        &Anomalies::new(&AnomaliesConfig::default()),
    );
    let rt2 = rt.clone();
    let app = TestApp::start(db, move |state| rt2.router(state)).await;
    let js = jetstream::new(async_nats::connect(url.as_str()).await.expect("NATS"));
    while js.get_stream(&name).await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names: Vec<String> = (0..streams).map(|s| format!("s{s}")).collect();
    // Calibration through the same path.
    publish(&js, &prefix, &names, 200, per_message.min(200), 1_000).await;
    drained(&js, &name, &names).await;
    let held = rt.nats().map(|n| n.held_streams().len()).unwrap_or(0);
    println!(
        "{streams} streams ({held} held by this replica), {events} events per run in arrays of {per_message}, fetch batch {fetch_batch}, {}",
        if postgres { "PostgreSQL" } else { "SQLite" }
    );
    let per_stream = events / streams;
    let (_, token) = app.user_with_role("bench", vigil_http::Role::Analyst).await;
    let http_names: Vec<String> = (0..streams).map(|s| format!("h{s}")).collect();
    http_ingest(&app, &token, &http_names, 200, per_message.min(200), 1_000).await;
    let (mut rates, mut baseline) = (Vec::new(), Vec::new());
    // NATS and HTTP runs alternate, so both meet the same neighbours on a shared machine.
    for run in 0..3u64 {
        let base = 200 + (run as usize + 1) * per_stream;
        let started = Instant::now();
        publish(&js, &prefix, &names, per_stream, per_message, run * 100).await;
        let published = started.elapsed();
        drained(&js, &name, &names).await;
        let took = started.elapsed();
        for s in &names {
            let n = stored(&app, s).await;
            assert_eq!(n, base as u64, "{s}: {n} events stored, {base} published");
        }
        let rate = (per_stream * streams) as f64 / took.as_secs_f64();
        println!(
            "run {run}: NATS: published in {:.2} s, all applied and acknowledged after {:.2} s → {rate:.0} events/s",
            published.as_secs_f64(),
            took.as_secs_f64()
        );
        rates.push(rate);
        let started = Instant::now();
        http_ingest(
            &app,
            &token,
            &http_names,
            per_stream,
            per_message,
            run * 100,
        )
        .await;
        let took = started.elapsed();
        let rate = (per_stream * streams) as f64 / took.as_secs_f64();
        println!(
            "run {run}: POST /api/ingest?detail=scores (baseline): {:.2} s → {rate:.0} events/s",
            took.as_secs_f64()
        );
        baseline.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    baseline.sort_by(f64::total_cmp);
    println!(
        "median: NATS {:.0} events/s, POST /api/ingest {:.0} events/s",
        rates[rates.len() / 2],
        baseline[baseline.len() / 2]
    );
    app.stop().await;
    let _ = js.delete_stream(&name).await;
}
