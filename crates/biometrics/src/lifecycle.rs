//! Profile lifecycle policy as pure functions: per-modality readiness, the `/train` progress object,
//! splitting stored vectors into the mouse and typing training matrices, when a grown profile is due for a
//! training ([`growth_due`]), and choosing the retraining set. Storage and scheduling live in the HTTP crate; everything here is deterministic.

use serde::Serialize;

use crate::features::{FEATURE_COUNT, FeatureVector, idx};

/// Mouse model columns: features 1–10 (`avg_mouse_speed` .. `avg_stroke_velocity`).
pub const MOUSE_COLUMNS: std::ops::Range<usize> = 0..10;
/// Typing model columns: features 11–14 (`avg_dwell_time_alpha` .. `typing_speed_kps`).
pub const TYPING_COLUMNS: std::ops::Range<usize> = 10..14;
/// A model with fewer training rows than this is not trained.
pub const MIN_MODEL_ROWS: usize = 20;

/// Readiness quotas, per modality: the mouse model trains once `mouse` vectors moved the mouse, the typing
/// model once `keyboard` vectors typed and `digraph` of them carry digraph timings; a profile is ready (and
/// scores) once `total` vectors are stored and at least one modality's model can train. A person who never
/// types is protected by the mouse model alone, and the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub total: u64,
    pub keyboard: u64,
    pub mouse: u64,
    pub digraph: u64,
}

impl Default for Quotas {
    /// Chosen from the dev protocol's accuracy-versus-payloads curve (ARCHITECTURE.md, MaxiDOM): at 30
    /// payloads (≈ 45 minutes of activity) the mouse model already beats the seed's 15-feature forest
    /// trained on 150; later trainings on the growing profile improve it further. Typing has no public
    /// data to measure on, so its quota follows the mouse's; 10 digraph vectors keep the digraph columns from
    /// being mostly empty.
    fn default() -> Self {
        Quotas {
            total: 30,
            keyboard: 30,
            mouse: 30,
            digraph: 10,
        }
    }
}

/// How many stored vectors of a profile count towards each quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every stored vector.
    pub total: u64,
    /// Vectors with `typing_speed_kps > 0`.
    pub keyboard: u64,
    /// Vectors with `avg_mouse_speed > 0`.
    pub mouse: u64,
    /// Vectors with `avg_flight_time_digraph > 0`.
    pub digraph: u64,
}

/// Which quotas one vector counts towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorKinds {
    pub keyboard: bool,
    pub mouse: bool,
    pub digraph: bool,
}

impl VectorKinds {
    pub fn of(v: &FeatureVector) -> Self {
        VectorKinds {
            keyboard: v[idx::TYPING_SPEED_KPS] > 0.0,
            mouse: v[idx::AVG_MOUSE_SPEED] > 0.0,
            digraph: v[idx::AVG_FLIGHT_TIME_DIGRAPH] > 0.0,
        }
    }
}

impl Counts {
    /// Counts a batch of vectors.
    pub fn of<'a>(vectors: impl IntoIterator<Item = &'a FeatureVector>) -> Self {
        let mut c = Counts::default();
        for v in vectors {
            c.add(v);
        }
        c
    }

    /// Adds one vector.
    pub fn add(&mut self, v: &FeatureVector) {
        let k = VectorKinds::of(v);
        self.total += 1;
        self.keyboard += u64::from(k.keyboard);
        self.mouse += u64::from(k.mouse);
        self.digraph += u64::from(k.digraph);
    }

    /// Whether the mouse model can train.
    pub fn mouse_ready(&self, q: &Quotas) -> bool {
        self.mouse >= q.mouse
    }

    /// Whether the typing model can train.
    pub fn typing_ready(&self, q: &Quotas) -> bool {
        self.keyboard >= q.keyboard && self.digraph >= q.digraph
    }

    /// Whether the profile can score: enough vectors in total and at least one modality ready.
    pub fn is_ready(&self, q: &Quotas) -> bool {
        self.total >= q.total && (self.mouse_ready(q) || self.typing_ready(q))
    }

    /// The `progress` member of the `/train` response: each modality's count against its own quota, so the
    /// extension shows what each one still needs; `is_ready` is [`is_ready`](Self::is_ready).
    pub fn progress(&self, q: &Quotas) -> Progress {
        let pair = |current, required| Quota { current, required };
        Progress {
            total_samples: pair(self.total, q.total),
            keyboard_samples: pair(self.keyboard, q.keyboard),
            mouse_samples: pair(self.mouse, q.mouse),
            digraph_samples: pair(self.digraph, q.digraph),
            is_ready: self.is_ready(q),
        }
    }
}

