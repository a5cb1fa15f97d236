//! # vigil-topo: Vietoris–Rips persistent homology for TopoForge
//!
//! Computes the persistence barcodes of the Vietoris–Rips filtration of a finite metric space (a Euclidean point
//! cloud or a distance matrix), up to any dimension, with coefficients in Z/p, plus the topological features
//! TopoForge derives from them ([`features`]) and Ripser-compatible text formats ([`io`]).
//!
//! ```
//! use vigil_topo::{rips_points, RipsParams};
//! // Four corners of a unit square: one loop, born at 1, filled at √2.
//! let square = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0];
//! let b = rips_points(&square, 2, &RipsParams::default()).unwrap();
//! assert_eq!(b.dims[1].len(), 1);
//! assert_eq!(b.dims[1][0].birth, 1.0);
//! assert!((b.dims[1][0].death - 2f64.sqrt()).abs() < 1e-6);
//! ```
//!
//! ## Contract and invariants
//! - `Barcodes::dims[k]` holds the `H_k` bars for every `k ≤ max_dim` (so `dims.len() == max_dim + 1`), sorted
//!   by birth then death. Bars of zero length are not reported. Essential classes have `death == f64::INFINITY`;
//!   `H0` always has exactly one per connected component of the complex at the threshold.
//! - Values are computed in `f32`, as Ripser does, and reported as the exact `f64` of that `f32`: barcodes are
//!   the same multiset as Ripser 1.2's (and ripser.py's) on the same input.
//! - The threshold defaults to the enclosing radius `min_i max_j d(i,j)`. Beyond it the complex is a cone, so this
//!   changes no bar; an explicit threshold above it is clamped to it for the same reason. Pairs at distance `+inf`
//!   are never connected.
//! - No input makes the engine panic: empty, one- and two-point inputs, duplicate points, NaN (an error), huge or
//!   zero thresholds and over-large dimensions (an error when simplex indices would not fit in 56 bits).
//!
//! ## How it works (Bauer, "Ripser: efficient computation of Vietoris–Rips persistence barcodes", 2021)
//! - **H0 by union-find** over the edges in filtration order; edges that close a cycle become the columns of the
//!   dimension-1 reduction.
//! - **Cohomology with clearing**: for each dimension `d ≥ 1` the coboundary matrix is reduced column by column
//!   in reverse filtration order. A `(d+1)`-simplex that became a pivot in dimension `d` is known to reduce to
//!   zero in dimension `d+1`, so it is never a column there.
//! - **Implicit matrices**: no boundary or coboundary matrix is stored. Simplices are numbers in the
//!   **combinatorial number system** (`Σ C(v_i, i+1)`), coboundaries are enumerated on the fly from the
//!   distances (cofacet `σ ∪ {v}` has index `low_k + C(v, k+1) + high_k` with per-simplex prefix sums), and only
//!   the reduction matrix `V` is stored; adding column `j` re-enumerates the coboundaries of `V_j`'s terms.
//! - **Apparent pairs** of zero persistence (a simplex whose oldest cofacet has the same diameter and is paired
//!   back as that cofacet's youngest facet) are skipped when columns are assembled: they are pairs of the
//!   filtration without any reduction and contribute no bar.
//! - **Emergent pairs**: when the first equal-diameter cofacet met while enumerating a column's coboundary is
//!   not yet anybody's pivot, it is the column's pivot after reduction; the pair is recorded without building
//!   the column.
//! - The filtration is refined by diameter, dimension and reverse colexicographic order, so ties are resolved
//!   exactly as in Ripser.
//!
//! Beyond Ripser's defaults (each kept because a benchmark showed a gain, see `benches/rips.rs`):
//! - **A radix heap for the working column.** During a reduction the pivot only moves forward in the
//!   filtration, so the working column is a monotone priority queue; entries that would land before the current
//!   pivot cancel among themselves and are dropped on arrival. Pushes are appends to one of 129 buckets instead
//!   of sifts through a binary heap: on `sphere_3_192` (one column adds ~20 000 coboundaries and holds ~2 M
//!   entries) this took the computation from 1.2 s to 0.2 s.
//! - **Rank space and ball bitmasks for small inputs (≤ 128 points, the stream case).** Distances are replaced
//!   by the ranks of their values (persistence depends only on the order, ties included; bars are mapped back),
//!   which turns "the vertices within `D` of every vertex of a simplex" into an AND of one precomputed bitmask
//!   per vertex (up to 64 points one byte of a direct table finds the mask, above a byte count plus a table
//!   popcount). That set answers the apparent- and emergent-pair tests, which dominate small inputs, without
//!   scanning all vertices. The whole index space of the stream case (tables, distance ranks, pivots) fits in
//!   L1/L2. On top of it, specialised for these inputs (each checked against the generic path by a test):
//!   - vertex sets are `u64` up to 64 points (`u128` above): one instruction per set operation;
//!   - the pairs are ranked by one radix sort, whose order (ties reversed) is also H0's edge order;
//!   - the triangles — a 49-point window has ~12 000 and reduces ~45 — are enumerated from each edge by an AND
//!     of two balls and tested with integer ranks only;
//!   - a column's emergent pair is found by the zero-pivot lookup before its coboundary is enumerated.
//!
//!   On the stream's windows (49 points, H2) this more than halved the instructions per window (5.9 M → 2.6 M,
//!   `crates/stream/examples/window_homology.rs` under callgrind) with bit-identical barcodes.
//! - **f32 distances in a full square** (`row[j]`, no triangular index arithmetic, contiguous rows for the
//!   inner loop of coboundary enumeration).
//! - **Dense pivot tables**: when the index space of pivots is small (≤ 1 M simplices) the pivot lookup is a
//!   flat array instead of a hash map, reset by undoing only the touched slots.
//! - **A sparse path**: with an explicit threshold that keeps under a quarter of the edges (on more than 128
//!   points), cofacet candidates come from the shortest neighbour list of the simplex's vertices, checked
//!   against the others' distance rows, so far-away vertices are never examined.
//! - **A reusable workspace** ([`RipsWorkspace`]) keeps every buffer between calls: the stream pipeline computes
//!   thousands of small windows per second without allocating.
//!
//! Not done (yet): parallel reduction across the two cores — a single computation is single-threaded; the
//! stream pipeline gets its parallelism from running independent windows on separate workspaces.

