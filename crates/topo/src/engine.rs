//! The reduction engine: Ripser-style persistent cohomology of the Vietoris–Rips filtration.
//!
//! See the crate documentation for the algorithm. Conventions used throughout this module:
//! - a `k`-simplex is identified by its index in the combinatorial number system,
//!   `Σ_i C(v_i, i + 1)` over its vertices sorted ascending `v_0 < … < v_k`;
//! - the simplexwise refinement of the filtration orders simplices by diameter, then by dimension, then by
//!   *decreasing* index; cohomology reduces columns in reverse of that order (diameter descending, index
//!   ascending), and the pivot of a coboundary column is its entry of smallest diameter, ties to largest index;
//! - vertex lists are sorted ascending and hold at most [`MAX_VERTS`] entries.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::{Barcodes, DistanceMatrix, Interval, MAX_DIM_LIMIT, RipsParams, TopoError};

/// Most vertices a simplex handled by the engine can have (a cofacet of a `MAX_DIM_LIMIT`-simplex).
pub(crate) const MAX_VERTS: usize = MAX_DIM_LIMIT + 2;

/// Largest pivot-index space kept as a flat array instead of a hash map (4 bytes per slot, allocated zeroed so
/// untouched pages cost nothing). Measured at 100 points up to H2 (3.9 M slots): no faster than the hash map
/// and 5× the memory, so the limit keeps the table for the stream sizes only (50 points: 230 k slots).
const DENSE_PIVOT_LIMIT: u64 = 1 << 20;

/// Below this fraction of present edges (in 1/16ths) a thresholded input takes the sparse neighbourhood path.
const SPARSE_EDGE_SIXTEENTHS: usize = 4;

// ---------------------------------------------------------------------------------------------------------------
// Binomial coefficients

/// `C(i, k)` for `0 ≤ i ≤ n`, `0 ≤ k ≤ kmax`, stored `k`-major so that the searches of vertex decoding walk one
/// contiguous row.
#[derive(Debug, Default)]
struct Binomial {
    n1: usize,
    kmax: usize,
    table: Vec<u64>,
}

impl Binomial {
    /// Rebuilds the table for `n` points and simplices of up to `kmax` vertices. Fails when an entry reaches
    /// 2^56, i.e. when simplex indices would not fit a packed working-column entry.
    fn rebuild(&mut self, n: usize, kmax: usize) -> Result<(), ()> {
        if self.n1 == n + 1 && self.kmax == kmax && !self.table.is_empty() {
            return Ok(());
        }
        let n1 = n + 1;
        self.table.clear();
        self.table.resize(n1 * (kmax + 1), 0);
        for k in 0..=kmax {
            for i in 0..n1 {
                let value = if k == 0 {
                    1
                } else if i == 0 {
                    0
                } else {
                    self.table[(k - 1) * n1 + i - 1].saturating_add(self.table[k * n1 + i - 1])
                };
                if value >= 1 << INDEX_BITS {
                    self.n1 = 0;
                    self.table.clear();
                    return Err(());
                }
                self.table[k * n1 + i] = value;
            }
        }
        self.n1 = n1;
        self.kmax = kmax;
        Ok(())
    }

    #[inline(always)]
    fn get(&self, i: usize, k: usize) -> u64 {
        self.table[k * self.n1 + i]
    }

    /// Vertices (ascending) of the simplex with `m` vertices and index `index`.
    fn decode(&self, mut index: u64, m: usize, out: &mut [u32; MAX_VERTS]) {
        let mut top = self.n1 - 1;
        for k in (1..=m).rev() {
            // Largest v < top with C(v, k) ≤ index; C(·, k) is non-decreasing and C(0, k) = 0 ≤ index.
            let row = &self.table[k * self.n1..k * self.n1 + top];
            let v = row.partition_point(|&c| c <= index).saturating_sub(1);
            out[k - 1] = v as u32;
            // `row` is never empty for a valid index (k vertices lie below `top`); stay total regardless.
            index -= row.get(v).copied().unwrap_or(0);
            top = v;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Neighbourhoods: who can be added to a simplex

/// Enumerates the vertices that extend a simplex to a cofacet within the threshold.
trait Neighborhood {
    /// Distance between two vertices.
    fn dist(&self, a: u32, b: u32) -> f32;

    /// Calls `f(v, cofacet_diameter, k)` for every vertex `v > floor` (all vertices when `floor` is `None`) not
    /// in the simplex `verts` (ascending, diameter `diam`) whose cofacet has diameter `≤ thr`, in decreasing
    /// order of `v`; `k` is the number of simplex vertices below `v`. Stops as soon as `f` returns `false`.
    fn cofacet_vertices(
        &self,
        verts: &[u32],
        diam: f32,
        floor: Option<u32>,
        thr: f32,
        f: impl FnMut(u32, f32, usize) -> bool,
    );

    /// Fills `edges` with the edges within the threshold in filtration order, keyed as in [`Engine::dim0`], if
    /// this neighbourhood already knows that order; returns `false` (and does nothing) otherwise.
    fn edges_in_order(&self, _edges: &mut Vec<(u64, u32, u32)>) -> bool {
        false
    }

    /// The dimension-2 part of [`Engine::assemble`] (the triangles on `edges`, their columns and, with `next`,
    /// every triangle) by a path specialised to this neighbourhood, if it has one: returns `false` and does
    /// nothing otherwise. Must produce the same columns and simplices as the generic loop, in any order.
    fn extend_edges(
        &self,
        _edges: &[(u64, u32, u32)],
        _binom: &Binomial,
        _pivots: &PivotMap,
        _columns: &mut Vec<(f32, u64)>,
        _next: Option<&mut Vec<(f32, u64)>>,
    ) -> bool {
        false
    }

    /// Whether [`Neighborhood::zero_pivot_vertex`] is a lookup rather than a scan of the candidates.
    fn fast_zero_pivot(&self) -> bool {
        false
    }

    /// The largest vertex `v` outside `verts` with `d(u, v) ≤ diam` for every `u` in `verts` — the vertex that
    /// makes the oldest equal-diameter cofacet — if any.
    fn zero_pivot_vertex(&self, verts: &[u32], diam: f32) -> Option<u32> {
        let mut found = None;
        // With `thr = diam` only equal-diameter cofacets pass; the first in decreasing order is the oldest.
        self.cofacet_vertices(verts, diam, None, diam, |v, _, _| {
            found = Some(v);
            false
        });
        found
    }
}

/// The complete graph: every vertex is a candidate, distances from the full square. With ball tables (small
/// inputs in rank space) vertex sets are bitmasks of type `M`.
struct Dense<'a, M = u128> {
    n: usize,
    d: &'a [f32],
    balls: Option<&'a Balls>,
    mask: std::marker::PhantomData<M>,
}

impl<'a, M> Dense<'a, M> {
    fn new(n: usize, d: &'a [f32], balls: Option<&'a Balls>) -> Self {
        Dense {
            n,
            d,
            balls,
            mask: std::marker::PhantomData,
        }
    }
}

/// A set of vertices of a small input as a bitmask: `u64` up to 64 points, where every set operation is one
/// instruction (the stream's 49-point windows), `u128` up to [`BALLS_MAX_POINTS`]. Measured on the stream
/// windows: `u128` shifts and leading-zero counts were a tenth of all instructions.
trait Mask:
    Copy
    + Eq
    + std::ops::BitAnd<Output = Self>
    + std::ops::BitOr<Output = Self>
    + std::ops::Not<Output = Self>
{
    const EMPTY: Self;
    /// The set `{v}`.
    fn bit(v: u32) -> Self;
    /// The set from its low and high 64 bits (`u64` ignores `hi`, which is then never loaded).
    fn from_halves(lo: u64, hi: impl FnOnce() -> u64) -> Self;
    /// Largest member.
    fn highest(self) -> Option<u32>;
    /// The vertices above `v`.
    fn above(v: u32) -> Self;
}

impl Mask for u64 {
    const EMPTY: Self = 0;
    #[inline(always)]
    fn bit(v: u32) -> Self {
        1 << (v & 63)
    }
    #[inline(always)]
    fn from_halves(lo: u64, _hi: impl FnOnce() -> u64) -> Self {
        lo
    }
    #[inline(always)]
    fn highest(self) -> Option<u32> {
        (self != 0).then(|| 63 - self.leading_zeros())
    }
    #[inline(always)]
    fn above(v: u32) -> Self {
        (!0u64).checked_shl(v + 1).unwrap_or(0)
    }
}

impl Mask for u128 {
    const EMPTY: Self = 0;
    #[inline(always)]
    fn bit(v: u32) -> Self {
        1 << (v & 127)
    }
    #[inline(always)]
    fn from_halves(lo: u64, hi: impl FnOnce() -> u64) -> Self {
        u128::from(lo) | (u128::from(hi()) << 64)
    }
    #[inline(always)]
    fn highest(self) -> Option<u32> {
        (self != 0).then(|| 127 - self.leading_zeros())
    }
    #[inline(always)]
    fn above(v: u32) -> Self {
        (!0u128).checked_shl(v + 1).unwrap_or(0)
    }
}

/// Largest input computed in rank space with [`Balls`] (one `u128` mask per vertex and neighbour count).
const BALLS_MAX_POINTS: usize = 128;

/// For small inputs the engine runs on *ranks* instead of distances: every distance is replaced by the rank of
/// its value among the distinct edge values (1, 2, …; 0 on the diagonal). Persistence only depends on the order
/// of filtration values, ties included, so the pairing is unchanged and bars are mapped back through
/// `values`. Integer filtration values make every closed ball a table lookup: `count[u·(E+1) + r]` is the number
/// of vertices within rank `r` of `u` and `prefix[u·(n+1) + c]` the mask of the `c` nearest ones, so the set of
/// vertices within `D` of all vertices of a simplex — the apparent/emergent pair test that dominates the stream
/// case — is an AND of one mask per vertex instead of a scan over every vertex.
#[derive(Debug, Default)]
struct Balls {
    n: usize,
    /// Number of distinct edge values `E`.
    levels: usize,
    /// Bytes per row of `present`.
    words: usize,
    /// Row `u`: bit `r` set when some vertex is at rank exactly `r` from `u`.
    present: Vec<u8>,
    /// Row `u`, byte `w`: number of distinct ranks of row `u` below `8·w`.
    base: Vec<u8>,
    /// Whether `count` replaces `present` and `base` (up to 64 points).
    direct: bool,
    /// Row `u` (length `E + 1`), entry `r`: number of distinct ranks `≤ r` in row `u`.
    count: Vec<u8>,
    /// Row `u`, entry `k`: the vertices whose rank from `u` is among the `k` smallest distinct ones (low and
    /// high 64 bits; the high half is only read when `n > 64`).
    prefix_lo: Vec<u64>,
    prefix_hi: Vec<u64>,
    /// Row-major neighbour order by increasing rank (row `u` starts with `u`), and each row's length.
    order: Vec<u32>,
    fill: Vec<u32>,
    keys: Vec<u64>,
    scratch: Vec<u64>,
    /// `values[r]` = the distance of rank `r` (`values[0] = 0`).
    values: Vec<f32>,
    /// The input in rank space (`+inf` beyond the threshold).
    ranked: Vec<f32>,
    /// The same ranks as integers (`u16::MAX` beyond the threshold; ranks of up to 128 points fit 13 bits), for
    /// the triangle loop of [`Dense::extend_edges`], which never converts a float.
    rank16: Vec<u16>,
}

/// Bits set in each byte: a table lookup instead of the bit-twiddling `count_ones` compiles to on baseline
/// x86-64 (no POPCNT instruction without `-C target-cpu`).
const POPCOUNT8: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).count_ones() as u8;
        i += 1;
    }
    t
};

