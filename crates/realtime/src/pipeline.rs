//! The pipeline: events in, analysed on their streams' states (cached here, stored in the database), incidents
//! tracked, outcomes out.
//!
//! Consistency across replicas: each replica caches a stream's [`StreamState`] together with the database
//! `version` it corresponds to. A batch of a stream's events is computed on the cached state and written back with
//! `UPDATE … WHERE version = <cached>`. If another replica wrote in between, the write misses: the cache is dropped,
//! the state re-read, and the batch recomputed before anything is answered — so every answer corresponds to a
//! state that was durably stored, and no replica ever builds on a stale window. Within a replica a per-stream async
//! mutex serialises batches of the same stream (different streams run in parallel on the blocking pool). A batch
//! that loses the race once retries in locked turns across replicas ([`streams::StreamLock`]: the row read
//! `FOR UPDATE` and written in one transaction), so contention costs a wait, not a 503 (`contended_replicas_wait_instead_of_failing`: 8 writers on 2 replicas,
//! 160 batches: 13 answered 503 before, none now; 1.2 s → 1.7 s for all of them).
//!
//! Persistence is write-through per batch, deliberately not coalesced over time. A write-behind cache (answer now,
//! flush the state every few milliseconds) would answer from states nobody stored: a crash would lose events that
//! were already acknowledged, and another replica reading the row before the flush would build on a stale window —
//! the delayed write would then conflict *after* both replicas had answered, so clients would have been told two
//! different stories about one stream. Making that safe needs stream ownership (leases, hand-over on failure), a
//! different design. What is coalesced is everything one request holds: an `/api/ingest` array is one write per
//! stream however many events it carries (clients after throughput batch), and the model column is rewritten
//! only when the model was refitted. A WebSocket event is its own batch and pays one small `UPDATE` (the state
//! without its model) — the price of answering only from stored states.
//!
//! Work placement: the analysis, and the JSON of each result, run on the blocking pool ([`Outcome::json`]), so
//! the async threads that read sockets only copy bytes; a megabyte-sized ingest answer never stalls a socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;

use crate::answer::{self, Detail};
use crate::bulk::BulkPool;
use crate::db::{self as streams, Saved, Write};
use crate::hub::Shared;
use crate::incident::{self, Notice, Tracker};
use crate::watch::{self, Watchers};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::Mutex;
use vigil_http::{AppState, Error};
use vigil_stream::{Analysis, Event, StreamConfig, StreamState};

/// Parses one event (with the server's receive time), naming its position in a batch on error.
pub(crate) fn parse_event(v: &Value, index: Option<usize>) -> Result<Event, Error> {
    let e = Event::from_json(v).map_err(|e| match index {
        Some(i) => Error::unprocessable(format!("event {i}: {e}")),
        None => Error::unprocessable(e.to_string()),
    })?;
    Ok(e.received(chrono::Utc::now()))
}

/// How often a batch is computed before giving up with 503: once optimistically, then in locked turns
/// ([`streams::StreamLock`]), whose write cannot miss on PostgreSQL once the row exists (the last attempts cover a
/// stream whose first row two writers insert at once).
const MAX_ATTEMPTS: usize = 4;

/// A stream as this replica last saw it in the database.
#[derive(Default)]
struct Slot {
    cached: Option<Cached>,
}

struct Cached {
    state: StreamState,
    /// Database version `state` corresponds to (`None`: no row yet).
    version: Option<i64>,
    /// Model generation stored in the database.
    stored_generation: i64,
    config: StreamConfig,
    /// The stream's open incident, as stored with `state`.
    incidents: Tracker,
}

/// The per-stream caches of this process.
pub struct Pipeline {
    slots: StdMutex<HashMap<String, Arc<Mutex<Slot>>>>,
    max_cached: usize,
    bulk: BulkPool,
    /// The per-stream analysis feeds (`GET /api/realtime/stream?stream=`).
    watchers: Watchers,
}

/// One analysed event.
pub struct Outcome {
    pub event: Event,
    pub analysis: Analysis,
    /// `analysis` as JSON in the requested [`Detail`] form (the whole result unless an ingest asked for less),
    /// serialised on the blocking pool with the analysis itself, so the async threads only copy it into replies
    /// (a 100-event batch answers with about a megabyte in full).
    pub json: Box<RawValue>,
    /// The threshold `is_anomaly` was decided with.
    pub threshold: f64,
}

