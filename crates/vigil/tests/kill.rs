//! Fault tests: the real binary killed with SIGKILL (`kill -9`) in the middle of its work, then started again on
//! the same database, on SQLite and on PostgreSQL (`TEST_DATABASE_URL`).
//!
//! - Mid-ingest: every event whose batch was acknowledged (200) must be in its stream's stored state after the
//!   restart, and nothing beyond the batches that were sent; every acknowledged `POST /api/anomalies` (201) must
//!   be readable. Unacknowledged work may or may not be there, and a client that retries its unacknowledged
//!   batches (events numbered with `seq`) ends with every event applied exactly once.
//! - Mid-training (MaxiDOM): profiles that became ready just before the kill must get their model promptly after
//!   the restart (within a few claim TTLs), with no further `/train`.
//!
//! Each prints its counts (`--nocapture` shows them).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Server;
use vigil_biometrics::synth::{Persona, Rng, SessionGenerator};
use vigil_store::testing::TestDb;

const ADMIN_PASSWORD: &str = "Kill-test-pass1!";

fn server_env(db: &TestDb) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url.clone()),
        ("ADMIN_EMAIL", "admin@example.com".into()),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
        // The writers below send far more than 100 requests a minute from one address.
        ("API_RATE_LIMIT", "0".into()),
    ]
}

