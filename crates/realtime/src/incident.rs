//! Incidents: consecutive anomalous events of a stream are one incident, one row of the anomaly log, one webhook
//! when it opens and one when it ends (issue #13).
//!
//! ## When an incident opens, grows and closes
//! * **Opens** at an event whose result has `is_anomaly` (the detector alarmed) while the stream has no open
//!   incident. Its row is inserted with that event as the peak.
//! * **Grows**: every later event belongs to the open incident and carries its `incident_id`. An event is *hot* if
//!   it is anomalous by itself: `is_anomaly`, or — inside the detector's own no-re-alarm horizon, where scores are
//!   capped at 0.5 — an uncapped score (`score_of(detector.p_value)`) above the threshold. Each hot event extends
//!   the incident to it (`event_count` = events from the opening one to the last hot one, the quiet events
//!   between included) and moves `ended_at`'s candidate; the highest `anomaly_score` (the first of equals) is the
//!   peak, whose event, analysis and risk level the row shows.
//! * **Closes** after `detector.dim` consecutive events that are not hot (20 with the defaults). Why `dim`: the
//!   detector judges the shape of the last `dim` values, so an excursion keeps influencing scores until its last
//!   value has left that shape; `dim` quiet events in a row mean the excursion is over, not just pausing. The
//!   closing event still carries the incident id; `ended_at` is the last hot event's time.
//! * A stream that stops receiving events keeps its incident open until its next events (closing needs events).
//!
//! ## Where the state lives
//! The open incident (id, start, peak score, counters) is the tracker ([`Tracker`]), stored as JSON in
//! `stream_states.incident` by the same statement that stores the stream's state, and the anomaly-log rows it
//! changes are written in the same transaction ([`crate::db`]). A crash therefore loses no acknowledged part of
//! an incident, a restart continues the open incident, and two replicas racing on a stream cannot both open one:
//! the loser's state write misses its version and its whole transaction rolls back; the database also refuses a
//! second open row per stream (a unique partial index, migration 0010).
//!
//! The tracker runs on the analysis thread, right after each event's analysis, so each result is serialised once
//! with its `incident_id`. Incident ids are random UUIDs; everything else about an incident (boundaries, counts,
//! peak) follows from the events alone, so a replay of the same events gives the same incidents.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vigil_store::anomalies::Anomaly;
use vigil_store::incidents::{IncidentRow, IncidentWrite, Peak};
use vigil_stream::detector::score_of;
use vigil_stream::{AnalysisResult, Event};

/// A stream's incident tracker: its open incident, if any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tracker {
    pub open: Option<OpenIncident>,
}

/// The open incident of a stream, as the tracker keeps it between batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenIncident {
    pub id: String,
    /// Unix ms of the opening event.
    pub started_at: i64,
    /// Unix ms its row was created.
    pub created_at: i64,
    pub peak_score: f64,
    /// Events from the opening one to the last hot one.
    pub event_count: u64,
    /// Consecutive events since the last hot one.
    pub quiet: u64,
    /// Unix ms of the last hot event.
    pub last_hot_at: i64,
}

/// What a batch did to incidents, for the caller to store (in the state's transaction) and announce (after it).
#[derive(Debug, Default)]
pub struct BatchIncidents {
    /// The row writes, one per incident touched, in the order the incidents opened.
    pub writes: Vec<IncidentWrite>,
    /// Opened and closed incidents, in event order.
    pub notices: Vec<Notice>,
}

/// An incident boundary crossed in a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// The incident opened: its row as first written (`event_count` 1, open, the opening event's analysis).
    Opened { row: Box<Anomaly> },
    /// The incident closed (its final row is read back after the batch is stored).
    Closed { id: String },
}

/// The open incident while a batch runs: what changed since it was stored.
struct Working {
    open: OpenIncident,
    /// Opened in this batch: its row does not exist yet.
    new_row: Option<IncidentRow>,
    /// The peak changed in this batch (stored rows only).
    peak: Option<Peak>,
}

