//! Ingest through one or two replicas over one PostgreSQL database (issue #18 item 2): events/s, WebSocket round
//! trip p50/p99, and what the stream ownership and group commit did (checkpoints per event, lease waits and
//! hand-overs, CPU per event of this process and of the PostgreSQL server).
//!
//! `TEST_DATABASE_URL=postgres://… cargo run --release -p vigil-realtime --example replicas -- [replicas] [streams]
//! [clients] [events_per_client] [shared]` (defaults 2, 4, 8, 400, 1). Every replica is a full application in this
//! process (its own pool, caches, analysis pool and lease owner id); the database is a fresh one on that server.
//! `shared` 1: every stream is fed through every replica (the contended case: the lease moves between them);
//! 0: each stream through one replica only (what sticky routing by stream gives).
//!
//! Phases, each timed alone, on streams calibrated first (200 events each):
//! 1. **sockets**: `clients` WebSockets, client `c` on replica `c % replicas` feeding stream `(c / replicas) %
//!    streams` when shared (every stream fed through every replica), else stream `c % streams` (each stream's
//!    clients on one replica, when `streams` is a multiple of `replicas`); each sends one event and waits for its
//!    analysis, `events_per_client` times → events/s and round-trip p50/p99.
//! 2. **batches**: `clients` HTTP clients the same way, each posting `events_per_client` events in batches of 50
//!    (`?detail=scores`) → events/s and per-batch p50/p99.
//!
//! Before/after for the writes: the per-event write-through this replaced stored once per request and stream (plus
//! a rewrite per lost race), so its writes per event are at least `submissions / events`; the figure printed
//! beside it is the checkpoints actually written.

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

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn metric(name: &str) -> f64 {
    let text = vigil_http::metrics::handle().render();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// CPU seconds (user + system) of the processes whose command name is `comm` (`None`: this process).
fn cpu_seconds(comm: Option<&str>) -> f64 {
    // Clock ticks per second: 100 on every Linux this runs on (`getconf CLK_TCK`).
    const TICKS: f64 = 100.0;
    let stat_cpu = |path: &std::path::Path| -> Option<f64> {
        let stat = std::fs::read_to_string(path).ok()?;
        // Fields after the command name (which is in parentheses and may hold spaces).
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        Some((utime + stime) / TICKS)
    };
    match comm {
        None => stat_cpu(std::path::Path::new("/proc/self/stat")).unwrap_or(0.0),
        Some(name) => std::fs::read_dir("/proc")
            .map(|dir| {
                dir.flatten()
                    .filter(|e| {
                        std::fs::read_to_string(e.path().join("comm"))
                            .is_ok_and(|c| c.trim() == name)
                    })
                    .filter_map(|e| stat_cpu(&e.path().join("stat")))
                    .sum()
            })
            .unwrap_or(0.0),
    }
}

struct Counters {
    checkpoints: f64,
    waits: f64,
    handovers: f64,
    acquisitions: f64,
    conflicts: f64,
    cpu_self: f64,
    cpu_pg: f64,
}

impl Counters {
    fn now() -> Counters {
        Counters {
            checkpoints: metric("vigil_stream_checkpoints_total"),
            waits: metric("vigil_stream_lease_waits_total"),
            handovers: metric("vigil_stream_lease_handovers_total"),
            acquisitions: metric("vigil_stream_lease_acquisitions_total"),
            conflicts: metric("topoforge_state_conflicts_total"),
            cpu_self: cpu_seconds(None),
            cpu_pg: cpu_seconds(Some("postgres")),
        }
    }

    fn report(&self, before: &Counters, events: usize, submissions: usize) -> String {
        let n = events.max(1) as f64;
        format!(
            "checkpoints/event {:.3} (write-through would be ≥ {:.3}), lease acquisitions {:.0}, waits {:.0}, \
             hand-overs {:.0}, version conflicts {:.0}; CPU/event: this process {:.0} µs, PostgreSQL {:.0} µs",
            (self.checkpoints - before.checkpoints) / n,
            submissions as f64 / n,
            self.acquisitions - before.acquisitions,
            self.waits - before.waits,
            self.handovers - before.handovers,
            self.conflicts - before.conflicts,
            (self.cpu_self - before.cpu_self) / n * 1e6,
            (self.cpu_pg - before.cpu_pg) / n * 1e6,
        )
    }
}

async fn ws_client(app: &TestApp, stream: String, n: usize, seed: u64) -> Vec<f64> {
    let (mut ws, _) = match tokio_tungstenite::connect_async(app.ws_url("/ws/stream")).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ws connect failed: {e}");
            return Vec::new();
        }
    };
    let mut lat = Vec::with_capacity(n);
    for v in values(n, seed) {
        let t = Instant::now();
        let frame = Message::text(json!({"stream": stream, "value": v}).to_string());
        if ws.send(frame).await.is_err() {
            break;
        }
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str().starts_with("{\"type\":\"analysis\"") => {
                    break;
                }
                Some(Ok(Message::Text(t))) => {
                    eprintln!("unexpected frame: {t}");
                    return lat;
                }
                Some(Ok(_)) => continue,
                _ => return lat,
            }
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ws.close(None).await.ok();
    lat
}

