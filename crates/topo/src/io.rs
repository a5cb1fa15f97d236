//! Ripser's text input formats and its plain output, plus a JSON rendering.
//!
//! Inputs (numbers separated by whitespace and/or commas; blank lines and lines starting with `#` ignored):
//! - [`Format::PointCloud`]: one point per line, every line with the same number of coordinates;
//! - [`Format::LowerDistance`]: the strict lower triangle `d(1,0), d(2,0), d(2,1), …` as a stream of numbers
//!   (line breaks do not matter), so the entry count must be `n(n-1)/2`;
//! - [`Format::Distance`]: a full `n × n` matrix, one row per line (only the lower triangle is used).
//!
//! Every rejected input is a [`TopoError::Parse`] carrying the 1-based line number.

use std::fmt::Write as _;

use crate::{Barcodes, DistanceMatrix, TopoError};

/// The input formats of `vigil tda` (Ripser's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One point per line.
    PointCloud,
    /// Strict lower triangle of a distance matrix.
    #[default]
    LowerDistance,
    /// Full distance matrix.
    Distance,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "point-cloud" => Ok(Format::PointCloud),
            "lower-distance" => Ok(Format::LowerDistance),
            "distance" => Ok(Format::Distance),
            other => Err(format!(
                "unknown format `{other}` (point-cloud, lower-distance, distance)"
            )),
        }
    }
}

fn parse_error(line: usize, message: impl Into<String>) -> TopoError {
    TopoError::Parse {
        line,
        message: message.into(),
    }
}

/// Numbers of each meaningful line, as `(1-based line number, values)`.
fn numeric_lines(text: &str) -> Result<Vec<(usize, Vec<f64>)>, TopoError> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut values = Vec::new();
        for token in trimmed
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
        {
            let v: f64 = token
                .parse()
                .map_err(|_| parse_error(line, format!("`{token}` is not a number")))?;
            if v.is_nan() {
                return Err(parse_error(line, "NaN is not allowed"));
            }
            values.push(v);
        }
        if !values.is_empty() {
            lines.push((line, values));
        }
    }
    Ok(lines)
}

/// Checks a distance value read on `line`.
fn check_distance(line: usize, v: f64) -> Result<f64, TopoError> {
    if v < 0.0 {
        return Err(parse_error(line, format!("negative distance {v}")));
    }
    Ok(v)
}

/// Parses a point cloud into a row-major coordinate buffer and its ambient dimension.
pub fn parse_point_cloud(text: &str) -> Result<(Vec<f64>, usize), TopoError> {
    let lines = numeric_lines(text)?;
    let Some((_, first)) = lines.first() else {
        return Ok((Vec::new(), 0));
    };
    let dim = first.len();
    let mut coords = Vec::with_capacity(dim * lines.len());
    for (line, values) in &lines {
        if values.len() != dim {
            return Err(parse_error(
                *line,
                format!(
                    "point has {} coordinates, the first point has {dim}",
                    values.len()
                ),
            ));
        }
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Err(parse_error(*line, format!("coordinate {v} is not finite")));
        }
        coords.extend_from_slice(values);
    }
    Ok((coords, dim))
}

/// Parses a strict lower-triangular distance matrix.
pub fn parse_lower_distance(text: &str) -> Result<DistanceMatrix, TopoError> {
    let lines = numeric_lines(text)?;
    let mut entries = Vec::new();
    for (line, values) in &lines {
        for &v in values {
            entries.push(check_distance(*line, v)?);
        }
    }
    let last_line = lines.last().map_or(1, |(l, _)| *l);
    DistanceMatrix::from_lower_triangular(&entries)
        .map_err(|e| parse_error(last_line, e.to_string()))
}

/// Parses a full distance matrix, one row per line.
pub fn parse_distance(text: &str) -> Result<DistanceMatrix, TopoError> {
    let lines = numeric_lines(text)?;
    let n = lines.len();
    let mut entries = Vec::with_capacity(n * n);
    for (line, values) in &lines {
        if values.len() != n {
            return Err(parse_error(
                *line,
                format!(
                    "row has {} entries, expected {n} (one per row)",
                    values.len()
                ),
            ));
        }
        for &v in values {
            entries.push(check_distance(*line, v)?);
        }
    }
    DistanceMatrix::from_full(&entries, n)
        .map_err(|e| parse_error(lines.last().map_or(1, |(l, _)| *l), e.to_string()))
}

/// Parses `text` in `format` into a distance matrix (point clouds get Euclidean distances).
pub fn parse(text: &str, format: Format) -> Result<DistanceMatrix, TopoError> {
    match format {
        Format::PointCloud => {
            let (coords, dim) = parse_point_cloud(text)?;
            DistanceMatrix::from_points(&coords, dim)
        }
        Format::LowerDistance => parse_lower_distance(text),
        Format::Distance => parse_distance(text),
    }
}

