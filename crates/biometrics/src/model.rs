//! The two per-profile models (mouse and typing Isolation Forests), their thresholds, scoring with
//! vote gates, and the byte encoding stored in the database.
//!
//! Training (spec "Model lifecycle"): the mouse model sees features 1–10 of vectors that moved the
//! mouse, the typing model features 11–14 of vectors that typed; a model with fewer than
//! [`TrainParams::min_rows`] rows is skipped. Each is an Isolation Forest of 100 trees,
//! ψ = min(256, n), contamination 0.01, seeded; its threshold is the 5th percentile (linear) of its
//! own training rows' decision scores, so about 5 % of the owner's training sessions fall below it.
//!
//! Scoring: a model votes only when the session carries enough of its signal (≥ 30 mouse points,
//! ≥ 6 key events) and it exists. A session is anomalous when a voting model's decision score is
//! below its threshold. An abstaining model reports score 0.1 and threshold 0.0, and `score` is the
//! minimum of the two reported scores (the reference's wire behaviour).

use serde::Serialize;
pub use vigil_iforest::Parallelism;
use vigil_iforest::{Contamination, IsolationForest, MaxSamples, Params, percentile_linear};

use crate::error::ModelError;
use crate::features::FeatureVector;
use crate::lifecycle::{
    MIN_MODEL_ROWS, MOUSE_COLUMNS, Matrix, TYPING_COLUMNS, mouse_matrix, typing_matrix,
};
use crate::payload::Payload;

/// The mouse model votes only with at least this many mouse points in the session.
pub const MIN_MOUSE_POINTS: usize = 30;
/// The typing model votes only with at least this many key events in the session.
pub const MIN_KEY_EVENTS: usize = 6;
/// Score reported by a model that abstains.
pub const ABSTAIN_SCORE: f64 = 0.1;
/// Threshold reported by a model that abstains.
pub const ABSTAIN_THRESHOLD: f64 = 0.0;
/// Decision score reported when a model cannot score a row (never happens for extracted features,
/// which are always finite; a blob/feature mismatch would). Fails closed: it is below any threshold.
const UNSCORABLE: f64 = -1.0;

/// Training parameters; `Default` is the spec's.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainParams {
    pub n_estimators: usize,
    pub contamination: f64,
    /// Threshold percentile of the training rows' decision scores, in [0, 100].
    pub threshold_percentile: f64,
    pub min_rows: usize,
    pub seed: u64,
    /// Where the forests are grown and the training rows scored. The server trains on one thread per
    /// profile ([`Parallelism::CallingThread`]) so a retraining never takes every core from the requests.
    pub parallelism: Parallelism,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            n_estimators: 100,
            contamination: 0.01,
            threshold_percentile: 5.0,
            min_rows: MIN_MODEL_ROWS,
            seed: 42,
            parallelism: Parallelism::Rayon,
        }
    }
}

impl TrainParams {
    fn forest_params(&self) -> Params {
        Params {
            n_estimators: self.n_estimators,
            max_samples: MaxSamples::Auto,
            max_features: 1.0,
            bootstrap: false,
            contamination: Contamination::Fraction(self.contamination),
            seed: self.seed,
        }
    }
}

/// One trained model and its decision threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedModel {
    pub forest: IsolationForest,
    /// Decision scores below this are anomalous.
    pub threshold: f64,
    /// Rows it was trained on.
    pub n_rows: usize,
}

impl TrainedModel {
    fn fit(m: &Matrix, params: &TrainParams) -> Result<Option<Self>, ModelError> {
        let n_rows = m.n_rows();
        if n_rows < params.min_rows.max(1) {
            return Ok(None);
        }
        let forest = IsolationForest::fit_matrix_with(
            &m.data,
            m.n_cols,
            &params.forest_params(),
            params.parallelism,
        )
        .map_err(|e| ModelError::Forest(e.to_string()))?;
        let scores = forest
            .score_samples_batch_with(&m.data, params.parallelism)
            .map_err(|e| ModelError::Forest(e.to_string()))?;
        let offset = forest.offset();
        let decisions: Vec<f64> = scores.iter().map(|s| s - offset).collect();
        let threshold = percentile_linear(&decisions, params.threshold_percentile);
        if !threshold.is_finite() {
            return Err(ModelError::Forest(format!(
                "threshold is not finite ({threshold})"
            )));
        }
        Ok(Some(TrainedModel {
            forest,
            threshold,
            n_rows,
        }))
    }

