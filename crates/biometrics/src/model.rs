//! The per-profile models (mouse and typing), their calibration, scoring with vote gates, and the byte
//! encoding stored in the database.
//!
//! **Model.** Each modality is a standardised k-nearest-neighbour distance ([`KnnModel`]): inputs are
//! centred on the owner's median and scaled by the owner's robust spread (IQR / 1.349; mouse models on the
//! current input then weight each column by its dispersion and its group's redundancy, `column_weights`), and a
//! session's distance is the mean fractional (Minkowski p = ¼, see [`Metric`]) distance to its k nearest
//! training sessions (k = √n / 2, 1–10). On real
//! mouse data (Balabit, `scripts/maxidom/eval_dev.py`) it ranks better than an Isolation Forest on the same
//! inputs, trains in a few milliseconds, and has no randomness.
//!
//! **Inputs.** Mouse: ln-scaled features 1–10 (sign · ln(1 + |x|), so speeds and accelerations are not
//! dominated by their tails) followed by the rich vector's angle and click-timing groups
//! ([`MOUSE_RICH_GROUPS`]) and its turn quantiles, as far as every training row has them ([`MouseInput`]) (vectors imported from the reference have only the 15
//! features; such a profile trains on features 1–10).
//! Typing: ln-scaled features 11–14.
//!
//! **Calibration.** At training time every training row gets its leave-one-out distance; a new session's
//! score is its conformal p-value against them: the share of the owner's own sessions that are at least as
//! far, (count + 1) / (n + 1). Beyond the farthest training row the p-value keeps falling exponentially in
//! ln-distance (scale: the spread of the farthest fifth), so two clearly foreign sessions still rank. A score
//! therefore means the same for every profile: 0.05 is "as unusual as the owner's most unusual 5 %".
//! The mouse model compares a payload only with the owner's payloads of similar size (mouse points,
//! [`SizeCalibration`]): a small payload's vector is noisier for anyone, so "unusual" is judged among
//! payloads with as much data. Models trained on vectors that do not record the size (earlier versions)
//! calibrate against all rows.
//!
//! **Scoring.** A modality votes when the session carries its signal (≥ 30 mouse points, ≥ 6 key events)
//! and its model exists. A payload's `score` (kept as `payload_score` once [`Score::in_run`] folds it into the
//! profile's run, see [`crate::sequential`]) combines the voting modalities' p-values (one: itself; two: Fisher's
//! method, q(1 − ln q) with q the product); a modality that does not vote is no evidence and does not enter
//! it. `is_anomaly = score < α` (α = [`TrainParams::alpha`], reported as both thresholds, so about α of the
//! owner's sessions are flagged). Per-modality fields keep the reference's wire meaning: `mouse_score` and
//! `typing_score` are that modality's p-value, or 0.1 with threshold 0.0 when it abstains. With no voter at
//! all `score` is 0.5 (no evidence either way: the median of a genuine session's p-value).
//!
//! Models stored by earlier versions (format 1, Isolation Forests with raw decision scores) still decode and
//! score as they did, until the profile's next training replaces them.

use serde::Serialize;
use vigil_iforest::IsolationForest;
pub use vigil_iforest::Parallelism;

use crate::error::ModelError;
use crate::features::{FEATURE_COUNT, FeatureVector, idx};
use crate::lifecycle::{MIN_MODEL_ROWS, MOUSE_COLUMNS, Matrix, TYPING_COLUMNS};
use crate::payload::Payload;
use crate::rich::{RICH_COUNT, RICH_COUNT_V1, RICH_COUNT_V2, RichVector, extract_rich, groups};
use crate::sequential::{Run, Vote, payload_weight};

/// The mouse model votes only with at least this many mouse points in the session.
pub const MIN_MOUSE_POINTS: usize = 30;
/// The typing model votes only with at least this many key events in the session.
pub const MIN_KEY_EVENTS: usize = 6;
/// Score reported by a modality that abstains (the reference's value).
pub const ABSTAIN_SCORE: f64 = 0.1;
/// Threshold reported by a modality that abstains (the reference's value: it can never flag).
pub const ABSTAIN_THRESHOLD: f64 = 0.0;
/// `score` when no modality votes.
pub const NO_EVIDENCE_SCORE: f64 = 0.5;
/// Decision score reported when a legacy forest cannot score a row. Fails closed.
const UNSCORABLE: f64 = -1.0;
/// The rich-vector groups the mouse model reads.
pub const MOUSE_RICH_GROUPS: [std::ops::Range<usize>; 2] = [groups::ANGLES, groups::CLICK_TIMING];
/// Columns those groups add to the mouse model's input.
pub const MOUSE_RICH_COLUMNS: usize = groups::ANGLES.end - groups::ANGLES.start
    + groups::CLICK_TIMING.end
    - groups::CLICK_TIMING.start;
/// Columns the turn quantiles add on top of [`MOUSE_RICH_COLUMNS`].
pub const MOUSE_TURN_COLUMNS: usize = groups::TURN_QUANTILES.end - groups::TURN_QUANTILES.start;

/// What the mouse model reads: the richest input every one of its training rows has (vectors imported from the
/// reference have only the contract features, vectors stored by the previous version lack the turn quantiles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MouseInput {
    /// ln-scaled contract features 1–10.
    Contract = 0,
    /// … plus the angle and click-timing groups ([`MOUSE_RICH_GROUPS`]).
    Rich = 1,
    /// … plus the turn quantiles (`groups::TURN_QUANTILES`).
    RichTurns = 2,
}

impl MouseInput {
    pub fn columns(self) -> usize {
        MOUSE_COLUMNS.len()
            + match self {
                MouseInput::Contract => 0,
                MouseInput::Rich => MOUSE_RICH_COLUMNS,
                MouseInput::RichTurns => MOUSE_RICH_COLUMNS + MOUSE_TURN_COLUMNS,
            }
    }
}
/// Most neighbours a distance averages over.
const MAX_K: usize = 10;
/// Share of the leave-one-out distances that shape the tail beyond the farthest one.
const TAIL_SHARE: f64 = 0.2;
/// Size-conditional calibration compares a payload with this share of the owner's training payloads (those
/// nearest to it in size; see [`SizeCalibration`])…
pub const CAL_WINDOW_SHARE: f64 = 0.5;
/// … and with at least this many (the readiness quota: a first model calibrates on all its rows).
pub const CAL_MIN_WINDOW: usize = 30;
/// Column groups of the mouse input at [`MouseInput::RichTurns`], in input order: contract features 1–10, the
/// angle group, the click-timing group, the turn quantiles (`column_weights` gives each group the weight of its
/// effective number of independent columns).
pub const MOUSE_GROUPS: [usize; 4] = [
    MOUSE_COLUMNS.end - MOUSE_COLUMNS.start,
    groups::ANGLES.end - groups::ANGLES.start,
    groups::CLICK_TIMING.end - groups::CLICK_TIMING.start,
    MOUSE_TURN_COLUMNS,
];
/// Training computes its leave-one-out distances from a matrix of all pairs (8 n² bytes: 8 MB at this size) up
/// to this many rows, row by row (the same results, twice the distance computations) above it: the retraining
/// set's size is configurable.
const PAIR_MATRIX_MAX_ROWS: usize = 1024;
/// Bound of a column's dispersion weight in `column_weights` (and of its inverse).
const MAX_COLUMN_WEIGHT: f64 = 4.0;
/// Most training rows whose pairs estimate a column's dispersion in `column_weights` (rows spread evenly).
const DISPERSION_MAX_ROWS: usize = 256;

/// A stored vector: the 15 contract features and, when a version that extracts it stored it, the rich vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredVector {
    pub contract: FeatureVector,
    /// The rich vector; values its version did not extract (see `rich_len`) are 0 and never read.
    pub rich: Option<RichVector>,
    /// Rich values actually stored: [`RICH_COUNT`], [`RICH_COUNT_V2`] or [`RICH_COUNT_V1`] (earlier versions),
    /// or 0.
    pub rich_len: usize,
}

impl From<FeatureVector> for StoredVector {
    fn from(contract: FeatureVector) -> Self {
        StoredVector {
            contract,
            rich: None,
            rich_len: 0,
        }
    }
}

impl StoredVector {
    /// Both vectors of a payload.
    pub fn of(p: &Payload) -> Self {
        StoredVector {
            contract: crate::features::extract_features(p),
            rich: Some(extract_rich(p)),
            rich_len: RICH_COUNT,
        }
    }

    /// The stored values: the 15 contract features, then the stored part of the rich vector.
    pub fn to_values(&self) -> Vec<f64> {
        let mut v = Vec::with_capacity(FEATURE_COUNT + RICH_COUNT);
        v.extend_from_slice(&self.contract);
        if let Some(r) = &self.rich {
            v.extend_from_slice(&r[..self.rich_len.min(RICH_COUNT)]);
        }
        v
    }

    /// Parses [`to_values`](Self::to_values) output: 15 values (imported or stored by an earlier version),
    /// 15 + [`RICH_COUNT_V1`] or 15 + [`RICH_COUNT_V2`] (earlier versions) or 15 + [`RICH_COUNT`]; anything
    /// else is `None`.
    pub fn from_values(values: &[f64]) -> Option<Self> {
        let contract = <[f64; FEATURE_COUNT]>::try_from(values.get(..FEATURE_COUNT)?).ok()?;
        let stored = &values[FEATURE_COUNT..];
        let rich_len = stored.len();
        if ![0, RICH_COUNT_V1, RICH_COUNT_V2, RICH_COUNT].contains(&rich_len) {
            return None;
        }
        let rich = (rich_len > 0).then(|| {
            let mut r = [0.0; RICH_COUNT];
            r[..rich_len].copy_from_slice(stored);
            r
        });
        Some(StoredVector {
            contract,
            rich,
            rich_len,
        })
    }