/// The integer value of a rank (an integral `f32` in `[0, 2^23)`). Adding `2^23` puts the integer in the low
/// mantissa bits: three instructions, where `as usize` compiles to a dozen (it saturates out-of-range values).
#[inline(always)]
fn rank_index(r: f32) -> usize {
    ((r + 8_388_608.0).to_bits() & 0x7f_ffff) as usize
}

/// Sorts `keys` stably by their high 32 bits: an LSD radix sort, one counting pass per byte, skipping the bytes
/// that are equal in every key (the exponent byte of similar distances). On the ~1 200 pairs of a 49-point window
/// this is several times cheaper than a comparison sort.
fn radix_sort_high32(keys: &mut Vec<u64>, scratch: &mut Vec<u64>) {
    scratch.clear();
    scratch.resize(keys.len(), 0);
    for shift in [32, 40, 48, 56] {
        let mut count = [0usize; 256];
        for &k in keys.iter() {
            count[((k >> shift) & 0xff) as usize] += 1;
        }
        if count.contains(&keys.len()) {
            continue;
        }
        let mut at = 0;
        for c in count.iter_mut() {
            let here = *c;
            *c = at;
            at += here;
        }
        for &k in keys.iter() {
            let slot = &mut count[((k >> shift) & 0xff) as usize];
            scratch[*slot] = k;
            *slot += 1;
        }
        std::mem::swap(keys, scratch);
    }
}

impl Balls {
    /// Ranks `d` (`n × n`, `n ≤ BALLS_MAX_POINTS`) and builds the ball tables; pairs beyond `thr` are dropped.
    /// One sort of the pairs gives the ranks, the rank→value table and every row's neighbour order at once.
    fn rebuild(&mut self, n: usize, d: &[f32], thr: f32) {
        self.n = n;
        // (value bits, i, j) packed so that a plain integer sort orders pairs by value.
        let keys = &mut self.keys;
        keys.clear();
        for i in 1..n {
            for (j, &x) in d[i * n..i * n + i].iter().enumerate() {
                if x <= thr {
                    keys.push((u64::from(x.to_bits()) << 32) | ((i as u64) << 16) | j as u64);
                }
            }
        }
        // Pushed in increasing order of their low (vertex) bits, so a stable sort on the value bits sorts them
        // completely.
        radix_sort_high32(keys, &mut self.scratch);
        self.values.clear();
        self.values.push(0.0);
        self.ranked.clear();
        self.ranked.resize(n * n, f32::INFINITY);
        self.rank16.clear();
        self.rank16.resize(n * n, u16::MAX);
        // Row u of `order` starts with u itself (rank 0), then its neighbours by increasing rank.
        self.order.clear();
        self.order.resize(n * n, 0);
        self.fill.clear();
        self.fill.resize(n, 1);
        for u in 0..n {
            self.ranked[u * n + u] = 0.0;
            self.rank16[u * n + u] = 0;
            self.order[u * n] = u as u32;
        }
        let mut last_bits = u32::MAX;
        for &k in keys.iter() {
            let bits = (k >> 32) as u32;
            if bits != last_bits {
                self.values.push(f32::from_bits(bits));
                last_bits = bits;
            }
            let r = (self.values.len() - 1) as f32;
            let (i, j) = (((k >> 16) & 0xffff) as usize, (k & 0xffff) as usize);
            self.ranked[i * n + j] = r;
            self.ranked[j * n + i] = r;
            let r16 = (self.values.len() - 1) as u16;
            self.rank16[i * n + j] = r16;
            self.rank16[j * n + i] = r16;
            self.order[i * n + self.fill[i] as usize] = j as u32;
            self.fill[i] += 1;
            self.order[j * n + self.fill[j] as usize] = i as u32;
            self.fill[j] += 1;
        }
        let levels = self.values.len() - 1;
        self.levels = levels;
        let words = levels / 8 + 1;
        self.words = words;
        // Up to 64 points the count of distinct ranks `≤ r` is one byte of a direct table (n · (E + 1) bytes,
        // 55 KB for a 49-point window) instead of a byte count plus a popcount; above, the table would grow to
        // a megabyte and the compact form stays.
        self.direct = n <= 64;
        let stride = levels + 1;
        self.present.clear();
        self.base.clear();
        self.count.clear();
        if self.direct {
            self.count.resize(n * stride, 0);
        } else {
            self.present.resize(n * words, 0);
            self.base.resize(n * words, 0);
        }
        self.prefix_lo.clear();
        self.prefix_hi.clear();
        for u in 0..n {
            let within = self.fill[u] as usize;
            let order = &self.order[u * n..u * n + within];
            let ranks = &self.rank16[u * n..u * n + n];
            let mut mask = 0u128;
            self.prefix_lo.push(0);
            self.prefix_hi.push(0);
            // Distinct ranks seen so far, and where the current one starts in the direct table's row.
            let mut distinct = 0u8;
            let mut from = 0;
            for (c, &v) in order.iter().enumerate() {
                mask |= 1 << v;
                let r = usize::from(ranks[v as usize]);
                if self.direct {
                    if c == 0 || r != from {
                        self.count[u * stride + from..u * stride + r].fill(distinct);
                        distinct += 1;
                        from = r;
                    }
                } else {
                    self.present[u * words + r / 8] |= 1 << (r % 8);
                }
                // One prefix per distinct rank: pushed after the last vertex of that rank.
                let next_differs = order
                    .get(c + 1)
                    .is_none_or(|&w| usize::from(ranks[w as usize]) != r);
                if next_differs {
                    self.prefix_lo.push(mask as u64);
                    self.prefix_hi.push((mask >> 64) as u64);
                }
            }
            if self.direct {
                self.count[u * stride + from..(u + 1) * stride].fill(distinct);
            }
            // Pad the row to its fixed length n + 1.
            let pushed = self.prefix_lo.len() - u * (n + 1);
            for _ in pushed..n + 1 {
                self.prefix_lo.push(mask as u64);
                self.prefix_hi.push((mask >> 64) as u64);
            }
            if !self.direct {
                let mut seen = 0u32;
                for (base, word) in self.base[u * words..(u + 1) * words]
                    .iter_mut()
                    .zip(&self.present[u * words..(u + 1) * words])
                {
                    *base = seen as u8;
                    seen += word.count_ones();
                }
            }
        }
    }

