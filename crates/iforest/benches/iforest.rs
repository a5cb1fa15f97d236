//! The three performance cases of the Isolation Forest issue, plus model loading.
//!
//! Data: `IFOREST_BENCH_DIR` (default /tmp/vigil-iforest-bench) holding train.csv (300×10) and
//! test.csv (100,000×10) as written by `scripts/iforest/bench_compare.py`, so the numbers are
//! comparable with scikit-learn's and isotree's on the same rows. Without those files the bench
//! generates its own Gaussian data (and says so).
//!
//!     python3 scripts/iforest/bench_compare.py            # writes the data (once)
//!     IFOREST_BENCH_DIR=/tmp/vigil-iforest-bench cargo bench -p vigil-iforest --bench iforest \
//!       && python3 scripts/iforest/bench_compare.py --criterion $CARGO_TARGET_DIR/criterion

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use vigil_iforest::{Contamination, IsolationForest, Parallelism, Params, csv};

/// Box–Muller normals from a 64-bit LCG: only a fallback when the shared files are missing.
fn gaussian(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| (-2.0 * next().ln()).sqrt() * (std::f64::consts::TAU * next()).cos())
        .collect()
}

fn load() -> (Vec<f64>, Vec<f64>) {
    let dir = PathBuf::from(
        std::env::var("IFOREST_BENCH_DIR").unwrap_or_else(|_| "/tmp/vigil-iforest-bench".into()),
    );
    match (
        csv::read_matrix_path(&dir.join("train.csv")),
        csv::read_matrix_path(&dir.join("test.csv")),
    ) {
        (Ok(train), Ok(test)) if train.n_cols == 10 && test.n_cols == 10 => {
            eprintln!("bench data: {}", dir.display());
            (train.data, test.data)
        }
        _ => {
            eprintln!("bench data: generated (run scripts/iforest/bench_compare.py to share data)");
            (gaussian(300 * 10, 1), gaussian(100_000 * 10, 2))
        }
    }
}

fn benches(c: &mut Criterion) {
    let (train, test) = load();
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("thread pool");
    let params = Params::default();

    c.bench_function("fit 100 trees 300x10 (2 threads)", |b| {
        b.iter(|| two.install(|| IsolationForest::fit_matrix(black_box(&train), 10, &params)))
    });
    let maxidom = Params {
        contamination: Contamination::Fraction(0.01),
        ..Params::default()
    };
    c.bench_function("fit 100 trees 300x10 contamination 0.01 (2 threads)", |b| {
        b.iter(|| two.install(|| IsolationForest::fit_matrix(black_box(&train), 10, &maxidom)))
    });
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("thread pool");
    c.bench_function("fit 100 trees 300x10 (1 thread)", |b| {
        b.iter(|| one.install(|| IsolationForest::fit_matrix(black_box(&train), 10, &params)))
    });

    // A stream's refit (100 windows, 6 projected features): small enough that handing the trees to
    // the pool costs more than it saves, which is why the stream analysis grows them on its own thread.
    let windows = gaussian(100 * 6, 3);
    let refit = Params {
        contamination: Contamination::Fraction(0.1),
        ..Params::default()
    };
    c.bench_function("fit 100 trees 100x6 (2-thread pool)", |b| {
        b.iter(|| {
            two.install(|| {
                IsolationForest::fit_matrix_with(black_box(&windows), 6, &refit, Parallelism::Rayon)
            })
        })
    });
    c.bench_function("fit 100 trees 100x6 (calling thread)", |b| {
        b.iter(|| {
            IsolationForest::fit_matrix_with(
                black_box(&windows),
                6,
                &refit,
                Parallelism::CallingThread,
            )
        })
    });

    let forest = match IsolationForest::fit_matrix(&train, 10, &params) {
        Ok(f) => f,
        Err(e) => panic!("fit failed: {e}"),
    };
    let row = &test[..10];
    c.bench_function("score one vector", |b| {
        b.iter(|| forest.score_samples(black_box(row)))
    });

    let mut group = c.benchmark_group("batch");
    group.sample_size(20);
    group.bench_function("score 100000x10 (2 threads)", |b| {
        b.iter(|| two.install(|| forest.score_samples_batch(black_box(&test))))
    });
    group.bench_function("score 100000x10 (1 thread)", |b| {
        b.iter(|| one.install(|| forest.score_samples_batch(black_box(&test))))
    });
    group.finish();

    let bytes = forest.to_bytes();
    eprintln!(
        "model: {} trees, {} nodes, {} bytes serialised",
        forest.n_trees(),
        forest.n_nodes(),
        bytes.len()
    );
    c.bench_function("from_bytes (load a model)", |b| {
        b.iter(|| IsolationForest::from_bytes(black_box(&bytes)))
    });
    c.bench_function("to_bytes", |b| b.iter(|| black_box(&forest).to_bytes()));
}

criterion_group! {
    name = iforest;
    // Short windows: the machine is shared and noisy; medians over many samples are what we quote.
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(iforest);
