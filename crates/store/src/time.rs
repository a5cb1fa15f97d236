//! Time as the database stores it: Unix milliseconds, UTC; and the one way the services write and read it as
//! ISO 8601 text (`chrono` is the workspace's only date-time crate).
//!
//! The stream engine's event parser (`vigil_stream::Event`) is not this: it reads the event schema, where a number is
//! epoch seconds, and keeps `DateTime`s rather than milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix ms as an RFC 3339 UTC string (`2026-01-12T08:00:00Z`, with a fraction only when there is one and without
/// trailing zeros: `…08:00:00.25Z`). RFC 3339 has four-digit years only, so a time outside 0000–9999 (which no
/// clock or accepted input produces) renders as its number of milliseconds.
pub fn format_ts(ms: i64) -> String {
    let Some(t) =
        DateTime::<Utc>::from_timestamp_millis(ms).filter(|t| (0..=9999).contains(&t.year()))
    else {
        return ms.to_string();
    };
    let mut out = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let millis = ms.rem_euclid(1000);
    if millis != 0 {
        let frac = format!("{millis:03}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Parses an ISO 8601 time into Unix ms. Accepts RFC 3339 (`…Z`, `…+02:00`), a date-time without offset (taken as
/// UTC, as the Python reference wrote them), and a bare date (midnight UTC). A space may stand for the `T`, and a
/// space where the offset's `+` belongs (an unescaped `+` in a query string decodes to a space) is read as `+`.
pub fn parse_ts(raw: &str) -> Option<i64> {
    // Every accepted form is ASCII; refusing the rest first also keeps the byte offsets below on character
    // boundaries (a multi-byte character at byte 19 used to panic in `split_at`).
    if !raw.is_ascii() {
        return None;
    }
    let mut s: String = raw.trim().to_owned();
    if s.len() > 10 && s.as_bytes().get(10) == Some(&b' ') {
        s.replace_range(10..11, "T");
    }
    if s.len() > 19 {
        let (head, tail) = s.split_at(19);
        s = format!("{head}{}", tail.replace(' ', "+"));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
        return Some(t.timestamp_millis());
    }
    // chrono's `%Y`, `%m`, … also take signs and one-digit fields; the forms accepted here have fixed widths.
    if !fixed_width_prefix(s.as_bytes()) {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M"))
        .or_else(|_| {
            NaiveDate::parse_from_str(&s, "%Y-%m-%d").map(|d| d.and_time(chrono::NaiveTime::MIN))
        })
        .ok()?;
    Some(naive.and_utc().timestamp_millis())
}

/// Whether `s` starts `YYYY-MM-DD`, continued (if longer) by `THH:MM` and (if longer) `:SS`.
fn fixed_width_prefix(s: &[u8]) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    let checked = match s.len() {
        0..10 => return false,
        10 => 10,
        11..16 => return false,
        16 => 16,
        17..19 => return false,
        _ => 19,
    };
    s.iter().zip(SHAPE).take(checked).all(|(&c, &want)| {
        if want == b'd' {
            c.is_ascii_digit()
        } else {
            c == want
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_iso_forms_clients_send() {
        let t = 1_768_204_800_000; // 2026-01-12T08:00:00Z
        assert_eq!(parse_ts("2026-01-12T08:00:00Z"), Some(t));
        assert_eq!(parse_ts("2026-01-12T09:00:00+01:00"), Some(t));
        assert_eq!(
            parse_ts("2026-01-12T09:00:00 01:00"),
            Some(t),
            "a + decoded to a space"
        );
        assert_eq!(parse_ts("2026-01-12T08:00:00"), Some(t));
        assert_eq!(parse_ts("2026-01-12 08:00:00.250"), Some(t + 250));
        assert_eq!(parse_ts("2026-01-12T08:00"), Some(t));
        assert_eq!(parse_ts("2026-01-12"), Some(t - 8 * 3_600_000));
        assert_eq!(parse_ts("yesterday"), None);
        assert_eq!(parse_ts("2026-13-01"), None);
        assert_eq!(parse_ts("' OR 1=1 --"), None);
    }

    #[test]
    fn only_fixed_width_fields_are_accepted() {
        // What the previous parser (the `time` crate's fixed-width descriptions) refused stays refused.
        assert_eq!(parse_ts("2026-1-12"), None);
        assert_eq!(parse_ts("+2026-01-12"), None);
        assert_eq!(parse_ts("2026-01-12T8:00"), None);
        assert_eq!(parse_ts("2026-01-12T08:00:0"), None);
        assert_eq!(parse_ts("2026-01-12T08:00:00."), None);
        assert_eq!(parse_ts("2026-01-12T08:00:00.5"), Some(1_768_204_800_500));
        assert_eq!(parse_ts("2026-01-12t08:00:00z"), Some(1_768_204_800_000));
    }

    #[test]
    fn non_ascii_text_is_refused_without_panicking() {
        // The attack: `?start_date=2024-01-01T00:00:0%C3%A9` put a two-byte character across byte 19.
        assert_eq!(parse_ts("2024-01-01T00:00:0\u{e9}"), None);
        assert_eq!(parse_ts("2024-01-01T00:00:00\u{e9}Z"), None);
        assert_eq!(parse_ts("2024-01-01 00:00:0\u{e9}\u{e9}"), None);
        assert_eq!(
            parse_ts("\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}"),
            None
        );
        // Every cut that keeps at least one multi-byte character.
        let text = "2024-01-01T00:00:00\u{e9}\u{4e2d}\u{1F600}+01:00";
        for end in (20..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            assert_eq!(parse_ts(&text[..end]), None, "{:?}", &text[..end]);
        }
    }

    #[test]
    fn formats_utc_iso() {
        assert_eq!(format_ts(1_768_204_800_000), "2026-01-12T08:00:00Z");
        assert_eq!(format_ts(1_768_204_800_250), "2026-01-12T08:00:00.25Z");
        assert_eq!(format_ts(1_768_204_800_001), "2026-01-12T08:00:00.001Z");
        assert_eq!(format_ts(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_ts(i64::MAX), i64::MAX.to_string());
        assert_eq!(
            parse_ts(&format_ts(1_768_204_800_250)),
            Some(1_768_204_800_250)
        );
    }
}