    /// Vertices within rank `r` of `u` (including `u`): the number of distinct ranks `≤ r` in `u`'s row (a
    /// direct table entry, or a byte count plus one table popcount) indexes the prefix masks.
    #[inline(always)]
    fn ball<M: Mask>(&self, u: u32, r: f32) -> M {
        self.ball_at(u, rank_index(r.min(self.levels as f32)))
    }

    /// [`Balls::ball`] with an integer rank `r ≤ levels`.
    #[inline(always)]
    fn ball_at<M: Mask>(&self, u: u32, r: usize) -> M {
        let k = if self.direct {
            usize::from(self.count[u as usize * (self.levels + 1) + r])
        } else {
            let slot = u as usize * self.words + r / 8;
            let upto = 0xffu8 >> (7 - r % 8);
            usize::from(self.base[slot])
                + usize::from(POPCOUNT8[usize::from(self.present[slot] & upto)])
        };
        let at = u as usize * (self.n + 1) + k;
        M::from_halves(self.prefix_lo[at], || self.prefix_hi[at])
    }

    /// Vertex `u`'s slices of the direct tables (up to 64 points), for loops that look up many balls of one
    /// vertex: the row offsets and the table choice are then computed once.
    fn row(&self, u: u32) -> Option<BallRow<'_>> {
        let stride = self.levels + 1;
        let u = u as usize;
        self.direct.then(|| BallRow {
            count: &self.count[u * stride..(u + 1) * stride],
            prefix: &self.prefix_lo[u * (self.n + 1)..(u + 1) * (self.n + 1)],
        })
    }
}

/// One vertex's rows of the direct ball tables (see [`Balls::row`]).
struct BallRow<'a> {
    count: &'a [u8],
    prefix: &'a [u64],
}

impl BallRow<'_> {
    /// [`Balls::ball_at`] for this row's vertex.
    #[inline(always)]
    fn at<M: Mask>(&self, r: usize) -> M {
        M::from_halves(self.prefix[usize::from(self.count[r])], || 0)
    }
}

impl<M: Mask> Dense<'_, M> {
    /// [`Neighborhood::zero_pivot_vertex`] by scanning every vertex (no ball tables).
    #[inline(never)]
    fn zero_pivot_vertex_scan(&self, verts: &[u32], diam: f32) -> Option<u32> {
        let mut found = None;
        self.cofacet_vertices(verts, diam, None, diam, |v, _, _| {
            found = Some(v);
            false
        });
        found
    }
}

impl<M: Mask> Neighborhood for Dense<'_, M> {
    fn fast_zero_pivot(&self) -> bool {
        self.balls.is_some()
    }

    /// The ball tables were built from the pairs sorted by value (ties by increasing index): the filtration
    /// order is that, with each tie group reversed, and ranks for diameters. No second sort.
    fn edges_in_order(&self, edges: &mut Vec<(u64, u32, u32)>) -> bool {
        let Some(balls) = self.balls else {
            return false;
        };
        let keys = &balls.keys;
        let mut rank = 0u32;
        let mut start = 0;
        while start < keys.len() {
            let value = keys[start] >> 32;
            let end = keys[start..]
                .iter()
                .position(|&k| k >> 32 != value)
                .map_or(keys.len(), |len| start + len);
            rank += 1;
            let diam = u64::from((rank as f32).to_bits()) << 32;
            for &k in keys[start..end].iter().rev() {
                let (j, i) = (((k >> 16) & 0xffff) as u32, (k & 0xffff) as u32);
                // Indices of at most 128 points fit 32 bits (the packed keys of `dim0`).
                let index = j * j.saturating_sub(1) / 2 + i;
                edges.push((diam | u64::from(!index), i, j));
            }
            start = end;
        }
        true
    }

    /// In rank space the triangles are where small inputs spend their time (a 49-point window has ~12 000 and
    /// reduces ~45 of them): this loop tests them with integer ranks and bitmasks only. Candidates `v > j`
    /// come from the AND of two balls, the apparent-facet test is written out for three vertices, and only the
    /// rare triangles that are not the facet of a zero apparent pair go on to the generic tests.
    fn extend_edges(
        &self,
        edges: &[(u64, u32, u32)],
        binom: &Binomial,
        pivots: &PivotMap,
        columns: &mut Vec<(f32, u64)>,
        mut next: Option<&mut Vec<(f32, u64)>>,
    ) -> bool {
        let Some(balls) = self.balls else {
            return false;
        };
        let n = self.n;
        let ranks = &balls.rank16[..n * n];
        let top = balls.levels;
        for &(_, i, j) in edges {
            let (iu, ju) = (i as usize, j as usize);
            let ri = &ranks[iu * n..iu * n + n];
            let rj = &ranks[ju * n..ju * n + n];
            let e = ri[ju];
            let base = binom.get(ju, 2) + u64::from(i);
            let edge_own = M::bit(i) | M::bit(j);
            let (row_i, row_j) = (balls.row(i), balls.row(j));
            let ball_i = |r: usize| -> M {
                row_i
                    .as_ref()
                    .map_or_else(|| balls.ball_at(i, r), |b| b.at(r))
            };
            let ball_j = |r: usize| -> M {
                row_j
                    .as_ref()
                    .map_or_else(|| balls.ball_at(j, r), |b| b.at(r))
            };
            let mut candidates =
                balls.ball_at::<M>(i, top) & balls.ball_at::<M>(j, top) & M::above(j);
            // Decreasing v, as the generic enumeration does (the order of columns is free: they are sorted).
            while let Some(v) = candidates.highest() {
                let vu = v as usize;
                candidates = candidates & !M::bit(v);
                let (iv, jv) = (ri[vu], rj[vu]);
                let d = e.max(iv).max(jv);
                // Index and float diameter only for the triangles kept (most are skipped as apparent).
                let tau = || base + binom.get(vu, 3);
                if let Some(next) = next.as_deref_mut() {
                    next.push((f32::from(d), tau()));
                }
                let r = usize::from(d);
                // The oldest equal-diameter cofacet adds the largest vertex within d of all three.
                let common =
                    ball_i(r) & ball_j(r) & balls.ball_at::<M>(v, r) & !(edge_own | M::bit(v));
                if let Some(x) = common.highest() {
                    // x above v: this triangle is the cofacet's youngest facet, a zero apparent pair.
                    if x > v {
                        continue;
                    }
                    // Otherwise each facet of {i, j, v, x} younger than this one (it lacks a vertex above x,
                    // v at least) must have a smaller diameter: no maximal pair may avoid that vertex.
                    let rx = &ranks[x as usize * n..x as usize * n + n];
                    let (ij, iv, jv) = (e == d, iv == d, jv == d);
                    let (xi, xj, xv) = (rx[iu] == d, rx[ju] == d, rx[vu] == d);
                    let without_i = !(jv || xj || xv);
                    let without_j = !(iv || xi || xv);
                    let without_v = !(ij || xi || xj);
                    if without_v && (i < x || without_i) && (j < x || without_j) {
                        continue;
                    }
                }
                let (tau, diam) = (tau(), f32::from(d));
                if pivots.get(tau).is_some() {
                    continue;
                }
                let w = [i, j, v];
                if apparent_as_cofacet(self, &w, diam, &MaxPairs::of(self, &w, diam)).is_none() {
                    columns.push((diam, tau));
                }
            }
        }
        true
    }

    #[inline(always)]
    fn zero_pivot_vertex(&self, verts: &[u32], diam: f32) -> Option<u32> {
        let Some(balls) = self.balls else {
            return self.zero_pivot_vertex_scan(verts, diam);
        };
        let mut common = !M::EMPTY;
        let mut own = M::EMPTY;
        for &u in verts {
            common = common & balls.ball::<M>(u, diam);
            own = own | M::bit(u);
        }
        (common & !own).highest()
    }

    #[inline(always)]
    fn dist(&self, a: u32, b: u32) -> f32 {
        self.d[a as usize * self.n + b as usize]
    }

    #[inline(always)]
    fn cofacet_vertices(
        &self,
        verts: &[u32],
        diam: f32,
        floor: Option<u32>,
        thr: f32,
        mut f: impl FnMut(u32, f32, usize) -> bool,
    ) {
        let n = self.n;
        let lo = floor.map_or(0, |x| x as usize + 1);
        let mut k = verts.len();
        let mut v = n;
        while v > lo {
            v -= 1;
            if k > 0 && verts[k - 1] as usize == v {
                k -= 1;
                continue;
            }
            // The symmetric square lets us read row v: one contiguous row, `verts` gathered from it.
            let row = &self.d[v * n..v * n + n];
            let mut cd = diam;
            for &u in verts {
                cd = max_of(cd, row[u as usize]);
            }
            if cd <= thr && !f(v as u32, cd, k) {
                return;
            }
        }
    }
}

/// Only the edges within the threshold, as sorted adjacency lists: cofacets come from intersecting the
/// neighbourhoods of the simplex's vertices, so vertices too far away are never looked at.
struct Sparse<'a> {
    n: usize,
    d: &'a [f32],
    start: &'a [usize],
    nbr: &'a [u32],
}