async fn batch_client(app: &TestApp, token: &str, stream: String, n: usize, seed: u64) -> Vec<f64> {
    let mut lat = Vec::new();
    for chunk in values(n, seed).chunks(50) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|v| json!({"stream": stream, "value": v}))
            .collect();
        let t = Instant::now();
        let r = app
            .client
            .post(app.url("/api/ingest?detail=scores"))
            .bearer_auth(token)
            .json(&batch)
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
            }
            Ok(r) => {
                eprintln!("ingest failed: {}", r.status());
                return lat;
            }
            Err(e) => {
                eprintln!("ingest failed: {e}");
                return lat;
            }
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let replicas = args.first().copied().unwrap_or(2).clamp(1, 8);
    let streams = args.get(1).copied().unwrap_or(4).max(1);
    let clients = args.get(2).copied().unwrap_or(8).max(1);
    let per_client = args.get(3).copied().unwrap_or(400).max(50);
    let shared = args.get(4).copied().unwrap_or(1) != 0;
    let stream_of = move |c: usize| {
        if shared {
            (c / replicas) % streams
        } else {
            c % streams
        }
    };
    let Some(db) = vigil_store::testing::TestDb::postgres().await else {
        eprintln!("set TEST_DATABASE_URL to a PostgreSQL server");
        return;
    };
    let config = RealtimeConfig {
        stream_anonymous_streams: "*".into(),
        ..RealtimeConfig::default()
    };
    let mut handles = Vec::new();
    for _ in 1..replicas {
        handles.push(db.replica().await);
    }
    let mut apps = Vec::new();
    for d in std::iter::once(db).chain(handles) {
        let rt = Realtime::new(config.clone(), &Anomalies::new(&AnomaliesConfig::default()));
        let app = TestApp::start(d, move |state| rt.router(state)).await;
        apps.push(app);
    }
    let (_, token) = apps[0].user_with_role("loader", Role::Analyst).await;
    let names: Vec<String> = (0..streams).map(|s| format!("r{s}")).collect();
    for (s, name) in names.iter().enumerate() {
        let batch: Vec<Value> = values(200, s as u64)
            .iter()
            .map(|v| json!({"stream": name, "value": v}))
            .collect();
        let (status, _) = apps[0]
            .api_as(&token)
            .post("/api/ingest", &Value::Array(batch))
            .await;
        assert_eq!(status, 200, "calibration");
    }
    // Let the calibrating replica's leases go idle, so the phases start from free streams.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let apps = std::sync::Arc::new(apps);
    println!(
        "{replicas} replica(s), {streams} streams {}, {clients} clients × {per_client} events (release build; \
         the machine's 2 cores are shared with other jobs)",
        if shared {
            "each fed through every replica"
        } else {
            "each fed through one replica"
        }
    );

    // Phase 1: single events over sockets.
    let before = Counters::now();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let apps = apps.clone();
        let stream = names[stream_of(c)].clone();
        tasks.push(tokio::spawn(async move {
            ws_client(&apps[c % replicas], stream, per_client, 1_000 + c as u64).await
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let after = Counters::now();
    println!(
        "sockets: {:.0} events/s, round trip p50 {:.2} ms p99 {:.2} ms ({} events); {}",
        lat.len() as f64 / secs,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.len(),
        after.report(&before, lat.len(), lat.len())
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Phase 2: batches of 50 over HTTP.
    let before = Counters::now();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let apps = apps.clone();
        let token = token.clone();
        let stream = names[stream_of(c)].clone();
        tasks.push(tokio::spawn(async move {
            batch_client(
                &apps[c % replicas],
                &token,
                stream,
                per_client,
                5_000 + c as u64,
            )
            .await
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let after = Counters::now();
    let events = lat.len() * 50;
    println!(
        "batches of 50: {:.0} events/s, per batch p50 {:.1} ms p99 {:.1} ms ({} batches); {}",
        events as f64 / secs,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.len(),
        after.report(&before, events, lat.len())
    );
    match std::sync::Arc::try_unwrap(apps) {
        Ok(apps) => {
            for app in apps.into_iter().rev() {
                app.stop().await;
            }
        }
        Err(_) => eprintln!("replicas still in use; not stopped"),
    }
}
