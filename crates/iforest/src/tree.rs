//! Growing one isolation tree.
//!
//! The tree is an extremely randomised tree in scikit-learn's sense: at each node a feature is
//! drawn uniformly among the node's non-constant features (of the tree's feature subset), the
//! threshold uniformly in [min, max) of that feature over the node's rows, rows `<= threshold`
//! go left. A node is a leaf when it holds one row, when all its rows are identical on every
//! feature of the subset, or at the depth limit ceil(log2(max(ψ, 2))).
//!
//! Nodes are emitted in preorder, so an internal node's left child is always the next node.
//! Leaves point both children at themselves: scoring can then walk a fixed number of steps
//! (the tree's depth) with no "is this a leaf?" branch, and a leaf's `threshold` slot holds its
//! path length `depth + c(n_node_samples)` so the walk ends on the value it needs.

use crate::rng::Rng;
use crate::stats::PathLengthTable;

/// One node of the flat forest array. 24 bytes; see the module doc for the leaf encoding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Node {
    /// Split threshold for internal nodes; the path length for leaves.
    pub(crate) threshold: f64,
    /// Column of the full input row compared at this node (0 for leaves, never read usefully).
    pub(crate) feature: u32,
    /// `[left, right]` absolute node indices; both equal the node's own index for leaves.
    pub(crate) children: [u32; 2],
}

/// A grown tree in local indices (0 = root), before it is appended to a forest.
pub(crate) struct GrownTree {
    pub(crate) nodes: Vec<Node>,
    /// `n_node_samples` of every node (needed to serialise leaves compactly).
    pub(crate) sizes: Vec<u32>,
    /// Deepest leaf depth (root = 0): the number of steps a walk needs.
    pub(crate) depth: u32,
}

/// Per-thread scratch buffers reused across trees to keep fitting allocation-light.
#[derive(Default)]
pub(crate) struct Scratch {
    pool: Vec<u32>,
    features: Vec<u32>,
    idx: Vec<u32>,
    order: Vec<u32>,
    nodes: Vec<Node>,
    sizes: Vec<u32>,
}

/// Everything a tree needs to know about the forest being fitted.
pub(crate) struct TreeSpec<'a> {
    /// Column-major training matrix (column f is `cols[f·n_rows..(f+1)·n_rows]`), transposed
    /// once per fit so that trees read a node's values from one contiguous column instead of
    /// each copying its subsample (the copy was a quarter of fitting time).
    pub(crate) cols: &'a [f64],
    pub(crate) n_rows: usize,
    pub(crate) n_cols: usize,
    /// ψ, the number of rows drawn per tree (1 ≤ ψ ≤ n_rows unless bootstrapping).
    pub(crate) psi: usize,
    /// Features per tree (1 ≤ k ≤ n_cols).
    pub(crate) n_tree_features: usize,
    pub(crate) bootstrap: bool,
    pub(crate) max_depth: u32,
    pub(crate) seed: u64,
    /// c(n) lookups for leaf path lengths.
    pub(crate) c: &'a PathLengthTable,
}

/// Column-major copy of a row-major matrix with `n_cols` columns.
pub(crate) fn transpose(data: &[f64], n_cols: usize) -> Vec<f64> {
    let n_rows = data.len() / n_cols;
    let mut cols = vec![0.0; data.len()];
    for (r, row) in data.chunks_exact(n_cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            cols[c * n_rows + r] = v;
        }
    }
    cols
}

/// Grows tree number `tree_index`. Deterministic in `(spec, tree_index)`.
pub(crate) fn grow(spec: &TreeSpec<'_>, tree_index: u64, s: &mut Scratch) -> GrownTree {
    let mut rng = Rng::for_stream(spec.seed, tree_index);
    let psi = spec.psi;

    // Feature subset: a partial Fisher–Yates draw of k columns without replacement, kept in
    // draw order (the order only affects which local column is which, not the distribution).
    s.features.clear();
    s.features.extend(0..spec.n_cols as u32);
    if spec.n_tree_features < spec.n_cols {
        for i in 0..spec.n_tree_features {
            let j = i + rng.below((spec.n_cols - i) as u64) as usize;
            s.features.swap(i, j);
        }
        s.features.truncate(spec.n_tree_features);
    }
    let k = s.features.len();

    // Row subsample: ψ draws, without replacement (partial Fisher–Yates) unless bootstrapping.
    // `idx` holds row indices into the full columns; nodes partition it in place.
    s.idx.clear();
    if spec.bootstrap {
        for _ in 0..psi {
            s.idx.push(rng.below(spec.n_rows as u64) as u32);
        }
    } else {
        s.pool.clear();
        s.pool.extend(0..spec.n_rows as u32);
        for i in 0..psi {
            let j = i + rng.below((spec.n_rows - i) as u64) as usize;
            s.pool.swap(i, j);
        }
        s.idx.extend_from_slice(&s.pool[..psi]);
    }

    s.order.clear();
    s.order.extend(0..k as u32);

    // Grow into reusable scratch vectors and return exact-size copies: trees use far fewer
    // nodes than the 2ψ − 1 bound, and per-tree growth of fresh vectors showed up as heap
    // growth and page faults in profiles.
    s.nodes.clear();
    s.sizes.clear();
    let mut b = Builder {
        cols: spec.cols,
        n_rows: spec.n_rows,
        features: &s.features,
        idx: &mut s.idx,
        order: &mut s.order,
        rng,
        max_depth: spec.max_depth,
        c: spec.c,
        nodes: &mut s.nodes,
        sizes: &mut s.sizes,
        depth: 0,
    };
    b.grow_node(0, psi, 0);
    let depth = b.depth;
    GrownTree {
        nodes: s.nodes.clone(),
        sizes: s.sizes.clone(),
        depth,
    }
}