/// One stream's stored batch: its outcomes tagged with their input positions, and the incidents it opened or
/// closed (committed with it).
pub struct StreamBatch {
    pub outcomes: Vec<(usize, Outcome)>,
    pub notices: Vec<Notice>,
}

/// Where an analysis runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// `POST /api/ingest` batches and frames a socket pipelined: the `SCHED_IDLE` bulk threads (see `bulk.rs`).
    Bulk,
    /// One WebSocket event, whose sender waits: tokio's blocking pool at normal priority, ahead of bulk work.
    Interactive,
}

impl Pipeline {
    /// `bulk_threads` analyse [`Lane::Bulk`] work (0: one per core).
    pub fn new(max_cached: usize, bulk_threads: usize) -> Self {
        Self::with_watch_queue(max_cached, bulk_threads, 1024)
    }

    /// [`new`](Self::new), with `watch_queue` analyses per per-stream feed (see [`crate::watch`]).
    pub fn with_watch_queue(max_cached: usize, bulk_threads: usize, watch_queue: usize) -> Self {
        Pipeline {
            slots: StdMutex::new(HashMap::new()),
            max_cached: max_cached.max(1),
            bulk: BulkPool::new(bulk_threads),
            watchers: Watchers::new(watch_queue),
        }
    }

    /// The per-stream analysis feeds.
    pub fn watchers(&self) -> &Watchers {
        &self.watchers
    }