/// `{"current": N, "required": N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quota {
    pub current: u64,
    pub required: u64,
}

/// The progress object; field order is the wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub total_samples: Quota,
    pub keyboard_samples: Quota,
    pub mouse_samples: Quota,
    pub digraph_samples: Quota,
    pub is_ready: bool,
}

/// The whole `/train` response body, byte-compatible with the reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrainResponse {
    pub status: &'static str,
    pub profile_id: String,
    pub progress: Progress,
}

impl TrainResponse {
    /// The status string is the same whether or not the profile is ready (as in the reference).
    pub const STATUS: &'static str = "profiling_in_progress";

    pub fn new(profile_id: impl Into<String>, progress: Progress) -> Self {
        TrainResponse {
            status: Self::STATUS,
            profile_id: profile_id.into(),
            progress,
        }
    }
}

/// A row-major training matrix.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Matrix {
    pub data: Vec<f64>,
    pub n_cols: usize,
}

impl Matrix {
    pub fn n_rows(&self) -> usize {
        self.data.len().checked_div(self.n_cols).unwrap_or(0)
    }

    /// Rows as slices.
    pub fn rows(&self) -> impl Iterator<Item = &[f64]> {
        self.data.chunks_exact(self.n_cols.max(1))
    }
}

fn select(
    vectors: &[FeatureVector],
    keep: impl Fn(&FeatureVector) -> bool,
    cols: std::ops::Range<usize>,
) -> Matrix {
    let n_cols = cols.len();
    let mut data = Vec::with_capacity(vectors.len() * n_cols);
    for v in vectors.iter().filter(|v| keep(v)) {
        data.extend_from_slice(&v[cols.clone()]);
    }
    Matrix { data, n_cols }
}

/// Mouse training rows: features 1–10 of vectors with `avg_mouse_speed > 0`.
pub fn mouse_matrix(vectors: &[FeatureVector]) -> Matrix {
    select(vectors, |v| v[idx::AVG_MOUSE_SPEED] > 0.0, MOUSE_COLUMNS)
}

/// Typing training rows: features 11–14 of vectors with `typing_speed_kps > 0`.
pub fn typing_matrix(vectors: &[FeatureVector]) -> Matrix {
    select(vectors, |v| v[idx::TYPING_SPEED_KPS] > 0.0, TYPING_COLUMNS)
}

/// The retraining set: the newest `max_profiling` profiling vectors followed by the newest
/// `max_pool` pool vectors. Both inputs are oldest first. The newest are kept because behaviour
/// drifts, and the pool only holds vectors the current model already accepted.
pub fn retraining_set<T: Clone>(
    profiling: &[T],
    pool: &[T],
    max_profiling: usize,
    max_pool: usize,
) -> Vec<T> {
    let tail = |s: &[T], n: usize| s.len().saturating_sub(n);
    let mut out = Vec::with_capacity(profiling.len().min(max_profiling) + pool.len().min(max_pool));
    out.extend_from_slice(&profiling[tail(profiling, max_profiling)..]);
    out.extend_from_slice(&pool[tail(pool, max_pool)..]);
    out
}