    /// The richest mouse input this vector supports.
    pub fn mouse_input(&self) -> MouseInput {
        match (self.rich, self.rich_len) {
            (Some(_), n) if n >= RICH_COUNT_V2 => MouseInput::RichTurns,
            (Some(_), n) if n >= RICH_COUNT_V1 => MouseInput::Rich,
            _ => MouseInput::Contract,
        }
    }

    /// The payload's mouse points, when the version that stored the vector recorded them.
    pub fn mouse_points(&self) -> Option<f64> {
        match self.rich {
            Some(r) if self.rich_len >= RICH_COUNT => Some(r[groups::SIZE]),
            _ => None,
        }
    }

    pub fn is_mouse(&self) -> bool {
        self.contract[idx::AVG_MOUSE_SPEED] > 0.0
    }

    pub fn is_typing(&self) -> bool {
        self.contract[idx::TYPING_SPEED_KPS] > 0.0
    }
}

fn slog(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

/// The mouse model's input row at the given level (`rich` is read only above [`MouseInput::Contract`]).
fn mouse_input(contract: &FeatureVector, rich: &RichVector, level: MouseInput, out: &mut Vec<f64>) {
    out.extend(contract[MOUSE_COLUMNS].iter().map(|&x| slog(x)));
    if level >= MouseInput::Rich {
        for g in MOUSE_RICH_GROUPS {
            out.extend_from_slice(&rich[g]);
        }
    }
    if level >= MouseInput::RichTurns {
        out.extend_from_slice(&rich[groups::TURN_QUANTILES]);
    }
}

/// The typing model's input row.
fn typing_input(contract: &FeatureVector, out: &mut Vec<f64>) {
    out.extend(contract[TYPING_COLUMNS].iter().map(|&x| slog(x)));
}

/// Training parameters; `Default` is what the server uses.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainParams {
    /// Mouse rows (vectors that moved the mouse) the mouse model needs.
    pub mouse_rows: usize,
    /// Typing rows (vectors that typed) the typing model needs…
    pub typing_rows: usize,
    /// …of which this many with digraph timings.
    pub digraph_rows: usize,
    /// No model trains on fewer rows than this, whatever the quotas say.
    pub min_rows: usize,
    /// Significance level: a session whose calibrated score is below it is an anomaly.
    pub alpha: f64,
    /// Unused by the k-NN models (they are deterministic); kept so callers that set it still compile.
    pub parallelism: Parallelism,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            mouse_rows: MIN_MODEL_ROWS,
            typing_rows: MIN_MODEL_ROWS,
            digraph_rows: 0,
            min_rows: MIN_MODEL_ROWS,
            alpha: 0.05,
            parallelism: Parallelism::Rayon,
        }
    }
}

/// A standardised k-NN distance model with its leave-one-out calibration.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnModel {
    /// How two standardised rows are compared.
    pub metric: Metric,
    pub n_cols: usize,
    pub k: usize,
    pub center: Vec<f64>,
    pub scale: Vec<f64>,
    /// Standardised training rows, row-major.
    pub rows: Vec<f64>,
    /// Leave-one-out distances of the training rows, ascending.
    pub loo: Vec<f64>,
    /// ln-distance scale of the tail beyond the farthest training row.
    pub tail: f64,
    /// Calibration conditional on the payload's size (mouse models trained on vectors that record it);
    /// `None`: every score is calibrated against all of [`loo`](Self::loo).
    pub by_size: Option<SizeCalibration>,
}

/// Size-conditional calibration (a Mondrian, or local, conformal p-value): a payload's distance is compared
/// with the leave-one-out distances of the [`window`](Self::window) training payloads nearest to it in
/// ln(1 + mouse points), not with all of them.
///
/// Why: a payload's statistics are means and quantiles over its points, so a small payload's vector is
/// noisier and lies farther from the owner's payloads whoever produced it, and a large one nearer. Against
/// all rows, the owner's small payloads look foreign and a large impostor payload looks ordinary; against
/// rows of its own size, a distance is judged by what is usual *for that much data*. The p-value keeps its
/// meaning (the share of comparable owner payloads at least as far). Measured offline on the dev protocol
/// (`scripts/maxidom/offline_dev.py`, chunk protocol, pooled, same model otherwise): per payload AUC 0.833 →
/// 0.846, per chunk (last payload) 0.912 → 0.927 and EER 0.170 → 0.151; 9 of the 10 users rank better or
/// equal (user35 0.785 → 0.862), user20 worse (0.993 → 0.957: its payload sizes differ from the others', and
/// size is itself a trace of the person that this calibration no longer counts against an impostor).
/// Not tuned on the dev data: a window of a quarter, a third or two thirds of the rows gives 0.925–0.927
/// (EER 0.152–0.164). A model of at most [`CAL_MIN_WINDOW`] training rows (a first model at the readiness
/// quota) compares every payload with all of them, as before.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeCalibration {
    /// ln(1 + mouse points) of each training row, ascending.
    pub ln_size: Vec<f64>,
    /// The same rows' leave-one-out distances, in the same order.
    pub loo: Vec<f64>,
    /// How many rows a payload is compared with: max([`CAL_MIN_WINDOW`], ⌊n · [`CAL_WINDOW_SHARE`]⌋),
    /// at most n.
    pub window: usize,
}

impl SizeCalibration {
    /// The [`window`](Self::window) rows nearest to `ln_size` (a contiguous range of the size order; ties
    /// go to the smaller side).
    pub fn nearest(&self, ln_size: f64) -> std::ops::Range<usize> {
        let n = self.ln_size.len();
        let m = self.window.min(n);
        let mut lo = self.ln_size.partition_point(|&x| x < ln_size);
        let mut hi = lo;
        while hi - lo < m {
            if lo > 0 && (hi == n || ln_size - self.ln_size[lo - 1] <= self.ln_size[hi] - ln_size) {
                lo -= 1;
            } else {
                hi += 1;
            }
        }
        lo..hi
    }
}

/// ln-distance scale of the tail beyond the farthest of the sorted leave-one-out distances: the mean
/// ln-excess of the farthest [`TAIL_SHARE`] over the first of them.
fn tail_scale(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.1;
    }
    let first = ((n as f64) * (1.0 - TAIL_SHARE)).floor() as usize;
    let top = &sorted[first.min(n - 1)..];
    let base = ln_pos(top[0]);
    if top.len() > 1 {
        (top.iter().map(|&x| ln_pos(x) - base).sum::<f64>() / top.len() as f64).max(1e-3)
    } else {
        0.1
    }
}

/// Conformal p-value of a distance against sorted leave-one-out distances: (count at least as far + 1) /
/// (n + 1), with an exponential tail in ln-distance beyond the farthest.
fn conformal(sorted: &[f64], tail: f64, d: f64) -> f64 {
    let n = sorted.len();
    if n == 0 || d.is_nan() {
        return 0.0;
    }
    let at_least = n - sorted.partition_point(|&x| x < d);
    let np1 = (n + 1) as f64;
    if at_least > 0 {
        return (at_least as f64 + 1.0) / np1;
    }
    let over = (ln_pos(d) - ln_pos(sorted[n - 1])).max(0.0) / tail;
    (-over).exp() / np1
}

fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let pos = q * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Mean of the `k` smallest values (all of them when fewer), reordering `d`.
fn mean_of_smallest(d: &mut [f64], k: usize) -> f64 {
    let k = k.min(d.len());
    if k == 0 {
        return 0.0;
    }
    if k < d.len() {
        d.select_nth_unstable_by(k - 1, f64::total_cmp);
    }
    d[..k].iter().sum::<f64>() / k as f64
}

