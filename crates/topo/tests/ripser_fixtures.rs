//! Barcodes must equal Ripser's (via the `ripser` PyPI package, `scripts/tda/make_fixtures.py`) on the shared
//! example files and on seeded random clouds: the same multiset of intervals, values equal up to f32 rounding.

use std::path::PathBuf;

use serde_json::Value;
use vigil_topo::{Barcodes, DistanceMatrix, RipsParams, RipsWorkspace, io, rips};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The shared data folder when this checkout has it, else the committed copies.
fn data_file(name: &str) -> PathBuf {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/tda")
        .join(name);
    if shared.exists() {
        shared
    } else {
        fixtures_dir().join(name)
    }
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures_dir().join("expected.json"))
        .expect("expected.json is committed");
    serde_json::from_str::<Vec<Value>>(&text).expect("expected.json parses")
}

fn expected_of(case: &Value) -> Vec<Vec<(f64, f64)>> {
    case["dgms"]
        .as_array()
        .expect("dgms is an array")
        .iter()
        .map(|d| {
            d.as_array()
                .expect("a diagram is an array")
                .iter()
                .map(|bar| {
                    (
                        bar[0].as_f64().expect("birth is a number"),
                        bar[1].as_f64().unwrap_or(f64::INFINITY),
                    )
                })
                .collect()
        })
        .collect()
}

fn params_of(case: &Value) -> RipsParams {
    RipsParams {
        max_dim: case["maxdim"].as_u64().expect("maxdim") as usize,
        threshold: case["thresh"].as_f64(),
        modulus: case["coeff"].as_u64().expect("coeff") as u32,
    }
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1.0)
}

/// Same multiset: both sorted by (birth, death) and compared pairwise with a rounding tolerance.
fn assert_same(name: &str, got: &Barcodes, expected: &[Vec<(f64, f64)>]) {
    assert_eq!(
        got.dims.len(),
        expected.len(),
        "{name}: number of dimensions"
    );
    for (k, (g, e)) in got.dims.iter().zip(expected).enumerate() {
        let mut g: Vec<(f64, f64)> = g.iter().map(|b| (b.birth, b.death)).collect();
        let mut e = e.clone();
        g.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        e.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        assert_eq!(
            g.len(),
            e.len(),
            "{name}: H{k} has {} bars, Ripser {}:\n{g:?}\n{e:?}",
            g.len(),
            e.len()
        );
        for (x, y) in g.iter().zip(&e) {
            assert!(
                close(x.0, y.0) && close(x.1, y.1),
                "{name}: H{k} bar {x:?} vs Ripser {y:?}"
            );
        }
    }
}

fn matrix_of(case: &Value) -> DistanceMatrix {
    let format: io::Format = case["format"]
        .as_str()
        .expect("format")
        .parse()
        .expect("a known format");
    if let Some(file) = case["input"].as_str() {
        let text = std::fs::read_to_string(data_file(file)).expect("input file");
        io::parse(&text, format).expect("input parses")
    } else {
        let rows = case["points"].as_array().expect("points");
        let dim = rows
            .first()
            .map_or(0, |r| r.as_array().expect("a point").len());
        let coords: Vec<f64> = rows
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .expect("a point")
                    .iter()
                    .map(|x| x.as_f64().expect("a coordinate"))
            })
            .collect();
        DistanceMatrix::from_points(&coords, dim).expect("valid points")
    }
}

#[test]
fn small_data_files_match_ripser() {
    for case in cases().iter().filter(|c| c["input"].is_string()) {
        let name = case["name"].as_str().unwrap();
        if name.starts_with("o3_1024") || name.starts_with("sphere_3_192") {
            continue;
        }
        assert_same(
            name,
            &rips(&matrix_of(case), &params_of(case)).unwrap(),
            &expected_of(case),
        );
    }
}

#[test]
fn sphere_3_192_matches_ripser() {
    let case = cases()
        .into_iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("sphere_3_192"))
        .unwrap();
    assert_same(
        "sphere_3_192",
        &rips(&matrix_of(&case), &params_of(&case)).unwrap(),
        &expected_of(&case),
    );
}

#[test]
fn o3_1024_matches_ripser() {
    let case = cases()
        .into_iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("o3_1024"))
        .unwrap();
    assert_same(
        "o3_1024",
        &rips(&matrix_of(&case), &params_of(&case)).unwrap(),
        &expected_of(&case),
    );
}

#[test]
fn random_clouds_match_ripser() {
    let mut ws = RipsWorkspace::new();
    let mut count = 0;
    for case in cases().iter().filter(|c| c["points"].is_array()) {
        let name = case["name"].as_str().unwrap();
        let dm = matrix_of(case);
        let params = params_of(case);
        assert_same(name, &rips(&dm, &params).unwrap(), &expected_of(case));
        // The reusable workspace (buffers left over from a different-sized previous case) agrees too.
        assert_same(
            name,
            &ws.compute_matrix(&dm, &params).unwrap(),
            &expected_of(case),
        );
        count += 1;
    }
    assert!(count >= 40, "only {count} random cases");
}
