//! A JetStream message → the events it carries, each with the identity that makes its re-delivery a no-op.
//!
//! A message on `<prefix>.<stream>` holds one event object (as one element of `POST /api/ingest`) or an array of
//! them. Each event's `seq` is set to `stream_sequence × SEQ_STRIDE + index` (a producer's own `seq` is
//! replaced; its `event_id` is kept and judged as on `POST /api/ingest`): JetStream's stream sequence grows with
//! every message, so within one Vigil stream these numbers grow in delivery order and the pipeline's high-water
//! mark ([`crate::dedup`]) drops a message that was already applied, whole, in the state's own transaction.

use serde_json::Value;
use vigil_stream::Event;

use crate::pipeline::parse_event;

/// Events one message may carry; also the factor between a message's stream sequence and its events' `seq`.
pub const SEQ_STRIDE: u64 = 10_000;

/// Why a message is not applied (it is terminated, counted and logged; the stream goes on).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Malformed {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("neither an event object nor an array of them")]
    NotEvents,
    #[error("an empty array")]
    Empty,
    #[error("{0} events in one message; at most {SEQ_STRIDE}")]
    TooMany(usize),
    #[error("event {index} names stream {named:?}, but was published to stream {subject:?}")]
    OtherStream {
        index: usize,
        named: String,
        subject: String,
    },
    #[error("{0}")]
    Event(String),
    #[error("stream sequence {0} is beyond what event sequence numbers can express")]
    SequenceTooLarge(u64),
}

/// The Vigil stream a subject publishes to: everything after `<prefix>.` (so a stream name may contain dots).
pub fn stream_of<'a>(prefix: &str, subject: &'a str) -> Option<&'a str> {
    subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .filter(|s| !s.is_empty())
}

/// The events of the message with JetStream stream sequence `sequence`, published to Vigil stream `stream`.
/// An event naming another stream (in `stream`, or in `source` without `stream`) makes the whole message
/// malformed: applying it elsewhere would bypass that stream's owner and order.
pub fn events(stream: &str, sequence: u64, payload: &[u8]) -> Result<Vec<Event>, Malformed> {
    let body: Value =
        serde_json::from_slice(payload).map_err(|e| Malformed::Json(e.to_string()))?;
    let (items, single) = match body {
        Value::Array(items) => (items, false),
        v @ Value::Object(_) => (vec![v], true),
        _ => return Err(Malformed::NotEvents),
    };
    if items.is_empty() {
        return Err(Malformed::Empty);
    }
    if items.len() as u64 > SEQ_STRIDE {
        return Err(Malformed::TooMany(items.len()));
    }
    let base = sequence
        .checked_mul(SEQ_STRIDE)
        .filter(|b| b + SEQ_STRIDE <= crate::dedup::MAX_SEQ)
        .ok_or(Malformed::SequenceTooLarge(sequence))?;
    items
        .into_iter()
        .enumerate()
        .map(|(index, mut item)| {
            let Some(obj) = item.as_object_mut() else {
                return Err(Malformed::NotEvents);
            };
            let named = match obj.get("stream") {
                None | Some(Value::Null) => obj.get("source"),
                s => s,
            };
            match named {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s == stream => {}
                Some(other) => {
                    return Err(Malformed::OtherStream {
                        index,
                        named: other
                            .as_str()
                            .map_or_else(|| other.to_string(), str::to_owned),
                        subject: stream.to_owned(),
                    });
                }
            }
            obj.insert("stream".into(), Value::String(stream.to_owned()));
            obj.insert("seq".into(), Value::from(base + index as u64));
            parse_event(&item, (!single).then_some(index))
                .map_err(|e| Malformed::Event(e.to_string()))
        })
        .collect()
}

/// The JetStream sequence of the last message applied to a stream, from its stored high-water mark.
pub fn last_applied(seq: Option<u64>) -> Option<u64> {
    seq.map(|s| s / SEQ_STRIDE)
}

