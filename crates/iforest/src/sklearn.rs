//! Importing a forest fitted by scikit-learn.
//!
//! Users of the Python reference have `sklearn.ensemble.IsolationForest` models; exporting each
//! tree's arrays (`tree_.children_left`, `children_right`, `feature`, `threshold`,
//! `n_node_samples`, plus `estimators_features_`) lets this crate score them, and the test suite
//! uses the same path to show that our scoring reproduces scikit-learn's numbers for identical
//! trees. scikit-learn compares `float32(x) <= threshold`; rows that are exactly representable
//! in `f32` therefore score identically (up to the last bits of the path-length sum, which
//! scikit-learn accumulates as `(depth + 1) + c(n) − 1`).

use crate::stats::{PathLengthTable, average_path_length};
use crate::tree::Node;
use crate::{Contamination, Error, IsolationForest, MaxSamples, Params, TreeRef, depth_limit};

/// One fitted scikit-learn tree, in scikit-learn's own array layout (leaves have children −1).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SklearnTree {
    pub children_left: Vec<i64>,
    pub children_right: Vec<i64>,
    /// Index into `features` (the tree's column subset) for internal nodes.
    pub feature: Vec<i64>,
    pub threshold: Vec<f64>,
    pub n_node_samples: Vec<u64>,
    /// `estimators_features_[i]`: the input columns this tree sees, in its own order.
    pub features: Vec<usize>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidParam {
        name: "sklearn_tree",
        reason: msg.into(),
    }
}

impl IsolationForest {
    /// Builds a forest from scikit-learn trees. `max_samples` is the fitted `max_samples_` (ψ)
    /// and `offset` the fitted `offset_`. The trees are validated (indices, features, sizes,
    /// depth ≤ ⌈log2 ψ⌉, no cycles), so the result is as safe to score as a fitted model.
    ///
    /// `params()` of the result records n_estimators, ψ and the feature fraction; the seed is
    /// 0 and the contamination `Auto` whatever `offset` is (the fraction is not recoverable).
    pub fn from_sklearn(
        n_features: usize,
        max_samples: usize,
        offset: f64,
        trees: &[SklearnTree],
    ) -> Result<Self, Error> {
        if n_features == 0 || n_features > u32::MAX as usize {
            return Err(Error::ZeroColumns);
        }
        if trees.is_empty() {
            return Err(bad("no trees"));
        }
        if max_samples == 0 || max_samples > u32::MAX as usize {
            return Err(bad("max_samples out of range"));
        }
        if !offset.is_finite() {
            return Err(bad("offset is not finite"));
        }
        let limit = depth_limit(max_samples);
        let c_table = PathLengthTable::new(max_samples as u64);
        let mut nodes = Vec::new();
        let mut sizes = Vec::new();
        let mut refs = Vec::with_capacity(trees.len());
        let mut max_tree_features = 0;
        for (t_idx, t) in trees.iter().enumerate() {
            let n = t.children_left.len();
            if n == 0
                || t.children_right.len() != n
                || t.feature.len() != n
                || t.threshold.len() != n
                || t.n_node_samples.len() != n
            {
                return Err(bad(format!("tree {t_idx}: arrays of different lengths")));
            }
            if t.features.is_empty() || t.features.iter().any(|&f| f >= n_features) {
                return Err(bad(format!("tree {t_idx}: feature subset out of range")));
            }
            max_tree_features = max_tree_features.max(t.features.len());
            if t.n_node_samples[0] != max_samples as u64 {
                return Err(bad(format!(
                    "tree {t_idx}: root holds {} rows, not ψ",
                    t.n_node_samples[0]
                )));
            }
            let root = u32::try_from(nodes.len()).map_err(|_| bad("too many nodes"))?;
            let mut conv = Converter {
                t,
                t_idx,
                limit,
                c: &c_table,
                nodes: &mut nodes,
                sizes: &mut sizes,
                visited: vec![false; n],
                depth: 0,
            };
            conv.node(0, 0)?;
            let depth = conv.depth;
            refs.push(TreeRef { root, depth });
        }
        if nodes.len() > u32::MAX as usize {
            return Err(bad("too many nodes"));
        }
        let params = Params {
            n_estimators: trees.len(),
            max_samples: MaxSamples::Count(max_samples),
            max_features: max_tree_features as f64 / n_features as f64,
            bootstrap: false,
            contamination: Contamination::Auto,
            seed: 0,
        };
        Ok(IsolationForest {
            params,
            n_features,
            psi: max_samples,
            offset,
            denominator: trees.len() as f64 * average_path_length(max_samples as u64),
            trees: refs,
            nodes,
            sizes,
        })
    }
}

struct Converter<'a> {
    t: &'a SklearnTree,
    t_idx: usize,
    limit: u32,
    c: &'a PathLengthTable,
    nodes: &'a mut Vec<Node>,
    sizes: &'a mut Vec<u32>,
    visited: Vec<bool>,
    depth: u32,
}

