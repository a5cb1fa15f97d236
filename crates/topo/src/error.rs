//! The one error type of the crate.

/// Everything that can go wrong when building a distance matrix, parsing a file or computing barcodes.
///
/// The engine never panics on input; every rejected input maps to one of these variants.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TopoError {
    /// A coordinate is NaN or infinite.
    #[error("coordinate {coord} of point {point} is not a finite number")]
    NonFiniteCoordinate { point: usize, coord: usize },
    /// A distance is NaN (infinite distances are allowed and mean "never connected").
    #[error("distance between points {row} and {col} is NaN")]
    NanDistance { row: usize, col: usize },
    /// A distance is negative.
    #[error("distance between points {row} and {col} is negative ({value})")]
    NegativeDistance { row: usize, col: usize, value: f64 },
    /// The coordinate buffer does not split into points of the stated dimension.
    #[error("{len} coordinates do not split into points of dimension {ambient_dim}")]
    DimensionMismatch { len: usize, ambient_dim: usize },
    /// A lower-triangular matrix whose entry count is not n(n-1)/2 for any n.
    #[error("{len} entries is not the size of a lower-triangular distance matrix (n(n-1)/2)")]
    NotTriangular { len: usize },
    /// A full matrix whose entry count is not n².
    #[error("{len} entries do not form a {n}x{n} matrix")]
    NotSquare { len: usize, n: usize },
    /// The coefficient modulus is not a prime below 256.
    #[error("modulus {0} is not a prime below 256")]
    InvalidModulus(u32),
    /// The threshold is NaN or negative.
    #[error("threshold {0} is not a non-negative number")]
    InvalidThreshold(f64),
    /// The requested homology dimension is beyond what the engine supports.
    #[error("max_dim {0} is too large (at most {max})", max = crate::MAX_DIM_LIMIT)]
    MaxDimTooLarge(usize),
    /// Simplex indices of the requested dimension do not fit in 56 bits for this many points.
    #[error("{n} points up to dimension {max_dim}: simplex index space exceeds 2^56")]
    IndexOverflow { n: usize, max_dim: usize },
    /// The input is too large to allocate.
    #[error("input too large: cannot allocate {what}")]
    TooLarge { what: &'static str },
    /// A malformed input file (1-based line number).
    #[error("line {line}: {message}")]
    Parse { line: usize, message: String },
}
