//! Scalar formulas shared by fitting, scoring and thresholding.

/// The Euler–Mascheroni constant (numpy's `np.euler_gamma`).
pub(crate) const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Average path length of an unsuccessful search in a binary search tree of `n` items,
/// c(n) = 2(ln(n−1) + γ) − 2(n−1)/n, with c(0) = c(1) = 0 and c(2) = 1, exactly as
/// scikit-learn's `_average_path_length` (Liu et al. 2008, eq. 1).
pub fn average_path_length(n: u64) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// c(n) for every n up to a bound, precomputed: fitting and decoding evaluate c at every leaf,
/// and the logarithm dominated both. Values are produced by [`average_path_length`] itself, so
/// a lookup is bit-identical to a direct call.
pub(crate) struct PathLengthTable {
    table: Vec<f64>,
}

impl PathLengthTable {
    /// Largest n tabulated, whatever ψ is: bounds the table's memory for huge subsamples.
    const MAX_TABULATED: u64 = 4096;

    /// Tabulates c(0..=min(max_n, 4096)).
    pub(crate) fn new(max_n: u64) -> Self {
        let top = max_n.min(Self::MAX_TABULATED);
        PathLengthTable {
            table: (0..=top).map(average_path_length).collect(),
        }
    }

    #[inline]
    pub(crate) fn get(&self, n: u64) -> f64 {
        usize::try_from(n)
            .ok()
            .and_then(|i| self.table.get(i).copied())
            .unwrap_or_else(|| average_path_length(n))
    }
}

/// The `q`-th percentile (`q` in [0, 100]) of `values` with linear interpolation, reproducing
/// numpy's default `np.percentile(values, q)` including its rounding: the virtual index is
/// `(n − 1)·(q/100)` and the interpolation `a + (b−a)·t` switches to `b − (b−a)·(1−t)` for
/// `t ≥ 0.5`, as numpy's `_lerp` does.
///
/// Never panics: returns NaN when `values` is empty, when any value is NaN (numpy propagates
/// NaN) or when `q` is NaN or outside [0, 100].
pub fn percentile_linear(values: &[f64], q: f64) -> f64 {
    if values.is_empty() || !(0.0..=100.0).contains(&q) || values.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    percentile_of_sorted(&sorted, q)
}

/// [`percentile_linear`] on data already sorted ascending without NaN; `q` must be in [0, 100].
pub(crate) fn percentile_of_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let quantile = q / 100.0;
    let virtual_index = (n - 1) as f64 * quantile;
    let below = virtual_index.floor();
    let t = virtual_index - below;
    // `below` is in [0, n−1] because quantile is in [0, 1]; the clamp keeps that true even if
    // rounding ever pushed it a hair outside.
    let lo = (below as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_path_length_known_values() {
        assert_eq!(average_path_length(0), 0.0);
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        // c(3) = 2(ln 2 + γ) − 4/3
        let c3 = 2.0 * (2f64.ln() + EULER_GAMMA) - 4.0 / 3.0;
        assert_eq!(average_path_length(3), c3);
        // c(256) as printed by scikit-learn's _average_path_length([256]).
        assert!((average_path_length(256) - 10.244_770_920_119_917).abs() < 1e-12);
    }

    #[test]
    fn table_equals_direct_computation() {
        let t = PathLengthTable::new(300);
        for n in [0u64, 1, 2, 3, 17, 256, 300, 301, 5000, u64::MAX] {
            assert_eq!(
                t.get(n).to_bits(),
                average_path_length(n).to_bits(),
                "n={n}"
            );
        }
    }

    #[test]
    fn percentile_matches_numpy_examples() {
        // np.percentile([1, 2, 3, 4], q) for q = 0, 25, 50, 90, 100
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile_linear(&v, 0.0), 1.0);
        assert_eq!(percentile_linear(&v, 25.0), 1.75);
        assert_eq!(percentile_linear(&v, 50.0), 2.5);
        assert!((percentile_linear(&v, 90.0) - 3.7).abs() < 1e-15);
        assert_eq!(percentile_linear(&v, 100.0), 4.0);
        assert_eq!(percentile_linear(&[5.0], 37.0), 5.0);
    }

    #[test]
    fn percentile_rejects_bad_input_without_panicking() {
        assert!(percentile_linear(&[], 50.0).is_nan());
        assert!(percentile_linear(&[1.0, f64::NAN], 50.0).is_nan());
        assert!(percentile_linear(&[1.0], -1.0).is_nan());
        assert!(percentile_linear(&[1.0], 100.5).is_nan());
        assert!(percentile_linear(&[1.0], f64::NAN).is_nan());
    }
}
