//! Reading numeric matrices from CSV files, with errors that name the offending line.
//!
//! Accepted: comma-separated numbers, one row per line (RFC 4180, read by the `csv` crate: a quoted field may
//! hold commas, quotes and line breaks), an optional header row, blank lines (skipped), surrounding whitespace
//! and double quotes around a field, `\r\n` line ends.
//! The first non-blank line is a header when none of its fields is a number; a first line
//! mixing numbers and non-numbers is an error (most likely a broken data row, which silently
//! dropping as a "header" would hide). Every row must have as many fields as the first.
//! NaN and infinities are rejected: the forest cannot train on them.

use std::io::Read;
use std::path::Path;

use crate::Error;

/// A row-major matrix read from CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Row-major values, `n_rows() * n_cols` of them.
    pub data: Vec<f64>,
    pub n_cols: usize,
    /// Column names when the file had a header row.
    pub header: Option<Vec<String>>,
}

impl Matrix {
    pub fn n_rows(&self) -> usize {
        self.data.len().checked_div(self.n_cols).unwrap_or(0)
    }
}

/// A field without surrounding whitespace, and without the quotes of a quoted field that had whitespace before
/// its opening quote (which RFC 4180 readers take literally).
fn field_text(raw: &str) -> &str {
    let t = raw.trim();
    t.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .map(str::trim)
        .unwrap_or(t)
}

/// 1-based line numbers of byte offsets, asked in increasing order. (The `csv` reader's own count skips blank
/// lines, and a record's position is where the blank lines before it start; errors must name the line an editor
/// shows.)
struct Lines<'a> {
    text: &'a [u8],
    at: usize,
    line: usize,
}

impl Lines<'_> {
    fn of(&mut self, byte: u64) -> usize {
        let mut to = usize::try_from(byte).map_or(self.text.len(), |b| b.min(self.text.len()));
        while matches!(self.text.get(to), Some(b'\r' | b'\n')) {
            to += 1;
        }
        if to > self.at {
            self.line += self.text[self.at..to]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.at = to;
        }
        self.line
    }
}

/// Reads a matrix from any reader. Line numbers in errors are 1-based.
pub fn read_matrix<R: Read>(mut reader: R) -> Result<Matrix, Error> {
    // Whole, so that errors can name file lines (the matrix it becomes is about as large).
    let mut text = Vec::new();
    reader
        .read_to_end(&mut text)
        .map_err(|e| Error::Io(format!("cannot read: {e}")))?;
    let mut lines = Lines {
        text: &text,
        at: 0,
        line: 1,
    };
    // RFC 4180 records (quoted fields may hold commas and line breaks); the header and the field count are
    // checked below, so the reader itself takes every record as data and any length.
    let mut records = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_slice());
    let mut data = Vec::new();
    let mut n_cols = 0usize;
    let mut header = None;
    let mut seen_first = false;
    let mut record = ::csv::StringRecord::new();
    loop {
        match records.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                return Err(Error::Csv {
                    line: e.position().map_or(0, |p| lines.of(p.byte())),
                    message: format!("cannot read: {e}"),
                });
            }
        }
        let line_no = record.position().map_or(0, |p| lines.of(p.byte()));
        let mut fields: Vec<&str> = record.iter().map(field_text).collect();
        if !seen_first && let Some(first) = fields.first_mut() {
            *first = first.strip_prefix('\u{feff}').unwrap_or(first).trim_start();
        }
        // A line of spaces is a record of one empty field; it counts as blank.
        if fields.iter().all(|f| f.is_empty()) && fields.len() <= 1 {
            continue;
        }
        if !seen_first {
            seen_first = true;
            n_cols = fields.len();
            if fields.iter().all(|f| f.parse::<f64>().is_err()) {
                header = Some(fields.iter().map(|s| s.to_string()).collect());
                continue;
            }
        }
        if fields.len() != n_cols {
            return Err(Error::Csv {
                line: line_no,
                message: format!("expected {n_cols} fields, found {}", fields.len()),
            });
        }
        for (col, f) in fields.iter().enumerate() {
            let v: f64 = f.parse().map_err(|_| Error::Csv {
                line: line_no,
                message: format!("field {} ({f:?}) is not a number", col + 1),
            })?;
            if !v.is_finite() {
                return Err(Error::Csv {
                    line: line_no,
                    message: format!("field {} ({f:?}) is not a finite number", col + 1),
                });
            }
            data.push(v);
        }
    }
    if data.is_empty() {
        return Err(Error::CsvNoRows);
    }
    Ok(Matrix {
        data,
        n_cols,
        header,
    })
}