    /// Decision score of one row; [`UNSCORABLE`] if the forest rejects it.
    fn decision(&self, row: &[f64]) -> f64 {
        self.forest.try_decision_function(row).unwrap_or(UNSCORABLE)
    }
}

/// Both models of one profile, as stored in the database.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileModels {
    pub mouse: Option<TrainedModel>,
    pub typing: Option<TrainedModel>,
    /// Unix ms at which training finished (supplied by the caller: this crate reads no clock).
    pub trained_at_ms: i64,
    /// Model generation: 1 for the first training, +1 per retraining. Caches key on it.
    pub version: u64,
}

/// The `/score` response body; field order is the wire order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    pub is_anomaly: bool,
    pub score: f64,
    pub typing_threshold: f64,
    pub mouse_threshold: f64,
    pub mouse_score: f64,
    pub typing_score: f64,
}

/// Trains both models from a profile's vectors. Deterministic for given vectors and params.
///
/// Fails with [`ModelError::NotEnoughData`] when neither model has enough rows: a profile
/// without any model must keep profiling rather than store an empty model that never flags.
pub fn train_models(
    vectors: &[FeatureVector],
    params: &TrainParams,
    trained_at_ms: i64,
    version: u64,
) -> Result<ProfileModels, ModelError> {
    let (mm, tm) = (mouse_matrix(vectors), typing_matrix(vectors));
    let mouse = TrainedModel::fit(&mm, params)?;
    let typing = TrainedModel::fit(&tm, params)?;
    if mouse.is_none() && typing.is_none() {
        return Err(ModelError::NotEnoughData {
            mouse_rows: mm.n_rows(),
            typing_rows: tm.n_rows(),
            min: params.min_rows,
        });
    }
    Ok(ProfileModels {
        mouse,
        typing,
        trained_at_ms,
        version,
    })
}

impl ProfileModels {
    /// Scores a feature vector from a session with `mouse_points` points and `key_events` keys.
    pub fn score(&self, f: &FeatureVector, mouse_points: usize, key_events: usize) -> Score {
        let vote = |model: &Option<TrainedModel>, gate: bool, row: &[f64]| match model {
            Some(m) if gate => Some((m.decision(row), m.threshold)),
            _ => None,
        };
        let mouse = vote(
            &self.mouse,
            mouse_points >= MIN_MOUSE_POINTS,
            &f[MOUSE_COLUMNS],
        );
        let typing = vote(
            &self.typing,
            key_events >= MIN_KEY_EVENTS,
            &f[TYPING_COLUMNS],
        );
        let flags = |v: Option<(f64, f64)>| v.is_some_and(|(s, t)| s < t);
        let is_anomaly = flags(mouse) || flags(typing);
        let (mouse_score, mouse_threshold) = mouse.unwrap_or((ABSTAIN_SCORE, ABSTAIN_THRESHOLD));
        let (typing_score, typing_threshold) = typing.unwrap_or((ABSTAIN_SCORE, ABSTAIN_THRESHOLD));
        Score {
            is_anomaly,
            score: mouse_score.min(typing_score),
            typing_threshold,
            mouse_threshold,
            mouse_score,
            typing_score,
        }
    }

    /// Extracts the features of a payload and scores them with the payload's vote gates.
    pub fn score_payload(&self, p: &Payload) -> (FeatureVector, Score) {
        let f = crate::features::extract_features(p);
        let s = self.score(&f, p.mouse_point_count(), p.key_event_count());
        (f, s)
    }