fn start(dir: &std::path::Path, env: &[(&'static str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(dir, &env)
}

/// The number of events a buffering stream holds, from the answer to one more event.
async fn stored_events(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    stream: &str,
) -> usize {
    let r: Value = http
        .post(server.url("/api/ingest"))
        .bearer_auth(token)
        .json(&json!({"stream": stream, "value": 0.5}))
        .send()
        .await
        .expect("probe event")
        .json()
        .await
        .expect("probe json");
    assert_eq!(r["status"], "buffering", "{r}");
    let count = r["count"].as_u64().expect("count") as usize;
    count - 1
}

/// The `n`th event (from 0) of stream `kill-{s}`, numbered for idempotent retries.
fn event(s: usize, n: usize) -> Value {
    json!({"stream": format!("kill-{s}"), "value": n as f64, "seq": n + 1})
}

const STREAMS: usize = 4;
const BATCH: usize = 10;
/// Streams are configured to buffer up to this many events, so the `count` of a buffering answer is the number of
/// events the stream's stored state holds (its window is never full).
const WINDOW: usize = 500;
const MAX_BATCHES: usize = (WINDOW - 2 * BATCH) / BATCH;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_ingest_keeps_every_acknowledged_write() {
    for db in TestDb::all().await {
        let l = db.label;
        let dir = tempfile::tempdir().expect("tempdir");
        let env = server_env(&db);
        let server = start(dir.path(), &env);
        let http = reqwest::Client::new();
        let token = server.admin_token(&http, ADMIN_PASSWORD).await;
        for s in 0..STREAMS {
            let r = http
                .put(server.url(&format!("/api/streams/kill-{s}/config")))
                .bearer_auth(&token)
                .json(&json!({"window_size": WINDOW, "min_events": WINDOW, "max_homology_dim": 0}))
                .send()
                .await
                .expect("config");
            assert_eq!(r.status(), 200, "{l}");
        }

        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Vec<AtomicUsize>> =
            Arc::new((0..STREAMS).map(|_| AtomicUsize::new(0)).collect());
        let sent: Arc<Vec<AtomicUsize>> =
            Arc::new((0..STREAMS).map(|_| AtomicUsize::new(0)).collect());
        let mut writers = Vec::new();
        for s in 0..STREAMS {
            let (http, url, token) = (http.clone(), server.url("/api/ingest"), token.clone());
            let (stop, acked, sent) = (stop.clone(), acked.clone(), sent.clone());
            writers.push(tokio::spawn(async move {
                for b in 0..MAX_BATCHES {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let batch: Vec<Value> = (0..BATCH).map(|i| event(s, b * BATCH + i)).collect();
                    sent[s].fetch_add(BATCH, Ordering::SeqCst);
                    let Ok(r) = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&batch)
                        .send()
                        .await
                    else {
                        break;
                    };
                    if r.status() != 200 {
                        break;
                    }
                    // Acknowledged only once the whole answer has arrived.
                    let Ok(answer) = r.json::<Vec<Value>>().await else {
                        break;
                    };
                    assert_eq!(answer.len(), BATCH);
                    acked[s].fetch_add(BATCH, Ordering::SeqCst);
                }
            }));
        }
        // Anomalies written one by one beside the ingest; the ids answered 201 must survive.
        let acked_ids = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let anomalies_sent = Arc::new(AtomicUsize::new(0));
        {
            let (http, url, token) = (http.clone(), server.url("/api/anomalies"), token.clone());
            let (stop, ids, sent) = (stop.clone(), acked_ids.clone(), anomalies_sent.clone());
            writers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    sent.fetch_add(1, Ordering::SeqCst);
                    let Ok(r) = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"source_type": "kill-test", "anomaly_score": 0.5}))
                        .send()
                        .await
                    else {
                        break;
                    };
                    if r.status() != 201 {
                        break;
                    }
                    let Ok(doc) = r.json::<Value>().await else {
                        break;
                    };
                    let id = doc["id"].as_str().expect("id").to_owned();
                    ids.lock().expect("ids").push(id);
                }
            }));
        }
        // Kill once every stream has a few acknowledged batches, so the kill lands in the middle of the writes.
        let started = Instant::now();
        while acked.iter().any(|a| a.load(Ordering::SeqCst) < 3 * BATCH) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{l}: the writers made no progress"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.expect("writer");
        }

        let server = start(dir.path(), &env);
        let token = server.admin_token(&http, ADMIN_PASSWORD).await;
        for s in 0..STREAMS {
            let (a, n) = (
                acked[s].load(Ordering::SeqCst),
                sent[s].load(Ordering::SeqCst),
            );
            let stored = stored_events(&http, &server, &token, &format!("kill-{s}")).await;
            println!("{l}: stream kill-{s}: sent {n}, acknowledged {a}, stored {stored}");
            assert!(
                a <= stored && stored <= n,
                "{l}: stream {s}: sent {n}, acknowledged {a}, stored {stored}"
            );
            // The client retries everything it sent without an answer: what was applied before the kill is
            // answered as duplicate, the rest is applied, and the stream holds each event once (plus the probe).
            let retry: Vec<Value> = (a..n).map(|i| event(s, i)).collect();
            let answer: Vec<Value> = http
                .post(server.url("/api/ingest"))
                .bearer_auth(&token)
                .json(&retry)
                .send()
                .await
                .expect("retry")
                .json()
                .await
                .expect("retry json");
            let duplicates = answer.iter().filter(|x| x["status"] == "duplicate").count();
            println!(
                "{l}: stream kill-{s}: retried {}, duplicates {duplicates}",
                n - a
            );
            assert_eq!(duplicates, stored - a, "{l}: stream {s}");
            let after = stored_events(&http, &server, &token, &format!("kill-{s}")).await;
            assert_eq!(
                after,
                n + 1,
                "{l}: stream {s}: each event once, and the first probe"
            );
        }
        let ids = acked_ids.lock().expect("ids").clone();
        for id in &ids {
            let r = http
                .get(server.url(&format!("/api/anomalies/{id}")))
                .bearer_auth(&token)
                .send()
                .await
                .expect("get anomaly");
            assert_eq!(r.status(), 200, "{l}: acknowledged anomaly {id} is gone");
        }
        let listed: Value = http
            .get(server.url("/api/anomalies?source=kill-test&limit=1"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("list json");
        let total = listed["total"].as_u64().expect("total") as usize;
        let n = anomalies_sent.load(Ordering::SeqCst);
        println!(
            "{l}: anomalies: sent {n}, acknowledged {}, stored {total}",
            ids.len()
        );
        assert!(
            ids.len() <= total && total <= n,
            "{l}: anomalies sent {n}, acknowledged {}, stored {total}",
            ids.len()
        );
        assert!(server.terminate().success(), "{l}");
    }
}