impl Neighborhood for Sparse<'_> {
    #[inline(always)]
    fn dist(&self, a: u32, b: u32) -> f32 {
        self.d[a as usize * self.n + b as usize]
    }

    fn cofacet_vertices(
        &self,
        verts: &[u32],
        diam: f32,
        floor: Option<u32>,
        thr: f32,
        mut f: impl FnMut(u32, f32, usize) -> bool,
    ) {
        let m = verts.len();
        if m == 0 {
            return;
        }
        // Candidates come from the shortest neighbour list; membership in the other neighbourhoods is one
        // lookup each in the candidate's (contiguous) distance row, which beats merging sorted lists.
        let list = |u: u32| &self.nbr[self.start[u as usize]..self.start[u as usize + 1]];
        let base = (0..m).min_by_key(|&i| list(verts[i]).len()).unwrap_or(0);
        for &v in list(verts[base]).iter().rev() {
            if floor.is_some_and(|fl| v <= fl) {
                return;
            }
            let row = &self.d[v as usize * self.n..v as usize * self.n + self.n];
            let mut cd = diam;
            let mut k = 0;
            let mut member = false;
            for &u in verts {
                cd = max_of(cd, row[u as usize]);
                k += usize::from(u < v);
                member |= u == v;
            }
            // `v` may be another vertex of the simplex (it neighbours the base vertex): not a cofacet.
            if !member && cd <= thr && !f(v, cd, k) {
                return;
            }
        }
    }
}

/// Visits every cofacet of the simplex `verts` (ascending, diameter `diam`) within `thr`, in decreasing index
/// order, as `f(index, diameter, odd_sign, added_vertex)`; `odd_sign` is the parity of the number of simplex
/// vertices above the added one (the incidence coefficient is `(-1)^that`).
#[inline(always)]
fn for_each_cofacet<N: Neighborhood>(
    nb: &N,
    binom: &Binomial,
    verts: &[u32],
    diam: f32,
    floor: Option<u32>,
    thr: f32,
    mut f: impl FnMut(u64, f32, bool, u32) -> bool,
) {
    let m = verts.len();
    // low[k]: contribution of the k lowest vertices (unchanged); high[k]: the others, each shifted up one slot.
    let mut low = [0u64; MAX_VERTS + 1];
    let mut high = [0u64; MAX_VERTS + 1];
    for i in 0..m {
        low[i + 1] = low[i] + binom.get(verts[i] as usize, i + 1);
    }
    for i in (0..m).rev() {
        high[i] = high[i + 1] + binom.get(verts[i] as usize, i + 2);
    }
    nb.cofacet_vertices(verts, diam, floor, thr, |v, cd, k| {
        f(
            low[k] + binom.get(v as usize, k + 1) + high[k],
            cd,
            (m - k) % 2 == 1,
            v,
        )
    });
}

/// The pairs of a simplex at distance equal to its diameter: how many, and how many touch each vertex. The facet
/// without `w[j]` keeps the diameter iff some such pair avoids `j`, i.e. iff `total > touching[j]`.
struct MaxPairs {
    total: u8,
    touching: [u8; MAX_VERTS],
}

impl MaxPairs {
    #[inline(always)]
    fn of<N: Neighborhood>(nb: &N, w: &[u32], diam: f32) -> Self {
        let mut mp = MaxPairs {
            total: 0,
            touching: [0; MAX_VERTS],
        };
        for a in 0..w.len() {
            for b in 0..a {
                if nb.dist(w[a], w[b]) == diam {
                    mp.total += 1;
                    mp.touching[a] += 1;
                    mp.touching[b] += 1;
                }
            }
        }
        mp
    }

    /// The youngest facet if it has the same diameter, as the position of the removed vertex: removing vertices
    /// from the largest down gives facets in increasing index order, i.e. from latest to earliest in the
    /// filtration.
    #[inline(always)]
    fn zero_pivot_facet(&self, m: usize) -> Option<usize> {
        (0..m).rev().find(|&j| self.total > self.touching[j])
    }
}

/// Whether `w` (ascending, diameter `diam`) is the facet of a zero-persistence apparent pair: its oldest cofacet
/// `w ∪ {x}` has the same diameter and has `w` as youngest facet, i.e. removing any vertex `y > x` from
/// `w ∪ {x}` lowers the diameter.
#[inline(always)]
fn apparent_as_facet<N: Neighborhood>(nb: &N, w: &[u32], diam: f32) -> bool {
    let Some(x) = nb.zero_pivot_vertex(w, diam) else {
        return false;
    };
    // When x is the largest vertex, w is the first facet tried (and keeps the diameter): no more work.
    if w.last().is_none_or(|&top| top < x) {
        return true;
    }
    let mp = MaxPairs::of(nb, w, diam);
    let mut x_max = [0u8; MAX_VERTS];
    let mut x_total = 0;
    for (i, &u) in w.iter().enumerate() {
        x_max[i] = u8::from(nb.dist(x, u) == diam);
        x_total += x_max[i];
    }
    // Without y = w[i] the cofacet keeps a maximal pair inside w (mp) or between x and another vertex.
    (0..w.len())
        .filter(|&i| w[i] > x)
        .all(|i| mp.total <= mp.touching[i] && x_total <= x_max[i])
}

/// If `w` is the cofacet of a zero-persistence apparent pair, the position in `w` of the vertex its partner
/// facet lacks: the youngest facet has the same diameter and has `w` as its oldest cofacet.
#[inline(always)]
fn apparent_as_cofacet<N: Neighborhood>(
    nb: &N,
    w: &[u32],
    diam: f32,
    mp: &MaxPairs,
) -> Option<usize> {
    let j = mp.zero_pivot_facet(w.len())?;
    let mut facet = [0u32; MAX_VERTS];
    let mut len = 0;
    for (i, &u) in w.iter().enumerate() {
        if i != j {
            facet[len] = u;
            len += 1;
        }
    }
    (nb.zero_pivot_vertex(&facet[..len], diam) == Some(w[j])).then_some(j)
}

/// The larger of two distances. Distances are never NaN (see [`DistanceMatrix`]), so this is one `maxss`
/// where `f32::max`, which must return the other operand for a NaN, compiles to five instructions; it sits in the
/// inner loop of every coboundary enumeration.
#[inline(always)]
fn max_of(a: f32, b: f32) -> f32 {
    if b > a { b } else { a }
}

/// `verts ∪ {v}`, ascending, into `out`; returns its length.
fn insert_vertex(verts: &[u32], v: u32, out: &mut [u32; MAX_VERTS]) -> usize {
    let mut j = 0;
    let mut placed = false;
    for &u in verts {
        if !placed && v < u {
            out[j] = v;
            j += 1;
            placed = true;
        }
        out[j] = u;
        j += 1;
    }
    if !placed {
        out[j] = v;
        j += 1;
    }
    j
}

/// Whether `verts` is the facet of a zero-persistence apparent pair.
fn has_zero_apparent_cofacet<N: Neighborhood>(nb: &N, verts: &[u32], diam: f32) -> bool {
    apparent_as_facet(nb, verts, diam)
}

/// If `w` is the cofacet of a zero-persistence apparent pair, the position of the vertex its partner lacks.
fn zero_apparent_facet<N: Neighborhood>(nb: &N, w: &[u32], diam: f32) -> Option<usize> {
    apparent_as_cofacet(nb, w, diam, &MaxPairs::of(nb, w, diam))
}

// ---------------------------------------------------------------------------------------------------------------
// Columns, pivots, coefficients

/// A coboundary entry of the working column, unpacked.
#[derive(Debug, Clone, Copy)]
struct Entry {
    diam: f32,
    coef: u32,
    index: u64,
}

/// Bits of a packed entry's index (the rest of its last word holds the coefficient): 56 + 8, as in Ripser.
const INDEX_BITS: u32 = 56;

/// An [`Entry`] as stored in the working column: 12 bytes instead of 16, so that long reductions (millions
/// of entries) take a quarter less memory and bandwidth.
#[derive(Debug, Clone, Copy)]
struct Packed {
    diam: u32,
    lo: u32,
    /// Index bits 32..56 shifted up by 8, coefficient in the low 8 bits.
    hi: u32,
}

impl Packed {
    #[inline(always)]
    fn pack(e: Entry) -> Self {
        Packed {
            diam: e.diam.to_bits(),
            lo: e.index as u32,
            hi: (((e.index >> 32) as u32) << 8) | e.coef,
        }
    }

    #[inline(always)]
    fn index(&self) -> u64 {
        (u64::from(self.hi >> 8) << 32) | u64::from(self.lo)
    }

    #[inline(always)]
    fn unpack(&self) -> Entry {
        Entry {
            diam: f32::from_bits(self.diam),
            coef: self.hi & 0xff,
            index: self.index(),
        }
    }