impl Converter<'_> {
    /// Appends scikit-learn node `i` (at `depth`) and its subtree in preorder; returns the new
    /// index. Recursion is bounded by the depth limit (≤ 32), checked before descending.
    fn node(&mut self, i: usize, depth: u32) -> Result<u32, Error> {
        let t = self.t;
        let err = |m: &str| bad(format!("tree {}, node {i}: {m}", self.t_idx));
        if std::mem::replace(&mut self.visited[i], true) {
            return Err(err("reached twice (not a tree)"));
        }
        let id = u32::try_from(self.nodes.len()).map_err(|_| err("too many nodes"))?;
        let size = u32::try_from(t.n_node_samples[i])
            .ok()
            .filter(|&s| s >= 1)
            .ok_or_else(|| err("n_node_samples out of range"))?;
        let (l, r) = (t.children_left[i], t.children_right[i]);
        if l < 0 && r < 0 {
            self.nodes.push(Node {
                threshold: f64::from(depth) + self.c.get(u64::from(size)),
                feature: 0,
                children: [id, id],
            });
            self.sizes.push(size);
            self.depth = self.depth.max(depth);
            return Ok(id);
        }
        let n = t.children_left.len();
        let (l, r) = match (usize::try_from(l), usize::try_from(r)) {
            (Ok(l), Ok(r)) if l < n && r < n => (l, r),
            _ => return Err(err("child index out of range")),
        };
        let local = usize::try_from(t.feature[i])
            .ok()
            .filter(|&f| f < t.features.len())
            .ok_or_else(|| err("feature out of range"))?;
        let threshold = t.threshold[i];
        if !threshold.is_finite() {
            return Err(err("non-finite threshold"));
        }
        if depth >= self.limit {
            return Err(err("deeper than ceil(log2(max_samples))"));
        }
        if t.n_node_samples[l].checked_add(t.n_node_samples[r]) != Some(u64::from(size)) {
            return Err(err("children's n_node_samples do not add up"));
        }
        self.nodes.push(Node {
            threshold,
            // < n_features ≤ u32::MAX, checked by the caller.
            feature: t.features[local] as u32,
            children: [id, id],
        });
        self.sizes.push(size);
        let left = self.node(l, depth + 1)?;
        let right = self.node(r, depth + 1)?;
        self.nodes[id as usize].children = [left, right];
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x0 <= 0.5 → leaf(1 row) else leaf(2 rows); ψ = 3, two features, tree sees column 1.
    fn tiny() -> SklearnTree {
        SklearnTree {
            children_left: vec![1, -1, -1],
            children_right: vec![2, -1, -1],
            feature: vec![0, -2, -2],
            threshold: vec![0.5, -2.0, -2.0],
            n_node_samples: vec![3, 1, 2],
            features: vec![1],
        }
    }

    #[test]
    fn imports_and_scores_a_hand_built_tree() {
        let f = IsolationForest::from_sklearn(2, 3, -0.5, &[tiny()]).unwrap();
        let c3 = average_path_length(3);
        // Column 1 = 0.0 goes left: depth 1 + c(1) = 1.
        assert_eq!(f.score_samples(&[9.0, 0.0]), -(2f64.powf(-1.0 / c3)));
        // Column 1 = 1.0 goes right: 1 + c(2) = 2.
        assert_eq!(f.score_samples(&[9.0, 1.0]), -(2f64.powf(-2.0 / c3)));
        let g = IsolationForest::from_bytes(&f.to_bytes()).unwrap();
        assert_eq!(f, g);
    }

    #[test]
    fn rejects_malformed_trees() {
        let check = |t: SklearnTree| {
            assert!(IsolationForest::from_sklearn(2, 3, -0.5, &[t]).is_err());
        };
        check(SklearnTree {
            children_left: vec![1, 0, -1],
            ..tiny()
        });
        check(SklearnTree {
            children_right: vec![7, -1, -1],
            ..tiny()
        });
        check(SklearnTree {
            feature: vec![3, -2, -2],
            ..tiny()
        });
        check(SklearnTree {
            features: vec![2],
            ..tiny()
        });
        check(SklearnTree {
            threshold: vec![f64::NAN, 0.0, 0.0],
            ..tiny()
        });
        check(SklearnTree {
            n_node_samples: vec![3, 1, 1],
            ..tiny()
        });
        check(SklearnTree {
            n_node_samples: vec![3, 0, 3],
            ..tiny()
        });
        check(SklearnTree {
            threshold: vec![0.5],
            ..tiny()
        });
        assert!(IsolationForest::from_sklearn(2, 3, -0.5, &[]).is_err());
        assert!(IsolationForest::from_sklearn(2, 3, f64::NAN, &[tiny()]).is_err());
        assert!(IsolationForest::from_sklearn(0, 3, -0.5, &[tiny()]).is_err());
        // ψ = 2 allows depth 1 only; the tree's root must hold ψ rows.
        assert!(IsolationForest::from_sklearn(2, 2, -0.5, &[tiny()]).is_err());
    }
}
