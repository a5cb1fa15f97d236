//! From a window of values to its topological summary and feature vector.

use crate::config::{BettiRuleConfig, StreamConfig};
use crate::error::StreamError;
use std::cell::RefCell;
use vigil_topo::features::{
    BettiRule, Landscape, betti_numbers, first_landscape, persistence_entropy, total_lifetime,
};
use vigil_topo::{Barcodes, RipsParams, RipsWorkspace};

/// Standardised coordinates are clamped to this magnitude so the homology engine never sees a non-finite
/// or absurdly large distance, whatever the values.
const COORD_LIMIT: f64 = 1e6;

/// Number of features in a window's feature vector.
pub const N_FEATURES: usize = 10;

/// Indices into the feature vector.
pub mod feat {
    pub const H0: usize = 0;
    pub const H1: usize = 1;
    pub const H2: usize = 2;
    pub const LIFE_H0: usize = 3;
    pub const LIFE_H1: usize = 4;
    pub const LIFE_H2: usize = 5;
    pub const ENTROPY: usize = 6;
    pub const TOTAL_LIFETIME: usize = 7;
    pub const MEAN_DEV: usize = 8;
    pub const LOG_STD_RATIO: usize = 9;
    /// Features of the `betti` component.
    pub const BETTI: [usize; 6] = [H0, H1, H2, LIFE_H0, LIFE_H1, LIFE_H2];
    /// Features of the `entropy` component.
    pub const ENTROPY_SET: [usize; 2] = [ENTROPY, TOTAL_LIFETIME];
}

/// Smallest standard deviation per feature for z-scores, as (absolute, relative to the baseline mean).
/// The calibration windows overlap (consecutive windows share all but one event), so the spread they show
/// underestimates the spread of independent windows; the floors put a prior under it. Counts are integers,
/// so half a bar is the least meaningful spread. The longest bars are extreme values (the most isolated
/// point, the widest loop) and heavy-tailed even under Gaussian noise, hence a 25% relative floor.
pub const Z_FLOOR: [(f64, f64); N_FEATURES] = [
    (0.5, 0.1),
    (0.5, 0.1),
    (0.5, 0.1),
    (0.05, 0.25),
    (0.05, 0.25),
    (0.05, 0.25),
    (0.05, 0.02),
    (0.1, 0.05),
    (0.1, 0.0),
    (0.05, 0.0),
];

thread_local! {
    /// One homology workspace per thread: its buffers are reused by every window computed on the thread,
    /// so the hot path does not allocate distance matrices or pivot tables per event.
    static WORKSPACE: RefCell<RipsWorkspace> = RefCell::new(RipsWorkspace::new());
}

/// The topology of one window.
#[derive(Debug, Clone)]
pub struct WindowTopology {
    pub barcodes: Barcodes,
    pub betti: [usize; 3],
    pub entropy: f64,
    pub total_lifetime: f64,
    pub landscape: Landscape,
    /// Longest finite bar per dimension (0 when there is none).
    pub max_life: [f64; 3],
}

/// A usable scale for standardising: the standard deviation, or 1 when the values are (numerically)
/// constant so a constant stream does not divide by zero.
pub fn usable_scale(std: f64, mean: f64) -> f64 {
    if std.is_finite() && std > 1e-9 * mean.abs().max(1.0) {
        std
    } else {
        1.0
    }
}

/// Time-delay embedding of `values`, standardised with (`mean`, `scale`), as a flat row-major buffer of
/// `dim`-D points: point i is (x_i, x_{i+τ}, …, x_{i+(dim−1)τ}). Deterministic by construction.
pub fn embed(values: &[f64], dim: usize, delay: usize, mean: f64, scale: f64, out: &mut Vec<f64>) {
    out.clear();
    let span = (dim.max(1) - 1) * delay;
    if values.len() <= span {
        return;
    }
    let n = values.len() - span;
    out.reserve(n * dim);
    for i in 0..n {
        for k in 0..dim.max(1) {
            let z = (values[i + k * delay] - mean) / scale;
            out.push(if z.is_finite() {
                z.clamp(-COORD_LIMIT, COORD_LIMIT)
            } else {
                0.0
            });
        }
    }
}

