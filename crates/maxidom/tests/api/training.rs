//! `/api/train`: readiness quotas, the first model, pool retraining.

use crate::helpers::{apps, enroll, new_id, post_raw, small_quotas, status_of, wait_for};
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use vigil_biometrics::Payload;
use vigil_biometrics::extract_features;
use vigil_biometrics::lifecycle::Counts;
use vigil_biometrics::synth::Persona;
use vigil_biometrics::synth::SessionGenerator;
use vigil_biometrics::synth::Shape;
use vigil_http::testing::TestApp;
use vigil_maxidom::MaxidomConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_becomes_ready_exactly_at_the_quotas_trains_once_and_scores() {
    for app in apps(MaxidomConfig::default()).await {
        let id = new_id();
        let score_path = format!("/api/score/{id}");
        let train_path = format!("/api/train/{id}");
        let mut alice = SessionGenerator::new(Persona::alice(), 11);
        until_the_first_model(&app, &id, &score_path, &train_path, &mut alice).await;
        owner_and_other(&app, &id, &score_path, &mut alice).await;
        abstention_and_reset(&app, &id, &score_path, &mut alice).await;
        app.stop().await;
    }
}

/// Sessions up to the quotas answer byte-identically to the reference; the first model follows at the total quota.
async fn until_the_first_model(
    app: &TestApp,
    id: &str,
    score_path: &str,
    train_path: &str,
    alice: &mut SessionGenerator,
) {
    let l = app.label;
    let (s, b) = post_raw(
        app,
        score_path,
        serde_json::to_vec(&alice.next_payload()).unwrap(),
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::NOT_FOUND, r#"{"detail":"Model not found."}"#),
        "{l}"
    );
    let (s, _) = post_raw(
        app,
        train_path,
        serde_json::to_vec(&alice.next_payload()).unwrap(),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "{l}: training needs an enrolled profile"
    );
    enroll(app, id, "pw").await;

    let quotas = MaxidomConfig::default().quotas();
    let mut counts = Counts::default();
    let mut became_ready = None;
    for i in 1..=40u64 {
        let p = alice.next_payload();
        counts.add(&extract_features(&p));
        let (s, text) = post_raw(app, train_path, serde_json::to_vec(&p).unwrap()).await;
        assert_eq!(s, StatusCode::OK, "{l}: {text}");
        let want = serde_json::to_string(&vigil_biometrics::TrainResponse::new(
            id.to_owned(),
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
    let st = wait_for(app, id, "the first model", |s| {
        s["model_active"] == json!(true)
    })
    .await;
    assert_eq!(
        st["model_version"],
        json!(1),
        "{l}: trained exactly once: {st}"
    );
    assert_eq!(st["vectors_stored"], json!(40));
}

/// The owner mostly passes, a different user is flagged.
async fn owner_and_other(app: &TestApp, id: &str, score_path: &str, alice: &mut SessionGenerator) {
    let l = app.label;
    // The owner mostly passes, a different user is flagged.
    let shape = Shape {
        mouse_points: 200,
        key_events: 30,
    };
    let mut own_flags = 0;
    let mut typical = 0;
    for _ in 0..20 {
        let (s, text) = post_raw(
            app,
            score_path,
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
            app,
            score_path,
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
    let st = status_of(app, id).await;
    assert_eq!(
        st["pool_size"],
        json!(typical),
        "{l}: typical accepted sessions (payload_score ≥ 0.5, run not flagged) join the pool: {st}"
    );
}

/// Abstention on too few points and keys; a reset drops the model and training starts over.
async fn abstention_and_reset(
    app: &TestApp,
    id: &str,
    score_path: &str,
    alice: &mut SessionGenerator,
) {
    let l = app.label;
    // Abstention: too few points and keys.
    let tiny = Payload {
        start_timestamp: 0.0,
        end_timestamp: 1000.0,
        key_events: vec![],
        mouse_paths: vec![],
        clicks: vec![],
    };
    let (_, text) = post_raw(app, score_path, serde_json::to_vec(&tiny).unwrap()).await;
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
        app,
        score_path,
        serde_json::to_vec(&alice.next_payload()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let st = status_of(app, id).await;
    assert_eq!(
        (
            st["vectors_stored"].clone(),
            st["pool_size"].clone(),
            st["enrolled"].clone()
        ),
        (json!(0), json!(0), json!(true))
    );
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
        // Ready at 40; 45 stay below the first growth training (at 40 + 10), so the next model is the retraining's.
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
            let (s, body) = app
                .api()
                .post(
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
            let (s, v) = app
                .api()
                .post(
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
        // A quarter more than it was trained on (30 + 7): a training on the grown profile, and not before.
        for n in 31..=37 {
            app.api()
                .post(
                    &format!("/api/train/{id}"),
                    &serde_json::to_value(alice.payload(mouse_only)).unwrap(),
                )
                .await;
            if n == 36 {
                let st = status_of(&app, &id).await;
                assert_eq!(
                    (
                        st["model_version"].clone(),
                        st["training_in_progress"].clone()
                    ),
                    (json!(1), json!(false)),
                    "{l}: 36 vectors are not yet a quarter more: {st}"
                );
            }
        }
        let st = wait_for(&app, &id, "a growth training", |s| {
            s["model_version"] == json!(2) && s["training_in_progress"] == json!(false)
        })
        .await;
        assert_eq!(st["vectors_stored"], json!(37), "{l}: {st}");
        app.stop().await;
    }
}