    /// Filtration-order key: diameter ascending, then index descending. Diameters are finite and
    /// non-negative, so their bit patterns order like their values.
    #[inline(always)]
    fn key(&self) -> u128 {
        (u128::from(self.diam) << 64) | u128::from(!self.index())
    }
}

/// One term of a stored reduction-matrix column.
#[derive(Debug, Clone, Copy)]
struct VEntry {
    index: u64,
    diam: f32,
    coef: u32,
}

/// Folded-multiply hasher for simplex indices (they are already well spread; this only needs to be fast).
#[derive(Default)]
struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    #[inline(always)]
    fn write_u64(&mut self, x: u64) {
        let p = u128::from(x ^ self.0) * 0x9E37_79B9_7F4A_7C15_u128;
        self.0 = (p as u64) ^ ((p >> 64) as u64);
    }
}

/// Map from a pivot simplex index to the column (1-based, 0 = absent) whose reduced coboundary has that pivot.
/// Small index spaces use a flat array (the whole space fits in cache for the stream-sized inputs); larger
/// ones a hash map.
#[derive(Default)]
struct PivotMap {
    dense: Vec<u32>,
    touched: Vec<u64>,
    use_dense: bool,
    hash: HashMap<u64, u32, BuildHasherDefault<IndexHasher>>,
}

impl PivotMap {
    fn reset(&mut self, space: u64) -> Result<(), TopoError> {
        for &t in &self.touched {
            if let Some(slot) = self.dense.get_mut(t as usize) {
                *slot = 0;
            }
        }
        self.touched.clear();
        self.hash.clear();
        self.use_dense = space <= DENSE_PIVOT_LIMIT;
        if self.use_dense && (self.dense.len() as u64) < space {
            // A fresh zeroed allocation (calloc) rather than a resize, so untouched pages are never written.
            let mut fresh = Vec::new();
            fresh
                .try_reserve_exact(space as usize)
                .map_err(|_| TopoError::TooLarge {
                    what: "pivot table",
                })?;
            fresh.resize(space as usize, 0);
            self.dense = fresh;
        }
        Ok(())
    }

    #[inline(always)]
    fn get(&self, index: u64) -> Option<usize> {
        let col = if self.use_dense {
            self.dense.get(index as usize).copied().unwrap_or(0)
        } else {
            self.hash.get(&index).copied().unwrap_or(0)
        };
        (col != 0).then(|| col as usize - 1)
    }

    #[inline(always)]
    fn insert(&mut self, index: u64, column: usize) {
        let value = column as u32 + 1;
        if self.use_dense {
            if let Some(slot) = self.dense.get_mut(index as usize) {
                *slot = value;
                self.touched.push(index);
            }
        } else {
            self.hash.insert(index, value);
        }
    }
}

/// Whether `p` is prime.
fn is_prime(p: u32) -> bool {
    p >= 2 && (2..).take_while(|d| d * d <= p).all(|d| p % d != 0)
}

// ---------------------------------------------------------------------------------------------------------------
// The engine

/// Reusable state of a persistence computation. Reusing one across calls (see [`crate::RipsWorkspace`]) keeps
/// every buffer, so small repeated inputs allocate (almost) nothing.
#[derive(Default)]
pub(crate) struct Engine {
    binom: Binomial,
    pivots: PivotMap,
    /// Pivot coefficient of each reduced column (column order of the current dimension).
    pivot_coef: Vec<u32>,
    inverse: Vec<u32>,
    modulus: u32,
    work: WorkColumn,
    cofacets: Vec<Entry>,
    work_v: Vec<VEntry>,
    v_entries: Vec<VEntry>,
    v_start: Vec<usize>,
    columns: Vec<(f32, u64)>,
    simplices: Vec<(f32, u64)>,
    next_simplices: Vec<(f32, u64)>,
    /// Edges within the threshold in filtration order: (diameter bits << 32 | !index, i, j), i < j.
    edges: Vec<(u64, u32, u32)>,
    parent: Vec<u32>,
    nbr_start: Vec<usize>,
    nbr: Vec<u32>,
    balls: Balls,
}

impl Engine {
    fn set_modulus(&mut self, p: u32) -> Result<(), TopoError> {
        if p >= 1 << (64 - INDEX_BITS) || !is_prime(p) {
            return Err(TopoError::InvalidModulus(p));
        }
        if self.modulus != p {
            // inv[i] = -(p / i) · inv[p mod i]  (mod p), from p = (p / i)·i + p mod i.
            let pp = u64::from(p);
            let mut inv = vec![0u32; p as usize];
            if p > 1 {
                inv[1] = 1;
            }
            for i in 2..p as usize {
                let q = pp / i as u64;
                let r = inv[(pp % i as u64) as usize];
                inv[i] = ((pp - q * u64::from(r) % pp) % pp) as u32;
            }
            self.inverse = inv;
            self.modulus = p;
        }
        Ok(())
    }

    /// Computes the barcodes of `dm` into `out` (its dimension vectors are cleared and reused).
    pub(crate) fn compute(
        &mut self,
        dm: &DistanceMatrix,
        params: &RipsParams,
        out: &mut Barcodes,
    ) -> Result<(), TopoError> {
        if params.max_dim > MAX_DIM_LIMIT {
            return Err(TopoError::MaxDimTooLarge(params.max_dim));
        }
        self.set_modulus(params.modulus)?;
        let n = dm.len();
        let enclosing = dm.enclosing_radius();
        let thr = match params.threshold {
            Some(t) if t.is_nan() || t < 0.0 => return Err(TopoError::InvalidThreshold(t)),
            Some(t) => t.min(enclosing),
            None => enclosing,
        };
        // Simplices of infinite diameter (pairs "never connected") are never in the complex.
        let thr = (thr as f32).min(f32::MAX);

        out.dims.resize_with(params.max_dim + 1, Vec::new);
        out.dims.truncate(params.max_dim + 1);
        out.dims.iter_mut().for_each(Vec::clear);
        if n == 0 {
            return Ok(());
        }
        // No simplex has more than n vertices, so dimensions ≥ n contribute nothing.
        let top_dim = params.max_dim.min(n - 1);
        if self.binom.rebuild(n, top_dim + 2).is_err() {
            return Err(TopoError::IndexOverflow {
                n,
                max_dim: params.max_dim,
            });
        }

        let d = dm.square();
        // Count the edges under the threshold to choose between the dense and the sparse neighbourhood.
        let present = if params.threshold.is_some() {
            d.chunks_exact(n)
                .enumerate()
                .map(|(i, row)| row[..i].iter().filter(|&&x| x <= thr).count())
                .sum()
        } else {
            usize::MAX
        };
        let pairs = n * (n - 1) / 2;
        if n <= BALLS_MAX_POINTS {
            let mut balls = std::mem::take(&mut self.balls);
            balls.rebuild(n, d, thr);
            let levels = balls.levels as f32;
            let result = if n <= 64 {
                let nb = Dense::<u64>::new(n, &balls.ranked, Some(&balls));
                self.run(&nb, n, top_dim, levels, out)
            } else {
                let nb = Dense::<u128>::new(n, &balls.ranked, Some(&balls));
                self.run(&nb, n, top_dim, levels, out)
            };
            // Back from ranks to distances.
            let to_value = |x: f64| {
                if x.is_finite() {
                    f64::from(
                        balls
                            .values
                            .get(x as usize)
                            .copied()
                            .unwrap_or(f32::INFINITY),
                    )
                } else {
                    x
                }
            };
            for bar in out.dims.iter_mut().flatten() {
                bar.birth = to_value(bar.birth);
                bar.death = to_value(bar.death);
            }
            self.balls = balls;
            result?;
        } else if present.saturating_mul(16) < pairs.saturating_mul(SPARSE_EDGE_SIXTEENTHS) {
            let mut start = std::mem::take(&mut self.nbr_start);
            let mut nbr = std::mem::take(&mut self.nbr);
            start.clear();
            nbr.clear();
            start.push(0);
            for (i, row) in d.chunks_exact(n).enumerate() {
                nbr.extend(
                    row.iter()
                        .enumerate()
                        .filter(|&(j, &x)| j != i && x <= thr)
                        .map(|(j, _)| j as u32),
                );
                start.push(nbr.len());
            }
            let nb = Sparse {
                n,
                d,
                start: &start,
                nbr: &nbr,
            };
            let result = self.run(&nb, n, top_dim, thr, out);
            self.nbr_start = start;
            self.nbr = nbr;
            result?;
        } else {
            self.run(&Dense::<u128>::new(n, d, None), n, top_dim, thr, out)?;
        }
        for bars in &mut out.dims {
            // Zero-length bars are not reported (H0 merges at distance 0: duplicate points).
            bars.retain(|b| b.death > b.birth);
            bars.sort_unstable_by(|a, b| {
                a.birth
                    .total_cmp(&b.birth)
                    .then(a.death.total_cmp(&b.death))
            });
        }
        Ok(())
    }

