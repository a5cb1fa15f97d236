//! The analysis result, shaped exactly as the contract's "The analysis result" JSON.

use crate::classifier::SecurityAnalysis;
use serde::{Deserialize, Serialize};

/// What `StreamState::analyse` returns for one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Analysis {
    /// The stream has fewer than `min_events` events: `{"status":"buffering","count":n}`.
    Buffering(Buffering),
    /// The full result.
    Result(Box<AnalysisResult>),
}

impl Analysis {
    /// The full result, if this is one.
    pub fn result(&self) -> Option<&AnalysisResult> {
        match self {
            Self::Result(r) => Some(r),
            Self::Buffering(_) => None,
        }
    }

    /// Whether this is an anomalous full result.
    pub fn is_anomaly(&self) -> bool {
        self.result().is_some_and(|r| r.is_anomaly)
    }
}

/// `{"status":"buffering","count":n}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Buffering {
    /// Always `"buffering"`.
    pub status: String,
    /// Events the stream has so far.
    pub count: usize,
}

/// `{"h0":…,"h1":…,"h2":…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BettiNumbers {
    pub h0: usize,
    pub h1: usize,
    pub h2: usize,
}

/// A persistence pair `[birth, death]`, death `null` for an essential class.
pub type Pair = (f64, Option<f64>);

/// The persistence diagrams per dimension (standardised units).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Persistence {
    pub h0: Vec<Pair>,
    pub h1: Vec<Pair>,
    pub h2: Vec<Pair>,
}

/// The first persistence landscape of H1 sampled on a grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandscapeJson {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

/// `topology_features`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologyFeatures {
    pub entropy: f64,
    pub total_lifetime: f64,
    pub landscape: LandscapeJson,
}

/// Component and total scores, 0–100.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub total: f64,
    pub betti: f64,
    pub entropy: f64,
    pub ml: f64,
}

/// The full analysis of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisResult {
    pub stream: String,
    /// Events in the analysed window.
    pub window_size: usize,
    /// The event's time (ISO 8601, UTC).
    pub timestamp: String,
    pub betti_numbers: BettiNumbers,
    pub persistence: Persistence,
    pub topology_features: TopologyFeatures,
    pub scores: Scores,
    /// `scores.total / 100`.
    pub anomaly_score: f64,
    /// `scores.total > anomaly_threshold`; always false before calibration.
    pub is_anomaly: bool,
    pub security_analysis: SecurityAnalysis,
    /// Whether the stream's detector had enough history to score this event (scores are 0 before).
    /// An addition to the contract's fields; clients that do not know it ignore it.
    pub calibrated: bool,
    /// Why the score is what it is (an addition to the contract's fields).
    pub detector: DetectorReport,
    /// The incident this event belongs to (the id of its anomaly-log row), set by the service that stores
    /// incidents; absent when the event is in none (an addition to the contract's fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
}

/// The detector's evidence for one event (see [`crate::detector`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorReport {
    /// Calibrated tail probability of the recent behaviour under the stream's learned normal
    /// (`anomaly_score` = min(1, log10(1/p) / 4)).
    pub p_value: f64,
    /// Mean distance of the last values' shape to its nearest earlier shapes, in value σ.
    pub shape_distance: Option<f64>,
    /// The event's value against the learned level, in value σ.
    pub value_z: Option<f64>,
    /// The topology components' combined deviation (0–100), the old baseline score; context only.
    pub topology_score: f64,
    /// Whether the event belongs to an incident that has already alarmed (its score is capped at 0.5).
    pub in_incident: bool,
    /// One sentence saying what drove the score.
    pub explanation: String,
    /// Name of the evidence with the smallest tail probability (`shape`, `autoencoder`, `level`, `spread`,
    /// `volatility`, `topology`): what drove the score; `null` before the first one is calibrated.
    pub driver: Option<String>,
    /// Every evidence measured for this event, with its own tail probability.
    pub components: Vec<ComponentReport>,
}

/// One evidence of the detector for one event (see [`crate::detector`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentReport {
    /// `shape`, `autoencoder`, `level`, `spread`, `volatility` or `topology`.
    pub name: String,
    /// The window (events) the evidence looks at.
    pub window: usize,
    /// Its reading: level deviation in σ (signed, + above), spread or volatility ratio, shape distance in σ,
    /// reconstruction error in σ², topology deviation 0–100.
    pub value: f64,
    /// Its own conformal tail probability (`null` while its history is short, or when it is not scored).
    pub p_value: Option<f64>,
    /// Whether the evidence is part of the score (`detector.level` / `detector.spread` in the stream config);
    /// evidences that are off are still measured, to explain the result.
    pub in_score: bool,
    /// The reading in words ("mean of the last 8 values 6.2σ above the learned level").
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn buffering_shape() {
        let a = Analysis::Buffering(Buffering {
            status: "buffering".into(),
            count: 3,
        });
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"status": "buffering", "count": 3})
        );
    }

    #[test]
    fn pairs_serialise_infinite_as_null() {
        let p = Persistence {
            h0: vec![(0.0, Some(0.5)), (0.0, None)],
            h1: vec![],
            h2: vec![],
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"h0": [[0.0, 0.5], [0.0, null]], "h1": [], "h2": []})
        );
    }
}
