//! The session payload the MaxiDOM extension posts to `/train` and `/score`.
//!
//! Schema decisions (the extension always sends every field, so these only matter for other clients):
//! - `startTimestamp`, `endTimestamp`, `keyEvents`, `mousePaths` and `clicks` are **required**: a missing
//!   one is a schema error (HTTP 422), exactly as the reference's Pydantic model rejected it. Accepting
//!   a missing list as empty would silently store a "no activity" vector for a broken client.
//! - Inside items, the fields the features read are required (`code`, `downTime`, `upTime`; `t`, `x`,
//!   `y`; `t`, `duration`). Click `x`, `y` and `button` are accepted but optional, since no feature reads
//!   them.
//! - Every number may be a JSON integer or float. Strings, `null` or booleans in a number slot are
//!   schema errors (JavaScript serialises `NaN` as `null`, so a `NaN` from the page is rejected here
//!   rather than turned into a silent zero).
//! - Unknown fields (e.g. `heartbeatCount`) are ignored at every level.
//! - Empty lists and empty paths are valid.

use serde::{Deserialize, Serialize};

use crate::error::PayloadError;

/// One key press: `code` is the DOM `KeyboardEvent.code` (e.g. `KeyT`, `Space`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyEvent {
    pub code: String,
    pub down_time: f64,
    pub up_time: f64,
}

/// One sampled mouse position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MousePoint {
    pub t: f64,
    pub x: f64,
    pub y: f64,
}

/// One mouse click; `duration` is press-to-release in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Click {
    pub t: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral"
    )]
    pub button: Option<i64>,
    pub duration: f64,
}

/// An optional integer, also when written with a zero fraction (`2.0`): JSON has one number type, and JSON Schema
/// counts `2.0` as an integer. Beyond ±2^53 a float no longer holds every integer, so such values must be exact.
fn integral<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        #[allow(clippy::cast_possible_truncation)] // integral and within ±2^53: exact
        Some(f) if f.fract() == 0.0 && f.abs() <= EXACT => Ok(Some(f as i64)),
        _ => Err(serde::de::Error::custom(format!(
            "expected an integer, got {n}"
        ))),
    }
}

/// One activity session as sent by the extension. Times are ms from `performance.now()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub start_timestamp: f64,
    pub end_timestamp: f64,
    pub key_events: Vec<KeyEvent>,
    pub mouse_paths: Vec<Vec<MousePoint>>,
    pub clicks: Vec<Click>,
}

impl Payload {
    /// Parses a JSON body. The error message names the offending field by its JSON path
    /// (e.g. `mousePaths[0][3].x: invalid type: string "a", expected f64`), suitable for a 422 `detail`.
    pub fn from_json(body: &[u8]) -> Result<Self, PayloadError> {
        // The common shape first (several times faster than serde, and exact; see `fastjson`), then serde
        // without path tracking; only a failing body is parsed again to name the field.
        if let Some(payload) = crate::fastjson::parse(body) {
            payload.validate()?;
            return Ok(payload);
        }
        let payload: Payload = match serde_json::from_slice(body) {
            Ok(p) => p,
            Err(_) => return Err(Self::schema_error(body)),
        };
        payload.validate()?;
        Ok(payload)
    }