/// A canonical lower-case UUID v4 from the test's own generator (the binary's crate has no UUID dependency).
fn profile_id(rng: &mut Rng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_training_recovers_the_model_promptly() {
    const PROFILES: usize = 6;
    const TTL_SECS: u64 = 1;
    for db in TestDb::all().await {
        let l = db.label;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env = server_env(&db);
        // Shipped quotas (lower ones can mark a profile ready that the trainer still finds too thin).
        env.push(("MAXIDOM_CLAIM_TTL_SECS", TTL_SECS.to_string()));
        let server = start(dir.path(), &env);
        let http = reqwest::Client::new();
        let mut rng = Rng::new(9);
        let ids: Vec<String> = (0..PROFILES).map(|_| profile_id(&mut rng)).collect();
        let mut sessions: Vec<SessionGenerator> = (0..PROFILES)
            .map(|i| SessionGenerator::new(Persona::alice(), 100 + i as u64))
            .collect();
        let train = |id: &str, body: Vec<u8>| {
            http.post(server.url(&format!("/api/train/{id}")))
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        for id in &ids {
            let r = http
                .post(server.url(&format!("/api/enroll/{id}")))
                .json(&json!({"password": "pw"}))
                .send()
                .await
                .expect("enroll");
            assert_eq!(r.status(), 200, "{l}");
        }
        // Bring every profile to about one payload short of ready, then send the last payloads of all profiles at
        // once and kill the process as soon as the first profile is done: the others' trainings are claimed,
        // queued or running, or their last payload is cut off.
        let mut pending: Vec<Vec<Vec<u8>>> = Vec::new();
        for (id, sessions_of) in ids.iter().zip(&mut sessions) {
            loop {
                let body = serde_json::to_vec(&sessions_of.next_payload()).expect("payload");
                let r: Value = train(id, body)
                    .await
                    .expect("train")
                    .json()
                    .await
                    .expect("train json");
                assert_ne!(
                    r["progress"]["is_ready"], true,
                    "{l}: ready before the burst: {r}"
                );
                let short = |q: &str| {
                    let q = &r["progress"][q];
                    q["required"]
                        .as_u64()
                        .unwrap_or(1)
                        .saturating_sub(q["current"].as_u64().unwrap_or(0))
                };
                let modality_near = short("mouse_samples") <= 1
                    || (short("keyboard_samples") <= 1 && short("digraph_samples") <= 1);
                if short("total_samples") <= 1 && modality_near {
                    pending.push(
                        (0..3)
                            .map(|_| {
                                serde_json::to_vec(&sessions_of.next_payload()).expect("payload")
                            })
                            .collect::<Vec<_>>(),
                    );
                    break;
                }
            }
        }
        let burst: Vec<_> = ids
            .iter()
            .zip(pending)
            .map(|(id, bodies)| {
                let (http, url) = (http.clone(), server.url(&format!("/api/train/{id}")));
                // Up to three more payloads, one after the other, until the profile answers ready.
                tokio::spawn(async move {
                    let mut last = None;
                    for body in bodies {
                        let v: Value = http
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                            .ok()?
                            .json()
                            .await
                            .ok()?;
                        let ready = v["progress"]["is_ready"] == true;
                        last = Some(v);
                        if ready {
                            break;
                        }
                    }
                    last
                })
            })
            .collect();
        while !burst.iter().any(tokio::task::JoinHandle::is_finished) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        server.kill9();
        let mut answered_ready = 0;
        for h in burst {
            if h.await
                .expect("burst")
                .is_some_and(|v| v["progress"]["is_ready"] == true)
            {
                answered_ready += 1;
            }
        }
        // What the kill left behind: profiles claimed for training and still without a model.
        let orphaned = vigil_store::testing::orphaned_training_claims(&db.store).await;

        let restarted = Instant::now();
        let server = start(dir.path(), &env);
        let mut slowest = Duration::ZERO;
        let mut scored = 0;
        for (id, sessions_of) in ids.iter().zip(&mut sessions) {
            let body = serde_json::to_vec(&sessions_of.next_payload()).expect("payload");
            let ready: Value = http
                .get(server.url(&format!("/api/profile/{id}/status")))
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("status json");
            if ready["progress"]["is_ready"] != true {
                continue; // its last payload was cut off before it was stored: not ready, nothing to recover
            }
            loop {
                let r = http
                    .post(server.url(&format!("/api/score/{id}")))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("score");
                if r.status() == 200 {
                    slowest = slowest.max(restarted.elapsed());
                    scored += 1;
                    break;
                }
                assert_eq!(r.status(), 404, "{l}");
                if restarted.elapsed() > Duration::from_secs(10 * TTL_SECS + 5) {
                    let status: Value = http
                        .get(server.url(&format!("/api/profile/{id}/status")))
                        .send()
                        .await
                        .expect("status")
                        .json()
                        .await
                        .expect("status json");
                    panic!(
                        "{l}: profile {id} still has no model {:?} after the restart: {status}",
                        restarted.elapsed()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        println!(
            "{l}: {PROFILES} profiles, {answered_ready} answered ready before the kill, {orphaned} claimed without a \
             model at the kill; after the restart {scored} ready profiles scored, the last {slowest:?} after the start"
        );
        assert!(scored >= answered_ready && scored as i64 >= orphaned, "{l}");
        assert!(server.terminate().success(), "{l}");
    }
}
