//! Import from the reference backend: its SQLite `users(profile_id, password_hash)` table and its
//! `user_data/<profile_id>/features.csv` files (header `timestamp` + the 15 feature names).
//!
//! Idempotent: users already enrolled keep their password, and every CSV row gets a deterministic id
//! (profile, line number, hash of the line), so a second run adds nothing. Everything not imported is
//! reported with its reason. Profiles that reach the readiness quotas are trained at the end, so scoring
//! works immediately after the import.

use std::path::{Path, PathBuf};

use vigil_biometrics::FEATURE_NAMES;
use vigil_biometrics::lifecycle::vector_from_slice;
use vigil_store::maxidom;
use vigil_store::reference::{self, ReferenceError};
use vigil_store::time::now_ms;
use vigil_store::{Store, StoreError};

use crate::routes::canonical_profile_id;
use crate::service::{Maxidom, TrainingKind, kinds_of};

/// Why the import stopped (per-row problems are reported, not raised).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Something that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// What was skipped: a user id, a file, or `file:line`.
    pub item: String,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub users_imported: u64,
    /// Users whose profile already had a password (kept as it is).
    pub users_already_enrolled: u64,
    /// Profiles created for feature files without a `users` row (they can enroll later).
    pub profiles_created_without_password: u64,
    pub vectors_imported: u64,
    /// Rows already imported by an earlier run.
    pub vectors_already_present: u64,
    /// Rows whose timestamp could not be read (imported with the import time instead).
    pub timestamps_defaulted: u64,
    pub models_trained: u64,
    pub skipped: Vec<Skipped>,
}

/// Progress callback: `(done, total)` work units (one per user and per CSV row).
pub type ProgressFn<'a> = dyn FnMut(u64, u64) + Send + 'a;

/// Imports the reference data into `store`, then trains every profile that is ready and has no model.
pub async fn import_reference(
    store: &Store,
    service: &Maxidom,
    reference_db: Option<&Path>,
    user_data: Option<&Path>,
    progress: &mut ProgressFn<'_>,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let users = match reference_db {
        Some(path) => reference::read_users(path).await?,
        None => Vec::new(),
    };
    let files = match user_data {
        Some(dir) => feature_files(dir, &mut report)?,
        None => Vec::new(),
    };
    let mut contents = Vec::with_capacity(files.len());
    for (profile_id, path) in files {
        let text = std::fs::read_to_string(&path).map_err(|source| ImportError::Io {
            path: path.display().to_string(),
            source,
        })?;
        contents.push((profile_id, path, text));
    }
    let total = users.len() as u64
        + contents
            .iter()
            .map(|(_, _, t)| t.lines().count().saturating_sub(1) as u64)
            .sum::<u64>();
    let mut done = 0u64;
    progress(done, total);

    let now = now_ms();
    for reference::ReferenceUser {
        profile_id: raw_id,
        password_hash: hash,
    } in users
    {
        done += 1;
        let Ok(profile_id) = canonical_profile_id(&raw_id) else {
            report.skipped.push(Skipped {
                item: raw_id,
                reason: "profile_id is not a canonical UUID".into(),
            });
            continue;
        };
        let Some(hash) = hash.filter(|h| is_known_hash(h)) else {
            report.skipped.push(Skipped {
                item: profile_id,
                reason: "password hash is missing or not bcrypt/Argon2".into(),
            });
            continue;
        };
        if maxidom::import_user(store, &profile_id, &hash, now).await? {
            report.users_imported += 1;
        } else {
            report.users_already_enrolled += 1;
        }
        progress(done, total);
    }

    let mut touched = Vec::new();
    for (profile_id, path, text) in contents {
        if maxidom::ensure_profile(store, &profile_id, now).await? {
            report.profiles_created_without_password += 1;
        }
        import_csv(
            store,
            &profile_id,
            &path,
            &text,
            now,
            &mut report,
            &mut done,
            total,
            progress,
        )
        .await?;
        touched.push(profile_id);
    }
    progress(total, total);

    for profile_id in touched {
        let token = uuid::Uuid::new_v4().to_string();
        let thresholds = service.thresholds();
        if let Some(claim) =
            maxidom::claim_initial_training(store, &profile_id, &token, now_ms(), 0, thresholds)
                .await?
        {
            match service
                .run_training(store, &claim, TrainingKind::Initial)
                .await
            {
                Ok(true) => report.models_trained += 1,
                Ok(false) => {}
                Err(e) => {
                    maxidom::release_claim(store, &claim).await?;
                    report.skipped.push(Skipped {
                        item: profile_id,
                        reason: format!("training failed: {e}"),
                    });
                }
            }
        }
    }
    Ok(report)
}

fn is_known_hash(h: &str) -> bool {
    ["$2a$", "$2b$", "$2y$", "$argon2"]
        .iter()
        .any(|p| h.starts_with(p))
}