    /// Encodes both models for storage. Layout (little-endian): magic `VBPM`, format u16,
    /// version u64, trained_at i64, then mouse and typing, each a presence byte followed, when
    /// present, by threshold f64, rows u64, forest length u32 and the forest's own bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&BLOB_FORMAT.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.trained_at_ms.to_le_bytes());
        for m in [&self.mouse, &self.typing] {
            match m {
                None => out.push(0),
                Some(m) => {
                    out.push(1);
                    out.extend_from_slice(&m.threshold.to_le_bytes());
                    out.extend_from_slice(&(m.n_rows as u64).to_le_bytes());
                    let forest = m.forest.to_bytes();
                    // A forest of 100 trees with ψ ≤ 256 is far below 4 GiB; saturate rather than
                    // wrap if that ever changed, so decoding fails loudly instead of misreading.
                    out.extend_from_slice(
                        &u32::try_from(forest.len())
                            .unwrap_or(u32::MAX)
                            .to_le_bytes(),
                    );
                    out.extend_from_slice(&forest);
                }
            }
        }
        out
    }

    /// Decodes [`to_bytes`](Self::to_bytes) output, validating every part.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let format = u16::from_le_bytes(r.array()?);
        if format != BLOB_FORMAT {
            return Err(corrupt(format!(
                "format {format} is not supported (this build reads {BLOB_FORMAT})"
            )));
        }
        let version = u64::from_le_bytes(r.array()?);
        let trained_at_ms = i64::from_le_bytes(r.array()?);
        let mouse = r.model(MOUSE_COLUMNS.len())?;
        let typing = r.model(TYPING_COLUMNS.len())?;
        if r.pos != bytes.len() {
            return Err(corrupt(format!("{} trailing bytes", bytes.len() - r.pos)));
        }
        Ok(ProfileModels {
            mouse,
            typing,
            trained_at_ms,
            version,
        })
    }
}

const MAGIC: &[u8; 4] = b"VBPM";
const BLOB_FORMAT: u16 = 1;