    fn run<N: Neighborhood>(
        &mut self,
        nb: &N,
        n: usize,
        top_dim: usize,
        thr: f32,
        out: &mut Barcodes,
    ) -> Result<(), TopoError> {
        self.dim0(nb, n, top_dim, thr, &mut out.dims[0]);
        for dim in 1..=top_dim {
            self.pivots.reset(self.binom.get(n, dim + 2))?;
            self.reduce(nb, dim, thr, &mut out.dims[dim]);
            if dim < top_dim {
                self.assemble(nb, dim + 1, thr, dim + 1 < top_dim);
            }
        }

        Ok(())
    }

    /// H0 by union-find over the edges in filtration order; collects the dimension-1 columns (edges that close
    /// a cycle and are not the facet of a zero apparent pair), and keeps every edge when dimension 2 is wanted.
    fn dim0<N: Neighborhood>(
        &mut self,
        nb: &N,
        n: usize,
        top_dim: usize,
        thr: f32,
        bars: &mut Vec<Interval>,
    ) {
        let edges = &mut self.edges;
        edges.clear();
        // Filtration order: diameter ascending, then index descending (index of {i < j} is C(j,2) + i). The
        // order is packed into one integer key (diameter bits, then the complemented index), which sorts much
        // faster than a comparator; edge indices fit 32 bits up to 92 681 points.
        let packed_keys = self.binom.get(n, 2) < 1 << 32;
        let sorted = nb.edges_in_order(edges);
        for j in (1..n as u32).filter(|_| !sorted) {
            let base = self.binom.get(j as usize, 2);
            for i in 0..j {
                let x = nb.dist(i, j);
                if x <= thr {
                    let index = (base + u64::from(i)) as u32;
                    edges.push(((u64::from(x.to_bits()) << 32) | u64::from(!index), i, j));
                }
            }
        }
        if sorted {
            // Already in order.
        } else if packed_keys {
            edges.sort_unstable_by_key(|e| e.0);
        } else {
            edges.sort_unstable_by(|a, b| {
                (a.0 >> 32)
                    .cmp(&(b.0 >> 32))
                    .then(b.2.cmp(&a.2))
                    .then(b.1.cmp(&a.1))
            });
        }

        let parent = &mut self.parent;
        parent.clear();
        parent.extend(0..n as u32);
        fn find(parent: &mut [u32], mut x: u32) -> u32 {
            while parent[x as usize] != x {
                let up = parent[parent[x as usize] as usize];
                parent[x as usize] = up;
                x = up;
            }
            x
        }
        self.columns.clear();
        self.simplices.clear();
        for &(key, i, j) in edges.iter() {
            let x = f32::from_bits((key >> 32) as u32);
            let (ri, rj) = (find(parent, i), find(parent, j));
            let index = self.binom.get(j as usize, 2) + u64::from(i);
            if ri != rj {
                // Elder rule: every vertex is born at 0, so the merge kills a bar [0, x).
                parent[ri.max(rj) as usize] = ri.min(rj);
                bars.push(Interval {
                    birth: 0.0,
                    death: f64::from(x),
                });
            } else if top_dim >= 1 && !has_zero_apparent_cofacet(nb, &[i, j], x) {
                self.columns.push((x, index));
            }
        }
        for v in 0..n as u32 {
            if find(parent, v) == v {
                bars.push(Interval {
                    birth: 0.0,
                    death: f64::INFINITY,
                });
            }
        }
        // Reduction order: reverse filtration order.
        self.columns.reverse();
    }

    /// Columns of dimension `dim`: the cofacets of the stored `(dim-1)`-simplices, minus the pivots of the
    /// previous reduction (clearing) and minus the members of zero apparent pairs.
    fn assemble<N: Neighborhood>(&mut self, nb: &N, dim: usize, thr: f32, keep_simplices: bool) {
        let Engine {
            binom,
            pivots,
            columns,
            simplices,
            next_simplices,
            edges,
            ..
        } = self;
        columns.clear();
        next_simplices.clear();
        let m = dim; // vertices of the facets we extend
        let specialised = m == 2
            && nb.extend_edges(
                edges,
                binom,
                pivots,
                columns,
                keep_simplices.then_some(&mut *next_simplices),
            );
        let mut w = [0u32; MAX_VERTS];
        // Each simplex is generated once, from its facet without its largest vertex.
        let mut extend = |verts: &[u32], diam: f32| {
            w[..m].copy_from_slice(verts);
            for_each_cofacet(
                nb,
                binom,
                verts,
                diam,
                Some(verts[m - 1]),
                thr,
                |tau, cd, _, v| {
                    if keep_simplices {
                        next_simplices.push((cd, tau));
                    }
                    w[m] = v;
                    let tv = &w[..m + 1];
                    // Most simplices are the facet of a zero apparent pair: test that first, it needs no pivot
                    // lookup. (Such a simplex is positive, so it cannot also be a pivot below: order is free.)
                    if !apparent_as_facet(nb, tv, cd)
                        && pivots.get(tau).is_none()
                        && apparent_as_cofacet(nb, tv, cd, &MaxPairs::of(nb, tv, cd)).is_none()
                    {
                        columns.push((cd, tau));
                    }
                    true
                },
            );
        };
        if specialised {
            // Done by the neighbourhood's own loop.
        } else if m == 2 {
            // The edges are still at hand from H0, with their vertices: no decoding.
            for &(key, i, j) in edges.iter() {
                extend(&[i, j], f32::from_bits((key >> 32) as u32));
            }
        } else {
            let mut verts = [0u32; MAX_VERTS];
            for &(diam, index) in simplices.iter() {
                binom.decode(index, m, &mut verts);
                extend(&verts[..m], diam);
            }
        }
        columns.sort_unstable_by(|a, b| b.0.to_bits().cmp(&a.0.to_bits()).then(a.1.cmp(&b.1)));
        std::mem::swap(simplices, next_simplices);
    }

