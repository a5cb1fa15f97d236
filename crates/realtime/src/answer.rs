//! How much of each analysis `POST /api/ingest` answers with (`?detail=`; issue #18 item 3).
//!
//! * `full` (the default, the contract's answer): the whole analysis result per event (persistence pairs, a
//!   200-number landscape, threats…: ~5 KB per event).
//! * `compact`: per event `{"stream","anomaly_score","is_anomaly","incident_id"}` (`incident_id` null outside
//!   incidents), plus `"analysis": <the full result>` for the events that are anomalous (`is_anomaly`). A
//!   still-buffering event is `{"stream","status":"buffering","count":n,"anomaly_score":0,"is_anomaly":false,
//!   "incident_id":null}`.
//! * `scores`: `compact` without any `analysis`; the full results stay in the anomaly log (one row per incident,
//!   with its peak's analysis).
//!
//! Each answer is serialised on the analysis thread in the chosen form, so a compact answer also skips the cost of
//! serialising the full results nobody will read. Measured with `cargo run --release -p vigil-realtime --example
//! load -- --one-client …` (figures in ARCHITECTURE.md, "Stream incidents and compact ingest answers").

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use vigil_stream::{Analysis, AnalysisResult};

/// The answer form of `POST /api/ingest`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Detail {
    /// The whole analysis result per event.
    #[default]
    Full,
    /// Stream, score, flag and incident per event; the whole result only for anomalous events.
    Compact,
    /// Stream, score, flag and incident per event; no whole results.
    Scores,
}

/// One event's compact answer.
#[derive(Serialize)]
struct Compact<'a> {
    stream: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<usize>,
    anomaly_score: f64,
    is_anomaly: bool,
    incident_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    analysis: Option<&'a AnalysisResult>,
}

/// `a` (of an event of `stream`) as the answer `detail` asks for.
pub fn to_json(a: &Analysis, stream: &str, detail: Detail) -> serde_json::Result<Box<RawValue>> {
    let compact = match (detail, a) {
        (Detail::Full, _) => return serde_json::value::to_raw_value(a),
        (_, Analysis::Buffering(b)) => Compact {
            stream,
            status: Some("buffering"),
            count: Some(b.count),
            anomaly_score: 0.0,
            is_anomaly: false,
            incident_id: None,
            analysis: None,
        },
        (_, Analysis::Result(r)) => Compact {
            stream: &r.stream,
            status: None,
            count: None,
            anomaly_score: r.anomaly_score,
            is_anomaly: r.is_anomaly,
            incident_id: r.incident_id.as_deref(),
            analysis: (detail == Detail::Compact && r.is_anomaly).then_some(&**r),
        },
    };
    serde_json::value::to_raw_value(&compact)
}