/// A value as it was computed: barcodes hold exact `f32` values, which print shortest as `f32`.
fn fmt_value(out: &mut String, x: f64) {
    // (Formatting into a String cannot fail, hence the ignored results below.)
    let single = x as f32;
    if f64::from(single) == x {
        let _ = write!(out, "{single}");
    } else {
        let _ = write!(out, "{x}");
    }
}

/// Ripser's plain output: per dimension `persistence intervals in dim k:` then ` [birth,death)` lines, with an
/// empty death (` [birth, )`) for essential classes.
pub fn render_plain(b: &Barcodes) -> String {
    let mut out = String::new();
    for (k, bars) in b.dims.iter().enumerate() {
        let _ = writeln!(out, "persistence intervals in dim {k}:");
        for bar in bars {
            out.push_str(" [");
            fmt_value(&mut out, bar.birth);
            out.push(',');
            if bar.death.is_finite() {
                fmt_value(&mut out, bar.death);
            } else {
                out.push(' ');
            }
            out.push_str(")\n");
        }
    }
    out
}

/// `{"dgms": [[[birth, death|null], …], …]}` (ripser.py's `dgms`, infinite deaths as `null`).
pub fn render_json(b: &Barcodes) -> String {
    let mut out = String::from("{\"dgms\": [");
    for (k, bars) in b.dims.iter().enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        out.push('[');
        for (i, bar) in bars.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push('[');
            fmt_value(&mut out, bar.birth);
            out.push_str(", ");
            if bar.death.is_finite() {
                fmt_value(&mut out, bar.death);
            } else {
                out.push_str("null");
            }
            out.push(']');
        }
        out.push(']');
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Interval;

    #[test]
    fn point_cloud_with_commas_and_blank_lines() {
        let (c, d) = parse_point_cloud("# header\n0, 0\n\n3 4\n").unwrap();
        assert_eq!(d, 2);
        assert_eq!(c, vec![0.0, 0.0, 3.0, 4.0]);
        assert_eq!(parse_point_cloud("").unwrap(), (vec![], 0));
    }

    #[test]
    fn errors_carry_line_numbers() {
        assert_eq!(
            parse_point_cloud("0 0\n1 x\n"),
            Err(TopoError::Parse {
                line: 2,
                message: "`x` is not a number".into()
            })
        );
        assert!(matches!(
            parse_point_cloud("0 0\n1\n"),
            Err(TopoError::Parse { line: 2, .. })
        ));
        assert!(matches!(
            parse_point_cloud("0 0\n\n1 inf\n"),
            Err(TopoError::Parse { line: 3, .. })
        ));
        assert!(matches!(
            parse_lower_distance("1\n2 nan\n"),
            Err(TopoError::Parse { line: 2, .. })
        ));
        assert!(matches!(
            parse_lower_distance("1\n2 3\n4\n"),
            Err(TopoError::Parse { line: 3, .. })
        ));
        assert!(matches!(
            parse_lower_distance("1\n-2 3\n"),
            Err(TopoError::Parse { line: 2, .. })
        ));
        assert!(matches!(
            parse_distance("0,1\n1,0,4\n"),
            Err(TopoError::Parse { line: 2, .. })
        ));
        assert!(matches!(
            parse("0 1\n1 0\n5 5\n", Format::Distance),
            Err(TopoError::Parse { line: 1, .. })
        ));
    }

    #[test]
    fn lower_distance_ignores_line_structure() {
        let a = parse_lower_distance("1,\n2,3,\n").unwrap();
        let b = parse_lower_distance("1 2 3").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
        assert_eq!(a.get(2, 1), Some(3.0));
        assert_eq!(parse("0,1,2\n1,0,3\n2,3,0\n", Format::Distance).unwrap(), a);
    }

    #[test]
    fn formats_parse_from_names() {
        assert_eq!("point-cloud".parse::<Format>(), Ok(Format::PointCloud));
        assert_eq!("distance".parse::<Format>(), Ok(Format::Distance));
        assert!("dipha".parse::<Format>().is_err());
    }

    #[test]
    fn renders_like_ripser() {
        let b = Barcodes {
            dims: vec![
                vec![
                    Interval {
                        birth: 0.0,
                        death: 0.5,
                    },
                    Interval {
                        birth: 0.0,
                        death: f64::INFINITY,
                    },
                ],
                vec![Interval {
                    birth: f64::from(0.3f32),
                    death: 1.0,
                }],
            ],
        };
        assert_eq!(
            render_plain(&b),
            "persistence intervals in dim 0:\n [0,0.5)\n [0, )\npersistence intervals in dim 1:\n [0.3,1)\n"
        );
        assert_eq!(
            render_json(&b),
            "{\"dgms\": [[[0, 0.5], [0, null]], [[0.3, 1]]]}"
        );
        assert_eq!(render_json(&Barcodes::default()), "{\"dgms\": []}");
    }
}