    /// Reduces the coboundary columns of dimension `dim` (already in `self.columns`), recording pivots for the
    /// clearing of the next dimension and pushing the bars of dimension `dim`.
    fn reduce<N: Neighborhood>(&mut self, nb: &N, dim: usize, thr: f32, bars: &mut Vec<Interval>) {
        let Engine {
            binom,
            pivots,
            pivot_coef,
            inverse,
            modulus,
            work,
            cofacets,
            work_v,
            v_entries,
            v_start,
            columns,
            ..
        } = self;
        let p = *modulus;
        let pp = u64::from(p);
        let m = dim + 1;
        let neg = |c: u32| if c == 0 { 0 } else { p - c };
        let mul = |a: u32, b: u32| (u64::from(a) * u64::from(b) % pp) as u32;
        pivot_coef.clear();
        v_entries.clear();
        v_start.clear();
        let mut verts = [0u32; MAX_VERTS];
        let mut w = [0u32; MAX_VERTS];

        for (ci, &(diam, index)) in columns.iter().enumerate() {
            v_start.push(v_entries.len());
            pivot_coef.push(0);
            binom.decode(index, m, &mut verts);

            // Enumerate the coboundary; the first equal-diameter cofacet is the pivot of the unreduced column. If
            // no earlier column owns it (and no skipped apparent pair does), the pair is emergent: no reduction.
            cofacets.clear();
            let mut emergent = None;
            let mut check = true;
            if nb.fast_zero_pivot() {
                // The first equal-diameter cofacet is the one the zero-pivot vertex makes: with ball tables that
                // is a lookup, and most columns (38 of 45 on a stream window) end here, unenumerated.
                check = false;
                if let Some(x) = nb.zero_pivot_vertex(&verts[..m], diam) {
                    let len = insert_vertex(&verts[..m], x, &mut w);
                    let tau = w[..len]
                        .iter()
                        .enumerate()
                        .map(|(k, &u)| binom.get(u as usize, k + 1))
                        .sum::<u64>();
                    if pivots.get(tau).is_none()
                        && zero_apparent_facet(nb, &w[..len], diam).is_none()
                    {
                        let above = verts[..m].iter().filter(|&&u| u > x).count();
                        emergent = Some((tau, if above % 2 == 1 { p - 1 } else { 1 }));
                    }
                }
            }
            if emergent.is_none() {
                for_each_cofacet(
                    nb,
                    binom,
                    &verts[..m],
                    diam,
                    None,
                    thr,
                    |tau, cd, odd, v| {
                        let coef = if odd { p - 1 } else { 1 };
                        if check && cd == diam {
                            if pivots.get(tau).is_none() {
                                let len = insert_vertex(&verts[..m], v, &mut w);
                                if zero_apparent_facet(nb, &w[..len], cd).is_none() {
                                    emergent = Some((tau, coef));
                                    return false;
                                }
                            }
                            check = false;
                        }
                        cofacets.push(Entry {
                            diam: cd,
                            coef,
                            index: tau,
                        });
                        true
                    },
                );
            }
            if let Some((tau, coef)) = emergent {
                pivots.insert(tau, ci);
                pivot_coef[ci] = coef;
                continue;
            }

            work.clear();
            for &e in cofacets.iter() {
                work.insert(e);
            }
            work_v.clear();
            loop {
                let Some(piv) = work.pop_pivot(pp) else {
                    bars.push(Interval {
                        birth: f64::from(diam),
                        death: f64::INFINITY,
                    });
                    break;
                };
                // The pivot stays in the column; the addition below cancels it.
                work.insert(piv);
                let Some(j) = pivots.get(piv.index) else {
                    // A pivot owned by a skipped apparent pair: add that (unreduced) apparent column, whose
                    // pivot is this entry, and go on.
                    binom.decode(piv.index, m + 1, &mut w);
                    if let Some(pos) = zero_apparent_facet(nb, &w[..m + 1], piv.diam) {
                        let mut facet = [0u32; MAX_VERTS];
                        let mut findex = 0;
                        for (i, &u) in w[..m + 1].iter().enumerate() {
                            if i != pos {
                                findex += binom.get(u as usize, if i < pos { i + 1 } else { i });
                                facet[if i < pos { i } else { i - 1 }] = u;
                            }
                        }
                        // Coefficient of the pivot in the facet's coboundary: (-1)^(vertices above the added one).
                        let incidence = if (m - pos) % 2 == 1 { p - 1 } else { 1 };
                        let factor = neg(mul(piv.coef, inverse[incidence as usize]));
                        work_v.push(VEntry {
                            index: findex,
                            diam: piv.diam,
                            coef: factor,
                        });
                        for_each_cofacet(
                            nb,
                            binom,
                            &facet[..m],
                            piv.diam,
                            None,
                            thr,
                            |tau, cd, odd, _| {
                                work.insert(Entry {
                                    diam: cd,
                                    coef: if odd { neg(factor) } else { factor },
                                    index: tau,
                                });
                                true
                            },
                        );
                        continue;
                    }
                    if piv.diam > diam {
                        bars.push(Interval {
                            birth: f64::from(diam),
                            death: f64::from(piv.diam),
                        });
                    }
                    pivots.insert(piv.index, ci);
                    pivot_coef[ci] = piv.coef;
                    // Store this column of the reduction matrix (off-diagonal part), merged by index.
                    work_v.sort_unstable_by_key(|e| e.index);
                    let mut it = work_v.iter().copied().peekable();
                    while let Some(mut e) = it.next() {
                        while let Some(next) = it.peek().filter(|x| x.index == e.index) {
                            e.coef = ((u64::from(e.coef) + u64::from(next.coef)) % pp) as u32;
                            it.next();
                        }
                        if e.coef != 0 {
                            v_entries.push(e);
                        }
                    }
                    break;
                };
                // Add factor · (column j) so that the pivot cancels: piv.coef + factor · pivot_coef[j] = 0.
                let factor = neg(mul(piv.coef, inverse[pivot_coef[j] as usize]));
                let (jd, jidx) = columns[j];
                let end = v_start.get(j + 1).copied().unwrap_or(v_entries.len());
                let diag = VEntry {
                    index: jidx,
                    diam: jd,
                    coef: 1,
                };
                for term in std::iter::once(diag).chain(v_entries[v_start[j]..end].iter().copied())
                {
                    let c = mul(term.coef, factor);
                    work_v.push(VEntry { coef: c, ..term });
                    let mut tv = [0u32; MAX_VERTS];
                    binom.decode(term.index, m, &mut tv);
                    for_each_cofacet(
                        nb,
                        binom,
                        &tv[..m],
                        term.diam,
                        None,
                        thr,
                        |tau, cd, odd, _| {
                            work.insert(Entry {
                                diam: cd,
                                coef: if odd { neg(c) } else { c },
                                index: tau,
                            });
                            true
                        },
                    );
                }
            }
        }
    }
}

/// Number of buckets of the radix heap: one per possible highest differing bit of a 128-bit key, plus "equal".
const RADIX_BUCKETS: usize = 129;

/// The working coboundary column, as a monotone priority queue (radix heap) keyed by filtration order.
///
/// Why a radix heap: during a reduction the pivot only moves forward in the filtration. Every addition cancels
/// the current pivot and brings entries that, summed, all come later (the added column's pivot is the current
/// one). Individual terms of a stored column can contribute entries *before* the pivot, but those cancel among
/// themselves, so they are dropped on arrival. With every key at or after the last popped one, a radix heap
/// applies: an insert is an append to a bucket chosen by the highest bit in which the key differs from the last
/// popped key, and a pop redistributes one bucket. Long reductions (the sphere's void inserts millions of
/// entries) stay sequential in memory instead of sifting through a multi-megabyte binary heap.
#[derive(Debug)]
pub(crate) struct WorkColumn {
    buckets: Vec<Vec<Packed>>,
    /// Bit `i` set when bucket `i` may be non-empty.
    occupied: u128,
    /// Bucket 128 has no room in `occupied`; tracked separately.
    top_occupied: bool,
    last: u128,
}

impl Default for WorkColumn {
    fn default() -> Self {
        WorkColumn {
            buckets: vec![Vec::new(); RADIX_BUCKETS],
            occupied: 0,
            top_occupied: false,
            last: 0,
        }
    }
}

impl WorkColumn {
    fn clear(&mut self) {
        for b in &mut self.buckets {
            b.clear();
        }
        self.occupied = 0;
        self.top_occupied = false;
        self.last = 0;
    }

    #[inline(always)]
    fn bucket_of(&self, k: u128) -> usize {
        128 - (k ^ self.last).leading_zeros() as usize
    }

    #[inline(always)]
    fn insert(&mut self, e: Entry) {
        let e = Packed::pack(e);
        let k = e.key();
        if k < self.last {
            return;
        }
        let b = self.bucket_of(k);
        self.buckets[b].push(e);
        if b < 128 {
            self.occupied |= 1 << b;
        } else {
            self.top_occupied = true;
        }
    }