/// Weights of the columns' terms in the p = ¼ distance, from the owner's standardised training rows `z` (n rows
/// of c columns, row-major) and the column `groups` (counts in column order).
///
/// Two corrections to median/IQR scaling, both measured on the owner's own rows only:
/// 1. *Dispersion in the metric's units.* IQR scaling makes a Gaussian column contribute ~1 on average to
///    Σ |Δ|^¼, but a column with many ties or two modes contributes less (most owner pairs differ by 0 or by a
///    lot), so it counts less than its neighbours. Each column is weighted by 1 / (mean over the owner's pairs of
///    |Δ|^¼), so every column contributes 1 on average between two owner payloads; bounded to
///    [1/[`MAX_COLUMN_WEIGHT`], [`MAX_COLUMN_WEIGHT`]] (a column the owner almost never varies would otherwise
///    weigh without limit; the bound is not reached by the dev data's grown models, 0.89–1.46); a column constant
///    for the owner keeps 1.
/// 2. *Redundancy.* Columns computed from the same quantities (the contract's speeds and accelerations, the
///    turn-angle statistics) are correlated and count several times. Whitening with a covariance estimate would
///    undo that but amplifies the owner's low-variance, noisy directions (tried: worse). Instead each group's
///    columns share its effective number of independent columns, the participation ratio (Σλ)² / Σλ² =
///    g² / Σ_jk r_jk² of the group's Spearman correlation matrix (g columns, r on mid-ranks), i.e. each column is
///    weighted by g / Σ_jk r_jk²: a group of g independent columns keeps weight 1, g copies of one column weigh
///    1/g each.
///
/// Offline on the dev protocol (`scripts/maxidom/offline_dev.py --variant robust,pmd+redund-groups`, shipped
/// model otherwise): pooled chunk-last AUC 0.931 → 0.936, EER 0.150 → 0.139.
fn column_weights(z: &[f64], n: usize, c: usize, groups: &[usize]) -> Vec<f64> {
    // The mean over pairs of rows spread evenly over the training set (all rows up to DISPERSION_MAX_ROWS): its
    // sampling error over 32,640 pairs is far below the owner's own spread, and above that size the pass over
    // every pair cost as much as the leave-one-out distances themselves (a 600-vector retraining).
    let m = n.min(DISPERSION_MAX_ROWS);
    let sample: Vec<&[f64]> = (0..m)
        .map(|t| {
            let i = t * n / m;
            &z[i * c..(i + 1) * c]
        })
        .collect();
    let mut disp = vec![0.0; c];
    for (i, zi) in sample.iter().enumerate() {
        for zk in &sample[i + 1..] {
            for ((s, a), b) in disp.iter_mut().zip(*zi).zip(*zk) {
                *s += (a - b).abs().sqrt().sqrt();
            }
        }
    }
    let pairs = (m * m.saturating_sub(1) / 2).max(1) as f64;
    let mut w: Vec<f64> = disp
        .iter()
        .map(|&s| {
            let mean = s / pairs;
            if mean > 1e-9 {
                (1.0 / mean).clamp(1.0 / MAX_COLUMN_WEIGHT, MAX_COLUMN_WEIGHT)
            } else {
                1.0
            }
        })
        .collect();
    // Centred mid-ranks of every column (ranks are the same for z and the raw values: scale > 0).
    let mut ranks = vec![0.0; n * c];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let centre = (n as f64 + 1.0) / 2.0;
    for j in 0..c {
        order.clear();
        order.extend(0..n);
        order.sort_by(|&a, &b| z[a * c + j].total_cmp(&z[b * c + j]));
        let mut lo = 0;
        while lo < n {
            let mut hi = lo + 1;
            while hi < n && z[order[hi] * c + j] == z[order[lo] * c + j] {
                hi += 1;
            }
            // Rows lo..hi (0-based) tie: each gets the mean of ranks lo + 1 ..= hi.
            let mid = (lo + hi + 1) as f64 / 2.0;
            for &r in &order[lo..hi] {
                ranks[j * n + r] = mid - centre;
            }
            lo = hi;
        }
    }
    let col = |j: usize| &ranks[j * n..(j + 1) * n];
    let norm: Vec<f64> = (0..c)
        .map(|j| col(j).iter().map(|a| a * a).sum::<f64>().sqrt())
        .collect();
    let mut start = 0;
    for &g in groups {
        let mut sum_r2 = 0.0;
        for j in start..start + g {
            for k in start..start + g {
                sum_r2 += if j == k {
                    1.0
                } else if norm[j] > 0.0 && norm[k] > 0.0 {
                    // A constant column has no rank variance: uncorrelated with everything.
                    let r = col(j).iter().zip(col(k)).map(|(a, b)| a * b).sum::<f64>()
                        / (norm[j] * norm[k]);
                    r * r
                } else {
                    0.0
                };
            }
        }
        // sum_r2 ≥ g (the diagonal), so the factor is in (0, 1].
        let factor = g as f64 / sum_r2;
        for x in &mut w[start..start + g] {
            *x *= factor;
        }
        start += g;
    }
    w
}

fn ln_pos(x: f64) -> f64 {
    x.max(1e-12).ln()
}

impl KnnModel {
    /// Fits on a matrix; `None` below `min_rows` rows. Calibration on all rows.
    pub fn fit(m: &Matrix, min_rows: usize) -> Option<Self> {
        Self::fit_sized(m, min_rows, None)
    }

    /// Fits on a matrix; with `points` (each row's payload size, in row order) the calibration is conditional
    /// on size ([`SizeCalibration`]). `None` below `min_rows` rows, or when `points` does not match the rows.
    pub fn fit_sized(m: &Matrix, min_rows: usize, points: Option<&[f64]>) -> Option<Self> {
        Self::fit_weighted(m, min_rows, points, None)
    }

    /// [`fit_sized`](Self::fit_sized), and with `groups` (column counts, in column order, summing to the
    /// matrix's columns) each column's scale is divided by its weight from `column_weights` to the 4th power
    /// (a p = ¼ distance scales |Δ|^¼ by it). The model stores the resulting scale, so scoring is unchanged and
    /// a model trained without groups scores exactly as before. `None` also when `groups` does not match the
    /// columns.
    pub fn fit_weighted(
        m: &Matrix,
        min_rows: usize,
        points: Option<&[f64]>,
        groups: Option<&[usize]>,
    ) -> Option<Self> {
        let (n, c) = (m.n_rows(), m.n_cols);
        if n < min_rows.max(2) || c == 0 {
            return None;
        }
        if groups.is_some_and(|g| g.iter().sum::<usize>() != c || g.contains(&0)) {
            return None;
        }
        let mut center = Vec::with_capacity(c);
        let mut scale = Vec::with_capacity(c);
        let mut col = Vec::with_capacity(n);
        for j in 0..c {
            col.clear();
            col.extend(m.rows().map(|r| if r[j].is_finite() { r[j] } else { 0.0 }));
            col.sort_unstable_by(f64::total_cmp);
            let iqr = quantile_sorted(&col, 0.75) - quantile_sorted(&col, 0.25);
            let mean = col.iter().sum::<f64>() / n as f64;
            let sd = (col.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64).sqrt();
            center.push(quantile_sorted(&col, 0.5));
            // A column that barely varies for this owner would turn any change into a huge distance; the
            // IQR is robust to the owner's own outliers, the std is the fallback for mostly-constant columns.
            scale.push(if iqr > 1e-9 {
                iqr / 1.349
            } else if sd > 1e-9 {
                sd
            } else {
                1.0
            });
        }
        let standardise = |center: &[f64], scale: &[f64]| {
            let mut rows = Vec::with_capacity(n * c);
            for r in m.rows() {
                for j in 0..c {
                    let x = if r[j].is_finite() { r[j] } else { 0.0 };
                    rows.push((x - center[j]) / scale[j]);
                }
            }
            rows
        };
        let mut rows = standardise(&center, &scale);
        if let Some(groups) = groups {
            let w = column_weights(&rows, n, c, groups);
            for (s, w) in scale.iter_mut().zip(&w) {
                // The p = ¼ distance sums |Δ / scale|^¼: weight w on that term is scale / w⁴.
                *s /= (w * w) * (w * w);
            }
            rows = standardise(&center, &scale);
        }
        let k = ((n as f64).sqrt() / 2.0).round().clamp(1.0, MAX_K as f64) as usize;
        let mut model = KnnModel {
            metric: Metric::Quarter,
            n_cols: c,
            k,
            center,
            scale,
            rows,
            loo: Vec::new(),
            tail: 0.0,
            by_size: None,
        };
        if points.is_some_and(|p| p.len() != n) {
            return None;
        }
        let mut d = Vec::with_capacity(n);
        let mut loo = Vec::with_capacity(n);
        if n <= PAIR_MATRIX_MAX_ROWS {
            // Each pair's distance once (the metric is symmetric to the bit: |a − b| = |b − a|), then every
            // row's leave-one-out distance from its row of the matrix: the same values in the same order as
            // the row-by-row loop below, in half the time.
            let mut all = vec![0.0; n * n];
            for i in 0..n {
                let zi = &model.rows[i * c..(i + 1) * c];
                for j in i + 1..n {
                    let dij = model.metric.dist(zi, &model.rows[j * c..(j + 1) * c]);
                    all[i * n + j] = dij;
                    all[j * n + i] = dij;
                }
            }
            for i in 0..n {
                d.clear();
                d.extend(
                    all[i * n..(i + 1) * n]
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .map(|(_, &x)| x),
                );
                loo.push(mean_of_smallest(&mut d, k));
            }
        } else {
            for i in 0..n {
                d.clear();
                let zi = &model.rows[i * c..(i + 1) * c];
                for (j, zj) in model.rows.chunks_exact(c).enumerate() {
                    if i != j {
                        d.push(model.metric.dist(zi, zj));
                    }
                }
                loo.push(mean_of_smallest(&mut d, k));
            }
        }
        model.by_size = points.map(|points| {
            let mut pairs: Vec<(f64, f64)> = points
                .iter()
                .map(|&p| {
                    if p.is_finite() {
                        p.max(0.0).ln_1p()
                    } else {
                        0.0
                    }
                })
                .zip(loo.iter().copied())
                .collect();
            // Stable: rows of equal size keep their training order (deterministic windows).
            pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
            SizeCalibration {
                ln_size: pairs.iter().map(|p| p.0).collect(),
                loo: pairs.iter().map(|p| p.1).collect(),
                window: CAL_MIN_WINDOW
                    .max((n as f64 * CAL_WINDOW_SHARE).floor() as usize)
                    .min(n),
            }
        });
        loo.sort_unstable_by(f64::total_cmp);
        model.tail = tail_scale(&loo);
        model.loo = loo;
        Some(model)
    }

    pub fn n_rows(&self) -> usize {
        self.loo.len()
    }

    /// Mean distance of a raw input row to its k nearest training rows.
    pub fn distance(&self, x: &[f64]) -> f64 {
        if x.len() != self.n_cols {
            return f64::INFINITY;
        }
        let z: Vec<f64> = x
            .iter()
            .zip(self.center.iter().zip(&self.scale))
            .map(|(&v, (c, s))| (if v.is_finite() { v } else { 0.0 } - c) / s)
            .collect();
        let mut d: Vec<f64> = self
            .rows
            .chunks_exact(self.n_cols)
            .map(|r| self.metric.dist(&z, r))
            .collect();
        mean_of_smallest(&mut d, self.k)
    }

    /// Calibrated score of a distance: the share of the owner's leave-one-out distances at least as large,
    /// (count + 1) / (n + 1), with an exponential tail beyond the largest. In (0, 1]; higher is more like
    /// the owner.
    pub fn p_value(&self, d: f64) -> f64 {
        conformal(&self.loo, self.tail, d)
    }

