//! Per-stream configuration.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::detector::DetectorParams;

/// How Betti numbers are read off the barcodes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum BettiRuleConfig {
    /// Bars whose lifetime exceeds `threshold` (in standardised units).
    Fixed { threshold: f64 },
    /// Per dimension: bars whose lifetime exceeds mean + `sigma`·std of that dimension's finite lifetimes
    /// (population std); the fixed `fallback` when a dimension has no finite bar.
    Adaptive { sigma: f64, fallback: f64 },
}

impl Default for BettiRuleConfig {
    fn default() -> Self {
        // The reference (and its documentation) used the adaptive rule; the fixed 0.1 is its fallback.
        Self::Adaptive {
            sigma: 2.0,
            fallback: 0.1,
        }
    }
}

/// Weights of the component scores in the total.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreWeights {
    pub betti: f64,
    pub entropy: f64,
    pub ml: f64,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        Self {
            betti: 0.4,
            entropy: 0.3,
            ml: 0.3,
        }
    }
}

/// Configuration of one stream. Every field has the contract's default; all are serde so a stream's
/// configuration can be stored and changed over the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Events in the sliding window (default 50).
    pub window_size: usize,
    /// Events a stream needs before it is analysed (default 10); fewer give `{"status":"buffering"}`.
    pub min_events: usize,
    /// Time-delay embedding dimension (default 2).
    pub embedding_dim: usize,
    /// Time-delay embedding delay in events (default 1).
    pub embedding_delay: usize,
    /// Highest homology dimension computed, 0–2 (default 2).
    pub max_homology_dim: usize,
    /// Betti counting rule (default adaptive, σ = 2, fallback 0.1).
    pub betti_rule: BettiRuleConfig,
    /// Component weights (default 0.4 / 0.3 / 0.3).
    pub weights: ScoreWeights,
    /// `is_anomaly` is `scores.total > anomaly_threshold`; 0–100 (default 80: a tail probability below
    /// 10^(−3.2), i.e. beyond nearly everything in the stream's last 2,000 events; see [`crate::detector`]).
    /// Crossing it opens an incident.
    pub anomaly_threshold: f64,
    /// Full windows collected to calibrate the baseline and train the first model (default 100).
    pub calibration_windows: usize,
    /// Weight of a new normal window in the exponentially forgetting baseline, in (0, 1) (default 0.005,
    /// a memory of about 200 windows: consecutive windows share all but one event, so this is about four
    /// windows' worth of independent data).
    pub forgetting_factor: f64,
    /// Windows with `scores.total` at or below this (0–100, default 40) are judged normal and teach the
    /// baseline; windows between it and the anomaly threshold neither alarm nor teach, so an attack that
    /// builds up slowly cannot drag the baseline along with it.
    pub learn_threshold: f64,
    /// The model is refitted after this many normal windows (default 100).
    pub refit_period: usize,
    /// After this many consecutive windows not judged normal the change is taken as a new regime and the
    /// stream recalibrates in the background (default 150, three windows).
    pub relearn_after: usize,
    /// Trees in each stream's Isolation Forest (default 100).
    pub trees: usize,
    /// The scoring detector's parameters (see [`crate::detector`]).
    pub detector: DetectorParams,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            window_size: 50,
            min_events: 10,
            embedding_dim: 2,
            embedding_delay: 1,
            max_homology_dim: 2,
            betti_rule: BettiRuleConfig::default(),
            weights: ScoreWeights::default(),
            anomaly_threshold: 80.0,
            calibration_windows: 100,
            forgetting_factor: 0.005,
            learn_threshold: 40.0,
            refit_period: 100,
            relearn_after: 150,
            trees: 100,
            detector: DetectorParams::default(),
        }
    }
}