/// Reads a matrix from a file; I/O errors name the path.
pub fn read_matrix_path(path: &Path) -> Result<Matrix, Error> {
    let file =
        std::fs::File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    read_matrix(std::io::BufReader::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str) -> Result<Matrix, Error> {
        read_matrix(s.as_bytes())
    }

    #[test]
    fn reads_with_and_without_header() {
        let m = read("a,b\n1,2\n3.5,-4e2\n").unwrap();
        assert_eq!(m.n_cols, 2);
        assert_eq!(m.n_rows(), 2);
        assert_eq!(m.data, vec![1.0, 2.0, 3.5, -400.0]);
        assert_eq!(m.header, Some(vec!["a".to_string(), "b".to_string()]));

        let m = read("1,2\r\n\r\n 3 , \"4\" \r\n").unwrap();
        assert_eq!(m.data, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m.header, None);
    }

    #[test]
    fn single_column_and_bom() {
        let m = read("\u{feff}x\n1\n2\n").unwrap();
        assert_eq!(m.n_cols, 1);
        assert_eq!(m.data, vec![1.0, 2.0]);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            read("a,b\n1,2\n3\n").unwrap_err(),
            Error::Csv {
                line: 3,
                message: "expected 2 fields, found 1".into()
            }
        );
        match read("1,2\n\n3,x\n").unwrap_err() {
            Error::Csv { line, message } => {
                assert_eq!(line, 3);
                assert!(message.contains("\"x\""), "{message}");
            }
            e => panic!("unexpected {e:?}"),
        }
        match read("1,2\n3,nan\n").unwrap_err() {
            Error::Csv { line, message } => {
                assert_eq!(line, 2);
                assert!(message.contains("finite"), "{message}");
            }
            e => panic!("unexpected {e:?}"),
        }
        // A first line mixing numbers and text is a broken row, not a header.
        assert!(matches!(
            read("1,b\n3,4\n"),
            Err(Error::Csv { line: 1, .. })
        ));
        assert_eq!(read(""), Err(Error::CsvNoRows));
        assert_eq!(read("a,b\n\n"), Err(Error::CsvNoRows));
        assert!(matches!(read("1,2\n3,\n"), Err(Error::Csv { line: 2, .. })));
    }

    #[test]
    fn quoted_commas_stay_in_their_field() {
        // A header naming columns with commas in them (a hand split on ',' saw four fields here).
        let m = read("\"bytes, in\",\"bytes, out\"\n1,2\n\"3\",4\n").unwrap();
        assert_eq!(
            m.header,
            Some(vec!["bytes, in".to_string(), "bytes, out".to_string()])
        );
        assert_eq!(m.n_cols, 2);
        assert_eq!(m.data, vec![1.0, 2.0, 3.0, 4.0]);
        // A quoted line break belongs to the header field; data line numbers still count file lines.
        match read("\"a\nb\",c\n1,2\n3\n").unwrap_err() {
            Error::Csv { line, message } => {
                assert_eq!(line, 4);
                assert_eq!(message, "expected 2 fields, found 1");
            }
            e => panic!("unexpected {e:?}"),
        }
        // A number written with a decimal comma is one field, and not a number.
        assert!(matches!(
            read("x,y\n\"1,5\",2\n"),
            Err(Error::Csv { line: 2, ref message }) if message.contains("\"1,5\"")
        ));
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let e = read_matrix_path(Path::new("/nonexistent/vigil/x.csv")).unwrap_err();
        assert!(matches!(e, Error::Io(ref m) if m.contains("/nonexistent/vigil/x.csv")));
    }
}
