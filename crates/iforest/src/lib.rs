//! Isolation Forest (Liu, Ting & Zhou, 2008) with scikit-learn's scoring semantics.
//!
//! Both halves of Vigil score with Isolation Forests: MaxiDOM fits two per behavioural profile
//! and TopoForge one per event stream. This crate fits them, scores them, thresholds them and
//! stores them.
//!
//! # Semantics (those of `sklearn.ensemble.IsolationForest`)
//! - Each of `n_estimators` trees is grown on ψ rows drawn without replacement (with replacement
//!   when `bootstrap`), ψ = `max_samples` (`Auto` = min(256, n)), on `max(1, ⌊max_features·d⌋)`
//!   features drawn per tree, to depth at most ⌈log2(max(ψ, 2))⌉. At a node, a feature is drawn
//!   uniformly among the node's non-constant ones and the threshold uniformly in [min, max) of
//!   it over the node's rows; a node whose rows are all identical is a leaf.
//! - The path length of a row in a tree is the depth of its leaf plus c(leaf size), with
//!   c(n) = 2(ln(n−1)+γ) − 2(n−1)/n, c(1) = 0, c(2) = 1 ([`average_path_length`]).
//! - `score_samples` = −2^(−E(h)/c(ψ)) (−0.5 when c(ψ) = 0, i.e. ψ = 1, as scikit-learn);
//!   lower is more abnormal.
//! - `offset` = −0.5 for `Contamination::Auto`, otherwise the `100·c`-th percentile
//!   ([`percentile_linear`], numpy's default) of the training rows' scores.
//! - `decision_function` = score − offset; `predict` = −1 when it is negative, else 1.
//!
//! # Invariants
//! - Determinism: a model is a pure function of (data, params). Each tree draws from its own
//!   stream of the crate's own generator (xoshiro256++ seeded from `(seed, tree index)`), and
//!   splits use only IEEE-exact arithmetic, so the trees (and [`to_bytes`](IsolationForest::to_bytes))
//!   are bit-identical on any machine, any rayon thread count, and any dependency version
//!   (`tests/golden.rs` pins this). Scores also involve `ln` and `powf`; they are bit-identical
//!   wherever the platform's libm rounds those the same (any one platform, always).
//! - Parallel batch scoring returns exactly the numbers of the single-row path: each row sums
//!   its trees' path lengths in tree order either way.
//! - Single-row scoring allocates nothing and never panics; invalid input is reported by the
//!   `try_*` variants and mapped to NaN (scores) or −1 (predict: fail closed) otherwise.
//! - [`sklearn::SklearnTree`] imports a forest fitted by scikit-learn; identical trees give
//!   scikit-learn's scores (`tests/sklearn_trees.rs`).
//! - Models deserialised with [`IsolationForest::from_bytes`] (or serde) are fully validated, so
//!   a corrupt or hostile model cannot make scoring index out of bounds.
//!
//! # Deliberate differences from scikit-learn
//! - Values stay `f64` (scikit-learn casts to `f32`), and a feature counts as constant only
//!   when max = min (scikit-learn also treats ranges below 1e−7 as constant).
//! - NaN is rejected with an error (recent scikit-learn routes it through the trees); ±∞ is
//!   rejected in training data and accepted when scoring.
//! - The random streams differ, so individual trees differ; the distribution of trees, and
//!   therefore of scores, is the same. The tests check this against fixtures from scikit-learn.

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;

pub mod csv;
mod format;
mod rng;
pub mod sklearn;
mod stats;
mod tree;

pub use format::FORMAT_VERSION;
pub use stats::{average_path_length, percentile_linear};
use tree::{GrownTree, Node, Scratch, TreeSpec};

/// Where [`IsolationForest::fit_with`] grows trees and [`IsolationForest::score_samples_batch_with`]
/// scores blocks of rows. Trees are seeded by their index and every row sums its trees in order, so
/// both give the same model and the same scores, bit for bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Parallelism {
    /// In parallel on rayon's current pool: large jobs by a caller with cores to spare.
    #[default]
    Rayon,
    /// One after another on the calling thread: small jobs by callers that are already parallel
    /// (one fit per stream, per profile or per request). Handing a few milliseconds of work to the
    /// shared pool would queue it behind other callers' work, and run it outside the caller's
    /// thread, at whatever priority the pool's threads have.
    CallingThread,
}

