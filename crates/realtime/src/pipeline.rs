//! The pipeline: events in, analysed on their streams' states (cached here, stored in the database), incidents
//! tracked, outcomes out.
//!
//! Consistency across replicas: each replica caches a stream's [`StreamState`] together with the database
//! `version` it corresponds to. A batch of a stream's events is computed on the cached state and written back with
//! `UPDATE … WHERE version = <cached>`. If another replica wrote in between, the write misses: the cache is dropped,
//! the state re-read, and the batch recomputed before anything is answered — so every answer corresponds to a
//! state that was durably stored, and no replica ever builds on a stale window. Within a replica a per-stream async
//! mutex serialises batches of the same stream (different streams run in parallel on the analysis pool). A batch
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
//! Work placement: the analysis, and the JSON of each result, run on the analysis pool (`bulk.rs`, [`Outcome::json`]), so
//! the async threads that read sockets only copy bytes; a megabyte-sized ingest answer never stalls a socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;

use crate::answer::{self, Detail};
pub use crate::bulk::Lane;
use crate::bulk::{Scheduler, Slice};
use crate::dedup::{self, Key, Seen};
use crate::hub::Shared;
use crate::incident::{self, Notice, Tracker};
use crate::watch::{self, Interest, Position, Watchers};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::Mutex;
use vigil_http::{AppState, Error};
use vigil_store::streams::{self, Saved, Write};
use vigil_stream::{Analysis, Event, StreamConfig, StreamState};

/// Parses one event (with the server's receive time), naming its position in a batch on error.
pub(crate) fn parse_event(v: &Value, index: Option<usize>) -> Result<Event, Error> {
    let refuse = |e: &dyn std::fmt::Display| match index {
        Some(i) => Error::unprocessable(format!("event {i}: {e}")),
        None => Error::unprocessable(e.to_string()),
    };
    let e = Event::from_json(v).map_err(|e| refuse(&e))?;
    // The pipeline reads the identity again from the event; here it is only checked, so a bad one is a 422.
    crate::dedup::key(v).map_err(|e| refuse(&e))?;
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
    /// The client event ids and sequence applied, as stored with `state`.
    seen: Seen,
}

/// The per-stream caches of this process.
pub struct Pipeline {
    slots: StdMutex<HashMap<String, Arc<Mutex<Slot>>>>,
    max_cached: usize,
    analysis: Scheduler,
    /// The per-stream analysis feeds (`GET /api/realtime/stream?stream=`), shared with the relay.
    watchers: Arc<Watchers>,
}

/// One analysed event.
pub struct Outcome {
    pub event: Event,
    /// `None` for an event already applied (a duplicate by its `event_id` or `seq`, see `dedup.rs`): it was not
    /// analysed again, and `json` says so.
    pub analysis: Option<Analysis>,
    /// `analysis` as JSON in the requested [`Detail`] form (the whole result unless an ingest asked for less),
    /// serialised on the analysis pool with the analysis itself, so the async threads only copy it into replies
    /// (a 100-event batch answers with about a megabyte in full).
    pub json: Box<RawValue>,
    /// The threshold `is_anomaly` was decided with.
    pub threshold: f64,
}

impl Outcome {
    /// The event's analysis result, when it was analysed and its stream's window was full.
    pub fn result(&self) -> Option<&vigil_stream::AnalysisResult> {
        self.analysis.as_ref().and_then(Analysis::result)
    }
}

/// One stream's stored batch: its outcomes tagged with their input positions, and the incidents it opened or
/// closed (committed with it).
pub struct StreamBatch {
    pub outcomes: Vec<(usize, Outcome)>,
    pub notices: Vec<Notice>,
}

impl Pipeline {
    /// `analysis_threads` analyse both lanes' work (0: one per core; see `bulk.rs`).
    pub fn new(max_cached: usize, analysis_threads: usize) -> Self {
        Self::with_watch_queue(max_cached, analysis_threads, 1024)
    }

    /// [`new`](Self::new), with `watch_queue` analyses per per-stream feed (see [`crate::watch`]).
    pub fn with_watch_queue(
        max_cached: usize,
        analysis_threads: usize,
        watch_queue: usize,
    ) -> Self {
        Pipeline {
            slots: StdMutex::new(HashMap::new()),
            max_cached: max_cached.max(1),
            analysis: Scheduler::new(analysis_threads),
            watchers: Arc::new(Watchers::new(watch_queue)),
        }
    }

