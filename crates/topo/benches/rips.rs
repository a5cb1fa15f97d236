//! The four benchmark cases of issue 3, single-threaded. Compare with `scripts/tda/bench_compare.py`, which times
//! ripser.py and giotto-ph (n_threads=1) on the same inputs (the generated clouds are committed in
//! `benches/data/`, written once from one seed by that script).
//!
//! `cargo bench -p vigil-topo --bench rips` (add `-- <filter>` for one case).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vigil_topo::{DistanceMatrix, RipsParams, RipsWorkspace, io, rips, rips_points};

fn data(name: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../../../shared/data/tda").join(name);
    let path = if shared.exists() {
        shared
    } else {
        root.join("tests/fixtures").join(name)
    };
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cloud(name: &str) -> (Vec<f64>, usize) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("benches/data").join(name)).expect("bench cloud");
    io::parse_point_cloud(&text).expect("bench cloud parses")
}

fn large(c: &mut Criterion) {
    let mut g = c.benchmark_group("large");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    let sphere: DistanceMatrix = io::parse(
        &data("sphere_3_192.lower_distance_matrix"),
        io::Format::LowerDistance,
    )
    .expect("sphere parses");
    g.bench_function("sphere_3_192_dim2", |b| {
        b.iter(|| {
            rips(
                black_box(&sphere),
                &RipsParams {
                    max_dim: 2,
                    ..RipsParams::default()
                },
            )
        })
    });
    let (o3, dim) = io::parse_point_cloud(&data("o3_1024.txt")).expect("o3 parses");
    g.bench_function("o3_1024_dim3_thr1.8", |b| {
        b.iter(|| {
            rips_points(
                black_box(&o3),
                dim,
                &RipsParams {
                    max_dim: 3,
                    threshold: Some(1.8),
                    modulus: 2,
                },
            )
        })
    });
    g.finish();
}

fn small(c: &mut Criterion) {
    let mut g = c.benchmark_group("small");
    let params = RipsParams {
        max_dim: 2,
        ..RipsParams::default()
    };
    for (name, file) in [
        ("planar_50_dim2", "planar_50.txt"),
        ("cloud3d_100_dim2", "cloud3d_100.txt"),
    ] {
        let (coords, dim) = cloud(file);
        // One-shot API, as ripser.py is called.
        g.bench_function(format!("{name}/rips_points"), |b| {
            b.iter(|| rips_points(black_box(&coords), dim, &params))
        });
        // The stream pipeline's path: one workspace reused across windows.
        let mut ws = RipsWorkspace::new();
        let mut out = vigil_topo::Barcodes::default();
        g.bench_function(format!("{name}/workspace"), |b| {
            b.iter(|| ws.compute_into(black_box(&coords), dim, &params, &mut out))
        });
    }
    g.finish();
}

criterion_group!(benches, small, large);
criterion_main!(benches);