/// A configuration value outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid stream configuration: {0}")]
pub struct ConfigError(pub &'static str);

/// Largest window accepted: Rips up to H2 grows with the fourth power of the point count.
pub const MAX_WINDOW: usize = 500;

/// The most (d+2)-point subsets of a window's points that a configuration may ask homology up to H_d to consider
/// ([`window_cost`]): the cost bound that keeps one stream from holding an analysis thread for seconds per event.
///
/// Cost model: the reduction's work grows with the number of (d+1)-simplices, binomial(n, d + 2) for n points.
/// Measured with `vigil tda --format point-cloud` on delay-embedded random walks (2 cores, process start
/// included): 4.5e6 (H1, 300 points) about 15 ms, 3.9e6 (H2, 100 points) about 5 ms, 6.5e7 (H2, 200 points)
/// 60–130 ms; the default (H2, 49 points) is 2.1e5. The bound, about 20 times the default's cost, keeps every
/// accepted window within roughly 15 ms; the review's window of 500 with H2 (2.6e9) took over 60 s per batch.
pub const MAX_WINDOW_COST: u128 = 4_000_000;

/// binomial(points, max_homology_dim + 2): the size of the largest simplex family homology up to that dimension
/// reduces (see [`MAX_WINDOW_COST`]).
pub fn window_cost(points: usize, max_homology_dim: usize) -> u128 {
    let k = max_homology_dim + 2;
    if points < k {
        return 0;
    }
    (0..k).fold(1_u128, |acc, i| {
        acc * (points - i) as u128 / (i as u128 + 1)
    })
}

impl StreamConfig {
    /// Checks every field. Events are only ever analysed with validated configurations (see
    /// [`crate::StreamState::analyse`]), so an API can reject bad input with this error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.min_events..=MAX_WINDOW).contains(&self.window_size) {
            return Err(ConfigError(
                "window_size must be between min_events and 500",
            ));
        }
        if !(1..=5).contains(&self.embedding_dim) {
            return Err(ConfigError("embedding_dim must be 1 to 5"));
        }
        if !(1..=10).contains(&self.embedding_delay) {
            return Err(ConfigError("embedding_delay must be 1 to 10"));
        }
        // The smallest analysed window must still embed into at least 3 points.
        let span = (self.embedding_dim - 1) * self.embedding_delay;
        if self.min_events < span + 3 || self.min_events < 3 {
            return Err(ConfigError(
                "min_events too small for the embedding (need (dim-1)*delay + 3)",
            ));
        }
        if self.max_homology_dim > 2 {
            return Err(ConfigError("max_homology_dim must be 0, 1 or 2"));
        }
        if window_cost(self.window_size.saturating_sub(span), self.max_homology_dim)
            > MAX_WINDOW_COST
        {
            return Err(ConfigError(
                "window too costly to analyse per event: binomial(points, max_homology_dim + 2) must stay \
                 <= 4,000,000, where points = window_size - (embedding_dim - 1) * embedding_delay \
                 (at most 100 points with H2, 289 with H1)",
            ));
        }
        match self.betti_rule {
            BettiRuleConfig::Fixed { threshold }
                if !(threshold.is_finite() && threshold >= 0.0) =>
            {
                return Err(ConfigError("betti threshold must be finite and >= 0"));
            }
            BettiRuleConfig::Adaptive { sigma, fallback }
                if !(sigma.is_finite()
                    && sigma >= 0.0
                    && fallback.is_finite()
                    && fallback >= 0.0) =>
            {
                return Err(ConfigError(
                    "betti sigma and fallback must be finite and >= 0",
                ));
            }
            _ => {}
        }
        let w = self.weights;
        if ![w.betti, w.entropy, w.ml]
            .iter()
            .all(|x| x.is_finite() && *x >= 0.0)
            || w.betti + w.entropy + w.ml <= 0.0
        {
            return Err(ConfigError("weights must be finite, >= 0, and not all 0"));
        }
        if !(self.anomaly_threshold.is_finite() && (0.0..=100.0).contains(&self.anomaly_threshold))
        {
            return Err(ConfigError("anomaly_threshold must be 0 to 100"));
        }
        if !(self.learn_threshold.is_finite() && (0.0..=100.0).contains(&self.learn_threshold)) {
            return Err(ConfigError("learn_threshold must be 0 to 100"));
        }
        if !(8..=10_000).contains(&self.calibration_windows) {
            return Err(ConfigError("calibration_windows must be 8 to 10000"));
        }
        if !(self.forgetting_factor > 0.0 && self.forgetting_factor < 1.0) {
            return Err(ConfigError("forgetting_factor must be in (0, 1)"));
        }
        if self.refit_period == 0 || self.relearn_after == 0 {
            return Err(ConfigError(
                "refit_period and relearn_after must be positive",
            ));
        }
        if !(1..=1000).contains(&self.trees) {
            return Err(ConfigError("trees must be 1 to 1000"));
        }
        self.detector.validate().map_err(ConfigError)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hardening review's starvation attack, kept: a window of 500 with H2 and embedding dimension 5 held an
    /// analysis thread past 60 s per batch; it is refused, while the cost bound still admits useful windows.
    #[test]
    fn windows_are_bounded_by_their_homology_cost() {
        assert_eq!(window_cost(49, 2), 211_876);
        assert_eq!(window_cost(3, 2), 0);
        let with = |window_size, embedding_dim, max_homology_dim| StreamConfig {
            window_size,
            embedding_dim,
            max_homology_dim,
            ..StreamConfig::default()
        };
        let err = with(500, 5, 2).validate().expect_err("the attack");
        assert!(err.0.contains("4,000,000"), "{}", err.0);
        with(101, 2, 2).validate().expect("H2 on 100 points");
        with(102, 2, 2).validate().expect_err("H2 on 101 points");
        with(290, 2, 1).validate().expect("H1 on 289 points");
        with(291, 2, 1).validate().expect_err("H1 on 290 points");
        with(500, 2, 0).validate().expect("H0 on any window");
        StreamConfig::default().validate().expect("the default");
    }

    #[test]
    fn defaults_are_valid_and_per_spec() {
        let c = StreamConfig::default();
        c.validate().unwrap();
        assert_eq!(
            (
                c.window_size,
                c.min_events,
                c.embedding_dim,
                c.embedding_delay
            ),
            (50, 10, 2, 1)
        );
        assert_eq!(c.max_homology_dim, 2);
        assert_eq!(c.anomaly_threshold, 80.0);
        assert_eq!(
            c.weights,
            ScoreWeights {
                betti: 0.4,
                entropy: 0.3,
                ml: 0.3
            }
        );
    }

    #[test]
    fn serde_defaults_fill_missing_fields() {
        let c: StreamConfig = serde_json::from_str(r#"{"anomaly_threshold": 70}"#).unwrap();
        assert_eq!(c.anomaly_threshold, 70.0);
        assert_eq!(c.window_size, 50);
        let c: StreamConfig =
            serde_json::from_str(r#"{"betti_rule": {"rule": "fixed", "threshold": 0.1}}"#).unwrap();
        assert_eq!(c.betti_rule, BettiRuleConfig::Fixed { threshold: 0.1 });
        assert!(serde_json::from_str::<StreamConfig>(r#"{"nope": 1}"#).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        let bad = [
            StreamConfig {
                window_size: 5,
                ..Default::default()
            },
            StreamConfig {
                window_size: 10_000,
                ..Default::default()
            },
            StreamConfig {
                embedding_dim: 0,
                ..Default::default()
            },
            StreamConfig {
                embedding_dim: 5,
                embedding_delay: 3,
                ..Default::default()
            },
            StreamConfig {
                max_homology_dim: 3,
                ..Default::default()
            },
            StreamConfig {
                anomaly_threshold: 101.0,
                ..Default::default()
            },
            StreamConfig {
                anomaly_threshold: f64::NAN,
                ..Default::default()
            },
            StreamConfig {
                forgetting_factor: 1.0,
                ..Default::default()
            },
            StreamConfig {
                weights: ScoreWeights {
                    betti: 0.0,
                    entropy: 0.0,
                    ml: 0.0,
                },
                ..Default::default()
            },
            StreamConfig {
                weights: ScoreWeights {
                    betti: -1.0,
                    entropy: 1.0,
                    ml: 1.0,
                },
                ..Default::default()
            },
            StreamConfig {
                betti_rule: BettiRuleConfig::Fixed {
                    threshold: f64::INFINITY,
                },
                ..Default::default()
            },
            StreamConfig {
                calibration_windows: 2,
                ..Default::default()
            },
            StreamConfig {
                refit_period: 0,
                ..Default::default()
            },
            StreamConfig {
                trees: 0,
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
