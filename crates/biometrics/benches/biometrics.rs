//! Feature extraction on the ~42 KB load payload, and training both models for a 300-vector profile
//! (goal: < 20 ms; the reference's scikit-learn path took 225 ms).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vigil_biometrics::model::{Detector, Parallelism, StoredVector, TrainParams, train_models};
use vigil_biometrics::synth::{Persona, SessionGenerator, load_payload};
use vigil_biometrics::{Payload, extract_features, extract_rich};

fn features(c: &mut Criterion) {
    let payload = load_payload(Persona::alice(), 1);
    let body = serde_json::to_vec(&payload).unwrap_or_default();
    println!(
        "load payload: {} bytes, {} mouse points in {} paths, {} keys, {} clicks",
        body.len(),
        payload.mouse_point_count(),
        payload.mouse_paths.len(),
        payload.key_events.len(),
        payload.clicks.len()
    );
    c.bench_function("extract_features/42KB", |b| {
        b.iter(|| extract_features(black_box(&payload)))
    });
    c.bench_function("Payload::from_json/42KB", |b| {
        b.iter(|| Payload::from_json(black_box(&body)))
    });
    // The serde path alone, which `from_json` falls back to for bodies outside the common shape.
    c.bench_function("serde_json::from_slice::<Payload>/42KB", |b| {
        b.iter(|| serde_json::from_slice::<Payload>(black_box(&body)))
    });
    c.bench_function("extract_rich/42KB", |b| {
        b.iter(|| extract_rich(black_box(&payload)))
    });
    c.bench_function("parse+extract/42KB", |b| {
        b.iter(|| Payload::from_json(black_box(&body)).map(|p| extract_features(&p)))
    });
    // The same request work without the fast path (what `fastjson`'s module doc compares against).
    c.bench_function("serde_parse+extract/42KB", |b| {
        b.iter(|| serde_json::from_slice::<Payload>(black_box(&body)).map(|p| extract_features(&p)))
    });
}

fn training(c: &mut Criterion) {
    let mut g = SessionGenerator::new(Persona::alice(), 7);
    let vectors: Vec<StoredVector> = (0..300)
        .map(|_| StoredVector::of(&g.next_payload()))
        .collect();
    let params = TrainParams::default();
    let mut group = c.benchmark_group("train_models");
    group.sample_size(30);
    group.bench_function("300_vectors_both_models", |b| {
        b.iter(|| train_models(black_box(&vectors), &params, 300, 0, 1))
    });
    // How the server trains: one thread per profile, so a retraining leaves the other cores to requests.
    let one_thread = TrainParams {
        parallelism: Parallelism::CallingThread,
        ..TrainParams::default()
    };
    group.bench_function("300_vectors_both_models_calling_thread", |b| {
        b.iter(|| train_models(black_box(&vectors), &one_thread, 300, 0, 1))
    });
    // A pool retraining: the newest 300 profiling vectors plus the newest 300 pooled ones.
    let retraining: Vec<StoredVector> = (0..600)
        .map(|_| StoredVector::of(&g.next_payload()))
        .collect();
    group.bench_function("600_vectors_both_models_calling_thread", |b| {
        b.iter(|| train_models(black_box(&retraining), &one_thread, 600, 0, 1))
    });
    group.finish();
    let models = train_models(&vectors, &params, 300, 0, 1);
    if let Ok(models) = models {
        let payload = load_payload(Persona::alice(), 2);
        c.bench_function("score_payload/42KB", |b| {
            b.iter(|| models.score_payload(black_box(&payload)))
        });
        // What the size-conditional calibration adds to a score: the mouse p-value against the rows nearest in
        // size (`SizeCalibration`) versus against all rows.
        if let Some(Detector::Knn(m)) = &models.mouse {
            let d = m.loo[m.loo.len() / 2];
            let points = payload.mouse_point_count();
            c.bench_function("mouse_p_value/all_rows", |b| {
                b.iter(|| m.p_value(black_box(d)))
            });
            c.bench_function("mouse_p_value/size_conditional", |b| {
                b.iter(|| m.p_value_for_size(black_box(d), black_box(points)))
            });
        }
        let bytes = models.to_bytes();
        println!("model blob: {} bytes", bytes.len());
        c.bench_function("ProfileModels::from_bytes", |b| {
            b.iter(|| vigil_biometrics::ProfileModels::from_bytes(black_box(&bytes)))
        });
    }
}

criterion_group!(benches, features, training);
criterion_main!(benches);
