//! The autoencoder detector the seed describes (reconstruction error over window features), in Rust: a small
//! dense autoencoder `dim → HIDDEN (tanh) → dim (linear)` over the last `dim` values standardised by the
//! stream's learned level and scale (clipped to ±[`CLIP`] σ so one spike cannot blow up the weights).
//!
//! * **Online**: one plain SGD step (learning rate [`LEARNING_RATE`], squared-error loss) per event on the
//!   current window, taken only when the window looked normal (the detector's combined tail probability above
//!   [`TRAIN_MIN_P`]), so the model follows the stream's recent normal windows and anomalies do not teach it.
//! * **Deterministic**: the initial weights come from a fixed-seed SplitMix generator, uniform in ±1/√fan-in;
//!   no other randomness.
//! * **Calibrated** like the shape distance: the reconstruction error (mean squared error, in σ²) is ranked
//!   against its own history (see [`crate::detector`]).
//! * **Cost**: 2·dim·HIDDEN multiply-adds forward and about twice that backward (≈ 1,000 with dim 20):
//!   negligible next to the shape search (memory·dim ≈ 80,000).

use serde::{Deserialize, Serialize};

use crate::bench_data::SplitMix;

/// Hidden units: a bottleneck well below the window length, so only the stream's usual shapes reconstruct.
pub const HIDDEN: usize = 6;
/// SGD step size.
pub const LEARNING_RATE: f64 = 0.01;
/// Inputs are clipped to ±CLIP learned σ.
pub const CLIP: f64 = 8.0;
/// The detector trains only on windows whose combined tail probability is above this.
pub const TRAIN_MIN_P: f64 = 0.01;
/// Seed of the initial weights.
const SEED: u64 = 0x5eed_a11e;

/// Weights of the autoencoder (row-major: `w1[h * dim + i]`, `w2[i * HIDDEN + h]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Autoencoder {
    dim: usize,
    w1: Vec<f64>,
    b1: Vec<f64>,
    w2: Vec<f64>,
    b2: Vec<f64>,
    /// Training steps taken.
    steps: u64,
}

impl Autoencoder {
    /// A fresh model for windows of `dim` values, with deterministic initial weights.
    pub fn new(dim: usize) -> Self {
        let mut r = SplitMix::new(SEED);
        let mut init = |n: usize, fan_in: usize| -> Vec<f64> {
            let a = 1.0 / (fan_in as f64).sqrt();
            (0..n).map(|_| a * (2.0 * r.uniform() - 1.0)).collect()
        };
        let w1 = init(HIDDEN * dim, dim);
        let w2 = init(dim * HIDDEN, HIDDEN);
        Self {
            dim,
            w1,
            b1: vec![0.0; HIDDEN],
            w2,
            b2: vec![0.0; dim],
            steps: 0,
        }
    }

    /// Window length the model was built for.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether the stored weights have the sizes `dim` implies (a stored state is checked before use).
    pub fn is_consistent(&self) -> bool {
        self.w1.len() == HIDDEN * self.dim
            && self.b1.len() == HIDDEN
            && self.w2.len() == self.dim * HIDDEN
            && self.b2.len() == self.dim
            && self
                .w1
                .iter()
                .chain(&self.b1)
                .chain(&self.w2)
                .chain(&self.b2)
                .all(|w| w.is_finite())
    }

    fn forward(&self, x: &[f64], hidden: &mut [f64; HIDDEN], out: &mut [f64]) {
        for (h, hv) in hidden.iter_mut().enumerate() {
            let row = &self.w1[h * self.dim..(h + 1) * self.dim];
            let a: f64 = row.iter().zip(x).map(|(w, v)| w * v).sum::<f64>() + self.b1[h];
            *hv = a.tanh();
        }
        for (i, o) in out.iter_mut().enumerate() {
            let row = &self.w2[i * HIDDEN..(i + 1) * HIDDEN];
            *o = row
                .iter()
                .zip(hidden.iter())
                .map(|(w, h)| w * h)
                .sum::<f64>()
                + self.b2[i];
        }
    }

    /// Reconstruction error (mean squared, in σ²) of `window` (already standardised, length `dim`).
    pub fn error(&self, window: &[f64]) -> f64 {
        let mut hidden = [0.0; HIDDEN];
        let mut out = vec![0.0; self.dim];
        self.forward(window, &mut hidden, &mut out);
        out.iter()
            .zip(window)
            .map(|(o, x)| (o - x) * (o - x))
            .sum::<f64>()
            / self.dim as f64
    }

    /// One SGD step on `window` (squared-error loss).
    pub fn train(&mut self, window: &[f64]) {
        let d = self.dim;
        let mut hidden = [0.0; HIDDEN];
        let mut out = vec![0.0; d];
        self.forward(window, &mut hidden, &mut out);
        // dL/d out_i for L = mean squared error.
        let g_out: Vec<f64> = out
            .iter()
            .zip(window)
            .map(|(o, x)| 2.0 * (o - x) / d as f64)
            .collect();
        let mut g_hidden = [0.0; HIDDEN];
        for (i, g) in g_out.iter().enumerate() {
            for (h, gh) in g_hidden.iter_mut().enumerate() {
                *gh += g * self.w2[i * HIDDEN + h];
                self.w2[i * HIDDEN + h] -= LEARNING_RATE * g * hidden[h];
            }
            self.b2[i] -= LEARNING_RATE * g;
        }
        for h in 0..HIDDEN {
            let g = g_hidden[h] * (1.0 - hidden[h] * hidden[h]);
            for (w, x) in self.w1[h * d..(h + 1) * d].iter_mut().zip(window) {
                *w -= LEARNING_RATE * g * x;
            }
            self.b1[h] -= LEARNING_RATE * g;
        }
        self.steps += 1;
    }
}

/// The last `dim` values of `values`, standardised by `mean`/`scale` and clipped; `None` if fewer.
pub fn standardise(values: &[f64], dim: usize, mean: f64, scale: f64) -> Option<Vec<f64>> {
    let n = values.len();
    (n >= dim && scale > 0.0).then(|| {
        values[n - dim..]
            .iter()
            .map(|v| ((v - mean) / scale).clamp(-CLIP, CLIP))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_cycle_and_flags_a_new_shape() {
        let dim = 20;
        let mut ae = Autoencoder::new(dim);
        let series: Vec<f64> = (0..6000)
            .map(|i| (i as f64 * std::f64::consts::TAU / 50.0).sin())
            .collect();
        let first = ae.error(&series[0..dim]);
        for s in 0..5000 {
            ae.train(&series[s..s + dim]);
        }
        let learned = ae.error(&series[5100..5100 + dim]);
        assert!(learned < first / 4.0, "{first} → {learned}");
        let odd: Vec<f64> = (0..dim)
            .map(|i| if i % 2 == 0 { 2.0 } else { -2.0 })
            .collect();
        assert!(ae.error(&odd) > 10.0 * learned);
        assert!(ae.is_consistent());
    }

    #[test]
    fn deterministic() {
        let a = Autoencoder::new(10);
        let b = Autoencoder::new(10);
        assert_eq!(a, b);
        assert!(standardise(&[1.0, 2.0], 3, 0.0, 1.0).is_none());
        assert_eq!(standardise(&[0.0, 100.0], 1, 0.0, 1.0).unwrap(), vec![CLIP]);
    }
}
