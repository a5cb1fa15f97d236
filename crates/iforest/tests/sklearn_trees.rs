//! Identical trees score identically: a forest fitted by scikit-learn (exported array by array
//! by `scripts/iforest/make_fixtures.py`, with feature subsets and a contamination offset) is
//! imported and must reproduce scikit-learn's `score_samples` and `decision_function`.

use std::path::PathBuf;

use serde::Deserialize;
use vigil_iforest::IsolationForest;
use vigil_iforest::sklearn::SklearnTree;

#[derive(Deserialize)]
struct Fixture {
    n_features: usize,
    max_samples: usize,
    offset: f64,
    trees: Vec<SklearnTree>,
    probe: Vec<Vec<f64>>,
    score_samples: Vec<f64>,
    decision_function: Vec<f64>,
}

fn fixture() -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sklearn_trees.json");
    let text = std::fs::read_to_string(path).expect("sklearn_trees.json");
    serde_json::from_str(&text).expect("valid fixture")
}

#[test]
fn imported_scikit_learn_forest_scores_identically() {
    let fx = fixture();
    let f = IsolationForest::from_sklearn(fx.n_features, fx.max_samples, fx.offset, &fx.trees)
        .expect("valid forest");
    assert_eq!(f.n_trees(), 10);
    assert_eq!(f.offset(), fx.offset);
    let flat: Vec<f64> = fx.probe.iter().flatten().copied().collect();
    let batch = f.score_samples_batch(&flat).unwrap();
    for (i, row) in fx.probe.iter().enumerate() {
        // scikit-learn sums (depth + 1) + c(n) − 1 per tree, we sum depth + c(n): the last bits
        // of the sum may differ, nothing more.
        let got = f.score_samples(row);
        assert!(
            (got - fx.score_samples[i]).abs() <= 1e-12,
            "row {i}: {got} vs scikit-learn {}",
            fx.score_samples[i]
        );
        assert_eq!(got.to_bits(), batch[i].to_bits());
        let dec = f.decision_function(row);
        assert!(
            (dec - fx.decision_function[i]).abs() <= 1e-12,
            "row {i}: {dec}"
        );
        let sk_pred = if fx.decision_function[i] < 0.0 { -1 } else { 1 };
        assert_eq!(f.predict(row), sk_pred, "row {i}");
    }
    // And the imported model survives the binary format bit for bit.
    let g = IsolationForest::from_bytes(&f.to_bytes()).unwrap();
    assert_eq!(f, g);
}