/// Rows per unit of parallel work in batch scoring. Large enough that rayon's per-task cost is
/// noise, small enough that the block's rows (20 KB at d = 10) stay in L1 while every tree
/// walks them. The three constants were tuned on the 100,000×10 benchmark (64/8 → 256/16 took
/// a single thread from ~106 ms to ~94 ms; 4 lanes was ~2× slower).
const SCORE_BLOCK: usize = 256;
/// Trees walked in lockstep when scoring one row (16: ~1.0 µs per row, 8: ~1.2 µs, 1: ~2.6 µs).
const TREE_LANES: usize = 16;
/// Rows walked in lockstep per tree in batch scoring (divides `SCORE_BLOCK`).
const ROW_LANES: usize = 16;

/// Errors from fitting, scoring, (de)serialising and CSV reading.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("the training data has no rows")]
    Empty,
    #[error("a row must have at least one column")]
    ZeroColumns,
    #[error("data of length {len} is not a whole number of rows of {n_cols} values")]
    Ragged { len: usize, n_cols: usize },
    #[error("row {row} has {found} values, expected {expected}")]
    RowLength {
        row: usize,
        found: usize,
        expected: usize,
    },
    #[error("expected {expected} features, got {found}")]
    FeatureCount { expected: usize, found: usize },
    #[error("row {row}, column {col}: value {value} is not allowed ({what})")]
    NonFinite {
        row: usize,
        col: usize,
        value: f64,
        what: &'static str,
    },
    #[error("invalid parameter {name}: {reason}")]
    InvalidParam { name: &'static str, reason: String },
    #[error("not a Vigil isolation-forest model (bad magic bytes)")]
    BadMagic,
    #[error(
        "model format version {found} is not supported by this build (it reads version {supported}); refit the model"
    )]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("model bytes are corrupt: {0}")]
    Corrupt(String),
    #[error("line {line}: {message}")]
    Csv { line: usize, message: String },
    #[error("the CSV file has no data rows")]
    CsvNoRows,
    #[error("I/O error: {0}")]
    Io(String),
}

/// How many rows each tree is grown on (ψ).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum MaxSamples {
    /// min(256, n).
    Auto,
    /// min(count, n) rows (scikit-learn warns and clips the same way); at least 1.
    Count(usize),
    /// ⌊fraction·n⌋ rows (at least 1), fraction in (0, 1].
    Fraction(f64),
}

/// How the decision threshold (`offset`) is set.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Contamination {
    /// offset = −0.5, the original paper's threshold.
    Auto,
    /// Expected outlier fraction in (0, 0.5]: offset = percentile(training scores, 100·c).
    Fraction(f64),
}

/// Fit parameters. `Default` is scikit-learn's: 100 trees, ψ auto, all features, no bootstrap,
/// contamination auto, seed 0.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    pub n_estimators: usize,
    pub max_samples: MaxSamples,
    /// Fraction of features each tree sees, in (0, 1].
    pub max_features: f64,
    pub bootstrap: bool,
    pub contamination: Contamination,
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            n_estimators: 100,
            max_samples: MaxSamples::Auto,
            max_features: 1.0,
            bootstrap: false,
            contamination: Contamination::Auto,
            seed: 0,
        }
    }
}

impl FromStr for MaxSamples {
    type Err = Error;
    /// `auto`, an integer row count (`256`), or a fraction (`0.5`, `1.0`).
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let bad = || Error::InvalidParam {
            name: "max_samples",
            reason: format!("{s:?} is not `auto`, a row count or a fraction in (0, 1]"),
        };
        if s.eq_ignore_ascii_case("auto") {
            return Ok(MaxSamples::Auto);
        }
        if let Ok(n) = s.parse::<usize>() {
            return Ok(MaxSamples::Count(n));
        }
        let f: f64 = s.parse().map_err(|_| bad())?;
        if f > 0.0 && f <= 1.0 {
            Ok(MaxSamples::Fraction(f))
        } else {
            Err(bad())
        }
    }
}

impl FromStr for Contamination {
    type Err = Error;
    /// `auto` or a fraction in (0, 0.5].
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Contamination::Auto);
        }
        match s.parse::<f64>() {
            Ok(c) if c > 0.0 && c <= 0.5 => Ok(Contamination::Fraction(c)),
            _ => Err(Error::InvalidParam {
                name: "contamination",
                reason: format!("{s:?} is not `auto` or a fraction in (0, 0.5]"),
            }),
        }
    }
}

