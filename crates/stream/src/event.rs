//! Parsing of incoming events.
//!
//! An event is any JSON object. Only three things in it matter to the analysis:
//!
//! * `value` — the signal. A JSON number is taken as is; a string that parses as a finite decimal number
//!   (`"3.5"`, `" 1e3 "`) is accepted too, because feeds that proxy CSV or query strings send numbers as
//!   strings and rejecting them would lose data silently at the client. A missing or `null` value is 0,
//!   as the contract says. Anything else (booleans, arrays, objects, non-numeric strings, non-finite
//!   numbers, magnitudes above [`MAX_ABS_VALUE`]) is rejected with an [`EventError`] rather than guessed at.
//! * `timestamp` — optional. An RFC 3339 / ISO 8601 string (`2026-01-12T08:00:00Z`, with or without an
//!   offset or fractional seconds; a string without an offset is taken as UTC) or a number of seconds
//!   since the Unix epoch. An unparseable timestamp is an error: a wrong time would silently corrupt the
//!   event-rate evidence.
//! * `stream`, else `source` — the stream key (default `"default"`). It must be a non-empty string of at
//!   most [`MAX_STREAM_NAME`] bytes.
//!
//! The whole object is kept (`raw`) so the HTTP layer can echo it back as `original_event`.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use thiserror::Error;

/// Largest accepted |value|. Values are squared while standardising; keeping them below 1e100 keeps every
/// intermediate finite without needing per-operation overflow checks.
pub const MAX_ABS_VALUE: f64 = 1e100;
/// Longest accepted stream name in bytes (it becomes a database key and a metrics label).
pub const MAX_STREAM_NAME: usize = 128;
/// Name of the stream used when an event names none.
pub const DEFAULT_STREAM: &str = "default";

/// Why an event was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventError {
    #[error("an event must be a JSON object")]
    NotAnObject,
    #[error("`value` must be a number or a numeric string")]
    InvalidValue,
    #[error("`value` must be finite with magnitude at most 1e100")]
    ValueOutOfRange,
    #[error("`timestamp` must be an ISO 8601 string or epoch seconds")]
    InvalidTimestamp,
    #[error("`stream`/`source` must be a non-empty string of at most 128 bytes")]
    InvalidStream,
}

/// One parsed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The signal value.
    pub value: f64,
    /// The client's timestamp, if it sent one. Only client timestamps feed the event-rate evidence.
    pub timestamp: Option<DateTime<Utc>>,
    /// When the server received the event. The analysis never reads a clock (it is deterministic); the
    /// HTTP layer sets this so results of events without a client timestamp still carry a real time.
    pub received_at: Option<DateTime<Utc>>,
    /// The stream key.
    pub stream: String,
    /// The original JSON object.
    pub raw: Value,
}

impl Event {
    /// Parses an event from a JSON value (see the module doc for the accepted shapes).
    pub fn from_json(v: &Value) -> Result<Self, EventError> {
        let obj = v.as_object().ok_or(EventError::NotAnObject)?;
        let value = match obj.get("value") {
            None | Some(Value::Null) => 0.0,
            Some(Value::Number(n)) => n.as_f64().ok_or(EventError::InvalidValue)?,
            Some(Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| EventError::InvalidValue)?,
            Some(_) => return Err(EventError::InvalidValue),
        };
        if !value.is_finite() || value.abs() > MAX_ABS_VALUE {
            return Err(EventError::ValueOutOfRange);
        }
        let timestamp = match obj.get("timestamp") {
            None | Some(Value::Null) => None,
            Some(t) => Some(parse_timestamp(t)?),
        };
        let stream = match obj.get("stream").or_else(|| obj.get("source")) {
            None | Some(Value::Null) => DEFAULT_STREAM.to_owned(),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_STREAM_NAME => s.clone(),
            Some(_) => return Err(EventError::InvalidStream),
        };
        Ok(Self {
            value,
            timestamp,
            received_at: None,
            stream,
            raw: v.clone(),
        })
    }

    /// A bare event for `value` on `stream` (tests, benchmarks, generators).
    pub fn new(stream: &str, value: f64, timestamp: Option<DateTime<Utc>>) -> Self {
        let mut raw = serde_json::Map::new();
        raw.insert("value".into(), serde_json::json!(value));
        raw.insert("stream".into(), Value::String(stream.to_owned()));
        if let Some(t) = timestamp {
            raw.insert("timestamp".into(), Value::String(t.to_rfc3339()));
        }
        Self {
            value,
            timestamp,
            received_at: None,
            stream: stream.to_owned(),
            raw: Value::Object(raw),
        }
    }

    /// Sets the server receive time (builder style).
    pub fn received(mut self, at: DateTime<Utc>) -> Self {
        self.received_at = Some(at);
        self
    }
}

