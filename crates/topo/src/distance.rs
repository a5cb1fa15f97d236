//! Validated distance matrices.
//!
//! Distances are stored as `f32` in a full, symmetric, row-major `n × n` square. `f32` is what Ripser computes
//! with (so barcodes agree with it bit for bit on ties) and halves memory traffic; the full square costs twice a
//! triangle but turns every lookup into `row[j]` with no branch, and makes "distances from `v` to every vertex of
//! a simplex" a walk along contiguous rows — the inner loop of coboundary enumeration.

use crate::TopoError;

/// A symmetric matrix of pairwise distances between `n` points.
///
/// Invariants: `data.len() == n * n`, `data[i * n + j] == data[j * n + i]`, the diagonal is 0, every entry is
/// `>= 0` and never NaN (`+inf` is allowed and means the pair is never connected).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DistanceMatrix {
    n: usize,
    data: Vec<f32>,
}

/// Converts one user value to the stored `f32`, rejecting NaN and negatives.
fn checked(value: f64, row: usize, col: usize) -> Result<f32, TopoError> {
    if value.is_nan() {
        return Err(TopoError::NanDistance { row, col });
    }
    if value < 0.0 {
        return Err(TopoError::NegativeDistance { row, col, value });
    }
    // `+ 0.0` turns a `-0.0` into `+0.0`, so that the bit patterns of stored distances order like their values.
    Ok(value as f32 + 0.0)
}

impl DistanceMatrix {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when there are no points.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Distance between points `i` and `j` (both `< len()`), as stored (`f32` precision).
    pub fn get(&self, i: usize, j: usize) -> Option<f64> {
        if i < self.n && j < self.n {
            self.data.get(i * self.n + j).map(|&d| f64::from(d))
        } else {
            None
        }
    }

    /// The full row-major `n × n` square.
    pub(crate) fn square(&self) -> &[f32] {
        &self.data
    }

    fn zeroed(n: usize) -> Result<Self, TopoError> {
        let mut data = Vec::new();
        let cells = n.checked_mul(n).ok_or(TopoError::TooLarge {
            what: "distance matrix",
        })?;
        data.try_reserve_exact(cells)
            .map_err(|_| TopoError::TooLarge {
                what: "distance matrix",
            })?;
        data.resize(cells, 0.0);
        Ok(DistanceMatrix { n, data })
    }

    /// Euclidean distances between the rows of `coords`, a row-major `len / ambient_dim × ambient_dim` buffer.
    ///
    /// `ambient_dim == 0` is accepted only with an empty buffer (zero points).
    pub fn from_points(coords: &[f64], ambient_dim: usize) -> Result<Self, TopoError> {
        let mut dm = DistanceMatrix::default();
        dm.fill_from_points(coords, ambient_dim)?;
        Ok(dm)
    }

    /// Like [`DistanceMatrix::from_points`], reusing this matrix's buffer (the stream case: no allocation once
    /// the buffer is large enough).
    pub fn fill_from_points(
        &mut self,
        coords: &[f64],
        ambient_dim: usize,
    ) -> Result<(), TopoError> {
        if ambient_dim == 0 {
            if coords.is_empty() {
                self.n = 0;
                self.data.clear();
                return Ok(());
            }
            return Err(TopoError::DimensionMismatch {
                len: coords.len(),
                ambient_dim,
            });
        }
        if !coords.len().is_multiple_of(ambient_dim) {
            return Err(TopoError::DimensionMismatch {
                len: coords.len(),
                ambient_dim,
            });
        }
        if let Some(pos) = coords.iter().position(|c| !c.is_finite()) {
            return Err(TopoError::NonFiniteCoordinate {
                point: pos / ambient_dim,
                coord: pos % ambient_dim,
            });
        }
        let n = coords.len() / ambient_dim;
        let cells = n.checked_mul(n).ok_or(TopoError::TooLarge {
            what: "distance matrix",
        })?;
        self.data.clear();
        self.data
            .try_reserve_exact(cells)
            .map_err(|_| TopoError::TooLarge {
                what: "distance matrix",
            })?;
        self.data.resize(cells, 0.0);
        self.n = n;
        for (i, p) in coords.chunks_exact(ambient_dim).enumerate() {
            for (j, q) in coords.chunks_exact(ambient_dim).enumerate().take(i) {
                // Accumulate in f64 and round once: at least as accurate as Ripser's f32 accumulation.
                let sq: f64 = p.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
                let d = sq.sqrt() as f32;
                self.data[i * n + j] = d;
                self.data[j * n + i] = d;
            }
        }
        Ok(())
    }

    /// A matrix from its strict lower triangle, row by row: `d(1,0), d(2,0), d(2,1), d(3,0), …` (Ripser's
    /// `lower-distance` layout). The number of points is inferred from the entry count.
    pub fn from_lower_triangular(entries: &[f64]) -> Result<Self, TopoError> {
        let n = triangular_side(entries.len())
            .ok_or(TopoError::NotTriangular { len: entries.len() })?;
        let mut dm = Self::zeroed(n)?;
        let mut it = entries.iter();
        for i in 1..n {
            for j in 0..i {
                let value = *it
                    .next()
                    .ok_or(TopoError::NotTriangular { len: entries.len() })?;
                let d = checked(value, i, j)?;
                dm.data[i * n + j] = d;
                dm.data[j * n + i] = d;
            }
        }
        Ok(dm)
    }