/// Where one tree lives in the forest's flat node array.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TreeRef {
    root: u32,
    /// Steps from the root to the deepest leaf; every walk takes exactly this many.
    depth: u32,
}

/// A fitted Isolation Forest. Cheap to score from many threads (`&self` only).
///
/// `Serialize`/`Deserialize` go through the same versioned, validated binary format as
/// [`to_bytes`](Self::to_bytes) (a byte string; JSON gets an array of numbers).
#[derive(Clone, PartialEq)]
pub struct IsolationForest {
    params: Params,
    n_features: usize,
    /// ψ actually used.
    psi: usize,
    offset: f64,
    trees: Vec<TreeRef>,
    /// All trees' nodes, each tree in preorder, children as absolute indices.
    nodes: Vec<Node>,
    /// `n_node_samples` per node, parallel to `nodes` (used by serialisation).
    sizes: Vec<u32>,
    /// n_trees · c(ψ), the score's denominator.
    denominator: f64,
}

impl fmt::Debug for IsolationForest {
    // The node array is large and meaningless to a reader; summarise it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IsolationForest")
            .field("params", &self.params)
            .field("n_features", &self.n_features)
            .field("max_samples", &self.psi)
            .field("offset", &self.offset)
            .field("n_trees", &self.trees.len())
            .field("n_nodes", &self.nodes.len())
            .finish()
    }
}

/// Checks that every value is finite; the error names the first offender.
fn check_finite_training(data: &[f64], n_cols: usize) -> Result<(), Error> {
    match data.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::NonFinite {
            row: i / n_cols,
            col: i % n_cols,
            value: data[i],
            what: "training data must be finite",
        }),
    }
}

/// Checks that no value is NaN (infinities are ordered and route to the extreme leaves).
fn check_no_nan(data: &[f64], n_cols: usize) -> Result<(), Error> {
    match data.iter().position(|v| v.is_nan()) {
        None => Ok(()),
        Some(i) => Err(Error::NonFinite {
            row: i / n_cols,
            col: i % n_cols,
            value: data[i],
            what: "NaN cannot be scored",
        }),
    }
}

/// ⌈log2(max(ψ, 2))⌉ computed exactly on integers.
fn depth_limit(psi: usize) -> u32 {
    let p = psi.max(2);
    usize::BITS - (p - 1).leading_zeros()
}

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidParam {
        name,
        reason: reason.into(),
    }
}

impl IsolationForest {
    /// Fits on rows of equal length (convenience over [`fit_matrix`](Self::fit_matrix)).
    pub fn fit(rows: &[Vec<f64>], params: &Params) -> Result<Self, Error> {
        Self::fit_with(rows, params, Parallelism::Rayon)
    }

    /// [`fit`](Self::fit), with the work done where `parallelism` says.
    pub fn fit_with(
        rows: &[Vec<f64>],
        params: &Params,
        parallelism: Parallelism,
    ) -> Result<Self, Error> {
        let n_cols = rows.first().map(Vec::len).ok_or(Error::Empty)?;
        let mut data = Vec::with_capacity(n_cols * rows.len());
        for (row, r) in rows.iter().enumerate() {
            if r.len() != n_cols {
                return Err(Error::RowLength {
                    row,
                    found: r.len(),
                    expected: n_cols,
                });
            }
            data.extend_from_slice(r);
        }
        Self::fit_matrix_with(&data, n_cols, params, parallelism)
    }

    /// Fits on a row-major n×`n_cols` matrix (n = `data.len() / n_cols`). Trees are grown in
    /// parallel on rayon's current pool; the model does not depend on the number of threads.
    pub fn fit_matrix(data: &[f64], n_cols: usize, params: &Params) -> Result<Self, Error> {
        Self::fit_matrix_with(data, n_cols, params, Parallelism::Rayon)
    }

