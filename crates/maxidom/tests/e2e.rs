//! End-to-end over HTTP: the real application on a random port, once per backend (SQLite always,
//! PostgreSQL when TEST_DATABASE_URL is set), driven with synthetic users.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use vigil_biometrics::lifecycle::Counts;
use vigil_biometrics::synth::{Persona, SessionGenerator, Shape};
use vigil_biometrics::{Payload, StoredVector, extract_features};
use vigil_http::AppState;
use vigil_http::testing::TestApp;
use vigil_maxidom::MaxidomConfig;
use vigil_maxidom::service::kinds_of;
use vigil_store::maxidom as db;
use vigil_store::time::now_ms;

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn apps(config: MaxidomConfig) -> Vec<TestApp> {
    TestApp::all(move |state| vigil_maxidom::Maxidom::new(config.clone()).router(state)).await
}

async fn post(app: &TestApp, path: &str, body: &Value) -> (StatusCode, Value) {
    let r = app
        .client
        .post(app.url(path))
        .json(body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post_raw(app: &TestApp, path: &str, body: Vec<u8>) -> (StatusCode, String) {
    let r = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    (status, r.text().await.unwrap_or_default())
}

/// POSTs a body declared as `len` bytes but sends only one byte more than the server's limit, then returns the
/// status the server answers with.
///
/// The server refuses as soon as the body passes its limit and closes the connection, so a client that uploads
/// all 17 MB races that close (sometimes it reads the 413, sometimes its write fails with a broken pipe). Sending
/// exactly limit + 1 bytes, all of which the server must read to decide, makes the check deterministic.
async fn post_declared_length(app: &TestApp, path: &str, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let over_limit = app.state.config.max_body_bytes + 1;
    assert!(
        over_limit < len,
        "the declared length must exceed the limit"
    );
    stream
        .write_all(&vec![b' '; over_limit])
        .await
        .expect("write the body up to the limit");
    let mut response = Vec::new();
    let mut buf = [0_u8; 1024];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.expect("read response");
        assert!(n > 0, "connection closed before a response");
        response.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&response);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status code")
}

async fn status_of(app: &TestApp, id: &str) -> Value {
    app.client
        .get(app.url(&format!("/api/profile/{id}/status")))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json")
}

async fn enroll(app: &TestApp, id: &str, password: &str) {
    let (s, body) = post(
        app,
        &format!("/api/enroll/{id}"),
        &json!({"password": password}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}: {body}", app.label);
}

/// Waits until the status satisfies `done` (training runs in the background).
async fn wait_for(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..400 {
        let s = status_of(app, id).await;
        if done(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{}: timed out waiting for {what}: {}",
        app.label,
        status_of(app, id).await
    );
}

fn small_quotas() -> MaxidomConfig {
    MaxidomConfig {
        quota_total: 40,
        quota_keyboard: 10,
        quota_mouse: 20,
        quota_digraph: 5,
        ..MaxidomConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_verify_change_reset_and_their_errors() {
    for app in apps(MaxidomConfig::default()).await {
        let id = new_id();
        let l = app.label;
        // Enrollment.
        let (s, b) = post(&app, &format!("/api/enroll/{id}"), &json!({})).await;
        assert_eq!(
            (s, b),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"detail": "Password not provided."})
            ),
            "{l}"
        );
        for bad in [
            json!({"password": ""}),
            json!({"password": 5}),
            json!({"password": null}),
            json!("pw"),
        ] {
            let (s, _) = post(&app, &format!("/api/enroll/{id}"), &bad).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{l}: {bad}");
        }
        let (s, b) = post(&app, "/api/enroll/not-a-uuid", &json!({"password": "pw"})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{l}: {b}");
        let r = app
            .client
            .post(app.url(&format!("/api/enroll/{id}")))
            .json(&json!({"password": "s3cret", "extra": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.text().await.unwrap(),
            format!(r#"{{"status":"enrollment successful","profile_id":"{id}"}}"#)
        );
        let (s, b) = post(
            &app,
            &format!("/api/enroll/{id}"),
            &json!({"password": "other"}),
        )
        .await;
        assert_eq!(
            (s, b),
            (
                StatusCode::CONFLICT,
                json!({"detail": "Profile already enrolled."})
            ),
            "{l}"
        );

        // Verification.
        let (s, b) = post(
            &app,
            &format!("/api/verify_password/{}", new_id()),
            &json!({"password": "x"}),
        )
        .await;
        assert_eq!(
            (s, b),
            (
                StatusCode::NOT_FOUND,
                json!({"detail": "User profile not found or not enrolled."})
            ),
            "{l}"
        );
        let (s, b) = post(&app, &format!("/api/verify_password/{id}"), &json!({})).await;
        assert_eq!(
            (s, b),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"detail": "Password not provided."})
            ),
            "{l}"
        );
        assert_eq!(
            post(
                &app,
                &format!("/api/verify_password/{id}"),
                &json!({"password": "s3cret"})
            )
            .await
            .1,
            json!({"verified": true})
        );
        assert_eq!(
            post(
                &app,
                &format!("/api/verify_password/{id}"),
                &json!({"password": "nope"})
            )
            .await
            .1,
            json!({"verified": false})
        );

        // Password change.
        let put = |body: Value| {
            let url = app.url(&format!("/api/profile/{id}/password"));
            let c = app.client.clone();
            async move {
                let r = c.put(url).json(&body).send().await.unwrap();
                (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        let both = json!({"detail": "Both 'old_password' and 'new_password' are required."});
        assert_eq!(
            put(json!({"old_password": "s3cret"})).await,
            (StatusCode::UNPROCESSABLE_ENTITY, both)
        );
        assert_eq!(
            put(json!({"old_password": "wrong", "new_password": "n"})).await,
            (
                StatusCode::FORBIDDEN,
                json!({"detail": "Incorrect current password."})
            )
        );
        assert_eq!(
            put(json!({"old_password": "s3cret", "new_password": "n3w"})).await,
            (
                StatusCode::OK,
                json!({"status": "password changed successfully"})
            )
        );
        assert_eq!(
            post(
                &app,
                &format!("/api/verify_password/{id}"),
                &json!({"password": "n3w"})
            )
            .await
            .1,
            json!({"verified": true})
        );
        assert_eq!(
            post(
                &app,
                &format!("/api/verify_password/{id}"),
                &json!({"password": "s3cret"})
            )
            .await
            .1,
            json!({"verified": false})
        );

        // Reset: 204 with an empty body, password kept; unknown profiles reset fine too.
        let r = app
            .client
            .delete(app.url(&format!("/api/reset_profile/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert!(r.bytes().await.unwrap().is_empty());
        let r = app
            .client
            .delete(app.url(&format!("/api/reset_profile/{}", new_id())))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let r = app
            .client
            .delete(app.url("/api/reset_profile/.."))
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            post(
                &app,
                &format!("/api/verify_password/{id}"),
                &json!({"password": "n3w"})
            )
            .await
            .1,
            json!({"verified": true})
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_verify_password_with_retry_after() {
    for app in apps(MaxidomConfig::default()).await {
        let id = new_id();
        enroll(&app, &id, "right").await;
        // One success first: it resets the count, so five failures are needed afterwards.
        assert_eq!(
            post(
                &app,
                &format!("/api/verify_password/{id}"),
                &json!({"password": "right"})
            )
            .await
            .1,
            json!({"verified": true})
        );
        for _ in 0..5 {
            let (s, b) = post(
                &app,
                &format!("/api/verify_password/{id}"),
                &json!({"password": "guess"}),
            )
            .await;
            assert_eq!(
                (s, b),
                (StatusCode::OK, json!({"verified": false})),
                "{}",
                app.label
            );
        }
        let r = app
            .client
            .post(app.url(&format!("/api/verify_password/{id}")))
            .json(&json!({"password": "right"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{}", app.label);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&retry), "{retry}");
        // The change-password route shares the limit, so it cannot be used to keep guessing.
        let r = app
            .client
            .put(app.url(&format!("/api/profile/{id}/password")))
            .json(&json!({"old_password": "right", "new_password": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let st = status_of(&app, &id).await;
        assert!(st["password_locked_until"].as_i64().is_some(), "{st}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_becomes_ready_exactly_at_the_quotas_trains_once_and_scores() {
    for app in apps(MaxidomConfig::default()).await {
        let l = app.label;
        let id = new_id();
        let score_path = format!("/api/score/{id}");
        let train_path = format!("/api/train/{id}");
        let mut alice = SessionGenerator::new(Persona::alice(), 11);
        let (s, b) = post_raw(
            &app,
            &score_path,
            serde_json::to_vec(&alice.next_payload()).unwrap(),
        )
        .await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::NOT_FOUND, r#"{"detail":"Model not found."}"#),
            "{l}"
        );
        let (s, _) = post_raw(
            &app,
            &train_path,
            serde_json::to_vec(&alice.next_payload()).unwrap(),
        )
        .await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "{l}: training needs an enrolled profile"
        );
        enroll(&app, &id, "pw").await;

        let quotas = MaxidomConfig::default().quotas();
        let mut counts = Counts::default();
        let mut became_ready = None;
        for i in 1..=40u64 {
            let p = alice.next_payload();
            counts.add(&extract_features(&p));
            let (s, text) = post_raw(&app, &train_path, serde_json::to_vec(&p).unwrap()).await;
            assert_eq!(s, StatusCode::OK, "{l}: {text}");
            let want = serde_json::to_string(&vigil_biometrics::TrainResponse::new(
                id.clone(),
                counts.progress(&quotas),
            ))
            .unwrap();
            assert_eq!(
                text, want,
                "{l}: response {i} must be byte-identical to the reference's"
            );
            if counts.is_ready(&quotas) && became_ready.is_none() {
                became_ready = Some(i);
            }
        }
        // At the total quota, or a little later when some of the first sessions did not move the mouse.
        assert!(
            became_ready.is_some_and(|n| (30..=36).contains(&n)),
            "{l}: {became_ready:?}"
        );
        let st = wait_for(&app, &id, "the first model", |s| {
            s["model_active"] == json!(true)
        })
        .await;
        assert_eq!(
            st["model_version"],
            json!(1),
            "{l}: trained exactly once: {st}"
        );
        assert_eq!(st["vectors_stored"], json!(40));

        // The owner mostly passes, a different user is flagged.
        let shape = Shape {
            mouse_points: 200,
            key_events: 30,
        };
        let mut own_flags = 0;
        let mut typical = 0;
        for _ in 0..20 {
            let (s, text) = post_raw(
                &app,
                &score_path,
                serde_json::to_vec(&alice.payload(shape)).unwrap(),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{l}: {text}");
            let keys: Vec<&str> = text
                .split('"')
                .skip(1)
                .step_by(2)
                .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .collect();
            assert_eq!(
                keys,
                [
                    "is_anomaly",
                    "score",
                    "typing_threshold",
                    "mouse_threshold",
                    "mouse_score",
                    "typing_score",
                    "payload_score",
                    "run_payloads"
                ]
            );
            let v: Value = serde_json::from_str(&text).unwrap();
            own_flags += usize::from(v["is_anomaly"] == json!(true));
            typical += usize::from(
                v["is_anomaly"] == json!(false) && v["payload_score"].as_f64() >= Some(0.5),
            );
            // Both modalities vote: `score` is their combined p-value, never clipped to an abstain value.
            assert_ne!(v["score"], json!(0.1), "{l}: {v}");
        }
        let mut bob = SessionGenerator::new(Persona::bob(), 12);
        let mut other_flags = 0;
        for _ in 0..20 {
            let (_, text) = post_raw(
                &app,
                &score_path,
                serde_json::to_vec(&bob.payload(shape)).unwrap(),
            )
            .await;
            let v: Value = serde_json::from_str(&text).unwrap();
            other_flags += usize::from(v["is_anomaly"] == json!(true));
        }
        assert!(own_flags <= 6, "{l}: owner flagged {own_flags}/20");
        assert!(
            other_flags >= 18,
            "{l}: impostor flagged only {other_flags}/20"
        );
        let st = status_of(&app, &id).await;
        assert_eq!(
            st["pool_size"],
            json!(typical),
            "{l}: typical accepted sessions (payload_score ≥ 0.5, run not flagged) join the pool: {st}"
        );

        // Abstention: too few points and keys.
        let tiny = Payload {
            start_timestamp: 0.0,
            end_timestamp: 1000.0,
            key_events: vec![],
            mouse_paths: vec![],
            clicks: vec![],
        };
        let (_, text) = post_raw(&app, &score_path, serde_json::to_vec(&tiny).unwrap()).await;
        assert_eq!(
            text,
            r#"{"is_anomaly":false,"score":0.5,"typing_threshold":0.0,"mouse_threshold":0.0,"mouse_score":0.1,"typing_score":0.1,"payload_score":0.5,"run_payloads":0}"#,
            "{l}: no modality votes (and no event places it in a run): no evidence either way"
        );

        // Reset drops the model: scoring is 404 again, training starts over.
        app.client
            .delete(app.url(&format!("/api/reset_profile/{id}")))
            .send()
            .await
            .unwrap();
        let (s, _) = post_raw(
            &app,
            &score_path,
            serde_json::to_vec(&alice.next_payload()).unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let st = status_of(&app, &id).await;
        assert_eq!(
            (
                st["vectors_stored"].clone(),
                st["pool_size"].clone(),
                st["enrolled"].clone()
            ),
            (json!(0), json!(0), json!(true))
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retraining_happens_when_the_pool_fills() {
    let config = MaxidomConfig {
        pool_size: 12,
        // Pool mechanics only: every accepted session is pooled (the guard has its own test).
        pool_min_score: 0.0,
        ..small_quotas()
    };
    for app in apps(config).await {
        let id = new_id();
        enroll(&app, &id, "pw").await;
        let mut alice = SessionGenerator::new(Persona::alice(), 21);
        for _ in 0..60 {
            post_raw(
                &app,
                &format!("/api/train/{id}"),
                serde_json::to_vec(&alice.next_payload()).unwrap(),
            )
            .await;
        }
        wait_for(&app, &id, "the first model", |s| {
            s["model_active"] == json!(true)
        })
        .await;
        let mut accepted = 0;
        while accepted < 12 {
            let (_, text) = post_raw(
                &app,
                &format!("/api/score/{id}"),
                serde_json::to_vec(&alice.next_payload()).unwrap(),
            )
            .await;
            let v: Value = serde_json::from_str(&text).unwrap();
            accepted += usize::from(v["is_anomaly"] == json!(false));
        }
        let st = wait_for(&app, &id, "a retraining", |s| {
            s["model_version"] == json!(2)
        })
        .await;
        assert!(st["last_retrained_at"].as_i64().is_some(), "{st}");
        assert_eq!(
            st["pool_size"],
            json!(0),
            "{}: the pool is emptied: {st}",
            app.label
        );
        // Scoring goes on with the new model.
        let (s, _) = post_raw(
            &app,
            &format!("/api/score/{id}"),
            serde_json::to_vec(&alice.next_payload()).unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mouse_only_profile_is_ready_at_30_retrains_as_it_grows_and_never_pools_without_feedback()
{
    let config = MaxidomConfig {
        feedback: false,
        ..MaxidomConfig::default()
    };
    for app in apps(config).await {
        let l = app.label;
        let id = new_id();
        enroll(&app, &id, "pw").await;
        let mut alice = SessionGenerator::new(Persona::alice(), 41);
        let mouse_only = Shape {
            mouse_points: 150,
            key_events: 0,
        };
        let mut last = Value::Null;
        for _ in 0..30 {
            let (s, body) = post(
                &app,
                &format!("/api/train/{id}"),
                &serde_json::to_value(alice.payload(mouse_only)).unwrap(),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{l}: {body}");
            last = body;
        }
        let progress = &last["progress"];
        assert_eq!(progress["is_ready"], json!(true), "{l}: {last}");
        assert_eq!(
            progress["keyboard_samples"],
            json!({"current": 0, "required": 30}),
            "{l}: typing still needs its own data: {last}"
        );
        wait_for(&app, &id, "the first model", |s| {
            s["model_active"] == json!(true)
        })
        .await;
        for _ in 0..10 {
            let (s, v) = post(
                &app,
                &format!("/api/score/{id}"),
                &serde_json::to_value(alice.payload(mouse_only)).unwrap(),
            )
            .await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(
                v["payload_score"], v["mouse_score"],
                "{l}: the typing model abstains: {v}"
            );
            assert_eq!(
                (v["typing_score"].clone(), v["typing_threshold"].clone()),
                (json!(0.1), json!(0.0))
            );
        }
        assert_eq!(
            status_of(&app, &id).await["pool_size"],
            json!(0),
            "{l}: feedback is off"
        );
        // Twice the data it was trained on: a training on the grown profile.
        for _ in 0..32 {
            post(
                &app,
                &format!("/api/train/{id}"),
                &serde_json::to_value(alice.payload(mouse_only)).unwrap(),
            )
            .await;
        }
        let st = wait_for(&app, &id, "a growth training", |s| {
            s["model_version"] == json!(2) && s["training_in_progress"] == json!(false)
        })
        .await;
        assert_eq!(st["vectors_stored"], json!(62), "{l}: {st}");
        app.stop().await;
    }
}

/// The payload with every time moved so that its first event is at `t0` (a session's clock).
fn at(mut p: Payload, t0: f64) -> Payload {
    let (lo, _) = vigil_biometrics::sequential::event_span(&p).expect("events");
    let dt = t0 - lo;
    p.start_timestamp += dt;
    p.end_timestamp += dt;
    for k in &mut p.key_events {
        k.down_time += dt;
        k.up_time += dt;
    }
    for path in &mut p.mouse_paths {
        for pt in path {
            pt.t += dt;
        }
    }
    for c in &mut p.clicks {
        c.t += dt;
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_accumulates_evidence_and_ends_on_a_backward_clock_a_long_gap_and_a_password() {
    let config = MaxidomConfig {
        feedback: false,
        ..MaxidomConfig::default()
    };
    for app in apps(config).await {
        let l = app.label;
        let id = new_id();
        enroll(&app, &id, "pw").await;
        let mut alice = SessionGenerator::new(Persona::alice(), 43);
        let shape = Shape {
            mouse_points: 150,
            key_events: 0,
        };
        for _ in 0..30 {
            let (s, body) = post(
                &app,
                &format!("/api/train/{id}"),
                &serde_json::to_value(alice.payload(shape)).unwrap(),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{l}: {body}");
        }
        wait_for(&app, &id, "the first model", |s| {
            s["model_active"] == json!(true)
        })
        .await;
        let score = |p: Payload| {
            let app = &app;
            let id = id.clone();
            async move {
                let (s, v) = post(
                    app,
                    &format!("/api/score/{id}"),
                    &serde_json::to_value(p).unwrap(),
                )
                .await;
                assert_eq!(s, StatusCode::OK, "{v}");
                v
            }
        };
        // The owner, payloads 90 s apart: one run; `score` combines them, `payload_score` is each one's own.
        let mut t = 1000.0;
        for n in 1..=4 {
            let v = score(at(alice.payload(shape), t)).await;
            assert_eq!(v["run_payloads"], json!(n), "{l}: {v}");
            if n == 1 {
                assert_eq!(v["score"], v["payload_score"], "{l}: {v}");
            }
            t += 90_000.0;
        }
        // The clock goes backwards (another page): a new run.
        let v = score(at(alice.payload(shape), 500.0)).await;
        assert_eq!(v["run_payloads"], json!(1), "{l}: {v}");
        // A gap longer than the limit: a new run.
        let gap = vigil_biometrics::sequential::RUN_GAP_MS + 100_000.0;
        let v = score(at(alice.payload(shape), gap)).await;
        assert_eq!(v["run_payloads"], json!(1), "{l}: {v}");
        // An impostor sitting down and staying: each payload far from the owner, the run sinks and stays flagged.
        let mut bob = SessionGenerator::new(Persona::bob(), 44);
        let mut t = 3.0 * gap;
        let mut last = f64::INFINITY;
        for n in 1..=5 {
            let v = score(at(bob.payload(shape), t)).await;
            assert_eq!(v["run_payloads"], json!(n), "{l}: {v}");
            assert_eq!(v["is_anomaly"], json!(true), "{l}: {v}");
            let s = v["score"].as_f64().unwrap();
            assert!(s <= last, "{l}: {v}");
            last = s;
            t += 90_000.0;
        }
        // The owner proves themselves: the run ends, the next payload starts anew.
        let (s, v) = post(
            &app,
            &format!("/api/verify_password/{id}"),
            &json!({"password": "pw"}),
        )
        .await;
        assert_eq!((s, v), (StatusCode::OK, json!({"verified": true})), "{l}");
        let v = score(at(alice.payload(shape), t)).await;
        assert_eq!(v["run_payloads"], json!(1), "{l}: {v}");
        assert_eq!(v["score"], v["payload_score"], "{l}: {v}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_get_clear_4xx_and_change_nothing() {
    for app in apps(MaxidomConfig::default()).await {
        let l = app.label;
        let id = new_id();
        enroll(&app, &id, "pw").await;
        let path = format!("/api/train/{id}");
        let good = r#"{"startTimestamp":0,"endTimestamp":1000,"keyEvents":[],"mousePaths":[[]],"clicks":[]}"#;
        let (s, text) = post_raw(&app, &path, good.as_bytes().to_vec()).await;
        assert_eq!(
            s,
            StatusCode::OK,
            "{l}: empty lists and paths are valid: {text}"
        );
        let cases: [(&str, &str); 7] = [
            (
                r#"{"startTimestamp":"0","endTimestamp":1000,"keyEvents":[],"mousePaths":[],"clicks":[]}"#,
                "startTimestamp",
            ),
            (
                r#"{"startTimestamp":0,"keyEvents":[],"mousePaths":[],"clicks":[]}"#,
                "endTimestamp",
            ),
            (
                r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":[{"code":"KeyA","downTime":1}],"mousePaths":[],"clicks":[]}"#,
                "keyEvents[0]",
            ),
            (
                r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":[],"mousePaths":[[{"t":1,"x":null,"y":2}]],"clicks":[]}"#,
                "mousePaths[0][0].x",
            ),
            (
                r#"{"startTimestamp":NaN,"endTimestamp":1,"keyEvents":[],"mousePaths":[],"clicks":[]}"#,
                "invalid payload",
            ),
            (
                r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":{},"mousePaths":[],"clicks":[]}"#,
                "keyEvents",
            ),
            ("", "invalid payload"),
        ];
        for (body, mention) in cases {
            for route in ["train", "score"] {
                let (s, text) = post_raw(
                    &app,
                    &format!("/api/{route}/{id}"),
                    body.as_bytes().to_vec(),
                )
                .await;
                assert_eq!(
                    s,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{l}: {route} {body}: {text}"
                );
                let detail = serde_json::from_str::<Value>(&text).unwrap()["detail"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert!(
                    detail.contains(mention),
                    "{l}: {detail:?} should mention {mention}"
                );
            }
        }
        // A large but valid body (≈ 5 MB of mouse points) is accepted; one over the limit is a 413.
        let mut g = SessionGenerator::new(Persona::bob(), 3);
        let big = serde_json::to_vec(&g.payload(Shape {
            mouse_points: 150_000,
            key_events: 10,
        }))
        .unwrap();
        assert!(big.len() > 4_500_000, "{}", big.len());
        let (s, text) = post_raw(&app, &path, big).await;
        assert_eq!(
            s,
            StatusCode::OK,
            "{l}: {}",
            text.get(..200).unwrap_or(&text)
        );
        let s = post_declared_length(&app, &path, 17 * 1024 * 1024).await;
        assert_eq!(s, 413, "{l}: a body declared over the limit is refused");
        let st = status_of(&app, &id).await;
        assert_eq!(
            st["vectors_stored"],
            json!(2),
            "{l}: only the two valid bodies were stored: {st}"
        );
        // Bad ids on every route.
        let (s, _) = post_raw(&app, "/api/train/ABC", good.as_bytes().to_vec()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let r = app
            .client
            .get(app.url("/api/profile/3F1C2D9E-8A4B-4C5D-9E6F-0A1B2C3D4E5F/status"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let r = app
            .client
            .get(app.url(&format!("/api/profile/{}/status", new_id())))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_train_calls_lose_no_vector_and_train_once() {
    for app in apps(small_quotas()).await {
        let id = new_id();
        enroll(&app, &id, "pw").await;
        let mut alice = SessionGenerator::new(Persona::alice(), 31);
        // Bring the profile just below the total quota, then cross it with 16 concurrent calls.
        for _ in 0..36 {
            post_raw(
                &app,
                &format!("/api/train/{id}"),
                serde_json::to_vec(&alice.next_payload()).unwrap(),
            )
            .await;
        }
        let bodies: Vec<Vec<u8>> = (0..16)
            .map(|_| serde_json::to_vec(&alice.next_payload()).unwrap())
            .collect();
        let calls = bodies.into_iter().map(|b| {
            let (c, url) = (app.client.clone(), app.url(&format!("/api/train/{id}")));
            tokio::spawn(async move {
                c.post(url)
                    .header("content-type", "application/json")
                    .body(b)
                    .send()
                    .await
                    .map(|r| r.status())
            })
        });
        for r in futures_util::future::join_all(calls).await {
            assert_eq!(r.unwrap().unwrap(), StatusCode::OK);
        }
        let st = wait_for(&app, &id, "the first model", |s| {
            s["model_active"] == json!(true)
        })
        .await;
        assert_eq!(st["vectors_stored"], json!(52), "{}: {st}", app.label);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let st = status_of(&app, &id).await;
        assert_eq!(
            st["model_version"],
            json!(1),
            "{}: exactly one training: {st}",
            app.label
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scores_pool_every_accepted_session_and_retrain_once() {
    // Two profiles scored concurrently so batches mix profiles; the pool of each fills mid-burst.
    let config = MaxidomConfig {
        pool_size: 20,
        pool_min_score: 0.0,
        ..small_quotas()
    };
    for app in apps(config).await {
        let ids = [new_id(), new_id()];
        let mut alice = SessionGenerator::new(Persona::alice(), 51);
        for id in &ids {
            enroll(&app, id, "pw").await;
            for _ in 0..45 {
                post_raw(
                    &app,
                    &format!("/api/train/{id}"),
                    serde_json::to_vec(&alice.next_payload()).unwrap(),
                )
                .await;
            }
            wait_for(&app, id, "the first model", |s| {
                s["model_active"] == json!(true)
            })
            .await;
        }
        let calls = (0..48).map(|i| {
            let id = ids[i % 2].clone();
            let (c, url) = (app.client.clone(), app.url(&format!("/api/score/{id}")));
            let body = serde_json::to_vec(&alice.next_payload()).unwrap();
            tokio::spawn(async move {
                let r = c
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                let v: Value = r.json().await.unwrap();
                (id, v["is_anomaly"] == json!(false))
            })
        });
        let mut accepted = [0, 0];
        for r in futures_util::future::join_all(calls).await {
            let (id, ok) = r.unwrap();
            accepted[usize::from(id == ids[1])] += usize::from(ok);
        }
        for (id, accepted) in ids.iter().zip(accepted) {
            let st = if accepted >= 20 {
                // The write that filled the pool took the slot: one retraining, which empties the pool of
                // everything stored before it read it.
                wait_for(&app, id, "the retraining", |s| {
                    s["model_version"] == json!(2) && s["training_in_progress"] == json!(false)
                })
                .await
            } else {
                status_of(&app, id).await
            };
            let (version, pool) = (
                st["model_version"].as_i64().unwrap(),
                st["pool_size"].as_i64().unwrap(),
            );
            let expected_version = if accepted >= 20 { 2 } else { 1 };
            assert_eq!(version, expected_version, "{}: {st}", app.label);
            if version == 1 {
                assert_eq!(
                    pool, accepted as i64,
                    "{}: every accepted session is pooled: {st}",
                    app.label
                );
            } else {
                assert!(pool < accepted as i64, "{}: {st}", app.label);
            }
        }
        app.stop().await;
    }
}

/// Stores a ready profile's profiling data the way `/train` does, but without `/train` (which would start the
/// training itself): what a crashed trainer leaves behind, before its claim.
async fn ready_profile_without_train(app: &TestApp, id: &str) {
    enroll(app, id, "pw").await;
    let mut alice = SessionGenerator::new(Persona::alice(), 5);
    for _ in 0..45 {
        let v = StoredVector::of(&alice.next_payload());
        db::add_vector(
            &app.state.store,
            id,
            &new_id(),
            &v.to_values(),
            kinds_of(&v.contract),
            now_ms(),
        )
        .await
        .expect("store a vector")
        .expect("an enrolled profile");
    }
}

async fn set_claim(app: &TestApp, id: &str, claim: Option<&str>, at: Option<i64>) {
    vigil_store::sqlx::query(
        "UPDATE maxidom_profiles SET training_claim = $2, training_claimed_at = $3 WHERE profile_id = $1",
    )
    .bind(id)
    .bind(claim)
    .bind(at)
    .execute(app.state.store.pool())
    .await
    .expect("set the claim");
}

async fn claim_of(app: &TestApp, id: &str) -> Option<String> {
    db::profile(&app.state.store, id)
        .await
        .expect("profile")
        .expect("exists")
        .training_claim
}

/// Issue #15, item 9: a process killed mid-training leaves its claim, just stamped, and never refreshes it.
/// The claim is respected for one TTL (its owner could be alive), then the recovery sweeper trains the profile:
/// no `/train`, no `/score`, nothing but time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_abandoned_by_a_killed_process_is_redone_one_ttl_later_without_another_train() {
    let ttl_ms = 1_000;
    let config = MaxidomConfig {
        claim_ttl_secs: 1,
        ..small_quotas()
    };
    for app in apps(config).await {
        let l = app.label;
        let id = new_id();
        ready_profile_without_train(&app, &id).await;
        let killed_at = now_ms();
        set_claim(&app, &id, Some("killed-process"), Some(killed_at)).await;
        // While the claim may still be live, a 404 score does not take it over.
        let mut alice = SessionGenerator::new(Persona::alice(), 6);
        let payload = serde_json::to_vec(&alice.next_payload()).unwrap();
        let (s, _) = post_raw(&app, &format!("/api/score/{id}"), payload.clone()).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{l}");
        // Read before the clock: a claim read within the TTL cannot have been taken by then.
        let claim = claim_of(&app, &id).await;
        if now_ms() - killed_at < ttl_ms {
            assert_eq!(claim.as_deref(), Some("killed-process"), "{l}");
        }
        wait_for(&app, &id, "the abandoned training to be redone", |s| {
            s["model_active"] == json!(true)
        })
        .await;
        let recovered_ms = now_ms() - killed_at;
        eprintln!("{l}: model back {recovered_ms} ms after the trainer died (TTL {ttl_ms} ms)");
        assert!(
            recovered_ms >= ttl_ms,
            "{l}: a claim was taken before its TTL"
        );
        assert!(
            recovered_ms < ttl_ms + 3_000,
            "{l}: recovery took {recovered_ms} ms"
        );
        let (s, _) = post_raw(&app, &format!("/api/score/{id}"), payload).await;
        assert_eq!(s, StatusCode::OK, "{l}");
        app.stop().await;
    }
}

/// A ready profile without a model and without a claim (its training failed and gave the claim back): the
/// extension's next score starts the training instead of waiting for another `/train`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_score_for_a_ready_profile_without_a_model_starts_its_training() {
    for app in apps(small_quotas()).await {
        let l = app.label;
        let id = new_id();
        ready_profile_without_train(&app, &id).await;
        set_claim(&app, &id, None, None).await;
        let mut alice = SessionGenerator::new(Persona::alice(), 7);
        let payload = serde_json::to_vec(&alice.next_payload()).unwrap();
        let (s, b) = post_raw(&app, &format!("/api/score/{id}"), payload.clone()).await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::NOT_FOUND, r#"{"detail":"Model not found."}"#),
            "{l}"
        );
        let started = now_ms();
        wait_for(&app, &id, "the training a score started", |s| {
            s["model_active"] == json!(true)
        })
        .await;
        eprintln!("{l}: model {} ms after the 404", now_ms() - started);
        let (s, _) = post_raw(&app, &format!("/api/score/{id}"), payload).await;
        assert_eq!(s, StatusCode::OK, "{l}");
        app.stop().await;
    }
}

/// A retraining whose process died is redone by the sweeper too: the pool is consumed without another score.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_pool_retraining_is_redone_by_the_sweeper() {
    let config = MaxidomConfig {
        claim_ttl_secs: 1,
        pool_size: 1,
        ..small_quotas()
    };
    for app in apps(config).await {
        let l = app.label;
        let id = new_id();
        ready_profile_without_train(&app, &id).await;
        set_claim(&app, &id, None, None).await;
        let mut alice = SessionGenerator::new(Persona::alice(), 8);
        let payload = serde_json::to_vec(&alice.next_payload()).unwrap();
        post_raw(&app, &format!("/api/score/{id}"), payload).await;
        let st = wait_for(&app, &id, "the first model", |s| {
            s["model_active"] == json!(true)
        })
        .await;
        let version = st["model_version"].as_i64().unwrap();
        // A full pool whose retraining's process died.
        vigil_store::sqlx::query(
            "UPDATE maxidom_profiles SET pool_count = 1 WHERE profile_id = $1",
        )
        .bind(&id)
        .execute(app.state.store.pool())
        .await
        .unwrap();
        set_claim(&app, &id, Some("killed-process"), Some(now_ms())).await;
        wait_for(&app, &id, "the abandoned retraining to be redone", |s| {
            s["model_version"].as_i64() == Some(version + 1) && s["pool_size"] == json!(0)
        })
        .await;
        assert_eq!(claim_of(&app, &id).await, None, "{l}");
        app.stop().await;
    }
}

/// A second server process sharing the database, emulated by a second router (own model cache) on the
/// same store.
async fn replica(state: AppState, config: MaxidomConfig) -> SocketAddr {
    let app = vigil_http::app::build(
        state.clone(),
        vigil_maxidom::Maxidom::new(config).router(&state),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { vigil_http::axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_never_score_with_a_model_another_replica_reset() {
    for app in apps(small_quotas()).await {
        let id = new_id();
        enroll(&app, &id, "pw").await;
        let other = replica(app.state.clone(), small_quotas()).await;
        let other_url = |p: &str| format!("http://{other}{p}");
        let mut alice = SessionGenerator::new(Persona::alice(), 41);
        for _ in 0..45 {
            post_raw(
                &app,
                &format!("/api/train/{id}"),
                serde_json::to_vec(&alice.next_payload()).unwrap(),
            )
            .await;
        }
        wait_for(&app, &id, "the first model", |s| {
            s["model_active"] == json!(true)
        })
        .await;
        // The replica loads and caches the model.
        let body = serde_json::to_vec(&alice.next_payload()).unwrap();
        let r = app
            .client
            .post(other_url(&format!("/api/score/{id}")))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // Reset through the first server: the replica must not keep scoring from its cache.
        app.client
            .delete(app.url(&format!("/api/reset_profile/{id}")))
            .send()
            .await
            .unwrap();
        let r = app
            .client
            .post(other_url(&format!("/api/score/{id}")))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{}", app.label);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_and_cors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("update.xml"), "<gupdate/>").unwrap();
    let config = MaxidomConfig {
        static_dir: Some(dir.path().to_owned()),
        ..MaxidomConfig::default()
    };
    for app in apps(config).await {
        // The manifest's `update_url` is `<server>/static/update.xml`; `/api/static/` is kept as well.
        for path in ["/static/update.xml", "/api/static/update.xml"] {
            let r = app.client.get(app.url(path)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()["content-type"], "application/xml", "{path}");
            assert_eq!(r.text().await.unwrap(), "<gupdate/>");
        }
        for missing in [
            "/static/extension.crx",
            "/api/static/extension.crx",
            "/static/..%2Fsecret",
            "/api/static/..%2Fsecret",
            "/static/other.txt",
            "/api/static/other.txt",
        ] {
            let r = app.client.get(app.url(missing)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert!(body["detail"].is_string(), "{missing}: {body}");
        }
        std::fs::write(dir.path().join("extension.crx"), b"Cr24\x03").unwrap();
        let r = app
            .client
            .get(app.url("/static/extension.crx"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["content-type"],
            "application/x-chrome-extension"
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"Cr24\x03");
        std::fs::remove_file(dir.path().join("extension.crx")).unwrap();
        let r = app
            .client
            .request(
                reqwest::Method::OPTIONS,
                app.url(&format!("/api/train/{}", new_id())),
            )
            .header("origin", "chrome-extension://abcdef")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "chrome-extension://abcdef"
        );
        assert_eq!(r.headers()["access-control-allow-credentials"], "true");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scores_store_each_run_before_answering_and_a_replica_continues_it() {
    // Several profiles scored at once, so their run states share the writer's batches (with pool vectors).
    for app in apps(small_quotas()).await {
        let l = app.label;
        let other = replica(app.state.clone(), small_quotas()).await;
        let ids: Vec<String> = (0..4).map(|_| new_id()).collect();
        let mut alice = SessionGenerator::new(Persona::alice(), 61);
        for id in &ids {
            enroll(&app, id, "pw").await;
            for _ in 0..45 {
                post_raw(
                    &app,
                    &format!("/api/train/{id}"),
                    serde_json::to_vec(&alice.next_payload()).unwrap(),
                )
                .await;
            }
            wait_for(&app, id, "the first model", |s| {
                s["model_active"] == json!(true)
            })
            .await;
        }
        let mut t = 1000.0;
        for round in 1..=3 {
            // Rounds alternate between the two servers: each continues the run the other stored.
            let base = if round % 2 == 0 {
                format!("http://{other}")
            } else {
                app.url("")
            };
            let calls = ids.iter().map(|id| {
                let c = app.client.clone();
                let url = format!("{base}/api/score/{id}");
                let body = serde_json::to_vec(&at(alice.next_payload(), t)).unwrap();
                tokio::spawn(async move {
                    let r = c
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::OK);
                    r.json::<Value>().await.unwrap()
                })
            });
            for (id, v) in ids.iter().zip(futures_util::future::join_all(calls).await) {
                let v = v.unwrap();
                assert_eq!(v["run_payloads"], json!(round), "{l}: {v}");
                // Answered means stored: the run is in the database with this payload in it.
                let stored = db::run_state(&app.state.store, id).await.unwrap();
                let run = stored
                    .as_deref()
                    .and_then(vigil_biometrics::sequential::Run::from_bytes)
                    .expect("a stored run state");
                assert!(run.last_event_ms.is_some_and(|e| e >= t), "{l}: {run:?}");
            }
            t += 90_000.0;
        }
        app.stop().await;
    }
}
