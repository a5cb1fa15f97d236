//! Concurrent train and score calls.

use crate::helpers::{apps, enroll, new_id, post_raw, small_quotas, status_of, wait_for};
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use std::time::Duration;
use vigil_biometrics::synth::Persona;
use vigil_biometrics::synth::SessionGenerator;
use vigil_maxidom::MaxidomConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_train_calls_lose_no_vector_and_train_once() {
    for app in apps(small_quotas()).await {
        let id = new_id();
        enroll(&app, &id, "pw").await;
        let mut alice = SessionGenerator::new(Persona::alice(), 31);
        // Bring the profile just below the total quota, then cross it with 12 concurrent calls: 48 vectors stay
        // below the first growth step (a model on ≥ 40 vectors grows at ≥ 50), so one training and only one.
        for _ in 0..36 {
            post_raw(
                &app,
                &format!("/api/train/{id}"),
                serde_json::to_vec(&alice.next_payload()).unwrap(),
            )
            .await;
        }
        let bodies: Vec<Vec<u8>> = (0..12)
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
        assert_eq!(st["vectors_stored"], json!(48), "{}: {st}", app.label);
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