    /// [`fit_matrix`](Self::fit_matrix), with the work (growing the trees, scoring the training rows
    /// for the contamination offset) done where `parallelism` says. The model is the same either way.
    pub fn fit_matrix_with(
        data: &[f64],
        n_cols: usize,
        params: &Params,
        parallelism: Parallelism,
    ) -> Result<Self, Error> {
        if n_cols == 0 {
            return Err(Error::ZeroColumns);
        }
        if !data.len().is_multiple_of(n_cols) {
            return Err(Error::Ragged {
                len: data.len(),
                n_cols,
            });
        }
        let n_rows = data.len() / n_cols;
        if n_rows == 0 {
            return Err(Error::Empty);
        }
        check_finite_training(data, n_cols)?;
        // Row indices are stored as u32 while growing a tree.
        if n_rows > u32::MAX as usize {
            return Err(invalid("data", "more than 2^32 − 1 rows"));
        }
        if n_cols > u32::MAX as usize {
            return Err(invalid("data", "more than 2^32 − 1 columns"));
        }
        if params.n_estimators == 0 {
            return Err(invalid("n_estimators", "must be at least 1"));
        }
        if !(params.max_features > 0.0 && params.max_features <= 1.0) {
            return Err(invalid(
                "max_features",
                format!("{} is not in (0, 1]", params.max_features),
            ));
        }
        let psi = match params.max_samples {
            MaxSamples::Auto => n_rows.min(256),
            MaxSamples::Count(0) => return Err(invalid("max_samples", "must be at least 1")),
            MaxSamples::Count(c) => c.min(n_rows),
            MaxSamples::Fraction(f) if f > 0.0 && f <= 1.0 => {
                ((f * n_rows as f64).floor() as usize).clamp(1, n_rows)
            }
            MaxSamples::Fraction(f) => {
                return Err(invalid(
                    "max_samples",
                    format!("fraction {f} is not in (0, 1]"),
                ));
            }
        };
        if let Contamination::Fraction(c) = params.contamination
            && !(c > 0.0 && c <= 0.5)
        {
            return Err(invalid(
                "contamination",
                format!("fraction {c} is not in (0, 0.5]"),
            ));
        }
        // A tree has at most 2ψ − 1 nodes; node indices are u32 across the whole forest.
        let max_nodes = params
            .n_estimators
            .checked_mul(2 * psi - 1)
            .filter(|&m| m <= u32::MAX as usize);
        if max_nodes.is_none() {
            return Err(invalid(
                "n_estimators",
                "n_estimators × (2ψ − 1) nodes exceed 2^32 − 1",
            ));
        }
        let n_tree_features =
            ((params.max_features * n_cols as f64).floor() as usize).clamp(1, n_cols);

        let c_table = stats::PathLengthTable::new(psi as u64);
        let cols = tree::transpose(data, n_cols);
        let spec = TreeSpec {
            cols: &cols,
            n_rows,
            n_cols,
            psi,
            n_tree_features,
            bootstrap: params.bootstrap,
            max_depth: depth_limit(psi),
            seed: params.seed,
            c: &c_table,
        };
        let grown: Vec<GrownTree> = match parallelism {
            Parallelism::Rayon => (0..params.n_estimators)
                .into_par_iter()
                .map_init(Scratch::default, |s, t| tree::grow(&spec, t as u64, s))
                .collect(),
            Parallelism::CallingThread => {
                let mut scratch = Scratch::default();
                (0..params.n_estimators)
                    .map(|t| tree::grow(&spec, t as u64, &mut scratch))
                    .collect()
            }
        };

        let mut forest = Self::assemble(params.clone(), n_cols, psi, grown);
        forest.offset = match params.contamination {
            Contamination::Auto => -0.5,
            Contamination::Fraction(c) => {
                let mut scores = forest.score_samples_batch_with(data, parallelism)?;
                scores.sort_unstable_by(f64::total_cmp);
                stats::percentile_of_sorted(&scores, 100.0 * c)
            }
        };
        Ok(forest)
    }

    /// Concatenates grown trees into the flat array, rebasing child indices.
    fn assemble(params: Params, n_features: usize, psi: usize, grown: Vec<GrownTree>) -> Self {
        let total: usize = grown.iter().map(|t| t.nodes.len()).sum();
        let mut nodes = Vec::with_capacity(total);
        let mut sizes = Vec::with_capacity(total);
        let mut trees = Vec::with_capacity(grown.len());
        for t in grown {
            // Fits in u32: checked against n_estimators × (2ψ − 1) before growing.
            let base = nodes.len() as u32;
            trees.push(TreeRef {
                root: base,
                depth: t.depth,
            });
            nodes.extend(t.nodes.into_iter().map(|mut n| {
                n.children = [n.children[0] + base, n.children[1] + base];
                n
            }));
            sizes.extend(t.sizes);
        }
        let denominator = trees.len() as f64 * average_path_length(psi as u64);
        IsolationForest {
            params,
            n_features,
            psi,
            offset: -0.5,
            trees,
            nodes,
            sizes,
            denominator,
        }
    }