    /// A matrix from a full row-major `n × n` buffer. As in Ripser, only the strict lower triangle is read: the
    /// diagonal and the upper triangle are ignored (so an asymmetric input is symmetrised from below).
    pub fn from_full(entries: &[f64], n: usize) -> Result<Self, TopoError> {
        if n.checked_mul(n) != Some(entries.len()) {
            return Err(TopoError::NotSquare {
                len: entries.len(),
                n,
            });
        }
        let mut dm = Self::zeroed(n)?;
        for i in 1..n {
            for j in 0..i {
                let d = checked(entries[i * n + j], i, j)?;
                dm.data[i * n + j] = d;
                dm.data[j * n + i] = d;
            }
        }
        Ok(dm)
    }

    /// The enclosing radius `min_i max_j d(i, j)`: at this value the complex is a cone, so no finite bar dies
    /// later and no class of dimension ≥ 1 survives it. Returns `+inf` for fewer than 2 points.
    pub fn enclosing_radius(&self) -> f64 {
        let n = self.n;
        if n < 2 {
            return f64::INFINITY;
        }
        self.data
            .chunks_exact(n)
            .map(|row| row.iter().copied().fold(0.0f32, f32::max))
            .fold(f32::INFINITY, f32::min)
            .into()
    }
}

/// `n` with `n(n-1)/2 == len`, if any.
pub(crate) fn triangular_side(len: usize) -> Option<usize> {
    // Start from the floating estimate and correct it exactly with integers. For `len == 0` both 0 and 1
    // fit; like Ripser we read an empty triangle as one point.
    let guess = ((1.0 + (1.0 + 8.0 * len as f64).sqrt()) / 2.0) as usize;
    (guess.saturating_sub(2)..=guess + 2)
        .rev()
        .find(|&n| n.checked_mul(n.saturating_sub(1)).map(|p| p / 2) == Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triangular_sides() {
        assert_eq!(triangular_side(0), Some(1));
        assert_eq!(triangular_side(1), Some(2));
        assert_eq!(triangular_side(3), Some(3));
        assert_eq!(triangular_side(4), None);
        assert_eq!(triangular_side(192 * 191 / 2), Some(192));
    }

    #[test]
    fn points_give_symmetric_euclidean_distances() {
        let dm = DistanceMatrix::from_points(&[0.0, 0.0, 3.0, 4.0, 0.0, 1.0], 2).unwrap();
        assert_eq!(dm.len(), 3);
        assert_eq!(dm.get(0, 1), Some(5.0));
        assert_eq!(dm.get(1, 0), Some(5.0));
        assert_eq!(dm.get(2, 0), Some(1.0));
        assert_eq!(dm.get(2, 2), Some(0.0));
        assert_eq!(dm.get(3, 0), None);
        // Row maxima 5, 5 and √18: the enclosing radius is the smallest.
        assert_eq!(dm.enclosing_radius(), f64::from(18f64.sqrt() as f32));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            DistanceMatrix::from_points(&[0.0, f64::NAN], 1),
            Err(TopoError::NonFiniteCoordinate { point: 1, coord: 0 })
        );
        assert!(matches!(
            DistanceMatrix::from_points(&[0.0; 3], 2),
            Err(TopoError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            DistanceMatrix::from_points(&[0.0; 3], 0),
            Err(TopoError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            DistanceMatrix::from_lower_triangular(&[1.0, 2.0]),
            Err(TopoError::NotTriangular { .. })
        ));
        assert!(matches!(
            DistanceMatrix::from_lower_triangular(&[1.0, f64::NAN, 1.0]),
            Err(TopoError::NanDistance { row: 2, col: 0 })
        ));
        assert!(matches!(
            DistanceMatrix::from_lower_triangular(&[-1.0]),
            Err(TopoError::NegativeDistance { row: 1, col: 0, .. })
        ));
        assert!(matches!(
            DistanceMatrix::from_full(&[0.0; 5], 2),
            Err(TopoError::NotSquare { .. })
        ));
    }

    #[test]
    fn full_reads_the_lower_triangle() {
        let dm = DistanceMatrix::from_full(&[9.0, 7.0, 2.0, 9.0], 2).unwrap();
        assert_eq!(dm.get(0, 1), Some(2.0));
        assert_eq!(dm.get(0, 0), Some(0.0));
        let neg_zero = DistanceMatrix::from_lower_triangular(&[-0.0]).unwrap();
        assert_eq!(neg_zero.square()[1].to_bits(), 0.0f32.to_bits());
    }

    #[test]
    fn degenerate_sizes() {
        assert!(DistanceMatrix::from_points(&[], 3).unwrap().is_empty());
        assert!(DistanceMatrix::from_points(&[], 0).unwrap().is_empty());
        assert_eq!(DistanceMatrix::from_lower_triangular(&[]).unwrap().len(), 1);
        assert_eq!(DistanceMatrix::from_full(&[], 0).unwrap().len(), 0);
        assert_eq!(DistanceMatrix::default().enclosing_radius(), f64::INFINITY);
    }
}
