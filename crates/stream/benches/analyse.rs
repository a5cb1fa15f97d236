//! Throughput of `StreamState::analyse` with the default configuration (window 50, 2-D embedding, H2), and
//! where the time goes: the whole step versus embedding + homology alone versus the model alone.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vigil_stream::bench_data::{Attack, Base, generate};
use vigil_stream::window::{embed, topology};
use vigil_stream::{Event, StreamConfig, StreamState};

fn warmed_state(cfg: &StreamConfig) -> (StreamState, Vec<Event>) {
    let s = generate(Base::Seasonal, Some(Attack::Beaconing), 1);
    let events = s.events();
    let mut state = StreamState::new(&s.name);
    // Past calibration so every measured event is a full, scored analysis.
    for e in &events[..200] {
        let _ = state.analyse(e, cfg);
    }
    (state, events)
}

fn bench(c: &mut Criterion) {
    let cfg = StreamConfig::default();
    let (state, events) = warmed_state(&cfg);
    let tail = &events[200..];

    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Elements(1));
    g.bench_function("analyse_default_scored", |b| {
        let mut st = state.clone();
        let mut i = 0;
        b.iter(|| {
            let e = &tail[i % tail.len()];
            i += 1;
            black_box(st.analyse(e, &cfg).ok());
        })
    });
    g.bench_function("analyse_default_to_json", |b| {
        let mut st = state.clone();
        let mut i = 0;
        b.iter(|| {
            let e = &tail[i % tail.len()];
            i += 1;
            let a = st.analyse(e, &cfg).ok();
            black_box(serde_json::to_vec(&a).ok());
        })
    });
    // The shape detector's nearest-shape scan over a full memory (4,000 shapes of 20 values, k = 3): the blocked
    // scan the detector runs against the one-at-a-time reference, on the generated stream's values and on white
    // noise (the worst case for abandoning early: every shape is about equally far).
    let stream: Vec<f64> = events
        .iter()
        .map(|e| e.value)
        .cycle()
        .take(4000 + 2 * 20 - 1)
        .collect();
    let mut r = vigil_stream::bench_data::SplitMix::new(5);
    let noise: Vec<f64> = (0..stream.len()).map(|_| r.normal()).collect();
    type Scan = fn(&[f64], &[f64], usize) -> Vec<f64>;
    let scans: [(&str, Scan); 2] = [
        ("reference", vigil_stream::detector::nearest_sq_reference),
        ("blocked", vigil_stream::detector::nearest_sq),
    ];
    for (data, memory) in [("stream", &stream), ("noise", &noise)] {
        let (flat, cur) = memory.split_at(memory.len() - 20);
        for (name, scan) in scans {
            g.bench_function(format!("knn_scan_{data}_{name}"), |b| {
                b.iter(|| black_box(scan(black_box(flat), cur, 3)))
            });
        }
    }
    let values: Vec<f64> = events[150..200].iter().map(|e| e.value).collect();
    g.bench_function("embed_and_homology_only", |b| {
        let mut coords = Vec::new();
        b.iter(|| {
            embed(black_box(&values), 2, 1, 10.0, 2.0, &mut coords);
            black_box(topology(&coords, &cfg).ok());
        })
    });
    let h1 = StreamConfig {
        max_homology_dim: 1,
        ..StreamConfig::default()
    };
    g.bench_function("embed_and_homology_h1_only", |b| {
        let mut coords = Vec::new();
        b.iter(|| {
            embed(black_box(&values), 2, 1, 10.0, 2.0, &mut coords);
            black_box(topology(&coords, &h1).ok());
        })
    });
    g.bench_function("state_to_json", |b| {
        b.iter(|| black_box(state.to_json().ok()))
    });
    // What a checkpoint serialises after one event: the core and the ring segments that event changed (the model
    // is unchanged since it was stored).
    let mut stored = state.clone();
    stored.mark_stored();
    let _ = stored.analyse(&tail[0], &cfg);
    g.bench_function("state_checkpoint_core", |b| {
        b.iter(|| black_box(stored.to_parts_after(Some(stored.refits())).ok()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
