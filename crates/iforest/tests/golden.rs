//! Reproducibility across machines and releases: a model fitted from a committed data set and
//! seed must be byte-identical to the committed `golden_v1.bin`, and that file must keep
//! loading. A deliberate change to the fitting algorithm or the RNG breaks the first check (that
//! is the point: stored models and recorded scores would silently change meaning); a change to
//! the format must bump `FORMAT_VERSION` and keep or migrate this file.
//!
//! To re-bless after a deliberate change: `VIGIL_IFOREST_BLESS=1 cargo test -p vigil-iforest --test golden`.

use std::path::PathBuf;

use vigil_iforest::{Contamination, IsolationForest, MaxSamples, Params, csv};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fit_golden() -> (IsolationForest, Vec<f64>) {
    let m = csv::read_matrix_path(&path("blobs.csv")).expect("blobs.csv");
    let d = m.n_cols - 1;
    let x: Vec<f64> = m
        .data
        .chunks_exact(m.n_cols)
        .flat_map(|r| r[..d].to_vec())
        .collect();
    let p = Params {
        n_estimators: 25,
        max_samples: MaxSamples::Count(128),
        contamination: Contamination::Fraction(0.05),
        seed: 20_261_121,
        ..Params::default()
    };
    (IsolationForest::fit_matrix(&x, d, &p).expect("fit"), x)
}

#[test]
fn fitting_reproduces_the_committed_model_byte_for_byte() {
    let (f, x) = fit_golden();
    let bytes = f.to_bytes();
    let golden = path("golden_v1.bin");
    if std::env::var_os("VIGIL_IFOREST_BLESS").is_some() {
        std::fs::write(&golden, &bytes).expect("write golden");
    }
    let committed = std::fs::read(&golden).expect("golden_v1.bin");
    let loaded = IsolationForest::from_bytes(&committed).expect("the v1 model loads");
    assert_eq!(loaded.n_trees(), 25);
    assert_eq!(loaded.max_samples(), 128);
    // Loading is lossless: same scores as the freshly fitted model, bit for bit.
    let a = f.score_samples_batch(&x).unwrap();
    let b = loaded.score_samples_batch(&x).unwrap();
    assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
    assert!(
        bytes == committed,
        "the fitted model differs from tests/fixtures/golden_v1.bin: fitting is no longer reproducible"
    );
}