/// Persistent homology of the embedded window and its summary.
pub fn topology(coords: &[f64], cfg: &StreamConfig) -> Result<WindowTopology, StreamError> {
    let params = RipsParams {
        max_dim: cfg.max_homology_dim,
        threshold: None,
        modulus: 2,
    };
    let barcodes = WORKSPACE.with(|ws| match ws.try_borrow_mut() {
        Ok(mut ws) => ws.compute(coords, cfg.embedding_dim, &params),
        // Only reachable through re-entrancy, which the pipeline never does; stay correct anyway.
        Err(_) => RipsWorkspace::new().compute(coords, cfg.embedding_dim, &params),
    })?;
    let rule = match cfg.betti_rule {
        BettiRuleConfig::Fixed { threshold } => BettiRule::Fixed(threshold),
        BettiRuleConfig::Adaptive { sigma, fallback } => BettiRule::Adaptive { sigma, fallback },
    };
    let counts = betti_numbers(&barcodes, &rule);
    let mut betti = [0usize; 3];
    let mut max_life = [0f64; 3];
    for d in 0..3 {
        betti[d] = counts.get(d).copied().unwrap_or(0);
        if let Some(bars) = barcodes.dims.get(d) {
            max_life[d] = bars
                .iter()
                .filter(|b| b.death.is_finite())
                .map(|b| b.death - b.birth)
                .fold(0.0, f64::max);
        }
    }
    let entropy = persistence_entropy(&barcodes);
    let total_lifetime = total_lifetime(&barcodes);
    let h1: &[vigil_topo::Interval] = barcodes.dims.get(1).map(Vec::as_slice).unwrap_or(&[]);
    let landscape = first_landscape(h1, 100);
    Ok(WindowTopology {
        barcodes,
        betti,
        entropy,
        total_lifetime,
        landscape,
        max_life,
    })
}

/// The feature vector of a window: Betti counts, longest finite bar per dimension, entropy, total
/// lifetime, the window mean's deviation in baseline σ, and ln(window std / baseline σ).
pub fn feature_row(t: &WindowTopology, values: &[f64], mean: f64, scale: f64) -> [f64; N_FEATURES] {
    let (wm, ws) = crate::stats::mean_std(values);
    let mean_dev = ((wm - mean) / scale).clamp(-COORD_LIMIT, COORD_LIMIT);
    // The +1e-3 keeps a constant window at a finite (very negative) ratio instead of −∞.
    let log_std = ((ws / scale) + 1e-3).ln();
    let mut row = [
        t.betti[0] as f64,
        t.betti[1] as f64,
        t.betti[2] as f64,
        t.max_life[0],
        t.max_life[1],
        t.max_life[2],
        t.entropy,
        t.total_lifetime,
        mean_dev,
        log_std,
    ];
    for x in &mut row {
        if !x.is_finite() {
            *x = 0.0;
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_is_delay_coordinates() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        let mut out = Vec::new();
        embed(&v, 2, 1, 0.0, 1.0, &mut out);
        assert_eq!(out, vec![1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0]);
        embed(&v, 3, 2, 1.0, 2.0, &mut out);
        assert_eq!(out, vec![0.0, 1.0, 2.0]);
        embed(&v, 3, 3, 0.0, 1.0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn embedding_clamps_huge_values() {
        let mut out = Vec::new();
        embed(&[1e100, -1e100], 1, 1, 0.0, 1e-9, &mut out);
        assert_eq!(out, vec![COORD_LIMIT, -COORD_LIMIT]);
    }

    #[test]
    fn scale_never_zero() {
        assert_eq!(usable_scale(0.0, 5.0), 1.0);
        assert_eq!(usable_scale(f64::NAN, 0.0), 1.0);
        assert_eq!(usable_scale(2.0, 5.0), 2.0);
    }
}