/// Runs a batch's results through the tracker: opens, grows and closes incidents, sets each result's
/// `incident_id`, and returns the row writes and boundary notices. `results[i]` belongs to `events[i]` (`None`:
/// still buffering, which never opens, grows nor closes anything). `threshold` is the one `is_anomaly` was decided
/// with (0–100), `quiet_to_close` the number of quiet events that close an incident (≥ 1), `now_ms` the creation
/// time of rows opened here.
pub fn track(
    tracker: &mut Tracker,
    stream: &str,
    events: &[Event],
    results: &mut [Option<&mut AnalysisResult>],
    threshold: f64,
    quiet_to_close: u64,
    now_ms: i64,
) -> BatchIncidents {
    let quiet_to_close = quiet_to_close.max(1);
    let mut out = BatchIncidents::default();
    let mut work = tracker.open.take().map(|open| Working {
        open,
        new_row: None,
        peak: None,
    });
    for (event, result) in events.iter().zip(results.iter_mut()) {
        let Some(r) = result.as_deref_mut() else {
            continue;
        };
        let ts = event_ms(event, now_ms);
        let hot = r.is_anomaly
            || (r.calibrated && 100.0 * score_of(r.detector.p_value) > threshold);
        match work.as_mut() {
            None => {
                if !r.is_anomaly {
                    continue;
                }
                let id = uuid::Uuid::new_v4().to_string();
                r.incident_id = Some(id.clone());
                let row = IncidentRow {
                    id: id.clone(),
                    source_type: stream.to_owned(),
                    started_at: ts,
                    created_at: now_ms,
                    peak: peak_of(r, event, threshold),
                    event_count: 1,
                    ended_at: None,
                    open: true,
                };
                out.notices.push(Notice::Opened {
                    row: Box::new(row.to_anomaly()),
                });
                work = Some(Working {
                    open: OpenIncident {
                        id,
                        started_at: ts,
                        created_at: now_ms,
                        peak_score: r.anomaly_score,
                        event_count: 1,
                        quiet: 0,
                        last_hot_at: ts,
                    },
                    new_row: Some(row),
                    peak: None,
                });
            }
            Some(w) => {
                r.incident_id = Some(w.open.id.clone());
                if hot {
                    w.open.event_count += w.open.quiet + 1;
                    w.open.quiet = 0;
                    w.open.last_hot_at = ts;
                } else {
                    w.open.quiet += 1;
                }
                if r.anomaly_score > w.open.peak_score {
                    w.open.peak_score = r.anomaly_score;
                    let p = peak_of(r, event, threshold);
                    match w.new_row.as_mut() {
                        Some(row) => row.peak = p,
                        None => w.peak = Some(p),
                    }
                }
                if w.open.quiet >= quiet_to_close
                    && let Some(w) = work.take()
                {
                    out.notices.push(Notice::Closed {
                        id: w.open.id.clone(),
                    });
                    out.writes.push(flush(w, false));
                }
            }
        }
    }
    if let Some(w) = work {
        tracker.open = Some(w.open.clone());
        out.writes.push(flush(w, true));
    }
    out
}

/// The row write that brings an incident's row to the working state.
fn flush(w: Working, open: bool) -> IncidentWrite {
    let event_count = i64::try_from(w.open.event_count).unwrap_or(i64::MAX);
    let ended_at = (!open).then_some(w.open.last_hot_at);
    match w.new_row {
        Some(mut row) => {
            row.event_count = event_count;
            row.ended_at = ended_at;
            row.open = open;
            IncidentWrite::Insert(row)
        }
        None => IncidentWrite::Update {
            id: w.open.id,
            event_count,
            ended_at,
            open,
            peak: w.peak,
        },
    }
}

/// The row fields of a peak event.
fn peak_of(r: &AnalysisResult, event: &Event, threshold: f64) -> Peak {
    let analysis = serde_json::to_value(r).unwrap_or_else(|e| {
        tracing::error!(error = %e, "analysis did not serialise for the anomaly log");
        Value::Null
    });
    Peak {
        event_data: event.raw.clone(),
        betti: [r.betti_numbers.h0, r.betti_numbers.h1, r.betti_numbers.h2]
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
        anomaly_score: r.anomaly_score,
        risk_level: r.security_analysis.risk_level.as_str().to_owned(),
        entropy: Some(r.topology_features.entropy),
        metadata: json!({"analysis": analysis, "anomaly_threshold": threshold}),
    }
}

/// An event's time for the log: its own timestamp, else when the server received it, else `now_ms`.
fn event_ms(e: &Event, now_ms: i64) -> i64 {
    e.timestamp
        .or(e.received_at)
        .map_or(now_ms, |t| t.timestamp_millis())
}
