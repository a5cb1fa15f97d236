//! `/api/score`: sequential evidence runs.

use crate::helpers::{new_id, apps, enroll, wait_for};
use reqwest::StatusCode;
use serde_json::json;
use vigil_biometrics::synth::Persona;
use vigil_biometrics::synth::SessionGenerator;
use vigil_biometrics::synth::Shape;
use vigil_biometrics::Payload;
use vigil_maxidom::MaxidomConfig;

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
            let (s, body) = app.api().post(&format!("/api/train/{id}"), &serde_json::to_value(alice.payload(shape)).unwrap())
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
                let (s, v) = app.api().post(&format!("/api/score/{id}"), &serde_json::to_value(p).unwrap())
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
        let (s, v) = app.api().post(&format!("/api/verify_password/{id}"), &json!({"password": "pw"}))
        .await;
        assert_eq!((s, v), (StatusCode::OK, json!({"verified": true})), "{l}");
        let v = score(at(alice.payload(shape), t)).await;
        assert_eq!(v["run_payloads"], json!(1), "{l}: {v}");
        assert_eq!(v["score"], v["payload_score"], "{l}: {v}");
        app.stop().await;
    }
}