struct Builder<'a> {
    cols: &'a [f64],
    n_rows: usize,
    features: &'a [u32],
    idx: &'a mut [u32],
    /// Candidate feature order; a partial Fisher–Yates shuffle from whatever arrangement the
    /// previous node left is still a uniform draw without replacement, so it is never reset.
    order: &'a mut [u32],
    rng: Rng,
    max_depth: u32,
    c: &'a PathLengthTable,
    nodes: &'a mut Vec<Node>,
    sizes: &'a mut Vec<u32>,
    depth: u32,
}

impl<'a> Builder<'a> {
    /// Grows the subtree over `idx[lo..hi]` at `depth` and returns its root's local index.
    /// Recursion depth is bounded by `max_depth` ≤ 64.
    fn grow_node(&mut self, lo: usize, hi: usize, depth: u32) -> u32 {
        let id = self.nodes.len() as u32;
        let n = hi - lo;
        self.nodes.push(Node {
            threshold: 0.0,
            feature: 0,
            children: [id, id],
        });
        self.sizes.push(n as u32);

        if n > 1
            && depth < self.max_depth
            && let Some((feature, threshold)) = self.choose_split(lo, hi)
        {
            let col = self.column(feature);
            let mid = partition(&mut self.idx[lo..hi], col, threshold) + lo;
            let left = self.grow_node(lo, mid, depth + 1);
            let right = self.grow_node(mid, hi, depth + 1);
            self.nodes[id as usize] = Node {
                threshold,
                feature,
                children: [left, right],
            };
            return id;
        }

        // Leaf: path length = depth + c(n_node_samples), as scikit-learn's scoring.
        self.nodes[id as usize].threshold = f64::from(depth) + self.c.get(n as u64);
        self.depth = self.depth.max(depth);
        id
    }

    /// Column `feature` of the training matrix (borrows only the shared data, not `self`).
    fn column(&self, feature: u32) -> &'a [f64] {
        let f = feature as usize;
        &self.cols[f * self.n_rows..(f + 1) * self.n_rows]
    }

    /// Draws features without replacement until one is non-constant over the node's rows, and a
    /// threshold in [min, max) of it. `None` when every feature is constant (duplicate rows).
    fn choose_split(&mut self, lo: usize, hi: usize) -> Option<(u32, f64)> {
        let rows = &self.idx[lo..hi];
        let mut remaining = self.order.len();
        while remaining > 0 {
            let j = self.rng.below(remaining as u64) as usize;
            self.order.swap(j, remaining - 1);
            remaining -= 1;
            let feature = self.features[self.order[remaining] as usize];
            let col = self.column(feature);
            let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
            for &r in rows {
                let v = col[r as usize];
                // Plain compare-and-select (values are finite) compiles to minsd/maxsd;
                // f64::min's NaN handling costs extra instructions in the hottest loop.
                min = if v < min { v } else { min };
                max = if v > max { v } else { max };
            }
            if max > min {
                let u = self.rng.uniform();
                let span = max - min;
                // Training values are finite, but max − min can still overflow; the convex
                // combination form cannot.
                let mut t = if span.is_finite() {
                    min + u * span
                } else {
                    min * (1.0 - u) + max * u
                };
                // Rounding may land on max (or outside); [min, max) guarantees both sides
                // receive at least one row. scikit-learn makes the same correction.
                if !(t >= min && t < max) {
                    t = min;
                }
                return Some((feature, t));
            }
        }
        None
    }
}

