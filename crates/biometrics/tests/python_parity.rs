//! The Rust extractor against an independent numpy implementation of the spec
//! (`scripts/maxidom/features.py`), on synthetic sessions of both personas and hand-made edge cases.
//! The fixtures are committed, so this test never runs Python.

use vigil_biometrics::{FEATURE_NAMES, FeatureVector, Payload, extract_features};

const PAYLOADS: &str = include_str!("../../../scripts/maxidom/fixtures/payloads.json");
const PYTHON: &str = include_str!("../../../scripts/maxidom/fixtures/python_features.json");

#[test]
fn features_match_the_independent_python_implementation() {
    let payloads: Vec<Payload> = serde_json::from_str(PAYLOADS).expect("fixture payloads parse");
    let expected: Vec<FeatureVector> =
        serde_json::from_str(PYTHON).expect("fixture features parse");
    assert_eq!(payloads.len(), expected.len());
    assert!(payloads.len() >= 30);
    for (i, (p, want)) in payloads.iter().zip(&expected).enumerate() {
        let got = extract_features(p);
        for (j, (g, w)) in got.iter().zip(want).enumerate() {
            let tol = 1e-9 * (1.0 + w.abs());
            assert!(
                (g - w).abs() <= tol,
                "payload {i}, {}: rust {g}, python {w}",
                FEATURE_NAMES[j]
            );
        }
    }
    // The fixtures exercise every feature somewhere.
    for j in 0..FEATURE_NAMES.len() {
        assert!(
            expected.iter().any(|v| v[j] != 0.0),
            "{} is never non-zero",
            FEATURE_NAMES[j]
        );
    }
}