fn corrupt(msg: impl Into<String>) -> ModelError {
    ModelError::Corrupt(msg.into())
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ModelError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| corrupt("truncated"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ModelError> {
        self.take(N)?.try_into().map_err(|_| corrupt("truncated"))
    }

    fn model(&mut self, n_features: usize) -> Result<Option<TrainedModel>, ModelError> {
        match self.array::<1>()?[0] {
            0 => Ok(None),
            1 => {
                let threshold = f64::from_le_bytes(self.array()?);
                if !threshold.is_finite() {
                    return Err(corrupt("threshold is not finite"));
                }
                let n_rows = usize::try_from(u64::from_le_bytes(self.array()?))
                    .map_err(|_| corrupt("row count"))?;
                let len = u32::from_le_bytes(self.array()?) as usize;
                let forest = IsolationForest::from_bytes(self.take(len)?)
                    .map_err(|e| corrupt(format!("forest: {e}")))?;
                if forest.n_features() != n_features {
                    return Err(corrupt(format!(
                        "forest has {} features, expected {n_features}",
                        forest.n_features()
                    )));
                }
                Ok(Some(TrainedModel {
                    forest,
                    threshold,
                    n_rows,
                }))
            }
            other => Err(corrupt(format!("presence byte {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{FEATURE_COUNT, extract_features, idx};
    use crate::synth::{Persona, SessionGenerator};

    /// Vectors around a centre with small deterministic spread, all counting as mouse and typing.
    fn cloud(n: usize, centre: f64) -> Vec<FeatureVector> {
        let mut rng = crate::synth::Rng::new(1);
        (0..n)
            .map(|_| {
                let mut v = [0.0; FEATURE_COUNT];
                for x in v.iter_mut() {
                    *x = centre + rng.normal();
                }
                v
            })
            .collect()
    }

    #[test]
    fn trains_both_models_with_thresholds_near_the_fifth_percentile() {
        let vs = cloud(300, 50.0);
        let m = train_models(&vs, &TrainParams::default(), 1_700_000_000_000, 1).unwrap();
        let mouse = m.mouse.as_ref().unwrap();
        let typing = m.typing.as_ref().unwrap();
        assert_eq!((mouse.n_rows, typing.n_rows), (300, 300));
        assert_eq!(mouse.forest.n_features(), 10);
        assert_eq!(typing.forest.n_features(), 4);
        assert_eq!(mouse.forest.n_trees(), 100);
        assert_eq!(mouse.forest.max_samples(), 256);
        // By construction ~5 % of the training rows fall below the threshold.
        let below = vs
            .iter()
            .filter(|v| mouse.decision(&v[MOUSE_COLUMNS]) < mouse.threshold)
            .count();
        assert!((10..=20).contains(&below), "{below}");
    }

    #[test]
    fn training_is_deterministic() {
        let vs = cloud(120, 5.0);
        let a = train_models(&vs, &TrainParams::default(), 7, 1).unwrap();
        let b = train_models(&vs, &TrainParams::default(), 7, 1).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_bytes(), b.to_bytes());
    }

    #[test]
    fn a_model_with_too_few_rows_is_skipped() {
        let mut vs = cloud(40, 5.0);
        for v in vs.iter_mut().skip(19) {
            v[idx::TYPING_SPEED_KPS] = 0.0;
        }
        let m = train_models(&vs, &TrainParams::default(), 0, 1).unwrap();
        assert!(m.mouse.is_some());
        assert!(m.typing.is_none(), "19 typing rows must not train");
        for v in vs.iter_mut().take(19) {
            v[idx::AVG_MOUSE_SPEED] = 0.0;
        }
        // 21 mouse rows remain: still trains.
        assert!(
            train_models(&vs, &TrainParams::default(), 0, 1)
                .unwrap()
                .mouse
                .is_some()
        );
    }

    #[test]
    fn no_trainable_model_is_an_error() {
        let vs = cloud(19, 5.0);
        match train_models(&vs, &TrainParams::default(), 0, 1) {
            Err(ModelError::NotEnoughData {
                mouse_rows: 19,
                typing_rows: 19,
                min: 20,
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(train_models(&[], &TrainParams::default(), 0, 1).is_err());
    }

    #[test]
    fn vote_gates_and_abstention() {
        let vs = cloud(200, 50.0);
        let m = train_models(&vs, &TrainParams::default(), 0, 1).unwrap();
        let far = [1e6; FEATURE_COUNT];
        // Both gates closed: nothing votes, the abstain values are reported.
        let s = m.score(&far, 29, 5);
        assert_eq!(
            s,
            Score {
                is_anomaly: false,
                score: 0.1,
                typing_threshold: 0.0,
                mouse_threshold: 0.0,
                mouse_score: 0.1,
                typing_score: 0.1
            }
        );
        // Mouse gate open: the far-away vector is flagged by the mouse model alone.
        let s = m.score(&far, 30, 5);
        assert!(s.is_anomaly);
        assert!(s.mouse_score < s.mouse_threshold);
        assert_eq!((s.typing_score, s.typing_threshold), (0.1, 0.0));
        assert_eq!(s.score, s.mouse_score);
        // Typing gate open only.
        let s = m.score(&far, 0, 6);
        assert!(s.is_anomaly);
        assert_eq!((s.mouse_score, s.mouse_threshold), (0.1, 0.0));
        // A typical vector with both gates open is not anomalous, and score is the min.
        let s = m.score(&vs[0], 100, 100);
        assert_eq!(s.score, s.mouse_score.min(s.typing_score));
    }

    #[test]
    fn a_missing_model_abstains_even_with_its_gate_open() {
        let mut vs = cloud(60, 5.0);
        for v in &mut vs {
            v[idx::TYPING_SPEED_KPS] = 0.0;
        }
        let m = train_models(&vs, &TrainParams::default(), 0, 1).unwrap();
        let s = m.score(&[1e6; FEATURE_COUNT], 0, 100);
        assert!(!s.is_anomaly);
        assert_eq!((s.typing_score, s.typing_threshold), (0.1, 0.0));
    }

    #[test]
    fn score_serialises_in_wire_order() {
        let s = Score {
            is_anomaly: true,
            score: -0.25,
            typing_threshold: 0.0,
            mouse_threshold: 0.01,
            mouse_score: -0.25,
            typing_score: 0.1,
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"is_anomaly":true,"score":-0.25,"typing_threshold":0.0,"mouse_threshold":0.01,"mouse_score":-0.25,"typing_score":0.1}"#
        );
    }

    #[test]
    fn blob_round_trips_and_scores_identically() {
        let vs = cloud(100, 3.0);
        let m = train_models(&vs, &TrainParams::default(), 1_700_000_000_123, 4).unwrap();
        let bytes = m.to_bytes();
        let back = ProfileModels::from_bytes(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.version, 4);
        assert_eq!(back.trained_at_ms, 1_700_000_000_123);
        assert_eq!(back.score(&vs[3], 50, 50), m.score(&vs[3], 50, 50));
        // Absent models round-trip too.
        let only_mouse = ProfileModels { typing: None, ..m };
        assert_eq!(
            ProfileModels::from_bytes(&only_mouse.to_bytes()).unwrap(),
            only_mouse
        );
    }

    #[test]
    fn corrupt_blobs_are_errors_not_panics() {
        let m = train_models(&cloud(30, 3.0), &TrainParams::default(), 0, 1).unwrap();
        let bytes = m.to_bytes();
        // Every truncation.
        for cut in [
            0,
            3,
            4,
            6,
            14,
            22,
            23,
            30,
            40,
            bytes.len() / 2,
            bytes.len() - 1,
        ] {
            assert!(
                ProfileModels::from_bytes(&bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(ProfileModels::from_bytes(&extra).is_err());
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert!(ProfileModels::from_bytes(&magic).is_err());
        let mut fmt = bytes.clone();
        fmt[4] = 9;
        assert!(ProfileModels::from_bytes(&fmt).is_err());
        let mut presence = bytes.clone();
        presence[22] = 7;
        assert!(ProfileModels::from_bytes(&presence).is_err());
        // Flipping bytes anywhere never panics.
        for i in (0..bytes.len()).step_by(97) {
            let mut b = bytes.clone();
            b[i] ^= 0xA5;
            let _ = ProfileModels::from_bytes(&b);
        }
    }

    #[test]
    fn swapped_forests_are_rejected() {
        // A typing forest (4 features) in the mouse slot must not decode.
        let m = train_models(&cloud(30, 3.0), &TrainParams::default(), 0, 1).unwrap();
        let swapped = ProfileModels {
            mouse: m.typing.clone(),
            typing: m.mouse.clone(),
            ..m
        };
        assert!(ProfileModels::from_bytes(&swapped.to_bytes()).is_err());
    }

    #[test]
    fn synthetic_owner_passes_and_impostor_is_flagged() {
        let mut alice = SessionGenerator::new(Persona::alice(), 21);
        let train: Vec<_> = (0..300)
            .map(|_| extract_features(&alice.next_payload()))
            .collect();
        let m = train_models(&train, &TrainParams::default(), 0, 1).unwrap();
        let shape = crate::synth::Shape {
            mouse_points: 200,
            key_events: 30,
        };
        let own = (0..40)
            .filter(|_| m.score_payload(&alice.payload(shape)).1.is_anomaly)
            .count();
        let mut bob = SessionGenerator::new(Persona::bob(), 22);
        let other = (0..40)
            .filter(|_| m.score_payload(&bob.payload(shape)).1.is_anomaly)
            .count();
        assert!(own <= 10, "owner flagged {own}/40");
        assert!(other >= 36, "impostor flagged only {other}/40");
    }
}
