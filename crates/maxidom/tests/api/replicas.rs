//! Several replicas over one database.

use crate::helpers::{apps, at, enroll, new_id, post_raw, small_quotas, wait_for};
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use std::net::SocketAddr;
use vigil_biometrics::synth::Persona;
use vigil_biometrics::synth::SessionGenerator;
use vigil_http::AppState;
use vigil_maxidom::MaxidomConfig;
use vigil_store::maxidom;

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
                let stored = maxidom::run_state(&app.state.store, id).await.unwrap();
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