/// Whether a model trained when the profile held `trained_on` vectors is due for a training now that it holds
/// `total`: once `total ≥ trained_on + step`, step = ¼ of `trained_on` clamped to [1, `max_training` / 2]
/// (30, 37, 46, 57, 71, 88, 110, … then every 150). With a step of ¼ the model in use never ignores more than
/// a fifth of what the profile holds; doubling (the previous rule) left a profile of 50 payloads scored by its
/// 30-payload model and one of 100 by its 60-payload model, while accuracy climbs steeply from 30 to ~150
/// payloads. Offline on the dev protocol (`scripts/maxidom/offline_dev.py --variant w~grow=0.25`, chunk seeds
/// 7 / 1 / 2), the model in use when a profile holds 40, 50 and 100 payloads gained +0.019…+0.028 chunk AUC and
/// at 75 +0.008…+0.011; at full size it was unchanged. Each training takes a few milliseconds off the request
/// path (a 300-vector one ~7 ms), so the eleven trainings up to 300 payloads (four before) cost little.
pub fn growth_due(trained_on: u64, total: u64, max_training: u64) -> bool {
    let step = (trained_on / 4).clamp(1, (max_training / 2).max(1));
    total >= trained_on.saturating_add(step)
}

/// Retraining policy sizes (configuration; these defaults are the spec's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrainPolicy {
    /// Retrain when the pool holds at least this many vectors.
    pub pool_trigger: usize,
    /// Newest profiling vectors to retrain on.
    pub max_profiling: usize,
    /// Newest pool vectors to retrain on.
    pub max_pool: usize,
}

impl Default for RetrainPolicy {
    fn default() -> Self {
        RetrainPolicy {
            pool_trigger: 500,
            max_profiling: 300,
            max_pool: 300,
        }
    }
}

impl RetrainPolicy {
    pub fn should_retrain(&self, pool_len: usize) -> bool {
        pool_len >= self.pool_trigger
    }
}