fn parse_timestamp(t: &Value) -> Result<DateTime<Utc>, EventError> {
    match t {
        Value::String(s) => {
            let s = s.trim();
            if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
                return Ok(dt.with_timezone(&Utc));
            }
            // ISO strings without an offset (Python's `datetime.isoformat()` of a naive time) are UTC.
            for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
                if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
                    return Ok(n.and_utc());
                }
            }
            Err(EventError::InvalidTimestamp)
        }
        Value::Number(n) => {
            let secs = n.as_f64().ok_or(EventError::InvalidTimestamp)?;
            // Bound to ±10^11 s (about ±3000 years) so the millisecond conversion cannot overflow.
            if !secs.is_finite() || secs.abs() > 1e11 {
                return Err(EventError::InvalidTimestamp);
            }
            let ms = (secs * 1000.0).round() as i64;
            DateTime::from_timestamp_millis(ms).ok_or(EventError::InvalidTimestamp)
        }
        _ => Err(EventError::InvalidTimestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_apply() {
        let e = Event::from_json(&json!({})).unwrap();
        assert_eq!(e.value, 0.0);
        assert_eq!(e.stream, "default");
        assert!(e.timestamp.is_none());
    }

    #[test]
    fn value_forms() {
        assert_eq!(Event::from_json(&json!({"value": 2.5})).unwrap().value, 2.5);
        assert_eq!(Event::from_json(&json!({"value": -3})).unwrap().value, -3.0);
        assert_eq!(
            Event::from_json(&json!({"value": " 1e3 "})).unwrap().value,
            1000.0
        );
        assert_eq!(
            Event::from_json(&json!({"value": null})).unwrap().value,
            0.0
        );
        assert_eq!(
            Event::from_json(&json!({"value": "abc"})),
            Err(EventError::InvalidValue)
        );
        assert_eq!(
            Event::from_json(&json!({"value": true})),
            Err(EventError::InvalidValue)
        );
        assert_eq!(
            Event::from_json(&json!({"value": [1]})),
            Err(EventError::InvalidValue)
        );
        assert_eq!(
            Event::from_json(&json!({"value": "inf"})),
            Err(EventError::ValueOutOfRange)
        );
        assert_eq!(
            Event::from_json(&json!({"value": "NaN"})),
            Err(EventError::ValueOutOfRange)
        );
        assert_eq!(
            Event::from_json(&json!({"value": 1e200})),
            Err(EventError::ValueOutOfRange)
        );
    }

    #[test]
    fn not_an_object() {
        assert_eq!(
            Event::from_json(&json!([1, 2])),
            Err(EventError::NotAnObject)
        );
        assert_eq!(Event::from_json(&json!(3)), Err(EventError::NotAnObject));
    }

    #[test]
    fn stream_selection() {
        assert_eq!(
            Event::from_json(&json!({"source": "a"})).unwrap().stream,
            "a"
        );
        assert_eq!(
            Event::from_json(&json!({"source": "a", "stream": "b"}))
                .unwrap()
                .stream,
            "b"
        );
        assert_eq!(
            Event::from_json(&json!({"stream": ""})),
            Err(EventError::InvalidStream)
        );
        assert_eq!(
            Event::from_json(&json!({"stream": 5})),
            Err(EventError::InvalidStream)
        );
        let long = "x".repeat(MAX_STREAM_NAME + 1);
        assert_eq!(
            Event::from_json(&json!({"stream": long})),
            Err(EventError::InvalidStream)
        );
    }

    #[test]
    fn timestamps() {
        let e = Event::from_json(&json!({"timestamp": "2026-01-12T08:00:00Z"})).unwrap();
        assert_eq!(
            e.timestamp.unwrap().to_rfc3339(),
            "2026-01-12T08:00:00+00:00"
        );
        let e = Event::from_json(&json!({"timestamp": "2026-01-12T09:00:00.5+01:00"})).unwrap();
        assert_eq!(e.timestamp.unwrap().timestamp_millis() % 1000, 500);
        let e = Event::from_json(&json!({"timestamp": "2026-01-12T08:00:00.250"})).unwrap();
        assert!(e.timestamp.is_some());
        let e = Event::from_json(&json!({"timestamp": 1_700_000_000.5})).unwrap();
        assert_eq!(e.timestamp.unwrap().timestamp_millis(), 1_700_000_000_500);
        assert_eq!(
            Event::from_json(&json!({"timestamp": "yesterday"})),
            Err(EventError::InvalidTimestamp)
        );
        assert_eq!(
            Event::from_json(&json!({"timestamp": 1e300})),
            Err(EventError::InvalidTimestamp)
        );
        assert_eq!(
            Event::from_json(&json!({"timestamp": {}})),
            Err(EventError::InvalidTimestamp)
        );
    }

    #[test]
    fn raw_is_kept() {
        let v = json!({"value": 1, "extra": {"k": [1, 2]}});
        assert_eq!(Event::from_json(&v).unwrap().raw, v);
    }
}
