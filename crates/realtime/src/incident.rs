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
//! changes are written in the same transaction (`vigil_store::streams`). A crash therefore loses no acknowledged part of
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
        let hot =
            r.is_anomaly || (r.calibrated && 100.0 * score_of(r.detector.p_value) > threshold);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};
    use vigil_stream::bench_data::SplitMix;
    use vigil_stream::{Analysis, StreamConfig, StreamState};

    use super::*;

    /// 1,200 events of noise, a 50-event excursion 8σ up, then 300 events of noise; one event a minute.
    fn spike_series() -> Vec<Event> {
        let mut r = SplitMix::new(11);
        let t0 = 1_767_225_600_000_i64;
        (0..1550)
            .map(|i| {
                let level = if (1200..1250).contains(&i) { 8.0 } else { 0.0 };
                let t = DateTime::<Utc>::from_timestamp_millis(t0 + 60_000 * i64::from(i));
                Event::new("s", level + r.normal(), t)
            })
            .collect()
    }

    /// An incident row as an in-memory anomaly log keeps it.
    #[derive(Debug, Clone, PartialEq)]
    struct Logged {
        started_at: i64,
        event_count: i64,
        ended_at: Option<i64>,
        open: bool,
        peak_score: f64,
    }

    /// What a run produced: the log (by incident id), every event's incident id, is_anomaly flags, and notices.
    #[derive(Debug, Default)]
    struct Run {
        log: BTreeMap<String, Logged>,
        ids: Vec<Option<String>>,
        flags: Vec<bool>,
        opened: usize,
        closed: usize,
    }

    impl Run {
        fn apply(&mut self, writes: &[IncidentWrite]) {
            for w in writes {
                match w {
                    IncidentWrite::Insert(r) => {
                        assert!(!self.log.contains_key(&r.id), "inserted twice");
                        self.log.insert(
                            r.id.clone(),
                            Logged {
                                started_at: r.started_at,
                                event_count: r.event_count,
                                ended_at: r.ended_at,
                                open: r.open,
                                peak_score: r.peak.anomaly_score,
                            },
                        );
                    }
                    IncidentWrite::Update {
                        id,
                        event_count,
                        ended_at,
                        open,
                        peak,
                    } => {
                        let row = self.log.get_mut(id).expect("update of a stored row");
                        row.event_count = *event_count;
                        row.ended_at = *ended_at;
                        row.open = *open;
                        if let Some(p) = peak {
                            row.peak_score = p.anomaly_score;
                        }
                    }
                }
            }
        }

        /// The incidents without their random ids, in start order.
        fn shape(&self) -> Vec<Logged> {
            let mut v: Vec<Logged> = self.log.values().cloned().collect();
            v.sort_by_key(|l| l.started_at);
            v
        }
    }

    /// Feeds `events` in batches of `batch` events; with `restart`, the stream's state and tracker go through
    /// their stored form between batches (a new process picking the stream up).
    fn run(events: &[Event], batch: usize, restart: bool) -> Run {
        let cfg = StreamConfig::default();
        let mut state = StreamState::new("s");
        let mut tracker = Tracker::default();
        let mut out = Run::default();
        for chunk in events.chunks(batch) {
            let mut analyses: Vec<Analysis> = chunk
                .iter()
                .map(|e| state.analyse(e, &cfg).expect("analysis"))
                .collect();
            let mut results: Vec<Option<&mut AnalysisResult>> = analyses
                .iter_mut()
                .map(|a| match a {
                    Analysis::Result(r) => Some(&mut **r),
                    Analysis::Buffering(_) => None,
                })
                .collect();
            let b = track(
                &mut tracker,
                "s",
                chunk,
                &mut results,
                cfg.anomaly_threshold,
                cfg.detector.dim as u64,
                1,
            );
            out.apply(&b.writes);
            for n in &b.notices {
                match n {
                    Notice::Opened { row } => {
                        out.opened += 1;
                        assert_eq!(row.event_count, Some(1));
                        assert!(row.incident_open);
                        let analysis = &row.metadata["analysis"];
                        assert_eq!(analysis["incident_id"], row.id.as_str());
                        assert_eq!(analysis["is_anomaly"], true);
                    }
                    Notice::Closed { id } => {
                        out.closed += 1;
                        assert!(!out.log[id].open);
                    }
                }
            }
            for a in &analyses {
                out.ids.push(a.result().and_then(|r| r.incident_id.clone()));
                out.flags.push(a.is_anomaly());
            }
            if restart {
                let parts = state.to_parts().expect("parts");
                state =
                    StreamState::from_parts(&parts.core, parts.model.as_deref(), &parts.segments)
                        .expect("state");
                let json = serde_json::to_string(&tracker).expect("tracker");
                tracker = serde_json::from_str(&json).expect("tracker back");
            }
        }
        out
    }

    #[test]
    fn a_fifty_event_excursion_is_one_incident_opened_and_closed_once() {
        let events = spike_series();
        let r = run(&events, events.len(), false);
        let alarms: Vec<usize> = (0..r.flags.len()).filter(|&i| r.flags[i]).collect();
        assert!(!alarms.is_empty(), "the excursion alarms");
        let incidents = r.shape();
        assert_eq!(incidents.len(), 1, "{incidents:?}; alarms at {alarms:?}");
        assert_eq!((r.opened, r.closed), (1, 1));
        let inc = &incidents[0];
        assert!(!inc.open);
        let t0 = events[0].timestamp.unwrap().timestamp_millis();
        let start = usize::try_from((inc.started_at - t0) / 60_000).unwrap();
        assert!((1200..1220).contains(&start), "starts at event {start}");
        // The excursion's 50 events and the shape horizon after it, at most.
        assert!(
            (1..=50 + 20).contains(&inc.event_count),
            "{} events",
            inc.event_count
        );
        let end = usize::try_from((inc.ended_at.unwrap() - t0) / 60_000).unwrap();
        assert_eq!(end + 1 - start, usize::try_from(inc.event_count).unwrap());
        // Every alarm is inside it and carries its id; nothing before it does.
        let id = r.log.keys().next().unwrap().clone();
        for &i in &alarms {
            assert_eq!(r.ids[i].as_deref(), Some(id.as_str()), "event {i}");
        }
        assert!(r.ids[..start].iter().all(Option::is_none));
        // The close comes `dim` quiet events after the last hot one; later events are in no incident.
        assert!(r.ids[end + 21..].iter().all(Option::is_none));
        assert_eq!(r.ids[end + 20].as_deref(), Some(id.as_str()));
    }

    #[test]
    fn incidents_do_not_depend_on_batching_restarts_or_replays() {
        let events = spike_series();
        let whole = run(&events, events.len(), false);
        let flags_ids = |r: &Run| -> Vec<(bool, bool)> {
            r.flags
                .iter()
                .zip(&r.ids)
                .map(|(f, i)| (*f, i.is_some()))
                .collect()
        };
        for (batch, restart) in [
            (1, false),
            (7, true),
            (50, true),
            (333, false),
            (1550, false),
        ] {
            let other = run(&events, batch, restart);
            assert_eq!(
                other.shape(),
                whole.shape(),
                "batch {batch}, restart {restart}"
            );
            assert_eq!(flags_ids(&other), flags_ids(&whole), "batch {batch}");
            assert_eq!((other.opened, other.closed), (whole.opened, whole.closed));
        }
    }

    #[test]
    fn every_alarm_is_in_an_incident_and_incidents_open_only_at_alarms() {
        let mut r = SplitMix::new(3);
        // Noise with three short bursts; the first events are still buffering.
        let events: Vec<Event> = (0..900)
            .map(|i| {
                let burst = if i % 300 == 250 { 9.0 } else { 0.0 };
                Event::new("s", burst + r.normal(), None)
            })
            .collect();
        let run = run(&events, 64, true);
        assert!(
            run.ids[..10].iter().all(Option::is_none),
            "buffering events"
        );
        assert!(run.opened >= 1, "the bursts alarm: {}", run.opened);
        assert_eq!(run.opened, run.log.len());
        for (i, (flag, id)) in run.flags.iter().zip(&run.ids).enumerate() {
            if *flag {
                assert!(id.is_some(), "alarm {i} outside any incident");
            }
            // An incident's first event is an alarm.
            let opens_here = id.is_some() && (i == 0 || run.ids[i - 1] != *id);
            if opens_here {
                assert!(*flag, "incident opened at a quiet event {i}");
            }
        }
        assert!(run.log.values().all(|l| l.event_count >= 1));
    }
}