    /// [`p_value`](Self::p_value) for a payload with `points` mouse points: against the training rows of
    /// similar size when the model has a [`SizeCalibration`], else against all.
    pub fn p_value_for_size(&self, d: f64, points: usize) -> f64 {
        let Some(c) = &self.by_size else {
            return self.p_value(d);
        };
        let mut w = c.loo[c.nearest((points as f64).ln_1p())].to_vec();
        w.sort_unstable_by(f64::total_cmp);
        conformal(&w, tail_scale(&w), d)
    }
}

/// The distance between two standardised rows.
///
/// Models trained now use a fractional distance, (Σ |aᵢ − bᵢ|^p)^(1/p) with p < 1 (first p = ½, now ¼): with
/// 20 standardised columns whose deviations are heavy-tailed, the Euclidean distance is dominated by the one
/// column that deviates most, and fractional metrics keep more contrast between near and far points in many
/// dimensions (Aggarwal, Hinneburg and Keim, "On the surprising behavior of distance metrics in high
/// dimensional space", ICDT 2001). Measured offline on the dev protocol (the numpy mirror, same splits, every
/// other setting unchanged): pooled per-payload AUC 0.802 (Euclidean) → 0.814 (p = 1) → 0.823 (p = ½), better
/// for 9 of the 10 users each time, so the gain is not one user's. With the turn quantiles (23 columns) the
/// same holds one step further: p = ¼ (`Metric::Quarter`) against p = ½, offline mirror of the chunk protocol
/// (`scripts/maxidom/offline_dev.py`), pooled per-payload AUC 0.826 → 0.833 and per chunk 0.904 → 0.912, no
/// user worse. ¼ rather than the similar 0.3 because |d|^¼ is two square roots. Models stored by earlier
/// versions keep their distance (their calibration was computed with it) until their next training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Euclidean,
    /// Minkowski with p = ½ (models trained by the previous version).
    Fractional,
    /// Minkowski with p = ¼.
    Quarter,
}

/// Partial sums of [`Metric::Quarter`] (four: two SSE2 vectors of two doubles, or one AVX vector).
const QUARTER_LANES: usize = 4;

impl Metric {
    fn dist(self, a: &[f64], b: &[f64]) -> f64 {
        match self {
            Metric::Euclidean => a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f64>()
                .sqrt(),
            Metric::Fractional => {
                let s = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs().sqrt())
                    .sum::<f64>();
                s * s
            }
            Metric::Quarter => {
                // |d|^¼ as two square roots: a general `powf` would cost ~10× more per column on every /score.
                // Summed in QUARTER_LANES independent partial sums: one running sum is a chain the compiler must
                // keep in order (floating-point addition is not associative), so it computed one column at a
                // time; separate lanes let it take the square roots of several columns in one SIMD instruction.
                let (a4, a_rest) = a.as_chunks::<QUARTER_LANES>();
                let (b4, b_rest) = b.as_chunks::<QUARTER_LANES>();
                let mut lanes = [0.0; QUARTER_LANES];
                for (x, y) in a4.iter().zip(b4) {
                    for l in 0..QUARTER_LANES {
                        lanes[l] += (x[l] - y[l]).abs().sqrt().sqrt();
                    }
                }
                let mut s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
                for (x, y) in a_rest.iter().zip(b_rest) {
                    s += (x - y).abs().sqrt().sqrt();
                }
                let s2 = s * s;
                s2 * s2
            }
        }
    }
}

/// A legacy (format 1) Isolation Forest and its raw decision threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedModel {
    pub forest: IsolationForest,
    /// Decision scores below this are anomalous.
    pub threshold: f64,
    /// Rows it was trained on.
    pub n_rows: usize,
}

impl TrainedModel {
    fn decision(&self, row: &[f64]) -> f64 {
        self.forest.try_decision_function(row).unwrap_or(UNSCORABLE)
    }
}

/// One modality's model.
#[derive(Debug, Clone, PartialEq)]
pub enum Detector {
    Knn(KnnModel),
    /// Stored by an earlier version; scores on the raw contract columns.
    LegacyForest(TrainedModel),
}

impl Detector {
    pub fn n_rows(&self) -> usize {
        match self {
            Detector::Knn(m) => m.n_rows(),
            Detector::LegacyForest(m) => m.n_rows,
        }
    }
}

/// Both models of one profile, as stored in the database.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileModels {
    pub mouse: Option<Detector>,
    pub typing: Option<Detector>,
    /// What the mouse model reads.
    pub mouse_input: MouseInput,
    /// Significance level of `is_anomaly`.
    pub alpha: f64,
    /// The profile's stored-vector count when this training read its data (0 for legacy models): the next
    /// training is due when the profile has grown well past it.
    pub trained_on: u64,
    /// Unix ms at which training finished (supplied by the caller: this crate reads no clock).
    pub trained_at_ms: i64,
    /// Model generation: 1 for the first training, +1 per retraining. Caches key on it.
    pub version: u64,
}

/// The `/score` response body; field order is the wire order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// A legacy forest's answer (not a p-value): not part of the wire.
    #[serde(skip)]
    pub legacy: bool,
    pub is_anomaly: bool,
    pub score: f64,
    pub typing_threshold: f64,
    pub mouse_threshold: f64,
    pub mouse_score: f64,
    pub typing_score: f64,
    /// This payload's own calibrated score (the modalities' combination), before the run's evidence.
    pub payload_score: f64,
    /// Payloads whose evidence `score` combines: 1 for a payload scored on its own, more inside a run
    /// ([`Score::in_run`]), 0 when no modality voted (or the model is a legacy forest).
    pub run_payloads: usize,
    /// This payload's weight in its run ([`crate::sequential::payload_weight`]): not part of the wire.
    #[serde(skip)]
    pub weight: f64,
}

impl Score {
    /// Folds this payload into the profile's run (see [`crate::sequential`]): `score` becomes the run's
    /// combined score and `is_anomaly` compares it with `alpha`; `payload_score` keeps the payload's own.
    /// A payload without any voter adds no evidence but still moves the run on in time. Legacy forest
    /// scores are not p-values and do not enter runs.
    pub fn in_run(self, run: &mut Run, span: Option<(f64, f64)>, alpha: f64) -> Score {
        if self.legacy {
            return self;
        }
        let voted = self.run_payloads > 0;
        let vote = Vote {
            p: self.score,
            weight: self.weight,
        };
        let step = run.push(span, voted.then_some(vote));
        match step.score {
            Some(score) => Score {
                is_anomaly: score < alpha,
                score,
                run_payloads: step.payloads,
                ..self
            },
            None => self,
        }
    }
}

/// Trains the models of every modality that has enough rows. Deterministic for given vectors.
///
/// `trained_on` is recorded in the models (see [`ProfileModels::trained_on`]). Fails with
/// [`ModelError::NotEnoughData`] when no modality has enough rows: a profile without any model must keep
/// profiling rather than store an empty model that never flags.
pub fn train_models(
    vectors: &[StoredVector],
    params: &TrainParams,
    trained_on: u64,
    trained_at_ms: i64,
    version: u64,
) -> Result<ProfileModels, ModelError> {
    let mouse_vs: Vec<&StoredVector> = vectors.iter().filter(|v| v.is_mouse()).collect();
    let typing_vs: Vec<&StoredVector> = vectors.iter().filter(|v| v.is_typing()).collect();
    let digraphs = typing_vs
        .iter()
        .filter(|v| v.contract[idx::AVG_FLIGHT_TIME_DIGRAPH] > 0.0)
        .count();
    let level = mouse_vs
        .iter()
        .map(|v| v.mouse_input())
        .min()
        .unwrap_or(MouseInput::Contract);
    let mut mm = Matrix {
        data: Vec::new(),
        n_cols: level.columns(),
    };
    // Size-conditional calibration when every mouse row recorded its size (not rows of earlier versions).
    let mouse_points: Option<Vec<f64>> = mouse_vs.iter().map(|v| v.mouse_points()).collect();
    for v in &mouse_vs {
        let rich = v.rich.unwrap_or([0.0; RICH_COUNT]);
        mouse_input(&v.contract, &rich, level, &mut mm.data);
    }
    let mut tm = Matrix {
        data: Vec::new(),
        n_cols: TYPING_COLUMNS.len(),
    };
    for v in &typing_vs {
        typing_input(&v.contract, &mut tm.data);
    }
    let min = params.min_rows.max(1);
    // Column weights (`column_weights`) for models on the current input only: that is where they were measured
    // (on the earlier inputs they were neutral or mixed offline), and older vectors keep training as before.
    let weighted = level == MouseInput::RichTurns && mouse_points.is_some();
    let mouse = KnnModel::fit_weighted(
        &mm,
        params.mouse_rows.max(min),
        mouse_points.as_deref(),
        weighted.then_some(&MOUSE_GROUPS[..]),
    )
    .map(Detector::Knn);
    let typing = if digraphs >= params.digraph_rows {
        KnnModel::fit(&tm, params.typing_rows.max(min)).map(Detector::Knn)
    } else {
        None
    };
    if mouse.is_none() && typing.is_none() {
        return Err(ModelError::NotEnoughData {
            mouse_rows: mm.n_rows(),
            typing_rows: tm.n_rows(),
            min,
        });
    }
    Ok(ProfileModels {
        mouse,
        typing,
        mouse_input: level,
        alpha: params.alpha,
        trained_on,
        trained_at_ms,
        version,
    })
}

/// Fisher's combination of p-values (closed form for one and two).
fn combine(ps: &[f64]) -> f64 {
    match ps {
        [] => NO_EVIDENCE_SCORE,
        [p] => *p,
        _ => {
            let q: f64 = ps.iter().product();
            if q <= 0.0 {
                return 0.0;
            }
            // P(χ²₂ₘ ≥ −2 ln q) = q Σ_{i<m} (−ln q)^i / i!
            let l = -q.ln();
            let (mut term, mut sum) = (1.0, 1.0);
            for i in 1..ps.len() {
                term *= l / i as f64;
                sum += term;
            }
            (q * sum).min(1.0)
        }
    }
}