/// Moves rows with `col[row] <= threshold` to the front; returns how many there are.
///
/// Branch-free Lomuto partition: which side a row goes to is random by construction, so a
/// branching partition mispredicts about half the time, which dominated fitting. Invariant:
/// `rows[..store]` go left, `rows[store..i]` go right; every step swaps the current row into
/// `store` and advances `store` only if it goes left.
fn partition(rows: &mut [u32], col: &[f64], threshold: f64) -> usize {
    let mut store = 0;
    for i in 0..rows.len() {
        let r = rows[i];
        let left = col[r as usize] <= threshold;
        rows[i] = rows[store];
        rows[store] = r;
        store += usize::from(left);
    }
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::stats::average_path_length;

    fn spec<'a>(
        cols: &'a [f64],
        n_cols: usize,
        psi: usize,
        c: &'a PathLengthTable,
    ) -> TreeSpec<'a> {
        let n_rows = cols.len() / n_cols;
        TreeSpec {
            cols,
            n_rows,
            n_cols,
            psi,
            n_tree_features: n_cols,
            bootstrap: false,
            max_depth: (psi.max(2) as f64).log2().ceil() as u32,
            seed: 42,
            c,
        }
    }

    /// Checks the structural invariants every grown tree must satisfy.
    fn check(t: &GrownTree, psi: usize, max_depth: u32) {
        let mut leaf_total = 0u64;
        for (i, n) in t.nodes.iter().enumerate() {
            let [l, r] = n.children;
            if l == i as u32 {
                assert_eq!(r, i as u32);
                leaf_total += u64::from(t.sizes[i]);
            } else {
                assert_eq!(l as usize, i + 1, "preorder: left child follows its parent");
                assert!(r as usize > i + 1 && (r as usize) < t.nodes.len());
                assert_eq!(t.sizes[i], t.sizes[l as usize] + t.sizes[r as usize]);
                assert!(t.sizes[l as usize] >= 1 && t.sizes[r as usize] >= 1);
            }
        }
        assert_eq!(leaf_total, psi as u64);
        assert!(t.depth <= max_depth);
    }

    #[test]
    fn tree_partitions_all_sampled_rows() {
        let data: Vec<f64> = (0..600)
            .map(|i| ((i * 7919) % 1000) as f64 / 10.0)
            .collect();
        let c = PathLengthTable::new(1000);
        let cols = transpose(&data, 2);
        let sp = spec(&cols, 2, 256, &c);
        let t = grow(&sp, 0, &mut Scratch::default());
        check(&t, 256, 8);
        assert!(t.nodes.len() > 1);
    }

    #[test]
    fn identical_rows_make_a_single_leaf() {
        let data = vec![3.0; 40];
        let c = PathLengthTable::new(1000);
        let cols = transpose(&data, 4);
        let sp = spec(&cols, 4, 10, &c);
        let t = grow(&sp, 0, &mut Scratch::default());
        assert_eq!(t.nodes.len(), 1);
        assert_eq!(t.depth, 0);
        assert_eq!(t.nodes[0].threshold, average_path_length(10));
    }

    #[test]
    fn constant_columns_are_never_split() {
        // Column 0 and 2 constant, column 1 varies.
        let data: Vec<f64> = (0..100).flat_map(|i| [1.0, f64::from(i), -5.0]).collect();
        let c = PathLengthTable::new(1000);
        let cols = transpose(&data, 3);
        let sp = spec(&cols, 3, 64, &c);
        let t = grow(&sp, 3, &mut Scratch::default());
        check(&t, 64, 6);
        for n in &t.nodes {
            if n.children[0] != n.children[1] {
                assert_eq!(n.feature, 1);
            }
        }
    }

    #[test]
    fn thresholds_lie_in_the_node_range_for_extreme_values() {
        let data = vec![-1e308, 1e308, 0.0, 5e307];
        let c = PathLengthTable::new(1000);
        let cols = transpose(&data, 1);
        let sp = spec(&cols, 1, 4, &c);
        let t = grow(&sp, 0, &mut Scratch::default());
        check(&t, 4, 2);
        for n in &t.nodes {
            if n.children[0] != n.children[1] {
                assert!(n.threshold.is_finite());
            }
        }
    }

    #[test]
    fn bootstrap_and_feature_subsets_respect_invariants() {
        let data: Vec<f64> = (0..500).map(|i| ((i * 31) % 97) as f64).collect();
        let c = PathLengthTable::new(1000);
        let cols = transpose(&data, 5);
        let mut sp = spec(&cols, 5, 100, &c);
        sp.bootstrap = true;
        sp.n_tree_features = 2;
        let mut s = Scratch::default();
        for t in 0..5 {
            let tree = grow(&sp, t, &mut s);
            check(&tree, 100, 7);
            let used: std::collections::BTreeSet<u32> = tree
                .nodes
                .iter()
                .filter(|n| n.children[0] != n.children[1])
                .map(|n| n.feature)
                .collect();
            assert!(used.len() <= 2);
        }
    }
}