    fn slot(&self, stream: &str) -> Arc<Mutex<Slot>> {
        let mut slots = match self.slots.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(s) = slots.get(stream) {
            return s.clone();
        }
        if slots.len() >= self.max_cached {
            // Forget streams nobody is using right now; they reload from the database when they return.
            slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let s = Arc::new(Mutex::new(Slot::default()));
        slots.insert(stream.to_owned(), s.clone());
        s
    }

    /// Number of streams cached in this process.
    pub fn cached_streams(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Analyses `events` (any mix of streams) in order per stream and returns one outcome per event, in input
    /// order. `threshold` overrides the streams' own `anomaly_threshold` (a WebSocket's per-socket threshold).
    /// Fails if any stream's batch failed (the other streams' batches are stored all the same). The incidents the
    /// batches opened or closed are stored with them; see [`Self::process_incidents`] to announce them.
    pub async fn process(
        &self,
        app: &AppState,
        events: Vec<Event>,
        threshold: Option<f64>,
        lane: Lane,
    ) -> Result<Vec<Outcome>, Error> {
        self.process_incidents(app, events, threshold, lane, Detail::Full)
            .await
            .0
    }

    /// [`process`](Self::process), also returning the incident boundaries the stored batches crossed (in each
    /// stream's event order), for the caller to broadcast and alert on — also when another stream's batch
    /// failed, since the stored ones' incident rows are committed. Each outcome's `json` is in the `detail` form.
    pub async fn process_incidents(
        &self,
        app: &AppState,
        events: Vec<Event>,
        threshold: Option<f64>,
        lane: Lane,
        detail: Detail,
    ) -> (Result<Vec<Outcome>, Error>, Vec<Notice>) {
        let mut out = Vec::with_capacity(events.len());
        let mut notices = Vec::new();
        let mut failed = None;
        for (_, result) in self.run_streams(app, events, threshold, lane, detail).await {
            match result {
                Ok(b) => {
                    out.extend(b.outcomes);
                    notices.extend(b.notices);
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return (Err(e), notices);
        }
        out.sort_unstable_by_key(|(i, _)| *i);
        (Ok(out.into_iter().map(|(_, o)| o).collect()), notices)
    }

    /// [`process`](Self::process), answering each event on its own: its outcome, or the error of its stream's
    /// batch (which stored nothing). A failing stream does not hide that the others' events were analysed and
    /// stored, so a caller answering per event (the WebSocket) never reports a stored event as failed. Also
    /// returns the stored batches' incident boundaries.
    pub async fn process_each(
        &self,
        app: &AppState,
        events: Vec<Event>,
        threshold: Option<f64>,
        lane: Lane,
    ) -> (Vec<Result<Outcome, String>>, Vec<Notice>) {
        let mut out: Vec<(usize, Result<Outcome, String>)> = Vec::with_capacity(events.len());
        let mut notices = Vec::new();
        for (indices, result) in self
            .run_streams(app, events, threshold, lane, Detail::Full)
            .await
        {
            match result {
                Ok(b) => {
                    out.extend(b.outcomes.into_iter().map(|(i, o)| (i, Ok(o))));
                    notices.extend(b.notices);
                }
                Err(e) => {
                    let detail = e.to_string();
                    out.extend(indices.into_iter().map(|i| (i, Err(detail.clone()))));
                }
            }
        }
        out.sort_unstable_by_key(|(i, _)| *i);
        (out.into_iter().map(|(_, r)| r).collect(), notices)
    }

    /// Runs each stream's events as one batch, the streams in parallel; per stream, the input positions of its
    /// events and the outcomes (tagged with those positions) or the batch's error.
    async fn run_streams(
        &self,
        app: &AppState,
        events: Vec<Event>,
        threshold: Option<f64>,
        lane: Lane,
        detail: Detail,
    ) -> Vec<(Vec<usize>, StreamRun)> {
        let mut groups: Vec<(String, Vec<(usize, Event)>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, e) in events.into_iter().enumerate() {
            let g = *index.entry(e.stream.clone()).or_insert_with(|| {
                groups.push((e.stream.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push((i, e));
        }
        let runs = groups.into_iter().map(|(stream, evs)| async move {
            let indices: Vec<usize> = evs.iter().map(|(i, _)| *i).collect();
            let result = self
                .process_stream(app, stream, evs, threshold, lane, detail)
                .await;
            (indices, result)
        });
        futures_util::future::join_all(runs).await
    }

    async fn process_stream(
        &self,
        app: &AppState,
        stream: String,
        events: Vec<(usize, Event)>,
        threshold: Option<f64>,
        lane: Lane,
        detail: Detail,
    ) -> StreamRun {
        let slot = self.slot(&stream);
        let mut slot = slot.lock().await;
        let (indices, mut batch): (Vec<usize>, Vec<Event>) = events.into_iter().unzip();
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_when_dropped = CancelOnDrop(cancelled.clone());
        // After a lost race every attempt is a locked turn: it reads the row under the lock and writes it.
        let mut contended = false;
        for attempt in 0..MAX_ATTEMPTS {
            let mut lock = None;
            let cached = if contended {
                slot.cached = None;
                let mut l = streams::lock(&app.store, &stream).await?;
                let row = l.load(&app.store).await?;
                lock = Some(l);
                cached_from(&stream, row)
            } else {
                match slot.cached.take() {
                    Some(c) => c,
                    None => load(app, &stream).await?,
                }
            };
            let mut cfg = cached.config.clone();
            if let Some(t) = threshold {
                cfg.anomaly_threshold = t;
            }
            let Cached {
                state,
                version,
                stored_generation,
                config,
                incidents,
            } = cached;
            // The events travel to the blocking pool and back (a lost race recomputes them) instead of being cloned.
            let flag = cancelled.clone();
            // Asked per attempt: the feed's messages are built on the analysis thread only when someone watches.
            let watched = self.watchers.is_watched(&stream);
            let job = move || {
                let computed = compute(
                    state,
                    incidents,
                    &batch,
                    &cfg,
                    stored_generation,
                    &flag,
                    Wanted { detail, watched },
                );
                (computed, batch)
            };
            let (computed, events) = match lane {
                Lane::Bulk => self.bulk.run(job).await?,
                Lane::Interactive => tokio::task::spawn_blocking(job)
                    .await
                    .map_err(|e| Error::internal(format!("analysis task failed: {e}")))?,
            };
            batch = events;
            let Computed {
                state,
                analyses,
                parts,
                incidents,
                tracker_json,
                batch_incidents,
                watch,
            } = computed?;
            let model_changed =
                i64::try_from(parts.model_generation).unwrap_or(i64::MAX) != stored_generation;
            let model = match (&parts.model, model_changed) {
                (Some(m), true) => Some((
                    m.as_slice(),
                    i64::try_from(parts.model_generation).unwrap_or(i64::MAX),
                )),
                _ => None,
            };
            let write = Write {
                stream: &stream,
                expected_version: version,
                state: &parts.core,
                model,
                incident: tracker_json.as_deref(),
                incidents: &batch_incidents.writes,
            };
            let saved = match lock {
                Some(l) => l.save(&app.store, write).await?,
                None => streams::save(&app.store, write).await?,
            };
            match saved {
                Saved::Ok(v) => {
                    // Published under the stream's lock, so watchers see batches in the order they were stored.
                    if !watch.is_empty() {
                        self.watchers.publish(&stream, watch);
                    }
                    let generation = model.map_or(stored_generation, |m| m.1);
                    slot.cached = Some(Cached {
                        state,
                        version: Some(v),
                        stored_generation: generation,
                        config,
                        incidents,
                    });
                    let thr = threshold.unwrap_or(
                        slot.cached
                            .as_ref()
                            .map_or(StreamConfig::default().anomaly_threshold, |c| {
                                c.config.anomaly_threshold
                            }),
                    );
                    let outcomes = indices
                        .into_iter()
                        .zip(batch)
                        .zip(analyses)
                        .map(|((i, event), (analysis, json))| {
                            (
                                i,
                                Outcome {
                                    event,
                                    analysis,
                                    json,
                                    threshold: thr,
                                },
                            )
                        })
                        .collect();
                    return Ok(StreamBatch {
                        outcomes,
                        notices: batch_incidents.notices,
                    });
                }
                Saved::Conflict => {
                    metrics::counter!("topoforge_state_conflicts_total").increment(1);
                    tracing::debug!(%stream, attempt, "stream state changed under us; re-reading");
                    contended = true;
                }
            }
        }
        Err(Error::Unavailable(format!(
            "stream `{stream}` is being updated concurrently; retry"
        )))
    }
}

/// Set when the future waiting for a batch is dropped (the HTTP client went away): the analysis stops at its next
/// event instead of holding an analysis thread for work nobody will read. Nothing of it is stored, so the stream
/// is as if the batch never came.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One stream's batch, or why it failed.
type StreamRun = Result<StreamBatch, Error>;

/// What [`compute`] produces for one stream's batch.
struct Computed {
    state: StreamState,
    analyses: Vec<(Analysis, Box<RawValue>)>,
    parts: vigil_stream::StateParts,
    /// The incident tracker after the batch, and its JSON for `stream_states.incident` (`None`: nothing open).
    incidents: Tracker,
    tracker_json: Option<String>,
    batch_incidents: incident::BatchIncidents,
    /// The watchers' messages, one per event (empty when nobody watched the stream).
    watch: Vec<Shared>,
}

/// The JSON a batch must produce: each answer in the `detail` form, and the watchers' messages if `watched`.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    detail: Detail,
    watched: bool,
}

/// The CPU-bound part: analyses the batch, runs the results through the incident tracker, serialises each
/// analysis and the new state. Runs on the blocking pool.
fn compute(
    mut state: StreamState,
    mut incidents: Tracker,
    batch: &[Event],
    cfg: &StreamConfig,
    stored_generation: i64,
    cancelled: &AtomicBool,
    wanted: Wanted,
) -> Result<Computed, Error> {
    let Wanted { detail, watched } = wanted;
    let mut analysed = Vec::with_capacity(batch.len());
    for e in batch {
        if cancelled.load(Ordering::Relaxed) {
            metrics::counter!("topoforge_batches_abandoned_total").increment(1);
            return Err(Error::Unavailable(
                "the request was abandoned; its batch was not analysed".into(),
            ));
        }
        let started = Instant::now();
        let a = state
            .analyse(e, cfg)
            .map_err(|e| Error::unprocessable(e.to_string()))?;
        metrics::histogram!("topoforge_analysis_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("topoforge_events_total").increment(1);
        if a.result().is_some() {
            metrics::counter!("topoforge_windows_analysed_total").increment(1);
        }
        analysed.push(a);
    }
    let mut results: Vec<Option<&mut vigil_stream::AnalysisResult>> = analysed
        .iter_mut()
        .map(|a| match a {
            Analysis::Result(r) => Some(&mut **r),
            Analysis::Buffering(_) => None,
        })
        .collect();
    let batch_incidents = incident::track(
        &mut incidents,
        state.stream(),
        batch,
        &mut results,
        cfg.anomaly_threshold,
        u64::try_from(cfg.detector.dim).unwrap_or(u64::MAX),
        vigil_store::time::now_ms(),
    );
    drop(results);
    let mut analyses = Vec::with_capacity(analysed.len());
    let mut watch = Vec::with_capacity(if watched { analysed.len() } else { 0 });
    for (a, e) in analysed.into_iter().zip(batch) {
        let json = answer::to_json(&a, &e.stream, detail).map_err(Error::internal)?;
        if watched {
            // Watchers get the whole result whatever form the ingesting client asked for.
            let ts = e.timestamp.map(|t| t.timestamp_millis());
            let m = if detail == Detail::Full {
                watch::message(e.value, ts, json.get())
            } else {
                let full = serde_json::to_string(&a).map_err(Error::internal)?;
                watch::message(e.value, ts, &full)
            };
            watch.push(m);
        }
        analyses.push((a, json));
    }
    // The model is serialised only when it changed since the stored one (its JSON dominates the state's size).
    let parts = state
        .to_parts_after(u64::try_from(stored_generation).ok())
        .map_err(Error::internal)?;
    let tracker_json = match &incidents.open {
        Some(_) => Some(serde_json::to_string(&incidents).map_err(Error::internal)?),
        None => None,
    };
    Ok(Computed {
        state,
        analyses,
        parts,
        incidents,
        tracker_json,
        batch_incidents,
        watch,
    })
}

async fn load(app: &AppState, stream: &str) -> Result<Cached, Error> {
    Ok(cached_from(
        stream,
        streams::load(&app.store, stream).await?,
    ))
}

/// The cache entry for a stored row (or for a stream with none yet).
fn cached_from(stream: &str, row: Option<streams::StoredStream>) -> Cached {
    let Some(row) = row else {
        return Cached {
            state: StreamState::new(stream),
            version: None,
            stored_generation: 0,
            config: StreamConfig::default(),
            incidents: Tracker::default(),
        };
    };
    let config = match row.config.as_deref() {
        Some(c) => serde_json::from_str::<StreamConfig>(c).unwrap_or_else(|e| {
            tracing::warn!(%stream, error = %e, "stored stream configuration is invalid; using defaults");
            StreamConfig::default()
        }),
        None => StreamConfig::default(),
    };
    let state = if row.state.is_empty() {
        StreamState::new(stream)
    } else {
        StreamState::from_parts(&row.state, row.model.as_deref()).unwrap_or_else(|e| {
            // A state from another `STATE_VERSION` (or damaged) cannot be trusted; the stream starts over.
            tracing::warn!(%stream, error = %e, "stored stream state unusable; recalibrating from scratch");
            StreamState::new(stream)
        })
    };
    let incidents = match row.incident.as_deref() {
        Some(t) => serde_json::from_str::<Tracker>(t).unwrap_or_else(|e| {
            // The open incident's row is closed where it stands when the stream's next incident opens.
            tracing::warn!(%stream, error = %e, "stored incident tracker unusable; starting without an open incident");
            Tracker::default()
        }),
        None => Tracker::default(),
    };
    Cached {
        state,
        version: Some(row.version),
        stored_generation: row.model_generation,
        config,
        incidents,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dropped request stops its batch at the next event: nothing is analysed after the flag is set.
    #[test]
    fn an_abandoned_batch_stops_before_its_next_event() {
        let flag = Arc::new(AtomicBool::new(false));
        drop(CancelOnDrop(flag.clone()));
        assert!(flag.load(Ordering::Relaxed));
        let events: Vec<Event> = (0..100)
            .map(|i| Event::new("s", f64::from(i), None))
            .collect();
        let done = compute(
            StreamState::new("s"),
            Tracker::default(),
            &events,
            &StreamConfig::default(),
            0,
            &flag,
            Wanted {
                detail: Detail::Full,
                watched: false,
            },
        );
        assert!(matches!(done, Err(Error::Unavailable(_))));
        let kept = compute(
            StreamState::new("s"),
            Tracker::default(),
            &events,
            &StreamConfig::default(),
            0,
            &AtomicBool::new(false),
            Wanted {
                detail: Detail::Full,
                watched: true,
            },
        )
        .expect("not abandoned");
        assert_eq!(kept.analyses.len(), 100);
        assert_eq!(kept.watch.len(), 100, "one watcher message per event");
    }
}