    /// Number of features a row must have.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// ψ, the number of rows each tree was grown on (scikit-learn's `max_samples_`).
    pub fn max_samples(&self) -> usize {
        self.psi
    }

    /// Total number of nodes over all trees.
    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The parameters the model was fitted with.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The decision threshold on `score_samples` (scikit-learn's `offset_`).
    pub fn offset(&self) -> f64 {
        self.offset
    }

    /// Sum of the trees' path lengths for a row of the right length (callers check).
    ///
    /// A walk is a chain of dependent loads, so walking one tree at a time leaves the core
    /// idle on load latency. `TREE_LANES` trees are walked in lockstep instead (their chains
    /// are independent and overlap); leaves loop to themselves, so walking a shallower tree
    /// for the group's maximum depth is harmless. The sum is still taken in tree order.
    #[inline]
    fn path_length_sum(&self, row: &[f64]) -> f64 {
        let mut sum = 0.0;
        let mut groups = self.trees.chunks_exact(TREE_LANES);
        for group in &mut groups {
            let mut idx = [0usize; TREE_LANES];
            let mut steps = 0;
            for (i, t) in idx.iter_mut().zip(group) {
                *i = t.root as usize;
                steps = steps.max(t.depth);
            }
            for _ in 0..steps {
                for i in idx.iter_mut() {
                    let n = &self.nodes[*i];
                    *i = n.children[usize::from(row[n.feature as usize] > n.threshold)] as usize;
                }
            }
            for i in idx {
                sum += self.nodes[i].threshold;
            }
        }
        for t in groups.remainder() {
            sum += self.walk(t, row);
        }
        sum
    }

    /// The path length of `row` in one tree.
    #[inline]
    fn walk(&self, t: &TreeRef, row: &[f64]) -> f64 {
        let mut i = t.root as usize;
        for _ in 0..t.depth {
            let n = &self.nodes[i];
            i = n.children[usize::from(row[n.feature as usize] > n.threshold)] as usize;
        }
        self.nodes[i].threshold
    }

    /// −2^(−E(h)/c(ψ)) from the sum of path lengths, with scikit-learn's ψ = 1 convention.
    #[inline]
    fn score_from_sum(&self, sum: f64) -> f64 {
        let ratio = if self.denominator != 0.0 {
            sum / self.denominator
        } else {
            1.0
        };
        -(2f64.powf(-ratio))
    }

    /// The anomaly score of one row (lower = more abnormal, in [−1, 0)). Allocation-free.
    ///
    /// Never panics: a row of the wrong length or containing NaN scores NaN. Use
    /// [`try_score_samples`](Self::try_score_samples) to get the reason instead.
    pub fn score_samples(&self, row: &[f64]) -> f64 {
        self.try_score_samples(row).unwrap_or(f64::NAN)
    }

    /// [`score_samples`](Self::score_samples) with an error for a wrong length or NaN.
    pub fn try_score_samples(&self, row: &[f64]) -> Result<f64, Error> {
        if row.len() != self.n_features {
            return Err(Error::FeatureCount {
                expected: self.n_features,
                found: row.len(),
            });
        }
        check_no_nan(row, self.n_features)?;
        Ok(self.score_from_sum(self.path_length_sum(row)))
    }

    /// Scores a row-major matrix of rows of `n_features` values, in parallel on rayon's current
    /// pool. Returns exactly the values [`score_samples`](Self::score_samples) gives row by row.
    pub fn score_samples_batch(&self, data: &[f64]) -> Result<Vec<f64>, Error> {
        self.score_samples_batch_with(data, Parallelism::Rayon)
    }

    /// [`score_samples_batch`](Self::score_samples_batch), with the blocks scored where
    /// `parallelism` says.
    pub fn score_samples_batch_with(
        &self,
        data: &[f64],
        parallelism: Parallelism,
    ) -> Result<Vec<f64>, Error> {
        let d = self.n_features;
        if !data.len().is_multiple_of(d) {
            return Err(Error::Ragged {
                len: data.len(),
                n_cols: d,
            });
        }
        check_no_nan(data, d)?;
        let mut out = vec![0.0; data.len() / d];
        if out.len() <= SCORE_BLOCK || parallelism == Parallelism::CallingThread {
            // On this thread. For a single block that is cheaper anyway: handing it to the pool
            // (and waiting for it) from a thread outside the pool costs more than scoring it.
            for (o, x) in out
                .chunks_mut(SCORE_BLOCK)
                .zip(data.chunks(SCORE_BLOCK * d))
            {
                self.score_block(x, o);
            }
            return Ok(out);
        }
        out.par_chunks_mut(SCORE_BLOCK)
            .zip(data.par_chunks(SCORE_BLOCK * d))
            .for_each(|(o, x)| self.score_block(x, o));
        Ok(out)
    }

    /// Scores a block of rows tree by tree, so each tree's nodes stay in cache while the block's
    /// rows walk it, `ROW_LANES` rows in lockstep so their load chains overlap. Each row still
    /// accumulates its trees in tree order, from 0.0, exactly as `path_length_sum`, so the
    /// results are bit-identical to the single-row path.
    fn score_block(&self, x: &[f64], out: &mut [f64]) {
        let d = self.n_features;
        out.fill(0.0);
        for t in &self.trees {
            let mut rows = x.chunks_exact(d * ROW_LANES);
            let mut accs = out.chunks_exact_mut(ROW_LANES);
            for (lane_rows, lane_out) in (&mut rows).zip(&mut accs) {
                let mut idx = [t.root as usize; ROW_LANES];
                for _ in 0..t.depth {
                    for (k, i) in idx.iter_mut().enumerate() {
                        let n = &self.nodes[*i];
                        let v = lane_rows[k * d + n.feature as usize];
                        *i = n.children[usize::from(v > n.threshold)] as usize;
                    }
                }
                for (acc, i) in lane_out.iter_mut().zip(idx) {
                    *acc += self.nodes[i].threshold;
                }
            }
            for (row, acc) in rows.remainder().chunks_exact(d).zip(accs.into_remainder()) {
                *acc += self.walk(t, row);
            }
        }
        for acc in out.iter_mut() {
            *acc = self.score_from_sum(*acc);
        }
    }

    /// score − offset: negative means anomalous. NaN for invalid rows (see `score_samples`).
    pub fn decision_function(&self, row: &[f64]) -> f64 {
        self.score_samples(row) - self.offset
    }

    /// [`decision_function`](Self::decision_function) with an error for invalid rows.
    pub fn try_decision_function(&self, row: &[f64]) -> Result<f64, Error> {
        Ok(self.try_score_samples(row)? - self.offset)
    }

    /// −1 (anomaly) when the decision function is negative, else 1. An invalid row (wrong
    /// length, NaN) is reported as −1: a security check must fail closed.
    pub fn predict(&self, row: &[f64]) -> i8 {
        self.try_predict(row).unwrap_or(-1)
    }

    /// [`predict`](Self::predict) with an error for invalid rows.
    pub fn try_predict(&self, row: &[f64]) -> Result<i8, Error> {
        Ok(if self.try_decision_function(row)? < 0.0 {
            -1
        } else {
            1
        })
    }

    /// The versioned binary encoding (see [`FORMAT_VERSION`]); a few bytes per node.
    pub fn to_bytes(&self) -> Vec<u8> {
        format::encode(self)
    }

    /// Decodes and validates [`to_bytes`](Self::to_bytes) output. Models written by another
    /// format version are rejected with [`Error::UnsupportedVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        format::decode(bytes)
    }
}

impl serde::Serialize for IsolationForest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.to_bytes())
    }
}

impl<'de> serde::Deserialize<'de> for IsolationForest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> serde::de::Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an isolation-forest model as a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                // Formats without a byte type (JSON) hand us a sequence of numbers. The size hint
                // comes from the input, so cap the pre-allocation.
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(v)
            }
        }
        let bytes = deserializer.deserialize_byte_buf(BytesVisitor)?;
        IsolationForest::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
