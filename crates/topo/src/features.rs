//! Topological features of barcodes, exactly as specified in `shared/spec/topoforge.md` ("The pipeline"):
//! Betti numbers by a fixed or adaptive lifetime threshold, persistence entropy, total lifetime and the first
//! persistence landscape.
//!
//! All functions are total: empty barcodes, infinite bars and zero lifetimes give defined, finite results
//! (except that an infinite bar's lifetime counts as "above any threshold").

use crate::{Barcodes, Interval};

/// How a bar is judged significant for the Betti numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BettiRule {
    /// Bars whose lifetime exceeds this value.
    Fixed(f64),
    /// Per dimension: lifetime above `mean + sigma · std` of that dimension's finite lifetimes (population
    /// std); `fallback` when the dimension has no finite bar.
    Adaptive { sigma: f64, fallback: f64 },
}

impl Default for BettiRule {
    /// The spec's default: fixed threshold 0.1.
    fn default() -> Self {
        BettiRule::Fixed(0.1)
    }
}

/// Lifetime threshold of one dimension under `rule`.
pub fn lifetime_threshold(bars: &[Interval], rule: &BettiRule) -> f64 {
    match *rule {
        BettiRule::Fixed(t) => t,
        BettiRule::Adaptive { sigma, fallback } => {
            let lifetimes = bars
                .iter()
                .filter(|b| b.is_finite())
                .map(Interval::lifetime);
            let count = lifetimes.clone().count();
            if count == 0 {
                return fallback;
            }
            let mean = lifetimes.clone().sum::<f64>() / count as f64;
            let var = lifetimes.map(|l| (l - mean) * (l - mean)).sum::<f64>() / count as f64;
            mean + sigma * var.sqrt()
        }
    }
}

/// Number of bars per dimension whose lifetime exceeds the rule's threshold; infinite bars always count (so H0
/// counts its essential bar).
pub fn betti_numbers(b: &Barcodes, rule: &BettiRule) -> Vec<usize> {
    b.dims
        .iter()
        .map(|bars| {
            let t = lifetime_threshold(bars, rule);
            bars.iter().filter(|bar| bar.lifetime() > t).count()
        })
        .collect()
}

/// `−Σ p ln p` over all finite bars of all dimensions, `p = lifetime / total lifetime` (nats); 0 when the total
/// is 0.
pub fn persistence_entropy(b: &Barcodes) -> f64 {
    let total = total_lifetime(b);
    // Also catches NaN (a NaN lifetime cannot come from the engine, but features accept any barcodes).
    if total.is_nan() || total <= 0.0 || total.is_infinite() {
        return 0.0;
    }
    b.dims
        .iter()
        .flatten()
        .filter(|bar| bar.is_finite() && bar.lifetime() > 0.0)
        .map(|bar| {
            let p = bar.lifetime() / total;
            -p * p.ln()
        })
        .sum()
}

/// Sum of the lifetimes of the finite bars of all dimensions.
pub fn total_lifetime(b: &Barcodes) -> f64 {
    b.dims
        .iter()
        .flatten()
        .filter(|bar| bar.is_finite())
        .map(Interval::lifetime)
        .sum()
}

/// A sampled function `y = f(x)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Landscape {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