impl ProfileModels {
    /// Scores one session's vectors; `mouse_points` and `key_events` open the vote gates, and `mouse_points`
    /// picks the owner's payloads the mouse score is calibrated against ([`SizeCalibration`]).
    pub fn score(
        &self,
        f: &FeatureVector,
        rich: &RichVector,
        mouse_points: usize,
        key_events: usize,
    ) -> Score {
        if self.is_legacy() {
            return self.score_legacy(f, mouse_points, key_events);
        }
        let mut row = Vec::with_capacity(MouseInput::RichTurns.columns());
        let mut vote = |model: &Option<Detector>, gate: bool, mouse: bool| -> Option<f64> {
            let Some(Detector::Knn(m)) = model else {
                return None;
            };
            if !gate {
                return None;
            }
            row.clear();
            if mouse {
                mouse_input(f, rich, self.mouse_input, &mut row);
                Some(m.p_value_for_size(m.distance(&row), mouse_points))
            } else {
                typing_input(f, &mut row);
                Some(m.p_value(m.distance(&row)))
            }
        };
        let mouse = vote(&self.mouse, mouse_points >= MIN_MOUSE_POINTS, true);
        let typing = vote(&self.typing, key_events >= MIN_KEY_EVENTS, false);
        let voters: Vec<f64> = mouse.iter().chain(typing.iter()).copied().collect();
        let score = combine(&voters);
        let report =
            |p: Option<f64>| p.map_or((ABSTAIN_SCORE, ABSTAIN_THRESHOLD), |p| (p, self.alpha));
        let (mouse_score, mouse_threshold) = report(mouse);
        let (typing_score, typing_threshold) = report(typing);
        Score {
            legacy: false,
            is_anomaly: !voters.is_empty() && score < self.alpha,
            score,
            typing_threshold,
            mouse_threshold,
            mouse_score,
            typing_score,
            payload_score: score,
            run_payloads: usize::from(!voters.is_empty()),
            weight: payload_weight(mouse.map(|_| mouse_points), typing.is_some()),
        }
    }

    /// Whether these are models stored by an earlier version (raw forest scores, not calibrated p-values).
    pub fn is_legacy(&self) -> bool {
        matches!(self.mouse, Some(Detector::LegacyForest(_)))
            || matches!(self.typing, Some(Detector::LegacyForest(_)))
    }

    /// The earlier version's scoring (raw forest decisions, `score` the minimum).
    fn score_legacy(&self, f: &FeatureVector, mouse_points: usize, key_events: usize) -> Score {
        let vote = |model: &Option<Detector>, gate: bool, row: &[f64]| match model {
            Some(Detector::LegacyForest(m)) if gate => Some((m.decision(row), m.threshold)),
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
        let (mouse_score, mouse_threshold) = mouse.unwrap_or((ABSTAIN_SCORE, ABSTAIN_THRESHOLD));
        let (typing_score, typing_threshold) = typing.unwrap_or((ABSTAIN_SCORE, ABSTAIN_THRESHOLD));
        let score = mouse_score.min(typing_score);
        Score {
            legacy: true,
            is_anomaly: flags(mouse) || flags(typing),
            score,
            typing_threshold,
            mouse_threshold,
            mouse_score,
            typing_score,
            payload_score: score,
            run_payloads: 0,
            weight: 1.0,
        }
    }

    /// Extracts the vectors of a payload and scores them with the payload's vote gates.
    pub fn score_payload(&self, p: &Payload) -> (StoredVector, Score) {
        let v = StoredVector::of(p);
        let rich = v.rich.unwrap_or([0.0; RICH_COUNT]);
        let s = self.score(
            &v.contract,
            &rich,
            p.mouse_point_count(),
            p.key_event_count(),
        );
        (v, s)
    }

    /// Encodes the models for storage. Layout (little-endian): magic `VBPM`, format u16 (2), version u64,
    /// trained_at i64, trained_on u64, alpha f64, mouse input u8 ([`MouseInput`]), then mouse and typing, each a presence byte
    /// (0 absent, 2 Euclidean k-NN, 3 p = ½ k-NN, 4 p = ¼ k-NN, 5 p = ¼ k-NN with a size calibration, see
    /// [`Metric`]) followed by n_cols u32, k u32, n_rows u64, centre and scale (n_cols f64 each),
    /// the standardised rows (n_rows · n_cols f64), the sorted leave-one-out distances (n_rows f64) and the
    /// tail scale f64; with presence 5 then the [`SizeCalibration`]: window u32, ln sizes (n_rows f64,
    /// ascending) and the leave-one-out distances in that order (n_rows f64).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 * 1024);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&BLOB_FORMAT.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.trained_at_ms.to_le_bytes());
        out.extend_from_slice(&self.trained_on.to_le_bytes());
        out.extend_from_slice(&self.alpha.to_le_bytes());
        out.push(self.mouse_input as u8);
        let f64s = |out: &mut Vec<u8>, xs: &[f64]| {
            for x in xs {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
        for m in [&self.mouse, &self.typing] {
            match m {
                Some(Detector::Knn(m)) => {
                    out.push(match (m.metric, &m.by_size) {
                        (Metric::Quarter, Some(_)) => KNN_QUARTER_SIZED,
                        (Metric::Euclidean, _) => KNN_EUCLIDEAN,
                        (Metric::Fractional, _) => KNN_FRACTIONAL,
                        (Metric::Quarter, None) => KNN_QUARTER,
                    });
                    // Column counts are 4..=20 and k ≤ 10: far below u32::MAX.
                    out.extend_from_slice(&(m.n_cols as u32).to_le_bytes());
                    out.extend_from_slice(&(m.k as u32).to_le_bytes());
                    out.extend_from_slice(&(m.loo.len() as u64).to_le_bytes());
                    f64s(&mut out, &m.center);
                    f64s(&mut out, &m.scale);
                    f64s(&mut out, &m.rows);
                    f64s(&mut out, &m.loo);
                    out.extend_from_slice(&m.tail.to_le_bytes());
                    // Only p = ¼ models are trained with a size calibration (the encoding above says so).
                    if let (Metric::Quarter, Some(c)) = (m.metric, &m.by_size) {
                        // window ≤ rows ≤ MAX_ROWS: fits a u32.
                        out.extend_from_slice(&(c.window as u32).to_le_bytes());
                        f64s(&mut out, &c.ln_size);
                        f64s(&mut out, &c.loo);
                    }
                }
                // Legacy models are never re-encoded by the server (a training replaces them); encoding one
                // as absent keeps this total.
                None | Some(Detector::LegacyForest(_)) => out.push(0),
            }
        }
        out
    }

    /// Decodes [`to_bytes`](Self::to_bytes) output (and format-1 blobs of earlier versions), validating every
    /// part.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let format = u16::from_le_bytes(r.array()?);
        let version = u64::from_le_bytes(r.array()?);
        let trained_at_ms = i64::from_le_bytes(r.array()?);
        let models = match format {
            LEGACY_FORMAT => {
                let mouse = r.legacy(MOUSE_COLUMNS.len())?;
                let typing = r.legacy(TYPING_COLUMNS.len())?;
                ProfileModels {
                    mouse: mouse.map(Detector::LegacyForest),
                    typing: typing.map(Detector::LegacyForest),
                    mouse_input: MouseInput::Contract,
                    alpha: TrainParams::default().alpha,
                    trained_on: 0,
                    trained_at_ms,
                    version,
                }
            }
            BLOB_FORMAT => {
                let trained_on = u64::from_le_bytes(r.array()?);
                let alpha = f64::from_le_bytes(r.array()?);
                if !(0.0..=1.0).contains(&alpha) {
                    return Err(corrupt("alpha out of range"));
                }
                let mouse_input = match r.array::<1>()?[0] {
                    0 => MouseInput::Contract,
                    1 => MouseInput::Rich,
                    2 => MouseInput::RichTurns,
                    other => return Err(corrupt(format!("mouse input byte {other}"))),
                };
                let mouse = r.knn(mouse_input.columns())?;
                let typing = r.knn(TYPING_COLUMNS.len())?;
                ProfileModels {
                    mouse: mouse.map(Detector::Knn),
                    typing: typing.map(Detector::Knn),
                    mouse_input,
                    alpha,
                    trained_on,
                    trained_at_ms,
                    version,
                }
            }
            other => {
                return Err(corrupt(format!(
                    "format {other} is not supported (this build reads {LEGACY_FORMAT} and {BLOB_FORMAT})"
                )));
            }
        };
        if r.pos != bytes.len() {
            return Err(corrupt(format!("{} trailing bytes", bytes.len() - r.pos)));
        }
        Ok(models)
    }
}

const MAGIC: &[u8; 4] = b"VBPM";
const LEGACY_FORMAT: u16 = 1;
const BLOB_FORMAT: u16 = 2;
/// Presence byte of a k-NN model with the Euclidean distance (written by the previous version).
const KNN_EUCLIDEAN: u8 = 2;
/// Presence byte of a k-NN model with the fractional distance ([`Metric`]).
const KNN_FRACTIONAL: u8 = 3;
/// Presence byte of a k-NN model with the Minkowski p = ¼ distance ([`Metric::Quarter`]).
const KNN_QUARTER: u8 = 4;
/// Presence byte of a p = ¼ k-NN model with a [`SizeCalibration`].
const KNN_QUARTER_SIZED: u8 = 5;
/// Most training rows a decoded model may claim (the server trains on at most a few hundred).
const MAX_ROWS: usize = 1 << 20;

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