    /// Re-parses an invalid body with path tracking to build a message that names the field.
    fn schema_error(body: &[u8]) -> PayloadError {
        let de = &mut serde_json::Deserializer::from_slice(body);
        match serde_path_to_error::deserialize::<_, Payload>(de) {
            Ok(_) => PayloadError::Schema("the body is not a valid payload".into()),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                PayloadError::Schema(if path.is_empty() || path == "." {
                    inner.to_string()
                } else {
                    format!("{path}: {inner}")
                })
            }
        }
    }

    /// Checks what serde cannot: every number is finite. JSON itself cannot carry NaN or infinity,
    /// so this only rejects payloads built in code (or by a lenient parser); the feature extractor
    /// stays total anyway and maps non-finite results to 0.
    pub fn validate(&self) -> Result<(), PayloadError> {
        let bad = |what: String| Err(PayloadError::NonFinite(what));
        if !self.start_timestamp.is_finite() {
            return bad("startTimestamp".into());
        }
        if !self.end_timestamp.is_finite() {
            return bad("endTimestamp".into());
        }
        for (i, k) in self.key_events.iter().enumerate() {
            if !k.down_time.is_finite() {
                return bad(format!("keyEvents[{i}].downTime"));
            }
            if !k.up_time.is_finite() {
                return bad(format!("keyEvents[{i}].upTime"));
            }
        }
        for (i, path) in self.mouse_paths.iter().enumerate() {
            for (j, p) in path.iter().enumerate() {
                for (name, v) in [("t", p.t), ("x", p.x), ("y", p.y)] {
                    if !v.is_finite() {
                        return bad(format!("mousePaths[{i}][{j}].{name}"));
                    }
                }
            }
        }
        for (i, c) in self.clicks.iter().enumerate() {
            let fields = [
                ("t", Some(c.t)),
                ("x", c.x),
                ("y", c.y),
                ("duration", Some(c.duration)),
            ];
            for (name, v) in fields {
                if v.is_some_and(|v| !v.is_finite()) {
                    return bad(format!("clicks[{i}].{name}"));
                }
            }
        }
        Ok(())
    }

    /// Total number of mouse points over all paths (the mouse model's vote gate counts these).
    pub fn mouse_point_count(&self) -> usize {
        self.mouse_paths.iter().map(Vec::len).sum()
    }

    /// Number of key events (the typing model's vote gate counts these).
    pub fn key_event_count(&self) -> usize {
        self.key_events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"startTimestamp":183254.5,"endTimestamp":191730.2,
 "keyEvents":[{"code":"KeyT","downTime":184001.3,"upTime":184088.8}],
 "mousePaths":[[{"t":185010.2,"x":512,"y":300},{"t":185026.9,"x":518.5,"y":303}]],
 "clicks":[{"t":186500.4,"x":640,"y":410,"button":0,"duration":96.3}],
 "heartbeatCount":0}"#;

    #[test]
    fn parses_the_spec_example_with_int_and_float_coordinates() {
        let p = Payload::from_json(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(p.start_timestamp, 183254.5);
        assert_eq!(p.key_events[0].code, "KeyT");
        assert_eq!(
            p.mouse_paths[0][0],
            MousePoint {
                t: 185010.2,
                x: 512.0,
                y: 300.0
            }
        );
        assert_eq!(p.mouse_paths[0][1].x, 518.5);
        assert_eq!(p.clicks[0].button, Some(0));
        assert_eq!(p.mouse_point_count(), 2);
        assert_eq!(p.key_event_count(), 1);
    }

    #[test]
    fn empty_lists_and_empty_paths_are_valid() {
        let body = r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":[],"mousePaths":[[],[]],"clicks":[]}"#;
        let p = Payload::from_json(body.as_bytes()).unwrap();
        assert_eq!(p.mouse_paths.len(), 2);
        assert_eq!(p.mouse_point_count(), 0);
    }

    #[test]
    fn click_without_position_or_button_is_accepted() {
        let body = r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":[],"mousePaths":[],
            "clicks":[{"t":5,"duration":80}]}"#;
        let p = Payload::from_json(body.as_bytes()).unwrap();
        assert_eq!(p.clicks[0].duration, 80.0);
        assert_eq!(p.clicks[0].x, None);
    }

    fn schema_message(body: &str) -> String {
        match Payload::from_json(body.as_bytes()) {
            Err(PayloadError::Schema(m)) => m,
            other => panic!("expected a schema error, got {other:?}"),
        }
    }

    #[test]
    fn missing_timestamp_is_a_schema_error_naming_the_field() {
        let m = schema_message(r#"{"endTimestamp":1,"keyEvents":[],"mousePaths":[],"clicks":[]}"#);
        assert!(m.contains("startTimestamp"), "{m}");
    }

    #[test]
    fn missing_list_is_a_schema_error() {
        let m =
            schema_message(r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":[],"clicks":[]}"#);
        assert!(m.contains("mousePaths"), "{m}");
    }

    #[test]
    fn wrong_type_is_reported_with_its_path() {
        let m = schema_message(
            r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":[],"mousePaths":[[{"t":1,"x":"a","y":2}]],"clicks":[]}"#,
        );
        assert!(m.starts_with("mousePaths[0][0].x"), "{m}");
    }

    #[test]
    fn null_number_is_rejected() {
        let m = schema_message(
            r#"{"startTimestamp":null,"endTimestamp":1,"keyEvents":[],"mousePaths":[],"clicks":[]}"#,
        );
        assert!(m.contains("startTimestamp"), "{m}");
    }

    #[test]
    fn nan_literal_and_overflow_are_rejected() {
        let nan =
            r#"{"startTimestamp":NaN,"endTimestamp":1,"keyEvents":[],"mousePaths":[],"clicks":[]}"#;
        assert!(matches!(
            Payload::from_json(nan.as_bytes()),
            Err(PayloadError::Schema(_))
        ));
        let big = r#"{"startTimestamp":1e999,"endTimestamp":1,"keyEvents":[],"mousePaths":[],"clicks":[]}"#;
        assert!(matches!(
            Payload::from_json(big.as_bytes()),
            Err(PayloadError::Schema(_))
        ));
    }

    #[test]
    fn not_json_or_not_an_object_is_a_schema_error() {
        assert!(matches!(
            Payload::from_json(b"garbage"),
            Err(PayloadError::Schema(_))
        ));
        assert!(matches!(
            Payload::from_json(b"[]"),
            Err(PayloadError::Schema(_))
        ));
        assert!(matches!(
            Payload::from_json(b""),
            Err(PayloadError::Schema(_))
        ));
    }

    #[test]
    fn a_click_button_may_be_written_with_a_zero_fraction() {
        let body = |button: &str| {
            format!(
                r#"{{"startTimestamp":0,"endTimestamp":1,"keyEvents":[],"mousePaths":[],"clicks":[{{"t":1,"duration":2,"button":{button}}}]}}"#
            )
        };
        let p = Payload::from_json(body("344.0").as_bytes()).expect("integral float");
        assert_eq!(p.clicks[0].button, Some(344));
        let p = Payload::from_json(body("-2").as_bytes()).expect("integer");
        assert_eq!(p.clicks[0].button, Some(-2));
        for bad in ["0.5", "1e300", "\"1\""] {
            let e = Payload::from_json(body(bad).as_bytes()).expect_err(bad);
            assert!(e.to_string().contains("clicks[0].button"), "{bad}: {e}");
        }
    }

    #[test]
    fn validate_rejects_non_finite_numbers_built_in_code() {
        let mut p = Payload::from_json(EXAMPLE.as_bytes()).unwrap();
        p.mouse_paths[0][1].y = f64::NAN;
        assert_eq!(
            p.validate(),
            Err(PayloadError::NonFinite("mousePaths[0][1].y".into()))
        );
        let mut p = Payload::from_json(EXAMPLE.as_bytes()).unwrap();
        p.clicks[0].x = Some(f64::INFINITY);
        assert_eq!(
            p.validate(),
            Err(PayloadError::NonFinite("clicks[0].x".into()))
        );
        let mut p = Payload::from_json(EXAMPLE.as_bytes()).unwrap();
        p.key_events[0].up_time = f64::NEG_INFINITY;
        assert_eq!(
            p.validate(),
            Err(PayloadError::NonFinite("keyEvents[0].upTime".into()))
        );
    }

    #[test]
    fn round_trips_through_json() {
        let p = Payload::from_json(EXAMPLE.as_bytes()).unwrap();
        let text = serde_json::to_vec(&p).unwrap();
        assert_eq!(Payload::from_json(&text).unwrap(), p);
    }
}