/// The durable consumer's name for a Vigil stream: deterministic (every replica binds the same one), only
/// characters JetStream allows in a name and a file name, unique by a hash of the whole stream name.
pub fn durable_name(stream: &str) -> String {
    let readable: String = stream
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("vigil-{readable}-{:016x}", fnv1a(stream.as_bytes()))
}

/// The order in which replica `owner` tries free streams: its own, so replicas starting together spread out.
pub fn order_key(owner: &str, stream: &str) -> u64 {
    fnv1a(format!("{owner}\0{stream}").as_bytes())
}

/// FNV-1a, 64 bits: stable across processes and Rust versions (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seq_of(e: &Event) -> Option<u64> {
        crate::dedup::key(&e.raw).expect("key").seq
    }

    #[test]
    fn a_message_gives_its_events_the_subject_stream_and_increasing_numbers() {
        let one = events("cpu", 7, br#"{"value": 1.5}"#).expect("one");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].stream, "cpu");
        assert_eq!(seq_of(&one[0]), Some(7 * SEQ_STRIDE));
        let body =
            json!([{"value": 1, "seq": 999_999}, {"value": 2, "stream": "cpu", "event_id": "x"}]);
        let many = events("cpu", 8, body.to_string().as_bytes()).expect("array");
        assert_eq!(
            many.iter().map(seq_of).collect::<Vec<_>>(),
            vec![Some(8 * SEQ_STRIDE), Some(8 * SEQ_STRIDE + 1)],
            "a producer's seq is replaced"
        );
        assert_eq!(
            crate::dedup::key(&many[1].raw).expect("key").id.as_deref(),
            Some("x")
        );
        assert_eq!(last_applied(seq_of(&many[1])), Some(8));
        assert_eq!(last_applied(None), None);
    }

    #[test]
    fn malformed_messages_are_named() {
        assert!(matches!(events("s", 1, b"{nope"), Err(Malformed::Json(_))));
        assert_eq!(events("s", 1, b"3"), Err(Malformed::NotEvents));
        assert_eq!(events("s", 1, b"[1]"), Err(Malformed::NotEvents));
        assert_eq!(events("s", 1, b"[]"), Err(Malformed::Empty));
        assert!(matches!(
            events("s", 1, br#"{"value": "abc"}"#),
            Err(Malformed::Event(_))
        ));
        assert!(matches!(
            events("s", 1, br#"[{"value": 1}, {"value": 1, "event_id": ""}]"#),
            Err(Malformed::Event(d)) if d.starts_with("event 1")
        ));
        assert_eq!(
            events("s", 1, br#"{"stream": "t"}"#),
            Err(Malformed::OtherStream {
                index: 0,
                named: "t".into(),
                subject: "s".into()
            })
        );
        assert!(matches!(
            events("s", 1, br#"{"source": "t"}"#),
            Err(Malformed::OtherStream { .. })
        ));
        assert!(events("s", 1, br#"{"source": "s"}"#).is_ok());
        let too_many = format!("[{}]", vec!["{}"; SEQ_STRIDE as usize + 1].join(","));
        assert_eq!(
            events("s", 1, too_many.as_bytes()),
            Err(Malformed::TooMany(SEQ_STRIDE as usize + 1))
        );
        assert_eq!(
            events("s", u64::MAX / 2, b"{}"),
            Err(Malformed::SequenceTooLarge(u64::MAX / 2))
        );
    }

    #[test]
    fn subjects_name_streams() {
        assert_eq!(stream_of("vigil.events", "vigil.events.cpu"), Some("cpu"));
        assert_eq!(stream_of("vigil.events", "vigil.events.a.b"), Some("a.b"));
        assert_eq!(stream_of("vigil.events", "vigil.events."), None);
        assert_eq!(stream_of("vigil.events", "vigil.eventsx.cpu"), None);
    }

    #[test]
    fn durable_names_are_safe_stable_and_distinct() {
        let a = durable_name("host-1.cpu load");
        assert!(a.starts_with("vigil-host-1_cpu_load-"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(a, durable_name("host-1.cpu load"));
        assert_ne!(durable_name("a.b"), durable_name("a_b"));
        assert!(durable_name(&"x".repeat(128)).len() < 70);
    }
}
