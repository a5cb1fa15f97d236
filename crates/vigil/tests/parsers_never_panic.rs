//! Every parser of client text, fed generated input: none may panic, whatever arrives (the hardening review found a
//! timestamp that did). Each property runs on arbitrary text and on mutations of well-formed input, which reach
//! deeper than random bytes. Filters and WebSocket frames have the same properties next to their private parsers
//! (`vigil-anomalies` `doc.rs`, `vigil-realtime` `ws.rs`).

use proptest::prelude::*;
use serde_json::{Value, json};

/// A real extension payload's shape, small enough to mutate thoroughly.
const PAYLOAD: &str = r#"{"startTimestamp":183254.5,"endTimestamp":191730.2,
 "keyEvents":[{"code":"KeyT","downTime":184001.3,"upTime":184088.8},{"code":"KeyH","downTime":184101.3,"upTime":184180.0}],
 "mousePaths":[[{"t":185010.2,"x":512,"y":300},{"t":185026.9,"x":518,"y":303},{"t":185043.1,"x":530.5,"y":309}]],
 "clicks":[{"t":186500.4,"x":640,"y":410,"button":0,"duration":96.3}],
 "heartbeatCount":0}"#;

/// Arbitrary JSON documents, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|x| json!(x)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("value".to_owned()),
                    Just("stream".to_owned()),
                    Just("source".to_owned()),
                    Just("timestamp".to_owned()),
                    ".{0,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `base` with a few bytes replaced, removed or inserted.
fn mutated(base: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len();
    prop::collection::vec((0..len, any::<u8>(), 0..3_u8), 1..8).prop_map(move |edits| {
        let mut bytes = base.as_bytes().to_vec();
        for (at, byte, kind) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match kind {
                0 => bytes[at] = byte,
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, byte),
            }
            if bytes.is_empty() {
                break;
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn timestamps(raw in prop_oneof![
        any::<String>(),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,9})?)?[Z+ \\-éø中😀0-9:]{0,8}",
    ]) {
        let _ = vigil_anomalies::parse_ts(&raw);
    }

    #[test]
    fn maxidom_payloads(body in prop_oneof![mutated(PAYLOAD), prop::collection::vec(any::<u8>(), 0..256)]) {
        if let Ok(payload) = vigil_biometrics::Payload::from_json(&body) {
            let _ = vigil_biometrics::extract_features(&payload);
        }
    }

    #[test]
    fn stream_events(v in json_value()) {
        let _ = vigil_stream::Event::from_json(&v);
    }

    #[test]
    fn json_bodies(body in prop_oneof![
        mutated(r#"{"username":"ann\u00e9","items":[1,2.5,"x\\u0000"],"ok":true}"#),
        prop::collection::vec(any::<u8>(), 0..128),
    ]) {
        let _ = vigil_http::parse_json::<Value>(&body);
    }
}
