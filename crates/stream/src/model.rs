//! A stream's Isolation Forest and the normalisation of its scores.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vigil_iforest::{Contamination, IsolationForest, MaxSamples, Parallelism, Params};

use crate::error::StreamError;
use crate::stats::mean_std;
use crate::window::{N_FEATURES, feat};

/// The window features the forest sees. The Betti counts are left out: they are small integers that
/// jitter by one from window to window, and every split spent on them is a split not spent on the
/// continuous features that carry the deviation.
pub const ML_FEATURES: [usize; 6] = [
    feat::LIFE_H0,
    feat::LIFE_H1,
    feat::ENTROPY,
    feat::TOTAL_LIFETIME,
    feat::MEAN_DEV,
    feat::LOG_STD_RATIO,
];

fn project(row: &[f64; N_FEATURES]) -> [f64; ML_FEATURES.len()] {
    ML_FEATURES.map(|j| row[j])
}

/// Smallest spread of training anomaly scores used to normalise. Isolation Forest scores of a tight
/// training set can have a spread near zero; without a floor every tiny score change would be "many σ".
const SPREAD_FLOOR: f64 = 0.02;

/// The model: a fitted forest plus the mean and spread of its anomaly scores (−`score_samples`, higher
/// is more abnormal) on its own training windows, so a window's score can be read as a deviation in σ.
#[derive(Debug, Clone)]
pub struct Model {
    pub forest: IsolationForest,
    pub mean: f64,
    pub spread: f64,
}

impl Model {
    /// Fits a forest (contamination 0.1 as the contract says; ψ auto) on `rows`.
    pub fn fit(rows: &[[f64; N_FEATURES]], trees: usize, seed: u64) -> Result<Self, StreamError> {
        let rows: Vec<Vec<f64>> = rows.iter().map(|r| project(r).to_vec()).collect();
        let params = Params {
            n_estimators: trees,
            max_samples: MaxSamples::Auto,
            max_features: 1.0,
            bootstrap: false,
            contamination: Contamination::Fraction(0.1),
            seed,
        };
        // On the calling thread: streams are analysed in parallel already, and a refit happens inside
        // some event's analysis, whose thread (and priority) should do the work rather than rayon's pool.
        let forest = IsolationForest::fit_with(&rows, &params, Parallelism::CallingThread)
            .map_err(|e| StreamError::Model(e.to_string()))?;
        let scores: Vec<f64> = rows
            .iter()
            .map(|r| -forest.score_samples(r))
            .filter(|s| s.is_finite())
            .collect();
        let (mean, std) = mean_std(&scores);
        Ok(Self {
            forest,
            mean,
            spread: std.max(SPREAD_FLOOR),
        })
    }

    /// One-sided deviation of a row's anomaly score from the training windows, in training σ: only
    /// windows *more* isolated than usual count (being easier to explain than the training set is not
    /// anomalous).
    pub fn deviation(&self, row: &[f64; N_FEATURES]) -> f64 {
        let s = -self.forest.score_samples(&project(row));
        let z = (s - self.mean) / self.spread;
        if z.is_finite() { z.max(0.0) } else { 0.0 }
    }
}

/// The serialised form: the forest's versioned binary encoding as base64 (compact in JSON).
#[derive(Serialize, Deserialize)]
struct ModelRepr {
    forest: String,
    mean: f64,
    spread: f64,
}

impl Serialize for Model {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ModelRepr {
            forest: STANDARD.encode(self.forest.to_bytes()),
            mean: self.mean,
            spread: self.spread,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Model {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let r = ModelRepr::deserialize(d)?;
        let bytes = STANDARD
            .decode(r.forest.as_bytes())
            .map_err(D::Error::custom)?;
        let forest = IsolationForest::from_bytes(&bytes).map_err(D::Error::custom)?;
        if !(r.mean.is_finite() && r.spread.is_finite() && r.spread > 0.0) {
            return Err(D::Error::custom(
                "model normalisation must be finite with a positive spread",
            ));
        }
        Ok(Self {
            forest,
            mean: r.mean,
            spread: r.spread,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(a: f64, b: f64) -> [f64; N_FEATURES] {
        let mut r = [1.0; N_FEATURES];
        r[feat::LIFE_H0] = a;
        r[feat::ENTROPY] = b;
        r
    }

    fn rows() -> Vec<[f64; N_FEATURES]> {
        let mut r = crate::bench_data::SplitMix::new(42);
        (0..64)
            .map(|_| row(r.normal() * 0.1, r.normal() * 0.1))
            .collect()
    }

    #[test]
    fn outliers_deviate_more_than_training_rows() {
        let m = Model::fit(&rows(), 50, 7).unwrap();
        let inlier = m.deviation(&row(0.0, 0.0));
        let outlier = m.deviation(&row(5.0, -4.0));
        assert!(outlier > inlier + 2.0, "{outlier} vs {inlier}");
    }

    #[test]
    fn serde_round_trip_is_exact() {
        let m = Model::fit(&rows(), 20, 1).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        let back: Model = serde_json::from_str(&json).unwrap();
        assert_eq!(back.forest, m.forest);
        assert_eq!(back.deviation(&row(2.0, 2.0)), m.deviation(&row(2.0, 2.0)));
    }

    #[test]
    fn corrupt_model_is_rejected() {
        assert!(serde_json::from_str::<Model>(r#"{"forest":"AAAA","mean":0,"spread":1}"#).is_err());
        assert!(serde_json::from_str::<Model>(r#"{"forest":"!!","mean":0,"spread":1}"#).is_err());
    }

    #[test]
    fn fit_errors_are_reported() {
        assert!(Model::fit(&[], 10, 0).is_err());
    }
}