    fn f64s(&mut self, n: usize) -> Result<Vec<f64>, ModelError> {
        let bytes = self.take(n.checked_mul(8).ok_or_else(|| corrupt("length"))?)?;
        let out: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b)
            })
            .collect();
        if out.iter().any(|x| !x.is_finite()) {
            return Err(corrupt("non-finite value"));
        }
        Ok(out)
    }

    fn knn(&mut self, n_cols: usize) -> Result<Option<KnnModel>, ModelError> {
        let presence = self.array::<1>()?[0];
        let metric = match presence {
            KNN_EUCLIDEAN => Metric::Euclidean,
            KNN_FRACTIONAL => Metric::Fractional,
            KNN_QUARTER | KNN_QUARTER_SIZED => Metric::Quarter,
            _ => Metric::Euclidean,
        };
        match presence {
            0 => Ok(None),
            KNN_EUCLIDEAN | KNN_FRACTIONAL | KNN_QUARTER | KNN_QUARTER_SIZED => {
                let cols = u32::from_le_bytes(self.array()?) as usize;
                if cols != n_cols {
                    return Err(corrupt(format!(
                        "model has {cols} columns, expected {n_cols}"
                    )));
                }
                let k = u32::from_le_bytes(self.array()?) as usize;
                let n = usize::try_from(u64::from_le_bytes(self.array()?))
                    .ok()
                    .filter(|&n| (1..=MAX_ROWS).contains(&n))
                    .ok_or_else(|| corrupt("row count"))?;
                if !(1..=MAX_K).contains(&k) {
                    return Err(corrupt("k out of range"));
                }
                let center = self.f64s(n_cols)?;
                let scale = self.f64s(n_cols)?;
                if scale.iter().any(|&s| s <= 0.0) {
                    return Err(corrupt("scale must be positive"));
                }
                let rows = self.f64s(n * n_cols)?;
                let loo = self.f64s(n)?;
                if loo.windows(2).any(|w| w[0] > w[1]) {
                    return Err(corrupt("calibration distances are not sorted"));
                }
                let tail = f64::from_le_bytes(self.array()?);
                if !(tail.is_finite() && tail > 0.0) {
                    return Err(corrupt("tail scale"));
                }
                let by_size = if presence == KNN_QUARTER_SIZED {
                    let window = u32::from_le_bytes(self.array()?) as usize;
                    if !(1..=n).contains(&window) {
                        return Err(corrupt("calibration window out of range"));
                    }
                    let ln_size = self.f64s(n)?;
                    if ln_size.windows(2).any(|w| w[0] > w[1]) {
                        return Err(corrupt("calibration sizes are not sorted"));
                    }
                    let by_size_loo = self.f64s(n)?;
                    Some(SizeCalibration {
                        ln_size,
                        loo: by_size_loo,
                        window,
                    })
                } else {
                    None
                };
                Ok(Some(KnnModel {
                    metric,
                    n_cols,
                    k,
                    center,
                    scale,
                    rows,
                    loo,
                    tail,
                    by_size,
                }))
            }
            other => Err(corrupt(format!("presence byte {other}"))),
        }
    }

    fn legacy(&mut self, n_features: usize) -> Result<Option<TrainedModel>, ModelError> {
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
    use crate::synth::{Persona, SessionGenerator};

    /// Vectors around a centre with small deterministic spread, all counting as mouse and typing.
    fn cloud(n: usize, centre: f64, rich: bool) -> Vec<StoredVector> {
        let mut rng = crate::synth::Rng::new(1);
        (0..n)
            .map(|_| {
                let mut v = [0.0; FEATURE_COUNT];
                for x in v.iter_mut() {
                    *x = centre + rng.normal();
                }
                let r = rich.then(|| {
                    let mut r = [0.0; RICH_COUNT];
                    for x in r.iter_mut() {
                        *x = 1.0 + 0.1 * rng.normal();
                    }
                    // Payload sizes of 50–500 mouse points.
                    r[groups::SIZE] = (50.0 * 1.1f64.powf(rng.normal() * 10.0)).clamp(50.0, 500.0);
                    r
                });
                StoredVector {
                    contract: v,
                    rich: r,
                    rich_len: if rich { RICH_COUNT } else { 0 },
                }
            })
            .collect()
    }

    /// A score with its run weight (which follows the payload's size) set aside.
    fn without_weight(s: Score) -> Score {
        Score { weight: 0.0, ..s }
    }

    #[test]
    fn stored_vectors_round_trip() {
        let vs = cloud(2, 5.0, true);
        let values = vs[0].to_values();
        assert_eq!(values.len(), FEATURE_COUNT + RICH_COUNT);
        assert_eq!(StoredVector::from_values(&values), Some(vs[0]));
        let plain = StoredVector::from(vs[1].contract);
        assert_eq!(StoredVector::from_values(&plain.to_values()), Some(plain));
        assert_eq!(StoredVector::from_values(&[0.0; 14]), None);
        assert_eq!(StoredVector::from_values(&[0.0; 16]), None);
        // A vector stored by the previous version (10 rich values) keeps its length and its level.
        let v1 = StoredVector::from_values(&values[..FEATURE_COUNT + RICH_COUNT_V1]).unwrap();
        assert_eq!(
            (v1.rich_len, v1.mouse_input()),
            (RICH_COUNT_V1, MouseInput::Rich)
        );
        assert_eq!(v1.to_values(), &values[..FEATURE_COUNT + RICH_COUNT_V1]);
        assert_eq!(vs[0].mouse_input(), MouseInput::RichTurns);
        assert_eq!(plain.mouse_input(), MouseInput::Contract);
    }

    #[test]
    fn calibration_flags_about_alpha_of_the_owner_and_ranks_far_sessions_lower() {
        let vs = cloud(300, 50.0, true);
        let m = train_models(&vs, &TrainParams::default(), 300, 0, 1).unwrap();
        assert_eq!(m.mouse_input, MouseInput::RichTurns);
        let Some(Detector::Knn(mouse)) = &m.mouse else {
            panic!("no mouse model")
        };
        assert_eq!((mouse.n_rows(), mouse.n_cols, mouse.k), (300, 23, 9));
        // Fresh sessions of the same owner: about α of them fall below α.
        let fresh = {
            let mut rng = crate::synth::Rng::new(99);
            (0..400)
                .map(|_| {
                    let mut v = [0.0; FEATURE_COUNT];
                    for x in v.iter_mut() {
                        *x = 50.0 + rng.normal();
                    }
                    let mut r = [0.0; RICH_COUNT];
                    for x in r.iter_mut() {
                        *x = 1.0 + 0.1 * rng.normal();
                    }
                    m.score(&v, &r, 100, 100)
                })
                .collect::<Vec<_>>()
        };
        let flagged = fresh.iter().filter(|s| s.is_anomaly).count();
        assert!((5..=50).contains(&flagged), "{flagged}/400 flagged");
        let near = m.score(&[50.0; FEATURE_COUNT], &[1.0; RICH_COUNT], 100, 100);
        let far = m.score(&[80.0; FEATURE_COUNT], &[1.0; RICH_COUNT], 100, 100);
        let farther = m.score(&[500.0; FEATURE_COUNT], &[1.0; RICH_COUNT], 100, 100);
        assert!(!near.is_anomaly && far.is_anomaly && farther.is_anomaly);
        assert!(near.score > far.score && far.score > farther.score && farther.score > 0.0);
    }

    #[test]
    fn training_is_deterministic_and_round_trips() {
        let vs = cloud(120, 5.0, true);
        let a = train_models(&vs, &TrainParams::default(), 120, 7, 1).unwrap();
        let b = train_models(&vs, &TrainParams::default(), 120, 7, 1).unwrap();
        assert_eq!(a, b);
        let back = ProfileModels::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(back, a);
        assert_eq!(
            (back.trained_on, back.version, back.trained_at_ms),
            (120, 1, 7)
        );
        let r = vs[3].rich.unwrap();
        assert_eq!(
            back.score(&vs[3].contract, &r, 50, 50),
            a.score(&vs[3].contract, &r, 50, 50)
        );
        assert_eq!(a.to_bytes()[39], KNN_QUARTER_SIZED);
        // A model stored by the previous version (p = ¼, no size calibration) decodes as it was and
        // calibrates every payload against all rows, whatever its size.
        let mut old = a.clone();
        let Some(Detector::Knn(m)) = &mut old.mouse else {
            panic!("no mouse model")
        };
        assert_eq!(m.metric, Metric::Quarter);
        m.by_size = None;
        let bytes = old.to_bytes();
        assert_eq!(bytes[39], KNN_QUARTER);
        let back = ProfileModels::from_bytes(&bytes).unwrap();
        assert_eq!(back, old);
        // The p-values do not depend on the size (only the run weight does).
        assert_eq!(
            without_weight(back.score(&vs[3].contract, &r, 50, 0)),
            without_weight(back.score(&vs[3].contract, &r, 5000, 0))
        );
        // One stored before that (Euclidean, presence byte 2) decodes with its own metric.
        let Some(Detector::Knn(m)) = &mut old.mouse else {
            panic!("no mouse model")
        };
        m.metric = Metric::Euclidean;
        let bytes = old.to_bytes();
        assert_eq!(bytes[39], KNN_EUCLIDEAN);
        // And one stored with the p = ½ distance.
        let Some(Detector::Knn(m)) = &mut old.mouse else {
            panic!("no mouse model")
        };
        m.metric = Metric::Fractional;
        let bytes = old.to_bytes();
        assert_eq!(bytes[39], KNN_FRACTIONAL);
        assert_eq!(ProfileModels::from_bytes(&bytes).unwrap(), old);
        assert_eq!(ProfileModels::from_bytes(&bytes).unwrap(), old);
    }

    #[test]
    fn size_window_takes_the_nearest_rows() {
        let c = SizeCalibration {
            ln_size: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            loo: vec![0.0; 6],
            window: 3,
        };
        assert_eq!(c.nearest(3.4), 1..4);
        assert_eq!(c.nearest(0.0), 0..3);
        assert_eq!(c.nearest(100.0), 3..6);
        assert_eq!(c.nearest(f64::NAN).len(), 3);
        // A tie goes to the smaller side.
        let two = SizeCalibration {
            window: 2,
            ..c.clone()
        };
        assert_eq!(two.nearest(3.5), 2..4);
        assert_eq!(two.nearest(3.0), 1..3);
        let all = SizeCalibration { window: 6, ..c };
        assert_eq!(all.nearest(2.5), 0..6);
    }

    #[test]
    fn a_payload_is_calibrated_against_the_owners_payloads_of_its_size() {
        // The owner's small payloads (40 points) are three times noisier than their large ones (1,000).
        let mut vs = cloud(200, 20.0, true);
        let mut rng = crate::synth::Rng::new(5);
        for (i, v) in vs.iter_mut().enumerate() {
            let small = i % 2 == 0;
            let spread = if small { 3.0 } else { 1.0 };
            for x in v.contract.iter_mut() {
                *x = 20.0 + spread * rng.normal();
            }
            if let Some(r) = v.rich.as_mut() {
                r[groups::SIZE] = if small { 40.0 } else { 1000.0 };
            }
        }
        let m = train_models(&vs, &TrainParams::default(), 200, 0, 1).unwrap();
        let Some(Detector::Knn(mouse)) = &m.mouse else {
            panic!("no mouse model")
        };
        let c = mouse.by_size.as_ref().unwrap();
        assert_eq!((c.window, c.ln_size.len()), (100, 200));
        // A session as far out as a typical small payload: ordinary for 40 points, unusual for 1,000.
        let mut far = [20.0; FEATURE_COUNT];
        for (j, x) in far.iter_mut().enumerate() {
            *x += if j % 2 == 0 { 3.0 } else { -3.0 };
        }
        let r = vs[0].rich.unwrap();
        let small = m.score(&far, &r, 40, 0);
        let large = m.score(&far, &r, 1000, 0);
        assert!(small.score > 0.2, "{small:?}");
        assert!(large.score < 0.05, "{large:?}");
        // Against all rows it would be in between.
        let all = mouse.p_value(mouse.distance(&{
            let mut row = Vec::new();
            mouse_input(&far, &r, m.mouse_input, &mut row);
            row
        }));
        assert!(large.score < all && all < small.score, "{all}");
        // Vectors stored before the size (13 rich values) train without it.
        vs[7] =
            StoredVector::from_values(&vs[7].to_values()[..FEATURE_COUNT + RICH_COUNT_V2]).unwrap();
        assert_eq!(
            (vs[7].mouse_input(), vs[7].mouse_points()),
            (MouseInput::RichTurns, None)
        );
        let m = train_models(&vs, &TrainParams::default(), 200, 0, 1).unwrap();
        let Some(Detector::Knn(mouse)) = &m.mouse else {
            panic!("no mouse model")
        };
        assert!(mouse.by_size.is_none());
        assert_eq!(m.mouse_input, MouseInput::RichTurns);
        assert_eq!(
            without_weight(m.score(&far, &r, 40, 0)),
            without_weight(m.score(&far, &r, 1000, 0))
        );
    }

    /// n rows of c columns, row-major, from column vectors.
    fn by_rows(cols: &[Vec<f64>]) -> Vec<f64> {
        let n = cols[0].len();
        (0..n)
            .flat_map(|i| cols.iter().map(move |c| c[i]))
            .collect()
    }

    #[test]
    fn column_weights_count_a_group_by_its_independent_columns() {
        let mut rng = crate::synth::Rng::new(3);
        let a: Vec<f64> = (0..50).map(|_| rng.normal()).collect();
        // The same values in another order: the same dispersion, so only the redundancy differs.
        let mut b = a.clone();
        b.reverse();
        b.rotate_left(7);
        // Three copies of one column in a group, the permuted column alone in its own.
        let z = by_rows(&[a.clone(), a.clone(), a.clone(), b]);
        let w = column_weights(&z, 50, 4, &[3, 1]);
        assert!((w[0] / w[3] - 1.0 / 3.0).abs() < 1e-12, "{w:?}");
        assert_eq!(w[0], w[1]);
        assert_eq!(w[1], w[2]);
        // A Gaussian column's mean |Δ|^¼ is about 1, so its dispersion weight is about 1.
        assert!((0.8..1.25).contains(&w[3]), "{w:?}");
    }

    #[test]
    fn column_weights_of_constant_and_nearly_constant_columns() {
        let mut rng = crate::synth::Rng::new(4);
        let varying: Vec<f64> = (0..40).map(|_| rng.normal()).collect();
        let mut rare = vec![0.0; 40];
        rare[5] = 3.0;
        let z = by_rows(&[vec![0.0; 40], varying, rare]);
        let w = column_weights(&z, 40, 3, &[2, 1]);
        // Constant: no dispersion to equalise and no rank variance, so weight 1 and no redundancy with the other.
        assert_eq!(w[0], 1.0);
        assert!((0.7..1.4).contains(&w[1]), "{w:?}");
        // One owner payload in 40 differs: the dispersion weight stops at its bound.
        assert_eq!(w[2], MAX_COLUMN_WEIGHT);
    }

    #[test]
    fn current_mouse_models_weight_their_columns_and_older_inputs_do_not() {
        let vs = cloud(60, 5.0, true);
        let m = train_models(&vs, &TrainParams::default(), 60, 0, 1).unwrap();
        let Some(Detector::Knn(mouse)) = &m.mouse else {
            panic!("mouse model expected")
        };
        // The robust scale alone, as a model without groups (and every model stored before) has it.
        let mm = input_matrix(&vs, MouseInput::RichTurns);
        let points: Vec<f64> = vs.iter().filter_map(|v| v.mouse_points()).collect();
        let plain = KnnModel::fit_sized(&mm, 30, Some(&points)).unwrap();
        assert_eq!(
            KnnModel::fit_weighted(&mm, 30, Some(&points), None),
            Some(plain.clone())
        );
        assert_eq!(mouse.center, plain.center);
        assert_ne!(mouse.scale, plain.scale);
        assert_eq!(
            KnnModel::fit_weighted(&mm, 30, Some(&points), Some(&MOUSE_GROUPS[..])).as_ref(),
            Some(mouse)
        );
        // Groups that do not cover the columns are refused.
        assert!(KnnModel::fit_weighted(&mm, 30, None, Some(&[10, 5])).is_none());
        assert!(KnnModel::fit_weighted(&mm, 30, None, Some(&[0, 10, 5, 5, 3])).is_none());
        // Vectors of the previous version (no size, no turn quantiles): the robust scale, as before.
        let old: Vec<StoredVector> = vs
            .iter()
            .map(|v| StoredVector {
                rich_len: RICH_COUNT_V1,
                ..*v
            })
            .collect();
        let m = train_models(&old, &TrainParams::default(), 60, 0, 1).unwrap();
        let Some(Detector::Knn(mouse)) = &m.mouse else {
            panic!("mouse model expected")
        };
        let mm = input_matrix(&old, MouseInput::Rich);
        assert_eq!(Some(mouse), KnnModel::fit(&mm, 30).as_ref());
    }

    /// The mouse input matrix of `vs` at `level` (every vector must carry a rich part).
    fn input_matrix(vs: &[StoredVector], level: MouseInput) -> Matrix {
        let mut mm = Matrix {
            data: Vec::new(),
            n_cols: level.columns(),
        };
        for v in vs {
            mouse_input(&v.contract, &v.rich.unwrap(), level, &mut mm.data);
        }
        mm
    }

    #[test]
    fn leave_one_out_distances_are_each_rows_k_nearest_others() {
        // Both ways of computing them: the pair matrix, and row by row above its size.
        for n in [45, PAIR_MATRIX_MAX_ROWS + 6] {
            let vs = cloud(n, 5.0, true);
            let m = train_models(&vs, &TrainParams::default(), n as u64, 0, 1).unwrap();
            let Some(Detector::Knn(mouse)) = &m.mouse else {
                panic!("mouse model expected")
            };
            let c = mouse.n_cols;
            let mut loo: Vec<f64> = (0..n)
                .map(|i| {
                    let zi = &mouse.rows[i * c..(i + 1) * c];
                    let mut d: Vec<f64> = (0..n)
                        .filter(|&j| j != i)
                        .map(|j| mouse.metric.dist(zi, &mouse.rows[j * c..(j + 1) * c]))
                        .collect();
                    mean_of_smallest(&mut d, mouse.k)
                })
                .collect();
            loo.sort_unstable_by(f64::total_cmp);
            assert_eq!(loo, mouse.loo, "{n} rows");
        }
    }

    #[test]
    fn fractional_and_euclidean_distances() {
        let (a, b) = ([0.0, 0.0, 0.0], [1.0, 4.0, 0.0]);
        assert_eq!(Metric::Euclidean.dist(&a, &b), 17f64.sqrt());
        assert_eq!(Metric::Fractional.dist(&a, &b), 9.0);
        assert_eq!(Metric::Fractional.dist(&b, &b), 0.0);
        // (1 + 16^¼)^4 = 3^4.
        assert_eq!(Metric::Quarter.dist(&a, &[1.0, 16.0, 0.0]), 81.0);
        assert_eq!(Metric::Quarter.dist(&b, &b), 0.0);
    }

    #[test]
    fn vectors_without_rich_train_on_the_contract_columns() {
        let mut vs = cloud(60, 5.0, true);
        vs[7].rich = None;
        let m = train_models(&vs, &TrainParams::default(), 60, 0, 1).unwrap();
        assert_eq!(m.mouse_input, MouseInput::Contract);
        let Some(Detector::Knn(mouse)) = &m.mouse else {
            panic!()
        };
        assert_eq!(mouse.n_cols, 10);
        assert_eq!(ProfileModels::from_bytes(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn previous_version_vectors_train_without_the_turn_quantiles() {
        let mut vs = cloud(60, 5.0, true);
        // One vector stored before the turn quantiles: the model reads what every row has.
        vs[3] =
            StoredVector::from_values(&vs[3].to_values()[..FEATURE_COUNT + RICH_COUNT_V1]).unwrap();
        let m = train_models(&vs, &TrainParams::default(), 60, 0, 1).unwrap();
        assert_eq!(m.mouse_input, MouseInput::Rich);
        let Some(Detector::Knn(mouse)) = &m.mouse else {
            panic!()
        };
        assert_eq!(mouse.n_cols, 20);
        let back = ProfileModels::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(back, m);
        // It scores a current payload's vector on the same 20 columns.
        let r = vs[0].rich.unwrap();
        assert_eq!(
            back.score(&vs[0].contract, &r, 50, 0),
            m.score(&vs[0].contract, &r, 50, 0)
        );
    }

    #[test]
    fn each_modality_trains_on_its_own_quota() {
        let mut vs = cloud(40, 5.0, true);
        for v in vs.iter_mut().skip(19) {
            v.contract[idx::TYPING_SPEED_KPS] = 0.0;
        }
        let m = train_models(&vs, &TrainParams::default(), 40, 0, 1).unwrap();
        assert!(m.mouse.is_some());
        assert!(m.typing.is_none(), "19 typing rows must not train");
        for v in vs.iter_mut() {
            v.contract[idx::AVG_MOUSE_SPEED] = 0.0;
            v.contract[idx::TYPING_SPEED_KPS] = 1.0;
        }
        let params = TrainParams {
            digraph_rows: 41,
            ..TrainParams::default()
        };
        match train_models(&vs, &params, 40, 0, 1) {
            Err(ModelError::NotEnoughData { mouse_rows: 0, .. }) => {}
            other => panic!("{other:?}"),
        }
        let m = train_models(&vs, &TrainParams::default(), 40, 0, 1).unwrap();
        assert!(m.mouse.is_none() && m.typing.is_some());
    }

    #[test]
    fn no_trainable_model_is_an_error() {
        let vs = cloud(19, 5.0, false);
        match train_models(&vs, &TrainParams::default(), 19, 0, 1) {
            Err(ModelError::NotEnoughData {
                mouse_rows: 19,
                typing_rows: 19,
                min: 20,
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(train_models(&[], &TrainParams::default(), 0, 0, 1).is_err());
    }

    #[test]
    fn vote_gates_and_abstention() {
        let vs = cloud(200, 50.0, true);
        let m = train_models(&vs, &TrainParams::default(), 200, 0, 1).unwrap();
        let far = [1e6; FEATURE_COUNT];
        let rich = [1.0; RICH_COUNT];
        // Both gates closed: nothing votes; no evidence, never an anomaly.
        let s = m.score(&far, &rich, 29, 5);
        assert_eq!(
            s,
            Score {
                legacy: false,
                is_anomaly: false,
                score: NO_EVIDENCE_SCORE,
                typing_threshold: 0.0,
                mouse_threshold: 0.0,
                mouse_score: 0.1,
                typing_score: 0.1,
                payload_score: NO_EVIDENCE_SCORE,
                run_payloads: 0,
                weight: 1.0,
            }
        );
        // Mouse gate open only: the mouse p-value is the score; the abstaining typing model does not clip it.
        let typical = m.score(&vs[0].contract, &vs[0].rich.unwrap(), 30, 5);
        assert_eq!(typical.score, typical.mouse_score);
        assert!(typical.score > ABSTAIN_SCORE, "{typical:?}");
        assert_eq!((typical.typing_score, typical.typing_threshold), (0.1, 0.0));
        assert_eq!(typical.mouse_threshold, 0.05);
        // Its run weight follows its mouse points; a keyboard-only payload weighs 1 (sequential.rs).
        assert_eq!(typical.weight, payload_weight(Some(30), false));
        assert!(typical.weight < 1.0);
        assert_eq!(m.score(&far, &rich, 0, 6).weight, 1.0);
        assert_eq!(m.score(&far, &rich, 800, 5).weight, 2.0);
        let s = m.score(&far, &rich, 30, 5);
        assert!(s.is_anomaly && s.mouse_score < s.mouse_threshold);
        // Typing gate open only.
        let s = m.score(&far, &rich, 0, 6);
        assert!(s.is_anomaly);
        assert_eq!((s.mouse_score, s.mouse_threshold), (0.1, 0.0));
        // Both vote: Fisher's combination, between the product and the smaller p-value.
        let s = m.score(&vs[1].contract, &vs[1].rich.unwrap(), 100, 100);
        let (p1, p2) = (s.mouse_score, s.typing_score);
        assert!(s.score >= p1 * p2 && s.score <= 1.0, "{s:?}");
    }

    #[test]
    fn fisher_combination() {
        assert_eq!(combine(&[]), NO_EVIDENCE_SCORE);
        assert_eq!(combine(&[0.3]), 0.3);
        let q: f64 = 0.2 * 0.5;
        assert!((combine(&[0.2, 0.5]) - q * (1.0 - q.ln())).abs() < 1e-15);
        assert_eq!(combine(&[1.0, 1.0]), 1.0);
        assert_eq!(combine(&[0.0, 0.5]), 0.0);
    }

    #[test]
    fn p_values_are_monotone_and_bounded() {
        let vs = cloud(50, 5.0, false);
        let m = train_models(&vs, &TrainParams::default(), 50, 0, 1).unwrap();
        let Some(Detector::Knn(k)) = &m.typing else {
            panic!()
        };
        let mut last = 1.0;
        for i in 0..200 {
            let p = k.p_value(f64::from(i) * 0.05);
            assert!(p <= last && p > 0.0 && p <= 1.0, "{i} {p}");
            last = p;
        }
        assert_eq!(k.p_value(0.0), 1.0);
        assert_eq!(k.p_value(f64::NAN), 0.0);
        assert_eq!(k.distance(&[1.0; 3]), f64::INFINITY);
    }

    #[test]
    fn corrupt_blobs_are_errors_not_panics() {
        let m = train_models(&cloud(30, 3.0, true), &TrainParams::default(), 30, 0, 1).unwrap();
        let bytes = m.to_bytes();
        for cut in [
            0,
            3,
            4,
            6,
            14,
            22,
            30,
            38,
            39,
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
        let mut rich_flag = bytes.clone();
        rich_flag[38] = 0;
        assert!(ProfileModels::from_bytes(&rich_flag).is_err());
        let mut presence = bytes.clone();
        presence[39] = 7;
        assert!(ProfileModels::from_bytes(&presence).is_err());
        // The size calibration's window (after the mouse model's tail) and its size order are checked.
        let Some(Detector::Knn(mouse)) = &m.mouse else {
            panic!("no mouse model")
        };
        let (c, n) = (mouse.n_cols, mouse.n_rows());
        let window_at = 39 + 1 + 4 + 4 + 8 + 8 * (2 * c + n * c + n) + 8;
        assert_eq!(bytes[window_at..window_at + 4], 30u32.to_le_bytes());
        for bad in [0u32, 31] {
            let mut b = bytes.clone();
            b[window_at..window_at + 4].copy_from_slice(&bad.to_le_bytes());
            assert!(ProfileModels::from_bytes(&b).is_err(), "window {bad}");
        }
        let mut unsorted = bytes.clone();
        unsorted[window_at + 4..window_at + 12].copy_from_slice(&1e9f64.to_le_bytes());
        assert!(ProfileModels::from_bytes(&unsorted).is_err());
        for i in (0..bytes.len()).step_by(97) {
            let mut b = bytes.clone();
            b[i] ^= 0xA5;
            let _ = ProfileModels::from_bytes(&b);
        }
    }

    #[test]
    fn legacy_forest_blobs_still_decode_and_score() {
        // A format-1 blob as the previous version wrote it: one mouse forest, no typing model.
        let rows: Vec<f64> = cloud(64, 5.0, false)
            .iter()
            .flat_map(|v| v.contract[MOUSE_COLUMNS].to_vec())
            .collect();
        let forest = IsolationForest::fit_matrix_with(
            &rows,
            10,
            &vigil_iforest::Params {
                n_estimators: 10,
                max_samples: vigil_iforest::MaxSamples::Auto,
                max_features: 1.0,
                bootstrap: false,
                contamination: vigil_iforest::Contamination::Fraction(0.01),
                seed: 1,
            },
            Parallelism::CallingThread,
        )
        .unwrap();
        let fb = forest.to_bytes();
        let mut blob = Vec::new();
        blob.extend_from_slice(MAGIC);
        blob.extend_from_slice(&1u16.to_le_bytes());
        blob.extend_from_slice(&3u64.to_le_bytes());
        blob.extend_from_slice(&9i64.to_le_bytes());
        blob.push(1);
        blob.extend_from_slice(&0.01f64.to_le_bytes());
        blob.extend_from_slice(&64u64.to_le_bytes());
        blob.extend_from_slice(&(fb.len() as u32).to_le_bytes());
        blob.extend_from_slice(&fb);
        blob.push(0);
        let m = ProfileModels::from_bytes(&blob).unwrap();
        assert!(m.is_legacy());
        assert_eq!((m.version, m.trained_on), (3, 0));
        let s = m.score(&[1e6; FEATURE_COUNT], &[0.0; RICH_COUNT], 100, 0);
        assert!(s.is_anomaly);
        assert_eq!(s.score, s.mouse_score.min(s.typing_score));
    }

    #[test]
    fn synthetic_owner_passes_and_impostor_is_flagged() {
        let mut alice = SessionGenerator::new(Persona::alice(), 21);
        let train: Vec<_> = (0..100)
            .map(|_| StoredVector::of(&alice.next_payload()))
            .collect();
        let m = train_models(&train, &TrainParams::default(), 100, 0, 1).unwrap();
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
