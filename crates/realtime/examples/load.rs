//! Throughput and latency of the stream endpoints on the real application (SQLite in a temporary directory,
//! random loopback port, default stream configuration: window 50, 2-D embedding, H2).
//!
//! `cargo run --release -p vigil-realtime --example load -- [--postgres] [streams] [events_per_stream] [runs] [paced_rate]`
//! (`--postgres`: the application stores into the PostgreSQL at `TEST_DATABASE_URL`, in a fresh database, instead of
//! SQLite)
//! (`STREAM_INGEST_THREADS` sizes the analysis pool as it does for `vigil serve`; default one thread per core)
//!
//! 1. `POST /api/ingest`: every stream sends batches of 100 events concurrently → events/s.
//! 2. One WebSocket alone: send an event, wait for its analysis, repeat → events/s and round-trip p50/p99.
//! 3. The same WebSocket while one client posts batches back to back → round-trip p50/p99 under load.
//! 4. With `paced_rate` (events/s, e.g. 5000: the load for two cores): the streams ingest batches of 50 events
//!    on a fixed schedule adding up to that rate while one WebSocket sends 200 events/s → the rate achieved and the
//!    WebSocket's round-trip p50/p99 (3,000 samples, 15 s) at that load, rather than at whatever saturates the machine,
//!    and the server's own time from reading each of those events to flushing its analysis
//!    (`topoforge_ws_reply_seconds`, as the share of replies within each histogram bucket), and how long the checkpoints
//!    of all streams took to store (`vigil_stream_checkpoint_seconds`, likewise). The batches ask for the
//!    full answer unless `PACED_DETAIL` names another form (`compact`, `scores`). With `runs` 0, only this phase
//!    runs.
//! 5. One WebSocket that pipelines: a writer sends events without waiting (at most 1,000 unanswered) while a reader
//!    counts the analyses → events/s through one socket, for one stream and for `streams` streams in turn.
//!
//! Streams are calibrated before timing (200 events each), so timed events get full, scored analyses.
//!
//! `… --example load -- --one-client [streams] [total_events]` instead measures one client end to end: it posts
//! sequential batches of 50 and of 8,000 events (spread over `streams` streams, default 8), waits for each answer
//! and parses it into a JSON tree, as a client reading the answers would, once per answer form of
//! `POST /api/ingest` (`?detail=full`, the default, then `compact` and `scores`) → events/s and answer bytes/event.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use vigil_anomalies::{Anomalies, AnomaliesConfig};
use vigil_http::Role;
use vigil_http::testing::TestApp;
use vigil_realtime::{Realtime, RealtimeConfig};

fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut r = vigil_stream::bench_data::SplitMix::new(seed);
    (0..n).map(|_| 10.0 + r.normal()).collect()
}

async fn ingest(app: &TestApp, token: &str, stream: &str, vals: &[f64]) -> usize {
    let batch: Vec<Value> = vals
        .iter()
        .map(|v| json!({"stream": stream, "value": v}))
        .collect();
    let r = app
        .client
        .post(app.url("/api/ingest"))
        .bearer_auth(token)
        .json(&batch)
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => vals.len(),
        Ok(r) => {
            eprintln!("ingest failed: {}", r.status());
            0
        }
        Err(e) => {
            eprintln!("ingest failed: {e}");
            0
        }
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn ws_round_trips(app: &TestApp, stream: &str, n: usize, seed: u64) -> (f64, Vec<f64>) {
    ws_round_trips_every(app, stream, n, seed, None).await
}

/// [`ws_round_trips`], sending at most one event per `every` (a device reporting at a fixed rate) when given.
async fn ws_round_trips_every(
    app: &TestApp,
    stream: &str,
    n: usize,
    seed: u64,
    every: Option<Duration>,
) -> (f64, Vec<f64>) {
    let (mut ws, _) = match tokio_tungstenite::connect_async(app.ws_url("/ws/stream")).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ws connect failed: {e}");
            return (0.0, Vec::new());
        }
    };
    let vals = values(n, seed);
    let mut lat = Vec::with_capacity(n);
    let started = Instant::now();
    let mut ticks = every.map(tokio::time::interval);
    for v in vals {
        if let Some(t) = ticks.as_mut() {
            t.tick().await;
        }
        let t = Instant::now();
        if ws
            .send(Message::text(
                json!({"stream": stream, "value": v}).to_string(),
            ))
            .await
            .is_err()
        {
            break;
        }
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_))) => break,
                Some(Ok(_)) => continue,
                _ => return (0.0, lat),
            }
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let rate = lat.len() as f64 / started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    (rate, lat)
}