    /// The smallest entry, ties summed; entries summing to 0 cancel and the next one is tried.
    fn pop_pivot(&mut self, pp: u64) -> Option<Entry> {
        loop {
            if self.buckets[0].is_empty() {
                self.occupied &= !1;
                let b = if self.occupied != 0 {
                    self.occupied.trailing_zeros() as usize
                } else if self.top_occupied {
                    128
                } else {
                    return None;
                };
                let moving = std::mem::take(&mut self.buckets[b]);
                if b < 128 {
                    self.occupied &= !(1 << b);
                } else {
                    self.top_occupied = false;
                }
                let Some(min) = moving.iter().map(Packed::key).min() else {
                    continue;
                };
                self.last = min;
                // Every entry of bucket b shares the bits above b with the new minimum, so it lands lower.
                let mut moving = moving;
                for e in moving.drain(..) {
                    let nb = self.bucket_of(e.key());
                    self.buckets[nb].push(e);
                    self.occupied |= 1 << nb;
                }
                // Keep the emptied vector's capacity for later use.
                if self.buckets[b].is_empty() {
                    self.buckets[b] = moving;
                }
            }
            let mut sum = 0u64;
            let mut first = None;
            while let Some(e) = self.buckets[0].pop() {
                sum += u64::from(e.hi & 0xff);
                first.get_or_insert(e);
            }
            self.occupied &= !1;
            if let Some(packed) = first {
                let mut e = packed.unpack();
                e.coef = (sum % pp) as u32;
                if e.coef != 0 {
                    return Some(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_inverts_the_combinatorial_number_system() {
        let mut b = Binomial::default();
        b.rebuild(12, 5).unwrap();
        let mut out = [0u32; MAX_VERTS];
        // Every 3-subset of 12 vertices, in colexicographic order, has index = its rank.
        let mut rank = 0u64;
        for c in 2..12u32 {
            for bb in 1..c {
                for a in 0..bb {
                    let index: u64 = [a, bb, c]
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| b.get(v as usize, i + 1))
                        .sum();
                    assert_eq!(index, rank);
                    b.decode(index, 3, &mut out);
                    assert_eq!(&out[..3], &[a, bb, c]);
                    rank += 1;
                }
            }
        }
        assert_eq!(rank, b.get(12, 3));
        assert_eq!(
            index_of_cofacets(&b, &[1, 4], 12),
            vec![
                (11, 0),
                (10, 0),
                (9, 0),
                (8, 0),
                (7, 0),
                (6, 0),
                (5, 0),
                (3, 1),
                (2, 1),
                (0, 2)
            ]
        );
    }

    /// (added vertex, number of simplex vertices above it) of each cofacet, checking each index by decoding.
    fn index_of_cofacets(b: &Binomial, verts: &[u32], n: usize) -> Vec<(u32, usize)> {
        let d = vec![0.0f32; n * n];
        let nb = Dense::<u128>::new(n, &d, None);
        let mut seen = Vec::new();
        let mut last = u64::MAX;
        for_each_cofacet(&nb, b, verts, 0.0, None, 0.0, |tau, _, odd, v| {
            assert!(tau < last, "decreasing index order");
            last = tau;
            let mut out = [0u32; MAX_VERTS];
            b.decode(tau, verts.len() + 1, &mut out);
            let mut expected = [0u32; MAX_VERTS];
            let len = insert_vertex(verts, v, &mut expected);
            assert_eq!(&out[..len], &expected[..len]);
            let above = verts.iter().filter(|&&u| u > v).count();
            assert_eq!(odd, above % 2 == 1);
            seen.push((v, above));
            true
        });
        seen
    }

    #[test]
    fn binomial_overflow_is_reported() {
        let mut b = Binomial::default();
        assert!(b.rebuild(400, 27).is_err());
        assert!(b.rebuild(1024, 5).is_ok());
    }

    #[test]
    fn packed_entries_round_trip() {
        let e = Entry {
            diam: 1.5,
            coef: 254,
            index: (1 << INDEX_BITS) - 1,
        };
        let p = Packed::pack(e);
        assert_eq!(std::mem::size_of::<Packed>(), 12);
        let back = p.unpack();
        assert_eq!(
            (back.diam, back.coef, back.index),
            (e.diam, e.coef, e.index)
        );
    }

    #[test]
    fn work_column_pops_in_filtration_order_and_cancels() {
        let mut w = WorkColumn::default();
        let e = |diam: f32, index: u64, coef: u32| Entry { diam, coef, index };
        for x in [
            e(2.0, 5, 1),
            e(1.0, 3, 1),
            e(1.0, 9, 1),
            e(3.0, 1, 1),
            e(1.0, 3, 1),
            e(2.0, 5, 2),
        ] {
            w.insert(x);
        }
        // Z/3: (1.0, 9) first (equal diameters: larger index first); (1.0, 3) sums to 2; (2.0, 5) sums to 0.
        let p = w.pop_pivot(3).unwrap();
        assert_eq!((p.diam, p.index, p.coef), (1.0, 9, 1));
        let p = w.pop_pivot(3).unwrap();
        assert_eq!((p.diam, p.index, p.coef), (1.0, 3, 2));
        // Entries before the last pivot are dropped: they cancel in any valid column addition.
        w.insert(e(0.5, 7, 1));
        let p = w.pop_pivot(3).unwrap();
        assert_eq!((p.diam, p.index, p.coef), (3.0, 1, 1));
        assert!(w.pop_pivot(3).is_none());
        w.clear();
        w.insert(e(0.5, 7, 1));
        assert_eq!(w.pop_pivot(2).map(|p| p.index), Some(7));
    }

    /// Hides a neighbourhood's specialised loops, so the engine takes its generic paths.
    struct Generic<'a, N>(&'a N);

    impl<N: Neighborhood> Neighborhood for Generic<'_, N> {
        fn dist(&self, a: u32, b: u32) -> f32 {
            self.0.dist(a, b)
        }
        fn cofacet_vertices(
            &self,
            verts: &[u32],
            diam: f32,
            floor: Option<u32>,
            thr: f32,
            f: impl FnMut(u32, f32, usize) -> bool,
        ) {
            self.0.cofacet_vertices(verts, diam, floor, thr, f);
        }
        fn zero_pivot_vertex(&self, verts: &[u32], diam: f32) -> Option<u32> {
            self.0.zero_pivot_vertex(verts, diam)
        }
    }

    type Stages = (
        Vec<(u64, u32, u32)>,
        Vec<(f32, u64)>,
        Vec<(f32, u64)>,
        Vec<Vec<(f64, f64)>>,
    );

    /// The edges in filtration order, the dimension-2 columns and triangles after the dimension-1 reduction,
    /// and the barcodes up to H3.
    fn stages<N: Neighborhood>(nb: &N, n: usize, thr: f32) -> Stages {
        let mut e = Engine::default();
        e.set_modulus(2).unwrap();
        e.binom.rebuild(n, 5).unwrap();
        let mut out = Barcodes::default();
        out.dims.resize_with(4, Vec::new);
        e.dim0(nb, n, 3, thr, &mut out.dims[0]);
        let edges = e.edges.clone();
        e.pivots.reset(e.binom.get(n, 3)).unwrap();
        e.reduce(nb, 1, thr, &mut out.dims[1]);
        e.assemble(nb, 2, thr, true);
        let columns = e.columns.clone();
        let mut triangles = e.simplices.clone();
        triangles.sort_unstable_by_key(|t| t.1);
        let mut out = Barcodes::default();
        out.dims.resize_with(4, Vec::new);
        e.run(nb, n, 3, thr, &mut out).unwrap();
        let bars = out
            .dims
            .iter()
            .map(|d| {
                let mut v: Vec<(f64, f64)> = d.iter().map(|b| (b.birth, b.death)).collect();
                v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
                v
            })
            .collect();
        (edges, columns, triangles, bars)
    }

    #[test]
    fn specialised_small_paths_match_the_generic_ones() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut cases = 0;
        for &n in &[4usize, 9, 20, 33, 49, 64, 65, 80] {
            for ties in [false, true] {
                for cut in [false, true] {
                    // Integer grid points make many equal distances, the hard case for apparent pairs.
                    let coords: Vec<f64> = (0..2 * n)
                        .map(|_| {
                            if ties {
                                (next() % 7) as f64
                            } else {
                                (next() % 1_000_000) as f64 / 1e5
                            }
                        })
                        .collect();
                    let dm = DistanceMatrix::from_points(&coords, 2).unwrap();
                    let mut thr = dm.enclosing_radius() as f32;
                    if cut {
                        thr *= 0.6;
                    }
                    let mut balls = Balls::default();
                    balls.rebuild(n, dm.square(), thr);
                    let levels = balls.levels as f32;
                    let (fast, slow) = if n <= 64 {
                        let nb = Dense::<u64>::new(n, &balls.ranked, Some(&balls));
                        (stages(&nb, n, levels), stages(&Generic(&nb), n, levels))
                    } else {
                        let nb = Dense::<u128>::new(n, &balls.ranked, Some(&balls));
                        (stages(&nb, n, levels), stages(&Generic(&nb), n, levels))
                    };
                    assert_eq!(fast.0, slow.0, "edge order, n {n} ties {ties} cut {cut}");
                    assert_eq!(
                        fast.1, slow.1,
                        "dimension-2 columns, n {n} ties {ties} cut {cut}"
                    );
                    assert_eq!(fast.2, slow.2, "triangles, n {n} ties {ties} cut {cut}");
                    assert_eq!(fast.3, slow.3, "barcodes, n {n} ties {ties} cut {cut}");
                    cases += usize::from(!fast.1.is_empty());
                }
            }
        }
        // The comparison is only meaningful if the inputs have dimension-2 columns at all.
        assert!(cases > 10, "{cases}");
    }

    #[test]
    fn balls_match_brute_force() {
        // Points on a line with repeated distances (ties) and a threshold cutting some pairs: 70 points use the
        // compact rank counts, 40 the direct table, and one reuse of the tables goes from one to the other.
        let mut balls = Balls::default();
        for n in [70, 40, 64, 65] {
            let coords: Vec<f64> = (0..n).map(|i| f64::from((i * 7 % 23) as u32)).collect();
            let dm = DistanceMatrix::from_points(&coords, 1).unwrap();
            let thr = 15.0f32;
            balls.rebuild(n, dm.square(), thr);
            assert_eq!(balls.direct, n <= 64);
            for u in 0..n {
                for r in 0..=balls.levels {
                    let expected = (0..n)
                        .filter(|&v| balls.ranked[u * n + v] <= r as f32)
                        .fold(0u128, |m, v| m | (1 << v));
                    assert_eq!(
                        balls.ball::<u128>(u as u32, r as f32),
                        expected,
                        "n {n} u {u} r {r}"
                    );
                }
            }
            // Ranks preserve the order of values, ties included, and map back.
            for i in 0..n {
                for j in 0..n {
                    let (a, b) = (dm.square()[i * n + j], balls.ranked[i * n + j]);
                    if a <= thr {
                        assert_eq!(balls.values[b as usize], a);
                        assert_eq!(f32::from(balls.rank16[i * n + j]), b);
                    } else {
                        assert!(b.is_infinite());
                        assert_eq!(balls.rank16[i * n + j], u16::MAX);
                    }
                }
            }
        }
    }

    #[test]
    fn pivot_map_dense_and_hashed_agree() {
        for space in [100, DENSE_PIVOT_LIMIT + 1] {
            let mut m = PivotMap::default();
            m.reset(space).unwrap();
            assert!(m.get(42).is_none());
            m.insert(42, 7);
            m.insert(99, 0);
            assert_eq!(m.get(42), Some(7));
            assert_eq!(m.get(99), Some(0));
            m.reset(space).unwrap();
            assert!(m.get(42).is_none() && m.get(99).is_none());
        }
    }

    #[test]
    fn modulus_inverses() {
        let mut e = Engine::default();
        for p in [2u32, 3, 5, 7, 251] {
            e.set_modulus(p).unwrap();
            for a in 1..p {
                assert_eq!(
                    u64::from(a) * u64::from(e.inverse[a as usize]) % u64::from(p),
                    1
                );
            }
        }
        assert!(e.set_modulus(256).is_err());
        assert!(e.set_modulus(9).is_err());
    }
}