mod distance;
mod engine;
mod error;
pub mod features;
pub mod io;

pub use distance::DistanceMatrix;
pub use error::TopoError;

/// Highest homology dimension accepted (far beyond anything computable; it bounds fixed-size vertex buffers).
pub const MAX_DIM_LIMIT: usize = 30;

/// One persistence interval `[birth, death)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub birth: f64,
    /// `f64::INFINITY` for essential classes.
    pub death: f64,
}

impl Interval {
    /// `death - birth` (infinite for essential classes).
    pub fn lifetime(&self) -> f64 {
        self.death - self.birth
    }

    /// Whether the class dies.
    pub fn is_finite(&self) -> bool {
        self.death.is_finite()
    }
}

/// Persistence barcodes by dimension.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Barcodes {
    /// `dims[k]` = the `H_k` bars; `len() == max_dim + 1`.
    pub dims: Vec<Vec<Interval>>,
}

/// Parameters of a Vietoris–Rips computation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RipsParams {
    /// Highest homology dimension computed (default 1).
    pub max_dim: usize,
    /// Only simplices of diameter `≤ threshold` enter the complex (default: the enclosing radius).
    pub threshold: Option<f64>,
    /// Prime modulus of the coefficient field Z/p (default 2, must be below 256, as in Ripser).
    pub modulus: u32,
}

impl Default for RipsParams {
    fn default() -> Self {
        RipsParams {
            max_dim: 1,
            threshold: None,
            modulus: 2,
        }
    }
}

/// Inputs up to this many points reuse a per-thread engine in [`rips`]: their buffers are small (about 1 MB),
/// and a fresh engine would spend a fifth of a 50-point computation faulting in its tables.
const REUSE_MAX_POINTS: usize = 128;

thread_local! {
    static SMALL_ENGINE: std::cell::RefCell<engine::Engine> = std::cell::RefCell::new(engine::Engine::default());
}

/// Barcodes of the Vietoris–Rips filtration of `dm`.
pub fn rips(dm: &DistanceMatrix, params: &RipsParams) -> Result<Barcodes, TopoError> {
    let mut out = Barcodes::default();
    if dm.len() <= REUSE_MAX_POINTS {
        // Re-entrancy (or a thread being torn down) falls through to a fresh engine.
        let reused = SMALL_ENGINE
            .try_with(|cell| {
                cell.try_borrow_mut()
                    .ok()
                    .map(|mut e| e.compute(dm, params, &mut out))
            })
            .ok()
            .flatten();
        if let Some(result) = reused {
            result?;
            return Ok(out);
        }
    }
    engine::Engine::default().compute(dm, params, &mut out)?;
    Ok(out)
}

/// Barcodes of the Euclidean point cloud `coords` (row-major, `ambient_dim` coordinates per point).
pub fn rips_points(
    coords: &[f64],
    ambient_dim: usize,
    params: &RipsParams,
) -> Result<Barcodes, TopoError> {
    rips(&DistanceMatrix::from_points(coords, ambient_dim)?, params)
}

/// A reusable computation context: keeps the distance matrix, binomial table, pivot tables, heaps and column
/// buffers between calls, so that repeated small computations (TopoForge's windows) do not allocate.
/// Results are identical to [`rips`] / [`rips_points`]. One workspace per thread.
#[derive(Default)]
pub struct RipsWorkspace {
    dm: DistanceMatrix,
    engine: engine::Engine,
}

impl std::fmt::Debug for RipsWorkspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RipsWorkspace")
            .field("points", &self.dm.len())
            .finish_non_exhaustive()
    }
}

impl RipsWorkspace {
    /// A workspace with empty buffers (they grow to the largest input seen).
    pub fn new() -> Self {
        Self::default()
    }

    /// Barcodes of a point cloud, like [`rips_points`].
    pub fn compute(
        &mut self,
        coords: &[f64],
        ambient_dim: usize,
        params: &RipsParams,
    ) -> Result<Barcodes, TopoError> {
        let mut out = Barcodes::default();
        self.compute_into(coords, ambient_dim, params, &mut out)?;
        Ok(out)
    }

    /// Like [`RipsWorkspace::compute`], writing into `out` and reusing its vectors.
    pub fn compute_into(
        &mut self,
        coords: &[f64],
        ambient_dim: usize,
        params: &RipsParams,
        out: &mut Barcodes,
    ) -> Result<(), TopoError> {
        self.dm.fill_from_points(coords, ambient_dim)?;
        self.engine.compute(&self.dm, params, out)
    }

    /// Barcodes of a distance matrix, like [`rips`].
    pub fn compute_matrix(
        &mut self,
        dm: &DistanceMatrix,
        params: &RipsParams,
    ) -> Result<Barcodes, TopoError> {
        let mut out = Barcodes::default();
        self.engine.compute(dm, params, &mut out)?;
        Ok(out)
    }
}
