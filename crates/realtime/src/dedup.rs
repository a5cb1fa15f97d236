//! Idempotent events (issue #18 item 4): a retried batch is a no-op for the events already applied.
//!
//! An event may carry either or both of:
//! * `event_id`: a client-chosen id (a string of 1–128 bytes, or a non-negative integer). An event whose id is
//!   among the last [`ID_WINDOW`] ids its stream applied is a duplicate.
//! * `seq`: a per-source sequence number (a non-negative integer up to 2^53; the source is the stream the event
//!   names with `stream` or `source`). An event whose `seq` is at or below the highest `seq` its stream applied is
//!   a duplicate, so a producer that numbers its events in order can retry any batch, of any size, after any
//!   failure (gaps are allowed; an out-of-order older number counts as already applied).
//!
//! A duplicate is not analysed and changes nothing; its answer (in every `?detail=` form, and on the socket as the
//! `data` of its `analysis` frame) is `{"stream":…,"status":"duplicate","event_id":…,"seq":…}`. A second
//! occurrence within one batch is a duplicate too.
//!
//! What is remembered is part of the stream's state (`stream_states.dedup`, migration 0012): written in the same
//! statement as the state the events produced, so after a crash either both the events' effects and their ids
//! are stored or neither is; and bounded: one number plus at most [`ID_WINDOW`] ids per stream, rewritten only by
//! batches that carried ids or numbers. The id window is what bounds it: a retried batch of more than
//! [`ID_WINDOW`] events identified by `event_id` alone may re-apply its oldest events; `seq` has no such limit.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Ids remembered per stream (the newest ones).
pub const ID_WINDOW: usize = 1_000;
/// Longest `event_id` string, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Largest `seq` (integers up to this are exact in every JSON reader).
pub const MAX_SEQ: u64 = 1 << 53;

/// An event's identity, as its client gave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Key {
    pub id: Option<String>,
    pub seq: Option<u64>,
}

impl Key {
    /// Whether the event carries nothing to deduplicate by.
    pub fn is_empty(&self) -> bool {
        self.id.is_none() && self.seq.is_none()
    }

    /// The answer for a duplicate of this key on `stream`.
    pub fn duplicate_answer(&self, stream: &str) -> Value {
        serde_json::json!({
            "stream": stream,
            "status": "duplicate",
            "event_id": self.id,
            "seq": self.seq,
        })
    }
}

/// Why an event's identity is unusable (answered 422 with the event's position).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("`event_id` must be a string of 1 to 128 bytes or an integer from 0 to 2^53")]
    InvalidId,
    #[error("`seq` must be an integer from 0 to 2^53")]
    InvalidSeq,
}

/// Reads `event_id` and `seq` from an event object (absent or `null`: not given).
pub fn key(event: &Value) -> Result<Key, KeyError> {
    let id = match event.get("event_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => Some(s.clone()),
        // Integers (JSON-safe, as `seq`) are accepted as ids and kept as their decimal text, so `7` and `"7"` are
        // the same id.
        Some(Value::Number(n)) => match whole(n) {
            Some(v) => Some(v.to_string()),
            None => return Err(KeyError::InvalidId),
        },
        Some(_) => return Err(KeyError::InvalidId),
    };
    let seq = match event.get("seq") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match whole(n) {
            Some(s) => Some(s),
            None => return Err(KeyError::InvalidSeq),
        },
        Some(_) => return Err(KeyError::InvalidSeq),
    };
    Ok(Key { id, seq })
}

/// A JSON number that is a whole number from 0 to 2^53, written either way (`104` or `104.0`: JSON does not tell
/// them apart, and neither does JSON Schema's `integer`).
fn whole(n: &serde_json::Number) -> Option<u64> {
    let v = match n.as_u64() {
        Some(v) => v,
        None => {
            let f = n.as_f64()?;
            if f.fract() != 0.0 || !(0.0..=MAX_SEQ as f64).contains(&f) {
                return None;
            }
            // Exact: a whole f64 in [0, 2^53] converts to u64 without loss.
            f as u64
        }
    };
    (v <= MAX_SEQ).then_some(v)
}

/// What a stream remembers of the events it applied.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Seen {
    /// The highest `seq` applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    /// The newest applied ids, oldest first, at most [`ID_WINDOW`].
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    ids: VecDeque<String>,
    /// `ids` as a set, rebuilt after reading.
    #[serde(skip)]
    index: HashSet<String>,
}

impl Seen {
    /// Reads the stored form (`stream_states.dedup`).
    pub fn from_json(text: &str) -> Result<Seen, serde_json::Error> {
        let mut seen: Seen = serde_json::from_str(text)?;
        while seen.ids.len() > ID_WINDOW {
            seen.ids.pop_front();
        }
        seen.index = seen.ids.iter().cloned().collect();
        Ok(seen)
    }