/// Parses a feature vector from a slice (e.g. a database row); `None` unless it has exactly 15 values.
pub fn vector_from_slice(values: &[f64]) -> Option<FeatureVector> {
    <[f64; FEATURE_COUNT]>::try_from(values).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vec_with(mouse: f64, typing: f64, flight: f64) -> FeatureVector {
        let mut v = [0.0; FEATURE_COUNT];
        for (i, x) in v.iter_mut().enumerate() {
            *x = i as f64 + 1.0;
        }
        v[idx::AVG_MOUSE_SPEED] = mouse;
        v[idx::TYPING_SPEED_KPS] = typing;
        v[idx::AVG_FLIGHT_TIME_DIGRAPH] = flight;
        v
    }

    #[test]
    fn counts_classify_each_vector() {
        let vs = [
            vec_with(1.0, 0.0, 0.0),
            vec_with(0.0, 2.0, 3.0),
            vec_with(5.0, 1.0, 0.0),
            vec_with(0.0, 0.0, 0.0),
        ];
        let c = Counts::of(&vs);
        assert_eq!(
            c,
            Counts {
                total: 4,
                keyboard: 2,
                mouse: 2,
                digraph: 1
            }
        );
    }

    #[test]
    fn readiness_needs_the_total_and_one_modality() {
        let q = Quotas::default();
        let mouse_only = Counts {
            total: 30,
            keyboard: 0,
            mouse: 30,
            digraph: 0,
        };
        assert!(mouse_only.is_ready(&q));
        assert!(mouse_only.mouse_ready(&q) && !mouse_only.typing_ready(&q));
        let typing_only = Counts {
            total: 30,
            keyboard: 30,
            mouse: 0,
            digraph: 10,
        };
        assert!(typing_only.is_ready(&q));
        assert!(!typing_only.mouse_ready(&q) && typing_only.typing_ready(&q));
        for short in [
            Counts {
                total: 29,
                ..mouse_only
            },
            Counts {
                mouse: 29,
                ..mouse_only
            },
            Counts {
                keyboard: 29,
                ..typing_only
            },
            Counts {
                digraph: 9,
                ..typing_only
            },
        ] {
            assert!(!short.is_ready(&q), "{short:?}");
        }
    }

    #[test]
    fn train_response_serialises_byte_for_byte() {
        let c = Counts {
            total: 12,
            keyboard: 3,
            mouse: 9,
            digraph: 1,
        };
        let body = TrainResponse::new(
            "3f1c2d9e-8a4b-4c5d-9e6f-0a1b2c3d4e5f",
            c.progress(&Quotas::default()),
        );
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(
            text,
            r#"{"status":"profiling_in_progress","profile_id":"3f1c2d9e-8a4b-4c5d-9e6f-0a1b2c3d4e5f","progress":{"total_samples":{"current":12,"required":30},"keyboard_samples":{"current":3,"required":30},"mouse_samples":{"current":9,"required":30},"digraph_samples":{"current":1,"required":10},"is_ready":false}}"#
        );
    }

    #[test]
    fn matrices_take_the_right_rows_and_columns() {
        let vs = [
            vec_with(1.0, 0.0, 0.0),
            vec_with(0.0, 2.0, 3.0),
            vec_with(5.0, 1.0, 0.0),
        ];
        let m = mouse_matrix(&vs);
        assert_eq!(m.n_cols, 10);
        assert_eq!(m.n_rows(), 2);
        assert_eq!(&m.data[..10], &vs[0][..10]);
        assert_eq!(&m.data[10..], &vs[2][..10]);
        let t = typing_matrix(&vs);
        assert_eq!(t.n_cols, 4);
        assert_eq!(t.n_rows(), 2);
        assert_eq!(t.rows().next().unwrap(), &vs[1][10..14]);
        assert_eq!(t.rows().nth(1).unwrap(), &[11.0, 0.0, 13.0, 1.0]);
    }

    #[test]
    fn empty_matrix_has_no_rows() {
        let m = mouse_matrix(&[]);
        assert_eq!(m.n_rows(), 0);
        assert_eq!(m.rows().count(), 0);
        assert_eq!(Matrix::default().n_rows(), 0);
    }

    #[test]
    fn retraining_set_keeps_the_newest_of_each() {
        let tag = |i: usize| {
            let mut v = [0.0; FEATURE_COUNT];
            v[0] = i as f64;
            v
        };
        let profiling: Vec<_> = (0..400).map(tag).collect();
        let pool: Vec<_> = (1000..1500).map(tag).collect();
        let set = retraining_set(&profiling, &pool, 300, 300);
        assert_eq!(set.len(), 600);
        assert_eq!(set[0][0], 100.0);
        assert_eq!(set[299][0], 399.0);
        assert_eq!(set[300][0], 1200.0);
        assert_eq!(set[599][0], 1499.0);
        let small = retraining_set(&profiling[..5], &pool[..2], 300, 300);
        assert_eq!(small.len(), 7);
        assert!(retraining_set::<FeatureVector>(&[], &[], 300, 300).is_empty());
    }

    #[test]
    fn growth_steps_by_a_quarter_then_by_half_a_window() {
        assert!(
            growth_due(0, 1, 300),
            "a legacy model (trained_on 0) is replaced at once"
        );
        // The schedule from a first model at 30: 30, 37, 46, 57, 71, 88, 110, 137, 171, 213, 266, 332, …
        let mut at = vec![30_u64];
        for total in 31..=700 {
            if growth_due(*at.last().unwrap_or(&30), total, 300) {
                at.push(total);
            }
        }
        assert_eq!(
            at,
            [
                30, 37, 46, 57, 71, 88, 110, 137, 171, 213, 266, 332, 415, 518, 647
            ]
        );
        // A training when the profile holds w1 uses at least four fifths of it (below the cap of 150).
        for w in at.windows(2).take_while(|w| w[0] < 600) {
            assert!(w[1] - w[0] <= w[1] / 5, "{w:?}");
        }
        assert!(growth_due(5, 6, 0));
    }

    #[test]
    fn retrain_trigger_is_inclusive() {
        let p = RetrainPolicy::default();
        assert!(!p.should_retrain(499));
        assert!(p.should_retrain(500));
    }

    #[test]
    fn vector_from_slice_requires_fifteen() {
        assert!(vector_from_slice(&[0.0; 15]).is_some());
        assert!(vector_from_slice(&[0.0; 14]).is_none());
        assert!(vector_from_slice(&[0.0; 16]).is_none());
    }
}