    /// The per-stream analysis feeds.
    pub fn watchers(&self) -> &Arc<Watchers> {
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
        // Each event's client identity (validated when the request was parsed); see `dedup.rs`.
        let mut pending: Vec<(usize, Key, Event)> = events
            .into_iter()
            .map(|(i, e)| (i, dedup::key(&e.raw).unwrap_or_default(), e))
            .collect();
        let keyed = pending.iter().any(|(_, k, _)| !k.is_empty());
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
            let thr = cfg.anomaly_threshold;
            // Events already applied (by an earlier attempt of the client, or earlier in this batch) are set
            // aside, judged against the state this attempt builds on.
            let mut seen = keyed.then(|| cached.seen.clone());
            let (mut fresh, mut duplicates) = (Vec::new(), Vec::new());
            for (i, key, event) in pending.drain(..) {
                match seen.as_mut() {
                    Some(seen) if seen.is_duplicate(&key) => duplicates.push((i, key, event)),
                    Some(seen) => {
                        seen.record(&key);
                        fresh.push((i, key, event));
                    }
                    None => fresh.push((i, key, event)),
                }
            }
            if fresh.is_empty() {
                // Nothing to apply, nothing to store: the stream stays as it is.
                slot.cached = Some(cached);
                return Ok(StreamBatch {
                    outcomes: duplicate_outcomes(&stream, duplicates, thr)?,
                    notices: Vec::new(),
                });
            }
            let seen_json = match &seen {
                Some(s) => Some(s.to_json().map_err(Error::internal)?),
                None => None,
            };
            let Cached {
                state,
                version,
                stored_generation,
                config,
                incidents,
                seen: seen_before,
            } = cached;
            let (meta, batch): (Vec<(usize, Key)>, Vec<Event>) =
                fresh.into_iter().map(|(i, k, e)| ((i, k), e)).unzip();
            // The events travel to the analysis pool and back (a lost race recomputes them) instead of being
            // cloned; the job runs in slices (see `bulk.rs`) and hands them back with its result.
            // Asked per attempt: the feeds' messages are built on the analysis thread only when someone watches,
            // here (whole results) or on another replica (compact ones, relayed).
            let watched = self.watchers.interest(&stream);
            let mut job = Compute::new(
                state,
                incidents,
                batch,
                cfg,
                stored_generation,
                cancelled.clone(),
                Wanted { detail, watched },
            );
            let (computed, batch) = self
                .analysis
                .run(lane, move |slice| {
                    job.step(slice)
                        .map(|computed| (computed, std::mem::take(&mut job.batch)))
                })
                .await?;
            let Computed {
                state,
                analyses,
                parts,
                incidents,
                tracker_json,
                batch_incidents,
                watch,
                relayed,
                ordinals,
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
                dedup: seen_json.as_deref(),
            };
            let saved = match lock {
                Some(l) => l.save(&app.store, write).await?,
                None => streams::save(&app.store, write).await?,
            };
            match saved {
                Saved::Ok(v) => {
                    // Published under the stream's lock, so watchers see batches in the order they were stored; the
                    // stored version and each event's ordinal let every feed (here or on another replica) drop
                    // repeats and report gaps.
                    let at = |o: &u64| Position {
                        version: v,
                        ordinal: *o,
                    };
                    if !watch.is_empty() {
                        self.watchers
                            .publish(&stream, ordinals.iter().map(at).zip(watch));
                    }
                    if !relayed.is_empty() {
                        self.watchers
                            .relay(&stream, ordinals.iter().map(at).zip(relayed));
                    }
                    let generation = model.map_or(stored_generation, |m| m.1);
                    slot.cached = Some(Cached {
                        state,
                        version: Some(v),
                        stored_generation: generation,
                        config,
                        incidents,
                        seen: seen.unwrap_or(seen_before),
                    });
                    let mut outcomes: Vec<(usize, Outcome)> = meta
                        .into_iter()
                        .zip(batch)
                        .zip(analyses)
                        .map(|(((i, _), event), (analysis, json))| {
                            (
                                i,
                                Outcome {
                                    event,
                                    analysis: Some(analysis),
                                    json,
                                    threshold: thr,
                                },
                            )
                        })
                        .collect();
                    outcomes.extend(duplicate_outcomes(&stream, duplicates, thr)?);
                    return Ok(StreamBatch {
                        outcomes,
                        notices: batch_incidents.notices,
                    });
                }
                Saved::Conflict => {
                    metrics::counter!("topoforge_state_conflicts_total").increment(1);
                    tracing::debug!(%stream, attempt, "stream state changed under us; re-reading");
                    contended = true;
                    // The next attempt judges every event again, against the state it reads.
                    pending = meta
                        .into_iter()
                        .zip(batch)
                        .map(|((i, k), e)| (i, k, e))
                        .chain(duplicates)
                        .collect();
                    pending.sort_unstable_by_key(|(i, _, _)| *i);
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

/// The answers for events already applied (see `dedup.rs`).
fn duplicate_outcomes(
    stream: &str,
    duplicates: Vec<(usize, Key, Event)>,
    threshold: f64,
) -> Result<Vec<(usize, Outcome)>, Error> {
    metrics::counter!("topoforge_duplicate_events_total").increment(duplicates.len() as u64);
    duplicates
        .into_iter()
        .map(|(i, key, event)| {
            let json = serde_json::value::to_raw_value(&key.duplicate_answer(stream))
                .map_err(Error::internal)?;
            Ok((
                i,
                Outcome {
                    event,
                    analysis: None,
                    json,
                    threshold,
                },
            ))
        })
        .collect()
}

/// What [`compute`] produces for one stream's batch.
struct Computed {
    state: StreamState,
    analyses: Vec<(Analysis, Box<RawValue>)>,
    parts: vigil_stream::StateParts,
    /// The incident tracker after the batch, and its JSON for `stream_states.incident` (`None`: nothing open).
    incidents: Tracker,
    tracker_json: Option<String>,
    batch_incidents: incident::BatchIncidents,
    /// The local watchers' messages, one per event (empty when nobody here watched the stream).
    watch: Vec<Shared>,
    /// The compact messages for other replicas' watchers, one per event (empty when none watched).
    relayed: Vec<Shared>,
    /// Each event's ordinal in its stream (`StreamState::events` after it), when anyone watched.
    ordinals: Vec<u64>,
}

/// The JSON a batch must produce: each answer in the `detail` form, and the watchers' messages for whoever
/// watches.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    detail: Detail,
    watched: Interest,
}

/// The CPU-bound part of one stream's batch, as a job that runs in slices: pushes the events, runs the results
/// through the incident tracker, serialises each analysis and the new state. A bulk job stops at the next event
/// (pushed or serialised) when its [`Slice`] says so and continues where it stopped on its next slice.
struct Compute {
    state: Option<StreamState>,
    incidents: Tracker,
    batch: Vec<Event>,
    cfg: StreamConfig,
    stored_generation: i64,
    cancelled: Arc<AtomicBool>,
    wanted: Wanted,
    pushed: Vec<Analysis>,
    /// Set once every event is pushed and tracked.
    tracked: Option<incident::BatchIncidents>,
    analyses: Vec<(Analysis, Box<RawValue>)>,
    /// The local watchers' messages, one per serialised event when watched here.
    watch: Vec<Shared>,
    /// The compact messages for other replicas, one per serialised event when watched elsewhere.
    relayed: Vec<Shared>,
    /// Each pushed event's ordinal in its stream, when watched anywhere.
    ordinals: Vec<u64>,
}

impl Compute {
    fn new(
        state: StreamState,
        incidents: Tracker,
        batch: Vec<Event>,
        cfg: StreamConfig,
        stored_generation: i64,
        cancelled: Arc<AtomicBool>,
        wanted: Wanted,
    ) -> Compute {
        let sized = |on: bool| Vec::with_capacity(if on { batch.len() } else { 0 });
        let watch = sized(wanted.watched.local);
        let relayed = sized(wanted.watched.remote);
        let ordinals = Vec::with_capacity(if wanted.watched.any() { batch.len() } else { 0 });
        Compute {
            state: Some(state),
            incidents,
            pushed: Vec::with_capacity(batch.len()),
            analyses: Vec::with_capacity(batch.len()),
            batch,
            cfg,
            stored_generation,
            watch,
            relayed,
            ordinals,
            cancelled,
            wanted,
            tracked: None,
        }
    }

    /// One slice: `None` when it yielded with work left, else the result (called again after a result, it
    /// answers with an error rather than panicking).
    fn step(&mut self, slice: &Slice<'_>) -> Option<Result<Computed, Error>> {
        let Some(state) = self.state.as_mut() else {
            return Some(Err(Error::internal_msg(
                "analysis job resumed after it finished",
            )));
        };
        // Pushing ends when every event is pushed and the batch is tracked; after that `pushed` drains into
        // `analyses`, so its length no longer says how far pushing got.
        while self.tracked.is_none() && self.pushed.len() < self.batch.len() {
            if self.cancelled.load(Ordering::Relaxed) {
                metrics::counter!("topoforge_batches_abandoned_total").increment(1);
                self.state = None;
                return Some(Err(Error::Unavailable(
                    "the request was abandoned; its batch was not analysed".into(),
                )));
            }
            let e = &self.batch[self.pushed.len()];
            let started = Instant::now();
            let a = match state.analyse(e, &self.cfg) {
                Ok(a) => a,
                Err(e) => {
                    self.state = None;
                    return Some(Err(Error::unprocessable(e.to_string())));
                }
            };
            metrics::histogram!("topoforge_analysis_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("topoforge_events_total").increment(1);
            if a.result().is_some() {
                metrics::counter!("topoforge_windows_analysed_total").increment(1);
            }
            self.pushed.push(a);
            if self.wanted.watched.any() {
                self.ordinals.push(state.events());
            }
            if self.pushed.len() < self.batch.len() && slice.should_yield() {
                return None;
            }
        }
        if self.tracked.is_none() {
            let mut results: Vec<Option<&mut vigil_stream::AnalysisResult>> = self
                .pushed
                .iter_mut()
                .map(|a| match a {
                    Analysis::Result(r) => Some(&mut **r),
                    Analysis::Buffering(_) => None,
                })
                .collect();
            self.tracked = Some(incident::track(
                &mut self.incidents,
                state.stream(),
                &self.batch,
                &mut results,
                self.cfg.anomaly_threshold,
                u64::try_from(self.cfg.detector.dim).unwrap_or(u64::MAX),
                vigil_store::time::now_ms(),
            ));
            // Serialised in input order from the back of `pushed`: reversed once here, popped one by one below.
            self.pushed.reverse();
            if slice.should_yield() {
                return None;
            }
        }
        while let Some(a) = self.pushed.pop() {
            let e = &self.batch[self.analyses.len()];
            let json = match answer::to_json(&a, &e.stream, self.wanted.detail) {
                Ok(json) => json,
                Err(e) => {
                    self.state = None;
                    return Some(Err(Error::internal(e)));
                }
            };
            let ts = e.timestamp.map(|t| t.timestamp_millis());
            if self.wanted.watched.local {
                // Watchers get the whole result whatever form the ingesting client asked for.
                let m = if self.wanted.detail == Detail::Full {
                    watch::message(e.value, ts, json.get())
                } else {
                    match serde_json::to_string(&a) {
                        Ok(full) => watch::message(e.value, ts, &full),
                        Err(e) => {
                            self.state = None;
                            return Some(Err(Error::internal(e)));
                        }
                    }
                };
                self.watch.push(m);
            }
            if self.wanted.watched.remote {
                match watch::compact_message(e.value, ts, &a) {
                    Ok(m) => self.relayed.push(m),
                    Err(e) => {
                        self.state = None;
                        return Some(Err(Error::internal(e)));
                    }
                }
            }
            self.analyses.push((a, json));
            if !self.pushed.is_empty() && slice.should_yield() {
                return None;
            }
        }
        let state = self.state.take()?;
        Some(self.finish(state))
    }

    fn finish(&mut self, state: StreamState) -> Result<Computed, Error> {
        // The model is serialised only when it changed since the stored one (its JSON dominates the state's size).
        let parts = state
            .to_parts_after(u64::try_from(self.stored_generation).ok())
            .map_err(Error::internal)?;
        let incidents = std::mem::take(&mut self.incidents);
        let tracker_json = match &incidents.open {
            Some(_) => Some(serde_json::to_string(&incidents).map_err(Error::internal)?),
            None => None,
        };
        Ok(Computed {
            state,
            analyses: std::mem::take(&mut self.analyses),
            parts,
            incidents,
            tracker_json,
            batch_incidents: self.tracked.take().unwrap_or_default(),
            watch: std::mem::take(&mut self.watch),
            relayed: std::mem::take(&mut self.relayed),
            ordinals: std::mem::take(&mut self.ordinals),
        })
    }
}

/// [`Compute`] to completion in one call (tests).
#[cfg(test)]
fn compute(
    state: StreamState,
    incidents: Tracker,
    batch: &[Event],
    cfg: &StreamConfig,
    stored_generation: i64,
    cancelled: &AtomicBool,
    wanted: Wanted,
) -> Result<Computed, Error> {
    let flag = Arc::new(AtomicBool::new(cancelled.load(Ordering::Relaxed)));
    let mut job = Compute::new(
        state,
        incidents,
        batch.to_vec(),
        cfg.clone(),
        stored_generation,
        flag,
        wanted,
    );
    let slice = Slice::unbounded();
    loop {
        if let Some(done) = job.step(&slice) {
            return done;
        }
    }
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
            seen: Seen::default(),
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
    let seen = match row.dedup.as_deref() {
        Some(d) => Seen::from_json(d).unwrap_or_else(|e| {
            // Forgetting applied ids risks applying a retried event twice, the behaviour without ids; refusing
            // every event of the stream would be worse.
            tracing::warn!(%stream, error = %e, "stored event ids unusable; starting without them");
            Seen::default()
        }),
        None => Seen::default(),
    };
    Cached {
        state,
        version: Some(row.version),
        stored_generation: row.model_generation,
        config,
        incidents,
        seen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job stopped at every event boundary (a bulk slice always asked to yield) ends exactly as one run whole.
    #[test]
    fn a_batch_computed_in_slices_equals_one_computed_whole() {
        let mut r = vigil_stream::bench_data::SplitMix::new(3);
        let mut events: Vec<Event> = (0..150)
            .map(|_| Event::new("s", 10.0 + r.normal(), None))
            .collect();
        events[120].value = 60.0;
        let whole = compute(
            StreamState::new("s"),
            Tracker::default(),
            &events,
            &StreamConfig::default(),
            0,
            &AtomicBool::new(false),
            Wanted {
                detail: Detail::Full,
                watched: Interest {
                    local: true,
                    remote: true,
                },
            },
        )
        .expect("whole");
        let mut job = Compute::new(
            StreamState::new("s"),
            Tracker::default(),
            events.clone(),
            StreamConfig::default(),
            0,
            Arc::new(AtomicBool::new(false)),
            Wanted {
                detail: Detail::Full,
                watched: Interest {
                    local: true,
                    remote: true,
                },
            },
        );
        let slice = Slice::always_yield();
        let mut slices = 1;
        let sliced = loop {
            match job.step(&slice) {
                Some(done) => break done.expect("sliced"),
                None => slices += 1,
            }
        };
        // One slice per event pushed and per event serialised (the last of each runs on), plus the tracking.
        assert_eq!(slices, 2 * events.len());
        // Incident ids are random per run; everything else must match.
        let json = |c: &Computed| -> Vec<serde_json::Value> {
            c.analyses
                .iter()
                .map(|(_, j)| {
                    let mut v: serde_json::Value = serde_json::from_str(j.get()).expect("json");
                    if let Some(o) = v.as_object_mut() {
                        o.remove("incident_id");
                    }
                    v
                })
                .collect()
        };
        let (a, b) = (json(&sliced), json(&whole));
        assert!(a == b, "sliced and whole analyses differ");
        assert!(
            b.iter()
                .any(|v| v.get("is_anomaly") == Some(&serde_json::Value::Bool(true))),
            "the spike is flagged"
        );
        assert!(sliced.parts.core == whole.parts.core, "states differ");
        assert_eq!(
            sliced.batch_incidents.notices.len(),
            whole.batch_incidents.notices.len()
        );
    }

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
                watched: Interest::default(),
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
                watched: Interest {
                    local: true,
                    remote: true,
                },
            },
        )
        .expect("not abandoned");
        assert_eq!(kept.analyses.len(), 100);
        assert_eq!(kept.watch.len(), 100, "one watcher message per event");
        assert_eq!(kept.relayed.len(), 100, "one compact message per event");
        assert_eq!(
            kept.ordinals,
            (1..=100).collect::<Vec<u64>>(),
            "each event's ordinal in its stream"
        );
    }
}