    /// The highest `seq` applied (the NATS ingest path resumes its consumer after it, see `nats`).
    pub fn seq(&self) -> Option<u64> {
        self.seq
    }

    /// The stored form.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Whether an event with `key` was already applied.
    pub fn is_duplicate(&self, key: &Key) -> bool {
        let by_seq = matches!((key.seq, self.seq), (Some(s), Some(high)) if s <= high);
        let by_id = key.id.as_ref().is_some_and(|id| self.index.contains(id));
        by_seq || by_id
    }

    /// Remembers an applied event's key.
    pub fn record(&mut self, key: &Key) {
        if let Some(s) = key.seq {
            self.seq = Some(self.seq.map_or(s, |high| high.max(s)));
        }
        if let Some(id) = &key.id
            && self.index.insert(id.clone())
        {
            self.ids.push_back(id.clone());
            if self.ids.len() > ID_WINDOW
                && let Some(old) = self.ids.pop_front()
            {
                self.index.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn k(id: Option<&str>, seq: Option<u64>) -> Key {
        Key {
            id: id.map(str::to_owned),
            seq,
        }
    }

    #[test]
    fn keys_are_read_and_validated() {
        assert_eq!(key(&json!({"value": 1})), Ok(Key::default()));
        assert_eq!(
            key(&json!({"event_id": "a-1", "seq": 7})),
            Ok(k(Some("a-1"), Some(7)))
        );
        assert_eq!(key(&json!({"event_id": 42})), Ok(k(Some("42"), None)));
        assert_eq!(key(&json!({"event_id": ""})), Err(KeyError::InvalidId));
        assert_eq!(key(&json!({"event_id": -1})), Err(KeyError::InvalidId));
        assert_eq!(
            key(&json!({"event_id": "x".repeat(129)})),
            Err(KeyError::InvalidId)
        );
        assert_eq!(key(&json!({"event_id": [1]})), Err(KeyError::InvalidId));
        assert_eq!(key(&json!({"seq": -1})), Err(KeyError::InvalidSeq));
        assert_eq!(key(&json!({"seq": 1.5})), Err(KeyError::InvalidSeq));
        assert_eq!(key(&json!({"seq": "3"})), Err(KeyError::InvalidSeq));
        assert_eq!(key(&json!({"seq": MAX_SEQ + 1})), Err(KeyError::InvalidSeq));
    }

    /// Integer ids share `seq`'s JSON-safe range, as the API document states.
    #[test]
    fn integer_ids_stop_at_two_to_the_53() {
        assert_eq!(
            key(&json!({"event_id": MAX_SEQ})).map(|k| k.id),
            Ok(Some(MAX_SEQ.to_string()))
        );
        assert_eq!(
            key(&json!({"event_id": MAX_SEQ + 1})),
            Err(KeyError::InvalidId)
        );
        // `104.0` is the integer 104 in JSON: the same id and the same sequence number.
        let k = key(&json!({"event_id": 104.0, "seq": 7.0})).expect("whole numbers");
        assert_eq!((k.id.as_deref(), k.seq), (Some("104"), Some(7)));
        assert_eq!(key(&json!({"seq": 7.5})), Err(KeyError::InvalidSeq));
        assert_eq!(key(&json!({"event_id": -1})), Err(KeyError::InvalidId));
    }

    #[test]
    fn sequence_numbers_keep_a_high_water_mark() {
        let mut seen = Seen::default();
        assert!(!seen.is_duplicate(&k(None, Some(0))));
        seen.record(&k(None, Some(5)));
        assert!(seen.is_duplicate(&k(None, Some(5))));
        assert!(
            seen.is_duplicate(&k(None, Some(2))),
            "older numbers count as applied"
        );
        assert!(!seen.is_duplicate(&k(None, Some(6))));
        // An id alone is not judged by the sequence.
        assert!(!seen.is_duplicate(&k(Some("5"), None)));
    }

    #[test]
    fn ids_are_remembered_within_the_window_and_survive_storage() {
        let mut seen = Seen::default();
        for i in 0..ID_WINDOW + 10 {
            seen.record(&k(Some(&format!("e{i}")), None));
        }
        // The ten oldest fell out of the window; the newest are remembered.
        assert!(!seen.is_duplicate(&k(Some("e9"), None)));
        assert!(seen.is_duplicate(&k(Some("e10"), None)));
        assert!(seen.is_duplicate(&k(Some(&format!("e{}", ID_WINDOW + 9)), None)));
        let stored = seen.to_json().expect("json");
        let back = Seen::from_json(&stored).expect("read back");
        assert_eq!(back.ids.len(), ID_WINDOW);
        assert!(back.is_duplicate(&k(Some("e10"), None)));
        assert!(!back.is_duplicate(&k(Some("e9"), None)));
        // Recording a remembered id again does not duplicate it in the window.
        let mut again = back.clone();
        again.record(&k(Some("e10"), None));
        assert_eq!(again.ids.len(), ID_WINDOW);
    }
}