/// `(profile_id, path)` of every `DIR/<uuid>/features.csv`; other entries are reported.
fn feature_files(
    dir: &Path,
    report: &mut ImportReport,
) -> Result<Vec<(String, PathBuf)>, ImportError> {
    let io = |source| ImportError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_dir() {
            continue;
        }
        let Ok(profile_id) = canonical_profile_id(&name) else {
            report.skipped.push(Skipped {
                item: entry.path().display().to_string(),
                reason: "directory name is not a canonical UUID".into(),
            });
            continue;
        };
        let csv = entry.path().join("features.csv");
        if csv.is_file() {
            out.push((profile_id, csv));
        } else {
            report.skipped.push(Skipped {
                item: entry.path().display().to_string(),
                reason: "no features.csv".into(),
            });
        }
    }
    Ok(out)
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// FNV-1a: a stable fingerprint of a CSV line for its import id (not a security boundary).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Unix ms from a reference timestamp: epoch seconds or ms as a number, or ISO 8601 (UTC if no offset).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = unquote(s);
    if let Ok(x) = s.parse::<f64>() {
        if !x.is_finite() || x < 0.0 {
            return None;
        }
        // Seconds until the year 5138; anything larger is already milliseconds.
        let ms = if x < 1e11 { x * 1000.0 } else { x };
        return Some(ms as i64);
    }
    parse_iso(s)
}

fn parse_iso(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ms = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return None;
        }
        let padded = format!("{digits:0<3}");
        frac_ms = padded.get(..3)?.parse().ok()?;
        rest = &r[digits.len()..];
    }
    let offset_ms = match rest {
        "" | "Z" | "z" => 0,
        tz if (tz.starts_with('+') || tz.starts_with('-'))
            && tz.len() == 6
            && tz.as_bytes()[3] == b':' =>
        {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            let oh: i64 = tz.get(1..3)?.parse().ok()?;
            let om: i64 = tz.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60) * 1000
        }
        _ => return None,
    };
    // Days from the civil date (proleptic Gregorian), Howard Hinnant's algorithm.
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + frac_ms - offset_ms)
}

#[allow(clippy::too_many_arguments)]
async fn import_csv(
    store: &Store,
    profile_id: &str,
    path: &Path,
    text: &str,
    now: i64,
    report: &mut ImportReport,
    done: &mut u64,
    total: u64,
    progress: &mut ProgressFn<'_>,
) -> Result<(), ImportError> {
    let file = path.display().to_string();
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        report.skipped.push(Skipped {
            item: file,
            reason: "empty file".into(),
        });
        return Ok(());
    };
    let columns: Vec<&str> = header.split(',').map(unquote).collect();
    let ts_col = columns.iter().position(|c| *c == "timestamp");
    let mut feature_cols = Vec::with_capacity(FEATURE_NAMES.len());
    for name in FEATURE_NAMES {
        match columns.iter().position(|c| *c == name) {
            Some(i) => feature_cols.push(i),
            None => {
                report.skipped.push(Skipped {
                    item: file,
                    reason: format!("header has no column {name}"),
                });
                *done += lines.count() as u64;
                return Ok(());
            }
        }
    }
    for (i, line) in lines {
        *done += 1;
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        let mut values = Vec::with_capacity(feature_cols.len());
        let mut bad = None;
        for (&col, name) in feature_cols.iter().zip(FEATURE_NAMES) {
            match cells.get(col).map(|c| unquote(c).parse::<f64>()) {
                Some(Ok(v)) if v.is_finite() => values.push(v),
                Some(_) => {
                    bad = Some(format!("{name} is not a finite number"));
                    break;
                }
                None => {
                    bad = Some(format!(
                        "row has {} cells, header has {}",
                        cells.len(),
                        columns.len()
                    ));
                    break;
                }
            }
        }
        let vector = match (bad, vector_from_slice(&values)) {
            (None, Some(v)) => v,
            (reason, _) => {
                let reason = reason.unwrap_or_else(|| "wrong number of features".into());
                report.skipped.push(Skipped {
                    item: format!("{file}:{line_no}"),
                    reason,
                });
                continue;
            }
        };
        let created_at = match ts_col
            .and_then(|c| cells.get(c))
            .and_then(|c| parse_timestamp(c))
        {
            Some(t) => t,
            None => {
                report.timestamps_defaulted += 1;
                now + line_no as i64
            }
        };
        let id = format!("import:{profile_id}:{line_no}:{:016x}", fnv1a(line));
        if maxidom::import_vector(
            store,
            profile_id,
            &id,
            &vector,
            kinds_of(&vector),
            created_at,
        )
        .await?
        {
            report.vectors_imported += 1;
        } else {
            report.vectors_already_present += 1;
        }
        if (*done).is_multiple_of(256) {
            progress(*done, total);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_reference_shape() {
        assert_eq!(parse_timestamp("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_timestamp("1700000000.5"), Some(1_700_000_000_500));
        assert_eq!(parse_timestamp("1700000000123"), Some(1_700_000_000_123));
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_timestamp("2023-11-14 22:13:20.250"),
            Some(1_700_000_000_250)
        );
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20.123456Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_timestamp("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_timestamp("\"1970-01-01T00:00:00\""), Some(0));
        assert_eq!(
            parse_timestamp("2000-02-29T00:00:00"),
            Some(951_782_400_000)
        );
        for bad in [
            "",
            "yesterday",
            "-5",
            "NaN",
            "2023-13-01T00:00:00",
            "2023-11-14T22:13",
            "2023-11-14T22:13:20+0200",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn line_fingerprints_are_stable_and_distinct() {
        assert_eq!(fnv1a("a,b"), fnv1a("a,b"));
        assert_ne!(fnv1a("a,b"), fnv1a("a,c"));
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
    }
}
