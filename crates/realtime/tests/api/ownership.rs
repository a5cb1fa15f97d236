//! One owner per stream across replicas (PostgreSQL only; skipped without `TEST_DATABASE_URL`): two in-process
//! replicas over one database, each with its own pool, caches and lease owner identity.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil_http::Role;
use vigil_http::testing::TestApp;
use vigil_realtime::{Lane, Realtime, RealtimeConfig};
use vigil_store::leases;

use crate::helpers::{noise, open, realtime};

/// A configuration under which every event of the first 289 answers `{"status":"buffering","count":n}`, `n`
/// being the stream's event count after it: each answer says where in the stream its event was applied. (290
/// is the largest window the per-event cost limit allows, with H1.)
fn counting_config() -> Value {
    json!({"window_size": 290, "min_events": 290, "max_homology_dim": 1})
}

/// Two replicas over one fresh PostgreSQL database; `a` owns the database's cleanup, so tests stop `b` when
/// they want a replica to die.
async fn two_replicas(
    test: &str,
    a_cfg: RealtimeConfig,
    b_cfg: RealtimeConfig,
) -> Option<((TestApp, Realtime), (TestApp, Realtime))> {
    let Some(db) = vigil_store::testing::TestDb::postgres().await else {
        eprintln!("skipping {test}: it needs PostgreSQL (set TEST_DATABASE_URL)");
        return None;
    };
    let replica = db.replica().await;
    let (rt_a, rt_b) = (realtime(a_cfg), realtime(b_cfg));
    let (a2, b2) = (rt_a.clone(), rt_b.clone());
    let a = TestApp::start(db, move |state| a2.router(state)).await;
    let b = TestApp::start(replica, move |state| b2.router(state)).await;
    Some(((a, rt_a), (b, rt_b)))
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn leasing(ttl_ms: u64, idle_ms: u64) -> RealtimeConfig {
    RealtimeConfig {
        stream_lease_ttl_ms: ttl_ms,
        stream_lease_idle_ms: idle_ms,
        ..open()
    }
}

/// Events of `stream` with explicit timestamps (so a stream's state depends on the events and their order only).
fn events(stream: &str, values: &[f64], first: usize) -> Vec<Value> {
    values
        .iter()
        .enumerate()
        .map(|(k, v)| json!({"stream": stream, "value": v, "timestamp": 1_700_000_000 + first + k}))
        .collect()
}

async fn configure(app: &TestApp, token: &str, stream: &str, cfg: &Value) {
    let (s, body) = app
        .api_as(token)
        .put(&format!("/api/streams/{stream}/config"), cfg)
        .await;
    assert_eq!(s, 200, "{body}");
}

async fn ingest(app: &TestApp, token: &str, batch: &[Value]) -> Vec<Value> {
    let (s, body) = app
        .api_as(token)
        .post("/api/ingest", &Value::Array(batch.to_vec()))
        .await;
    assert_eq!(s, 200, "{body}");
    body.as_array().unwrap().clone()
}

/// The stored state of `stream`, without its name, as JSON text.
async fn stored_core(app: &TestApp, stream: &str) -> (String, u64) {
    let row = vigil_store::streams::load(&app.state.store, stream)
        .await
        .unwrap()
        .unwrap();
    let state = vigil_realtime::pipeline::restore(&row).unwrap();
    let text = String::from_utf8(row.state).unwrap();
    (
        text.replace(&format!("\"{stream}\""), "\"_\""),
        state.events(),
    )
}

#[tokio::test]
async fn two_replicas_feeding_one_stream_apply_every_event_once_in_order() {
    let Some(((a, rt_a), (b, rt_b))) = two_replicas(
        "the concurrent two-replica ownership test",
        leasing(5_000, 1_000),
        leasing(5_000, 1_000),
    )
    .await
    else {
        return;
    };
    let (_, analyst) = a.user_with_role("owner1", Role::Analyst).await;
    configure(&a, &analyst, "owned", &counting_config()).await;
    configure(&a, &analyst, "solo", &counting_config()).await;
    const WRITERS: usize = 6;
    const PER_WRITER: usize = 45;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (rt, state) = if w % 2 == 0 {
            (rt_a.clone(), a.state.clone())
        } else {
            (rt_b.clone(), b.state.clone())
        };
        tasks.push(tokio::spawn(async move {
            let values = noise(PER_WRITER, 100 + w as u64);
            let evs = events("owned", &values, w * 1_000);
            let mut applied = Vec::new();
            let mut k = 0;
            while k < evs.len() {
                // Single events on the interactive lane (a socket's) and batches of 3 on the bulk lane, mixed.
                let n = if k % 2 == 0 { 1 } else { 3.min(evs.len() - k) };
                let lane = if n == 1 {
                    Lane::Interactive
                } else {
                    Lane::Bulk
                };
                let batch: Vec<vigil_stream::Event> = evs[k..k + n]
                    .iter()
                    .map(|v| vigil_stream::Event::from_json(v).unwrap())
                    .collect();
                let out = rt
                    .pipeline()
                    .process(&state, batch, None, lane)
                    .await
                    .unwrap_or_else(|e| panic!("writer {w}: {e}"));
                for (j, o) in out.iter().enumerate() {
                    let answer: Value = serde_json::from_str(o.json.get()).unwrap();
                    let count = answer["count"].as_u64().expect("a buffering answer");
                    applied.push((count, evs[k + j].clone()));
                }
                k += n;
            }
            applied
        }));
    }
    let mut applied = Vec::new();
    for t in tasks {
        let mine = t.await.expect("writer");
        let counts: Vec<u64> = mine.iter().map(|(c, _)| *c).collect();
        assert!(
            counts.windows(2).all(|p| p[0] < p[1]),
            "a writer's events are applied in the order it sent them: {counts:?}"
        );
        applied.extend(mine);
    }
    applied.sort_by_key(|(c, _)| *c);
    let counts: Vec<u64> = applied.iter().map(|(c, _)| *c).collect();
    let total = (WRITERS * PER_WRITER) as u64;
    assert_eq!(
        counts,
        (1..=total).collect::<Vec<_>>(),
        "every event applied exactly once"
    );
    // Both replicas analysed some of the stream (the lease moved between them).
    let row = vigil_store::streams::load(&a.state.store, "owned")
        .await
        .unwrap()
        .unwrap();
    eprintln!(
        "{total} events from {WRITERS} writers on 2 replicas stored in {} checkpoints",
        row.version - 1
    );
    // The same events, in the order they were applied, through one replica alone.
    let replay: Vec<Value> = applied
        .iter()
        .map(|(_, e)| {
            let mut e = e.clone();
            e["stream"] = json!("solo");
            e
        })
        .collect();
    for chunk in replay.chunks(50) {
        ingest(&a, &analyst, chunk).await;
    }
    let (owned, n_owned) = stored_core(&a, "owned").await;
    let (solo, n_solo) = stored_core(&a, "solo").await;
    assert_eq!((n_owned, n_solo), (total, total));
    assert!(owned == solo, "two replicas' state differs from one's");
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_dead_replicas_stream_is_taken_over_within_seconds_and_nothing_acknowledged_is_lost() {
    const TTL_MS: u64 = 1_500;
    // Idle leases are kept (a long idle time), so the only way the stream leaves the dead replica is expiry.
    let Some(((a, rt_a), (b, rt_b))) = two_replicas(
        "the replica death test",
        leasing(TTL_MS, 600_000),
        leasing(TTL_MS, 600_000),
    )
    .await
    else {
        return;
    };
    let (_, analyst) = a.user_with_role("owner2", Role::Analyst).await;
    configure(&a, &analyst, "survivor", &counting_config()).await;
    configure(&a, &analyst, "reference", &counting_config()).await;
    let values = noise(100, 9);
    let all = events("survivor", &values, 0);
    // Replica B takes 60 events (acknowledged), then dies without giving its lease up.
    for batch in all[..60].chunks(10) {
        ingest(&b, &analyst, batch).await;
    }
    assert_eq!(
        rt_b.pipeline().leased_streams(),
        vec!["survivor".to_owned()]
    );
    let taken = leases::holder(&a.state.store, "stream:survivor")
        .await
        .unwrap()
        .expect("a lease");
    // A live replica keeps its streams past the TTL: its keeper renews them.
    tokio::time::sleep(Duration::from_millis(2 * TTL_MS)).await;
    let held = leases::holder(&a.state.store, "stream:survivor")
        .await
        .unwrap()
        .expect("a lease");
    assert_eq!((&held.owner, held.epoch), (&taken.owner, taken.epoch));
    assert!(held.expires_at > taken.expires_at, "renewed");
    // Dies: its keeper stops without giving anything up (a graceful stop would release the lease).
    rt_b.pipeline().abandon_leases();
    b.stop().await;
    drop(rt_b);
    assert!(
        held.expires_at > vigil_store::time::now_ms(),
        "the dead replica's lease is still live"
    );
    // Replica A gets the next events: it waits for the lease to lapse, then goes on from everything B stored.
    let started = Instant::now();
    let answers = ingest(&a, &analyst, &all[60..70]).await;
    let waited = started.elapsed();
    eprintln!("took over a dead replica's stream after {waited:?} (lease TTL {TTL_MS} ms)");
    assert!(
        waited < Duration::from_millis(TTL_MS + 3_000),
        "taken over within seconds"
    );
    assert_eq!(answers[0]["count"], 61, "nothing acknowledged was lost");
    for batch in all[70..].chunks(10) {
        ingest(&a, &analyst, batch).await;
    }
    let now = leases::holder(&a.state.store, "stream:survivor")
        .await
        .unwrap()
        .expect("a lease");
    assert!(now.epoch > held.epoch, "a new owner, a new epoch");
    assert_eq!(
        rt_a.pipeline().leased_streams(),
        vec!["survivor".to_owned()]
    );
    // The result is one replica's run of the same events.
    let reference: Vec<Value> = events("reference", &values, 0);
    for batch in reference.chunks(25) {
        ingest(&a, &analyst, batch).await;
    }
    let (survivor, n) = stored_core(&a, "survivor").await;
    let (expected, _) = stored_core(&a, "reference").await;
    assert_eq!(n, 100);
    assert!(survivor == expected, "the state differs from one replica's");
    a.stop().await;
}

#[tokio::test]
async fn a_lease_is_handed_over_on_request_and_released_when_idle() {
    // A TTL far longer than the test: anything faster than it is a hand-over or a release, not an expiry.
    const TTL_MS: u64 = 30_000;
    let metrics = vigil_http::metrics::handle();
    // Other tests in this process record too, so only growth is checked.
    let before = |name: &str| metric(&metrics.render(), name);
    let counters = [
        "vigil_stream_lease_acquisitions_total",
        "vigil_stream_lease_waits_total",
        "vigil_stream_lease_handovers_total",
        "vigil_stream_checkpoints_total",
        "vigil_stream_checkpoint_events_count",
    ];
    let start: Vec<f64> = counters.iter().map(|c| before(c)).collect();
    let Some(((a, rt_a), (b, rt_b))) = two_replicas(
        "the lease hand-over test",
        leasing(TTL_MS, 600_000),
        leasing(TTL_MS, 300),
    )
    .await
    else {
        return;
    };
    let (_, analyst) = a.user_with_role("owner3", Role::Analyst).await;
    let values = noise(40, 5);
    let evs = events("moving", &values, 0);
    // A holds the stream (and never lets it go for idleness).
    ingest(&a, &analyst, &evs[..10]).await;
    assert_eq!(rt_a.pipeline().leased_streams(), vec!["moving".to_owned()]);
    let first = leases::holder(&a.state.store, "stream:moving")
        .await
        .unwrap()
        .unwrap();
    // B's clients send the next events: B asks, A hands the lease over after its batch, well before the TTL.
    let started = Instant::now();
    ingest(&b, &analyst, &evs[10..20]).await;
    let waited = started.elapsed();
    eprintln!("hand-over on request took {waited:?}");
    assert!(waited < Duration::from_secs(5), "handed over, not expired");
    assert_eq!(rt_b.pipeline().leased_streams(), vec!["moving".to_owned()]);
    assert!(rt_a.pipeline().leased_streams().is_empty());
    let second = leases::holder(&a.state.store, "stream:moving")
        .await
        .unwrap()
        .unwrap();
    assert!(second.epoch > first.epoch && second.owner != first.owner);
    // B releases it after 300 ms without events: the stream is free for whoever gets its events next.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let h = leases::holder(&a.state.store, "stream:moving")
            .await
            .unwrap()
            .unwrap();
        if h.expires_at < vigil_store::time::now_ms() {
            break;
        }
        assert!(Instant::now() < deadline, "B never released its idle lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rt_b.pipeline().leased_streams().is_empty());
    let started = Instant::now();
    ingest(&a, &analyst, &evs[20..]).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let (_, n) = stored_core(&a, "moving").await;
    assert_eq!(n, 40);
    // Taken three times (A, B by hand-over, A again), waited for once at least, handed over once at least, and
    // stored in checkpoints.
    let text = metrics.render();
    let grew: Vec<f64> = counters
        .iter()
        .zip(&start)
        .map(|(c, s)| metric(&text, c) - s)
        .collect();
    assert!(
        grew[0] >= 3.0 && grew[1] >= 1.0 && grew[2] >= 1.0 && grew[3] >= 3.0 && grew[4] >= 3.0,
        "{counters:?} grew by {grew:?}"
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_replica_that_shuts_down_releases_its_streams() {
    const TTL_MS: u64 = 30_000;
    let Some(((a, _rt_a), (b, rt_b))) = two_replicas(
        "the graceful shutdown test",
        leasing(TTL_MS, 600_000),
        leasing(TTL_MS, 600_000),
    )
    .await
    else {
        return;
    };
    let (_, analyst) = a.user_with_role("owner4", Role::Analyst).await;
    let evs = events("leaving", &noise(20, 3), 0);
    ingest(&b, &analyst, &evs[..10]).await;
    assert_eq!(rt_b.pipeline().leased_streams(), vec!["leaving".to_owned()]);
    b.stop().await;
    let h = leases::holder(&a.state.store, "stream:leaving")
        .await
        .unwrap()
        .unwrap();
    assert!(
        h.expires_at < vigil_store::time::now_ms(),
        "released at shutdown"
    );
    let started = Instant::now();
    ingest(&a, &analyst, &evs[10..]).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no wait for the TTL"
    );
    let (_, n) = stored_core(&a, "leaving").await;
    assert_eq!(n, 20);
    a.stop().await;
}
