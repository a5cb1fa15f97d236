//! Small statistics used by the baseline: running moments, exponentially forgetting moments, medians.

use serde::{Deserialize, Serialize};

/// Welford running mean/variance over everything seen (used until a baseline exists).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Running {
    pub n: u64,
    pub mean: f64,
    pub m2: f64,
}

impl Running {
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    /// Population standard deviation (0 with fewer than 2 samples).
    pub fn std(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.m2 / self.n as f64).max(0.0).sqrt()
        }
    }
}

/// Exponentially forgetting mean and variance: after an update with weight α the previous state counts
/// (1 − α). West's (1979) incremental form, which stays non-negative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ewm {
    pub mean: f64,
    pub var: f64,
}

impl Ewm {
    pub fn update(&mut self, x: f64, alpha: f64) {
        let d = x - self.mean;
        let incr = alpha * d;
        self.mean += incr;
        self.var = (1.0 - alpha) * (self.var + d * incr);
    }

    pub fn std(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }

    /// z-score of `x` with the standard deviation floored at `floor` (> 0), so a feature that was constant
    /// during calibration does not turn every later wobble into an infinite deviation.
    pub fn z(&self, x: f64, floor: f64) -> f64 {
        let z = (x - self.mean) / self.std().max(floor);
        if z.is_finite() { z } else { 0.0 }
    }
}

/// Median of a slice (NaN-free input; 0 for an empty slice). Sorts a copy.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

/// Population mean and standard deviation of a slice.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.max(0.0).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_matches_direct() {
        let xs = [1.0, 4.0, -2.0, 7.5, 3.0];
        let mut r = Running::default();
        xs.iter().for_each(|&x| r.push(x));
        let (m, s) = mean_std(&xs);
        assert!((r.mean - m).abs() < 1e-12);
        assert!((r.std() - s).abs() < 1e-12);
    }

    #[test]
    fn ewm_forgets() {
        let mut e = Ewm {
            mean: 0.0,
            var: 1.0,
        };
        for _ in 0..500 {
            e.update(10.0, 0.05);
        }
        assert!((e.mean - 10.0).abs() < 1e-6);
        assert!(e.var < 1e-6);
        assert!(e.z(10.0, 0.5).abs() < 1e-6);
        assert!((e.z(11.0, 0.5) - 2.0).abs() < 1e-6);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