/// The first persistence landscape `λ1(x) = max_bars max(0, min(x − birth, death − x))` of the finite bars,
/// sampled at `samples` evenly spaced points over `[min birth − 10% span, max death + 10% span]`
/// (`span = max death − min birth`).
///
/// With no finite bar the grid is `[0, 1]` and the landscape is zero; with `samples == 1` the single sample is
/// the start of the range.
pub fn first_landscape(bars: &[Interval], samples: usize) -> Landscape {
    let finite: Vec<&Interval> = bars
        .iter()
        .filter(|b| b.is_finite() && b.birth.is_finite())
        .collect();
    let (lo, hi) = if finite.is_empty() {
        (0.0, 1.0)
    } else {
        let min_birth = finite.iter().map(|b| b.birth).fold(f64::INFINITY, f64::min);
        let max_death = finite
            .iter()
            .map(|b| b.death)
            .fold(f64::NEG_INFINITY, f64::max);
        let span = max_death - min_birth;
        (min_birth - 0.1 * span, max_death + 0.1 * span)
    };
    let step = if samples > 1 {
        (hi - lo) / (samples - 1) as f64
    } else {
        0.0
    };
    let x: Vec<f64> = (0..samples).map(|i| lo + step * i as f64).collect();
    let y = x
        .iter()
        .map(|&t| {
            finite
                .iter()
                .map(|b| (t - b.birth).min(b.death - t))
                .fold(0.0, f64::max)
        })
        .collect();
    Landscape { x, y }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(birth: f64, death: f64) -> Interval {
        Interval { birth, death }
    }

    fn codes() -> Barcodes {
        Barcodes {
            dims: vec![
                vec![bar(0.0, 0.5), bar(0.0, 0.05), bar(0.0, f64::INFINITY)],
                vec![bar(0.3, 0.45), bar(0.2, 0.9)],
                vec![],
            ],
        }
    }

    #[test]
    fn fixed_betti_counts_infinite_h0() {
        assert_eq!(
            betti_numbers(&codes(), &BettiRule::Fixed(0.1)),
            vec![2, 2, 0]
        );
        assert_eq!(
            betti_numbers(&codes(), &BettiRule::Fixed(0.2)),
            vec![2, 1, 0]
        );
    }

    #[test]
    fn adaptive_betti_uses_mean_plus_sigma_std() {
        // H1 lifetimes 0.15 and 0.7: mean 0.425, population std 0.275.
        let t = lifetime_threshold(
            &codes().dims[1],
            &BettiRule::Adaptive {
                sigma: 1.0,
                fallback: 9.0,
            },
        );
        assert!((t - 0.7).abs() < 1e-12);
        let rule = BettiRule::Adaptive {
            sigma: 0.5,
            fallback: 0.1,
        };
        // H0 finite lifetimes 0.5, 0.05 → 0.275 + 0.5·0.225 = 0.3875: one finite bar plus the infinite one.
        // H1: 0.425 + 0.1375 = 0.5625 → one bar. H2: no bar → fallback, nothing to count.
        assert_eq!(betti_numbers(&codes(), &rule), vec![2, 1, 0]);
        assert_eq!(lifetime_threshold(&[], &rule), 0.1);
    }

    #[test]
    fn entropy_and_total() {
        let b = codes();
        let total = 0.5 + 0.05 + 0.15 + 0.7;
        assert!((total_lifetime(&b) - total).abs() < 1e-12);
        let expected: f64 = [0.5, 0.05, 0.15, 0.7]
            .iter()
            .map(|l| -(l / total) * (l / total).ln())
            .sum();
        assert!((persistence_entropy(&b) - expected).abs() < 1e-12);
        // Two equal bars: ln 2.
        let two = Barcodes {
            dims: vec![vec![bar(0.0, 1.0), bar(0.0, 1.0)]],
        };
        assert!((persistence_entropy(&two) - 2f64.ln()).abs() < 1e-12);
        assert_eq!(persistence_entropy(&Barcodes::default()), 0.0);
        let zero = Barcodes {
            dims: vec![vec![bar(1.0, 1.0), bar(0.0, f64::INFINITY)]],
        };
        assert_eq!(persistence_entropy(&zero), 0.0);
        assert_eq!(total_lifetime(&zero), 0.0);
    }

    #[test]
    fn landscape_is_a_tent_over_the_padded_range() {
        let l = first_landscape(&[bar(1.0, 3.0), bar(0.0, f64::INFINITY)], 5);
        // span 2 → range [0.8, 3.2], step 0.6.
        let xs = [0.8, 1.4, 2.0, 2.6, 3.2];
        let ys = [0.0, 0.4, 1.0, 0.4, 0.0];
        for i in 0..5 {
            assert!((l.x[i] - xs[i]).abs() < 1e-12, "{l:?}");
            assert!((l.y[i] - ys[i]).abs() < 1e-12, "{l:?}");
        }
        let overlap = first_landscape(&[bar(0.0, 2.0), bar(1.0, 4.0)], 100);
        let peak = overlap.y.iter().copied().fold(0.0, f64::max);
        assert!((peak - 1.5).abs() < 0.05);
    }

    #[test]
    fn landscape_degenerate_inputs() {
        let empty = first_landscape(&[], 100);
        assert_eq!(empty.x.len(), 100);
        assert!(empty.y.iter().all(|&y| y == 0.0));
        assert_eq!(empty.x[0], 0.0);
        assert_eq!(empty.x[99], 1.0);
        assert!(first_landscape(&[bar(0.0, 1.0)], 0).x.is_empty());
        let one = first_landscape(&[bar(0.0, 1.0)], 1);
        assert_eq!(one.x, vec![-0.1]);
        assert_eq!(one.y, vec![0.0]);
    }
}
