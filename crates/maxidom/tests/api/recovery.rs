//! Trainings abandoned by a killed process are redone.

use crate::helpers::{apps, enroll, new_id, post_raw, small_quotas, wait_for};
use reqwest::StatusCode;
use serde_json::json;
use vigil_biometrics::StoredVector;
use vigil_biometrics::synth::Persona;
use vigil_biometrics::synth::SessionGenerator;
use vigil_http::testing::TestApp;
use vigil_maxidom::MaxidomConfig;
use vigil_maxidom::service::kinds_of;
use vigil_store::maxidom;
use vigil_store::time::now_ms;

async fn claim_of(app: &TestApp, id: &str) -> Option<String> {
    maxidom::profile(&app.state.store, id)
        .await
        .expect("profile")
        .expect("exists")
        .training_claim
}

async fn set_claim(app: &TestApp, id: &str, claim: Option<&str>, at: Option<i64>) {
    vigil_store::testing::set_training_claim(&app.state.store, id, claim, at).await;
}

/// Stores a ready profile's profiling data the way `/train` does, but without `/train` (which would start the
/// training itself): what a crashed trainer leaves behind, before its claim.
async fn ready_profile_without_train(app: &TestApp, id: &str) {
    enroll(app, id, "pw").await;
    let mut alice = SessionGenerator::new(Persona::alice(), 5);
    for _ in 0..45 {
        let v = StoredVector::of(&alice.next_payload());
        maxidom::add_vector(
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
        vigil_store::testing::set_pool_count(&app.state.store, &id, 1).await;
        set_claim(&app, &id, Some("killed-process"), Some(now_ms())).await;
        wait_for(&app, &id, "the abandoned retraining to be redone", |s| {
            s["model_version"].as_i64() == Some(version + 1) && s["pool_size"] == json!(0)
        })
        .await;
        assert_eq!(claim_of(&app, &id).await, None, "{l}");
        app.stop().await;
    }
}