/// The buckets (upper bound in seconds, cumulative count) of histogram `name` from the process's recorder.
fn buckets(name: &str) -> Vec<(f64, f64)> {
    let text = vigil_http::metrics::handle().render();
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|l| {
            let (le, rest) = l.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, rest.trim().parse().ok()?))
        })
        .collect()
}

/// The share of observations within each bucket between two [`buckets`] readings, e.g. "≤1ms 93.1%".
fn reply_shares(before: &[(f64, f64)], after: &[(f64, f64)]) -> String {
    let count = |b: &[(f64, f64)], le: f64| b.iter().find(|x| x.0 == le).map_or(0.0, |x| x.1);
    let total = count(after, f64::INFINITY) - count(before, f64::INFINITY);
    if total <= 0.0 {
        return "no replies recorded".into();
    }
    after
        .iter()
        .filter(|(le, _)| *le <= 0.01)
        .map(|&(le, n)| {
            format!(
                "≤{}ms {:.1}%",
                le * 1000.0,
                100.0 * (n - count(before, le)) / total
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
        + &format!(" of {total:.0}")
}

/// Phase 5: one socket, `n` events written without waiting for answers (at most `window` unanswered).
async fn ws_pipelined(app: &TestApp, streams: &[String], n: usize, window: usize) -> f64 {
    let (ws, _) = match tokio_tungstenite::connect_async(app.ws_url("/ws/stream")).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ws connect failed: {e}");
            return 0.0;
        }
    };
    let (mut tx, mut rx) = ws.split();
    let credits = std::sync::Arc::new(tokio::sync::Semaphore::new(window));
    let started = Instant::now();
    let reader = {
        let credits = credits.clone();
        tokio::spawn(async move {
            let mut answered = 0;
            while answered < n {
                match rx.next().await {
                    Some(Ok(Message::Text(t)))
                        if t.as_str().starts_with("{\"type\":\"analysis\"") =>
                    {
                        answered += 1;
                        credits.add_permits(1);
                    }
                    Some(Ok(Message::Text(t))) => eprintln!("unexpected frame: {t}"),
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
            answered
        })
    };
    for (i, v) in values(n, 4242).into_iter().enumerate() {
        let stream = &streams[i % streams.len()];
        match credits.acquire().await {
            Ok(p) => p.forget(),
            Err(_) => break,
        }
        let frame = Message::text(json!({"stream": stream, "value": v}).to_string());
        if tx.send(frame).await.is_err() {
            break;
        }
    }
    let answered = reader.await.unwrap_or(0);
    answered as f64 / started.elapsed().as_secs_f64()
}

/// Phase 4: `streams` senders post batches of 50 events on a fixed schedule adding up to `rate` events/s while the
/// WebSocket measures its round trips.
async fn paced(app: &TestApp, token: &str, streams: usize, rate: usize) {
    const BATCH: usize = 50;
    let per_sender = rate as f64 / streams as f64;
    let detail = std::env::var("PACED_DETAIL").unwrap_or_else(|_| "full".into());
    let period = Duration::from_secs_f64(BATCH as f64 / per_sender.max(1.0));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for s in 0..streams {
        let client = app.client.clone();
        let url = app.url(&format!("/api/ingest?detail={detail}"));
        let token = token.to_owned();
        let sent = sent.clone();
        senders.push(tokio::spawn(async move {
            // Staggered starts, then one batch per period; a late batch is sent at once, not skipped.
            tokio::time::sleep(period.mul_f64(s as f64 / streams as f64)).await;
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for k in 0u64.. {
                ticks.tick().await;
                let batch: Vec<Value> = values(BATCH, 50_000 + k * 64 + s as u64)
                    .iter()
                    .map(|v| json!({"stream": format!("s{s}"), "value": v}))
                    .collect();
                if let Ok(r) = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&batch)
                    .send()
                    .await
                    && r.status().is_success()
                {
                    sent.fetch_add(BATCH, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    // Let the schedule settle before sampling.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = sent.load(std::sync::atomic::Ordering::Relaxed);
    const REPLY: &str = "topoforge_ws_reply_seconds";
    const CHECKPOINT: &str = "vigil_stream_checkpoint_seconds";
    let (replies, checkpoints) = (buckets(REPLY), buckets(CHECKPOINT));
    let started = Instant::now();
    let (ws_rate, lat) =
        ws_round_trips_every(app, "ws", 3000, 7, Some(Duration::from_millis(5))).await;
    let achieved = (sent.load(std::sync::atomic::Ordering::Relaxed) - before) as f64
        / started.elapsed().as_secs_f64();
    for t in senders {
        t.abort();
    }
    let server = reply_shares(&replies, &buckets(REPLY));
    let stores = reply_shares(&checkpoints, &buckets(CHECKPOINT));
    println!(
        "paced ingest {achieved:.0} events/s (asked {rate}) | ws {ws_rate:.0} events/s, round trip p50 {:.2} ms p99 {:.2} ms | server read→flush {server} | checkpoints stored within {stores}",
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
}

/// `--one-client`: sequential batches of `batch` events over `streams` streams, `total` events in all, answers in the
/// `detail` form parsed by the client → (events/s, answer bytes per event).
async fn one_client(
    app: &TestApp,
    token: &str,
    streams: usize,
    batch: usize,
    total: usize,
    detail: &str,
    seed: u64,
) -> (f64, f64) {
    let vals = values(total, seed);
    let url = app.url(&format!("/api/ingest?detail={detail}"));
    let started = Instant::now();
    let (mut done, mut bytes) = (0usize, 0usize);
    for (k, chunk) in vals.chunks(batch).enumerate() {
        let body: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"stream": format!("c{}", (k * batch + i) % streams), "value": v}))
            .collect();
        let r = app
            .client
            .post(&url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await;
        let Ok(r) = r else {
            eprintln!("ingest failed");
            continue;
        };
        if !r.status().is_success() {
            eprintln!("ingest failed: {}", r.status());
            continue;
        }
        let Ok(text) = r.bytes().await else { continue };
        bytes += text.len();
        // The client reads what it asked for.
        match serde_json::from_slice::<Value>(&text) {
            Ok(Value::Array(a)) => done += a.len(),
            _ => eprintln!("unexpected answer"),
        }
    }
    (
        done as f64 / started.elapsed().as_secs_f64(),
        bytes as f64 / done.max(1) as f64,
    )
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--one-client") {
        let args: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        let streams = args.first().copied().unwrap_or(8).max(1);
        let total = args.get(1).copied().unwrap_or(32_000);
        let db = vigil_store::testing::TestDb::sqlite().await;
        let rt = Realtime::new(
            RealtimeConfig::default(),
            &Anomalies::new(&AnomaliesConfig::default()),
        );
        let rt2 = rt.clone();
        let app = TestApp::start(db, move |state| rt2.router(state)).await;
        let (_, token) = app.user_with_role("loader", Role::Analyst).await;
        for s in 0..streams {
            ingest(&app, &token, &format!("c{s}"), &values(200, s as u64)).await;
        }
        let mut seed = 10_000;
        for batch in [50, 8000] {
            for detail in ["full", "compact", "scores"] {
                seed += 1;
                let (rate, per_event) =
                    one_client(&app, &token, streams, batch, total, detail, seed).await;
                println!(
                    "one client, batches of {batch}, detail={detail}: {rate:.0} events/s, {per_event:.0} answer bytes/event ({total} events, {streams} streams)"
                );
            }
        }
        app.stop().await;
        return;
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let streams = args.first().copied().unwrap_or(8);
    let per_stream = args.get(1).copied().unwrap_or(500);
    let runs = args.get(2).copied().unwrap_or(3);

    let postgres = std::env::args().any(|a| a == "--postgres");
    // With PostgreSQL the database shares the machine's cores with the server, as beside a replay on it.
    let db = vigil_store::testing::TestDb::for_bench(postgres).await;
    println!("store: {}", if postgres { "PostgreSQL" } else { "SQLite" });
    // The load sockets connect without a token, as the dashboard's public-feed socket does.
    let rt = Realtime::new(
        RealtimeConfig {
            stream_anonymous_streams: "*".into(),
            // The server's own setting, so the pool size can be compared (0, the default: one per core).
            stream_ingest_threads: std::env::var("STREAM_INGEST_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            ..RealtimeConfig::default()
        },
        &Anomalies::new(&AnomaliesConfig::default()),
    );
    let rt2 = rt.clone();
    let app = TestApp::start(db, move |state| rt2.router(state)).await;
    let (_, token) = app.user_with_role("loader", Role::Analyst).await;

    // Calibrate every stream (and the WebSocket's).
    for s in 0..streams {
        ingest(&app, &token, &format!("s{s}"), &values(200, s as u64)).await;
    }
    ingest(&app, &token, "ws", &values(200, 999)).await;
    // The pipelining socket's streams: one, then as many as the ingest phase uses.
    let piped_streams: Vec<String> = (0..streams).map(|s| format!("wsp{s}")).collect();
    for (s, name) in piped_streams.iter().enumerate() {
        ingest(&app, &token, name, &values(200, 998 + s as u64)).await;
    }

    let mut ingest_rates = Vec::new();
    let mut ws_alone = Vec::new();
    let mut ws_loaded = Vec::new();
    let mut ws_piped = Vec::new();
    for run in 0..runs {
        // 1. Batched ingest, all streams concurrently.
        let started = Instant::now();
        let mut tasks = Vec::new();
        for s in 0..streams {
            let app_url = app.url("/api/ingest");
            let client = app.client.clone();
            let token = token.clone();
            let vals = values(per_stream, (run * 1000 + s) as u64);
            tasks.push(tokio::spawn(async move {
                let mut done = 0;
                for chunk in vals.chunks(100) {
                    let batch: Vec<Value> = chunk
                        .iter()
                        .map(|v| json!({"stream": format!("s{s}"), "value": v}))
                        .collect();
                    if let Ok(r) = client
                        .post(&app_url)
                        .bearer_auth(&token)
                        .json(&batch)
                        .send()
                        .await
                        && r.status().is_success()
                    {
                        done += chunk.len();
                    }
                }
                done
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap_or(0);
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        ingest_rates.push(rate);

        // 2. One WebSocket alone.
        let (ws_rate, lat) = ws_round_trips(&app, "ws", 500, run as u64).await;
        println!(
            "run {run}: ingest {rate:.0} events/s ({streams} streams × {per_stream}) | ws alone {ws_rate:.0} events/s, p50 {:.2} ms p99 {:.2} ms",
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
        ws_alone.push((ws_rate, pct(&lat, 0.5), pct(&lat, 0.99)));

        // 3. The WebSocket under ingest load.
        let load = {
            let client = app.client.clone();
            let url = app.url("/api/ingest");
            let token = token.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(3600);
                let mut k = 0u64;
                while Instant::now() < deadline {
                    let batch: Vec<Value> = values(100, k)
                        .iter()
                        .map(|v| json!({"stream": format!("s{}", k % 4), "value": v}))
                        .collect();
                    let _ = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&batch)
                        .send()
                        .await;
                    k += 1;
                }
            })
        };
        let (ws_rate, lat) = ws_round_trips(&app, "ws", 300, 100 + run as u64).await;
        load.abort();
        println!(
            "run {run}: ws under ingest load {ws_rate:.0} events/s, p50 {:.2} ms p99 {:.2} ms",
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
        ws_loaded.push((pct(&lat, 0.5), pct(&lat, 0.99)));

        // 5. One WebSocket, pipelined.
        let one = ws_pipelined(&app, &piped_streams[..1], per_stream * streams, 1000).await;
        let several = ws_pipelined(&app, &piped_streams, per_stream * streams, 1000).await;
        println!(
            "run {run}: one pipelining ws, 1 stream {one:.0} events/s, {} streams {several:.0} events/s",
            piped_streams.len()
        );
        ws_piped.push((one, several));
    }
    if let Some(&rate) = args.get(3) {
        paced(&app, &token, streams.max(1), rate).await;
    }
    if runs == 0 {
        // Only the paced phase was asked for.
        app.stop().await;
        return;
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median over {runs} runs: ingest {:.0} events/s | pipelining ws {:.0} events/s (1 stream), {:.0} ({streams} streams) | ws alone {:.0} events/s p99 {:.2} ms | ws under load p99 {:.2} ms",
        med(ingest_rates),
        med(ws_piped.iter().map(|x| x.0).collect()),
        med(ws_piped.iter().map(|x| x.1).collect()),
        med(ws_alone.iter().map(|x| x.0).collect()),
        med(ws_alone.iter().map(|x| x.2).collect()),
        med(ws_loaded.iter().map(|x| x.1).collect()),
    );
    app.stop().await;
}
