//! The pipeline: events in, analysed on their streams' states (cached here, stored in the database), incidents
//! tracked, outcomes out.
//!
//! **Group commit.** A request's events for a stream are a submission, queued on the stream. One task per busy
//! stream (its leader) takes every submission waiting (up to [`GROUP_MAX_EVENTS`] events), analyses them in
//! arrival order on the stream's state (each with its own threshold, answer form and scheduling lane, `bulk.rs`),
//! and stores the result as one checkpoint: state, incident tracker, applied event ids and the anomaly-log incident
//! rows in one transaction. Only then is each submission answered. So events that arrive while a stream's previous
//! write is in flight (many sockets' single events, concurrent batches) share the next write, and nothing is
//! answered from a state that was not stored: a crash loses no acknowledged event. The leader is a task of its
//! own, not a request: a client that goes away skips its own submission (or stops its analysis at the next event)
//! without abandoning the others'.
//!
//! **Consistency across replicas.** With PostgreSQL a replica analyses a stream only while it holds the stream's
//! lease (`ownership.rs`: waiting, hand-over, expiry of a dead replica's leases). While it holds it, its cached
//! state and `version` are the stream's: a group needs no read before its write. Every write still carries the
//! version check (`UPDATE … WHERE version = <cached>`) as the fence: a replica that lost its lease without
//! noticing, or a configuration change (`PUT …/config` bumps the version), makes the write miss; the cache is then
//! dropped and the group recomputed on the row read in a locked turn ([`streams::StreamLock`], the row read
//! `FOR UPDATE` and written in one transaction) before anything is answered. SQLite is one process and takes no
//! lease; the version check alone keeps two pipelines over one file (tests) correct.
//!
//! Measured (`contended_replicas_wait_instead_of_failing`: 8 writers on 2 replicas, 160 batches of 5 on one
//! stream): with optimistic write-through, 13 of 160 answered 503, then none with locked retries (1.2–1.7 s, 160
//! writes); with one owner and group commit, none, in 1.3 s, stored in 40 checkpoints.
//!
//! What is never coalesced over time: a checkpoint is written as soon as the previous one committed (no timer), so
//! an idle stream's single event still pays one small `UPDATE` (the state without its model, which is rewritten
//! only when refitted) and answers at once.
//!
//! Work placement: the analysis, the JSON of each result and the checkpoint's serialisation run on the analysis
//! pool (`bulk.rs`, [`Outcome::json`]), so the async threads that read sockets only copy bytes; a megabyte-sized
//! ingest answer never stalls a socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::Instant;

use crate::answer::{self, Detail};
pub use crate::bulk::Lane;
use crate::bulk::{Scheduler, Slice};
use crate::dedup::{self, Key, Seen};
use crate::hub::Shared;
use crate::incident::{self, Notice, Tracker};
use crate::ownership::{Held, Owner};
use crate::watch::{self, Interest, Position, Watchers};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{Mutex, oneshot};
use vigil_http::{AppState, Error};
use vigil_store::incidents::IncidentWrite;
use vigil_store::streams::{self, Saved, SegmentKeep, SegmentWrite, Write};
use vigil_stream::ring::Segment;
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

/// How often a group is computed before giving up with 503 after lost version checks: once optimistically, then
/// in locked turns ([`streams::StreamLock`]), whose write cannot miss on PostgreSQL once the row exists (the last
/// attempts cover a stream whose first row two writers insert at once).
const MAX_ATTEMPTS: usize = 4;

/// The most events one checkpoint takes from a stream's queue (at least one submission, whatever its size), so
/// a backlog is stored in steps and the first events' answers do not wait for the whole backlog's analysis.
const GROUP_MAX_EVENTS: usize = 10_000;

/// A stream as this replica last saw it in the database.
#[derive(Default)]
pub(crate) struct Slot {
    pub(crate) cached: Option<Cached>,
}

pub(crate) struct Cached {
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

/// One request's events for one stream, waiting for (or in) a checkpoint group.
struct Submission {
    /// The events with their input positions and client identities (see `dedup.rs`).
    events: Vec<(usize, Key, Event)>,
    threshold: Option<f64>,
    lane: Lane,
    detail: Detail,
    /// Set when the request went away: its events are then skipped, or their analysis stopped.
    cancelled: Arc<AtomicBool>,
    reply: oneshot::Sender<StreamRun>,
}

/// The submissions of a stream not yet taken into a group, and whether a task is leading the stream's groups.
#[derive(Default)]
struct Queue {
    waiting: Vec<Submission>,
    leading: bool,
}

/// Everything this process keeps about one stream.
pub(crate) struct Entry {
    /// The stream's cache; held by the task computing and storing a group, and by a lease hand-over (which waits
    /// for the group in flight).
    pub(crate) slot: Mutex<Slot>,
    queue: StdMutex<Queue>,
    /// The stream's lease while this replica holds it (PostgreSQL only; see `ownership.rs`).
    pub(crate) lease: StdMutex<Option<Held>>,
    /// When this replica last stored or answered a group of the stream (idle leases are released).
    pub(crate) last_used: StdMutex<Instant>,
    /// Set while a hand-over of the lease waits for the stream's turn, so the keeper starts one at a time.
    pub(crate) handing_over: AtomicBool,
}

/// Locks a std mutex whether or not a panicking thread poisoned it: every critical section here leaves the data
/// consistent (single assignments and pushes).
pub(crate) fn locked<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Entry {
    fn new() -> Entry {
        Entry {
            slot: Mutex::new(Slot::default()),
            queue: StdMutex::new(Queue::default()),
            lease: StdMutex::new(None),
            last_used: StdMutex::new(Instant::now()),
            handing_over: AtomicBool::new(false),
        }
    }

    /// Whether the entry may be forgotten: nobody uses it, nothing waits, and it holds no lease.
    fn is_idle(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 1 && locked(&self.lease).is_none() && {
            let q = locked(&self.queue);
            q.waiting.is_empty() && !q.leading
        }
    }
}

/// The per-stream caches of this process.
pub struct Pipeline {
    core: Arc<Core>,
}

/// What the pipeline's background tasks (a stream's group leader, the lease keeper) share with it.
pub(crate) struct Core {
    streams: StdMutex<HashMap<String, Arc<Entry>>>,
    max_cached: usize,
    analysis: Scheduler,
    /// The per-stream analysis feeds (`GET /api/realtime/stream?stream=`), shared with the relay.
    watchers: Arc<Watchers>,
    /// This replica's identity and lease settings (used with PostgreSQL only).
    pub(crate) owner: Owner,
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
        Self::with_settings(max_cached, analysis_threads, 1024, Owner::default())
    }

    /// [`new`](Self::new), with `watch_queue` analyses per per-stream feed (see [`crate::watch`]) and the
    /// replica's stream-lease settings.
    pub(crate) fn with_settings(
        max_cached: usize,
        analysis_threads: usize,
        watch_queue: usize,
        owner: Owner,
    ) -> Self {
        Pipeline {
            core: Arc::new(Core {
                streams: StdMutex::new(HashMap::new()),
                max_cached: max_cached.max(1),
                analysis: Scheduler::new(analysis_threads),
                watchers: Arc::new(Watchers::new(watch_queue)),
                owner,
            }),
        }
    }

    /// The per-stream analysis feeds.
    pub fn watchers(&self) -> &Arc<Watchers> {
        &self.core.watchers
    }

    /// Number of streams cached in this process.
    pub fn cached_streams(&self) -> usize {
        locked(&self.core.streams).len()
    }

    /// Stops renewing and handing over this replica's stream leases without releasing them, as a crash would
    /// (tests of the take-over by other replicas).
    #[doc(hidden)]
    pub fn abandon_leases(&self) {
        self.core.abandon_leases();
    }

    /// The streams whose lease this replica holds now (PostgreSQL; always empty with SQLite), sorted.
    pub fn leased_streams(&self) -> Vec<String> {
        let mut out: Vec<String> = locked(&self.core.streams)
            .iter()
            .filter(|(_, e)| locked(&e.lease).is_some())
            .map(|(s, _)| s.clone())
            .collect();
        out.sort_unstable();
        out
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

    /// Runs each stream's events as one submission, the streams in parallel; per stream, the input positions of
    /// its events and the outcomes (tagged with those positions) or the batch's error.
    async fn run_streams(
        &self,
        app: &AppState,
        events: Vec<Event>,
        threshold: Option<f64>,
        lane: Lane,
        detail: Detail,
    ) -> Vec<(Vec<usize>, StreamRun)> {
        // Someone waits on this answer: keep a core free of bulk analysis until it is stored (see `bulk.rs`).
        let _waiting = (lane == Lane::Interactive).then(|| self.core.analysis.reserve());
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
            let result = self.submit(app, stream, evs, threshold, lane, detail).await;
            (indices, result)
        });
        futures_util::future::join_all(runs).await
    }

    /// Queues one request's events for their stream and waits for the checkpoint that stores them (see the module
    /// docs). The first submitter of an idle stream starts the task that leads its groups; the task, not the
    /// request, computes and stores, so a client that goes away cannot abandon other clients' events halfway.
    async fn submit(
        &self,
        app: &AppState,
        stream: String,
        events: Vec<(usize, Event)>,
        threshold: Option<f64>,
        lane: Lane,
        detail: Detail,
    ) -> StreamRun {
        let entry = self.core.entry(&stream);
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_when_dropped = CancelOnDrop(cancelled.clone());
        let (reply, answer) = oneshot::channel();
        // Each event's client identity (validated when the request was parsed); see `dedup.rs`.
        let events = events
            .into_iter()
            .map(|(i, e)| (i, dedup::key(&e.raw).unwrap_or_default(), e))
            .collect();
        let lead = {
            let mut q = locked(&entry.queue);
            q.waiting.push(Submission {
                events,
                threshold,
                lane,
                detail,
                cancelled,
                reply,
            });
            !std::mem::replace(&mut q.leading, true)
        };
        if lead {
            let core = self.core.clone();
            let app = app.clone();
            tokio::spawn(async move { core.lead(&app, &stream, entry).await });
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::internal_msg(
                "the stream's batch was dropped unanswered (the server is stopping)",
            ))
        })
    }
}

/// Clears a stream's `leading` flag when its leader task ends in any way; one that did not end by finding the
/// queue empty (a panic, the runtime shutting down) also drops the waiting submissions, whose requests then get an
/// error instead of waiting forever.
struct Leading(Arc<Entry>);

impl Drop for Leading {
    fn drop(&mut self) {
        let mut q = locked(&self.0.queue);
        if q.leading {
            q.leading = false;
            q.waiting.clear();
        }
    }
}

/// A group's submission after its analysis: what its answer and the checkpoint need.
struct Done {
    sub: Submission,
    /// The input positions and identities of the events analysed, the events, and their analyses with JSON.
    meta: Vec<(usize, Key)>,
    batch: Vec<Event>,
    analyses: Vec<(Analysis, Box<RawValue>)>,
    duplicates: Vec<(usize, Key, Event)>,
    notices: Vec<Notice>,
    /// The local watchers' messages, one per analysed event (empty when nobody here watched).
    watch: Vec<Shared>,
    /// The compact messages for other replicas' watchers (empty when nobody there watched).
    relayed: Vec<Shared>,
    /// Each analysed event's ordinal in its stream, when anyone watched.
    ordinals: Vec<u64>,
    threshold: f64,
}

impl Done {
    /// A submission whose events were all applied before: answered, not analysed.
    fn only_duplicates(
        sub: Submission,
        duplicates: Vec<(usize, Key, Event)>,
        threshold: f64,
    ) -> Done {
        Done {
            sub,
            meta: Vec::new(),
            batch: Vec::new(),
            analyses: Vec::new(),
            duplicates,
            notices: Vec::new(),
            watch: Vec::new(),
            relayed: Vec::new(),
            ordinals: Vec::new(),
            threshold,
        }
    }

    /// The submission as it was before its analysis, for a recomputation.
    fn undo(self) -> Submission {
        let mut sub = self.sub;
        sub.events = self
            .meta
            .into_iter()
            .zip(self.batch)
            .map(|((i, k), e)| (i, k, e))
            .chain(self.duplicates)
            .collect();
        sub.events.sort_unstable_by_key(|(i, _, _)| *i);
        sub
    }

    /// Sends the submission its answer (its checkpoint has committed).
    fn answer(self, stream: &str) {
        let Done {
            sub,
            meta,
            batch,
            analyses,
            duplicates,
            notices,
            threshold,
            ..
        } = self;
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
                        threshold,
                    },
                )
            })
            .collect();
        let run = duplicate_outcomes(stream, duplicates, threshold).map(|d| {
            outcomes.extend(d);
            StreamBatch { outcomes, notices }
        });
        let _ = sub.reply.send(run);
    }
}

/// What went wrong computing a group: the submission at `failed` gets `error` (the group's state went down with
/// it, and the others are recomputed from the stored state), or with `None` every submission does.
struct GroupFailure {
    failed: Option<usize>,
    error: Error,
}

impl Core {
    fn entry(&self, stream: &str) -> Arc<Entry> {
        let mut streams = locked(&self.streams);
        if let Some(e) = streams.get(stream) {
            return e.clone();
        }
        if streams.len() >= self.max_cached {
            // Forget streams nobody is using right now; they reload from the database when they return.
            streams.retain(|_, e| !e.is_idle());
        }
        let e = Arc::new(Entry::new());
        streams.insert(stream.to_owned(), e.clone());
        e
    }

    /// The entry of `stream` if this process has one (the lease keeper's view).
    pub(crate) fn existing(&self, stream: &str) -> Option<Arc<Entry>> {
        locked(&self.streams).get(stream).cloned()
    }

    /// Every entry holding a lease, with its stream.
    pub(crate) fn leased(&self) -> Vec<(String, Arc<Entry>)> {
        locked(&self.streams)
            .iter()
            .filter(|(_, e)| locked(&e.lease).is_some())
            .map(|(s, e)| (s.clone(), e.clone()))
            .collect()
    }

    /// The leader task of a stream: takes the waiting submissions as one group, computes and stores it, answers
    /// it, and repeats until the queue is empty.
    async fn lead(self: Arc<Self>, app: &AppState, stream: &str, entry: Arc<Entry>) {
        let _leading = Leading(entry.clone());
        loop {
            let group = {
                let mut q = locked(&entry.queue);
                if q.waiting.is_empty() {
                    q.leading = false;
                    return;
                }
                let mut events = 0;
                let take = q
                    .waiting
                    .iter()
                    .take_while(|s| {
                        events += s.events.len();
                        events <= GROUP_MAX_EVENTS
                    })
                    .count()
                    .max(1);
                q.waiting.drain(..take).collect::<Vec<_>>()
            };
            let mut slot = entry.slot.lock().await;
            self.run_group(app, stream, &entry, &mut slot, group).await;
            drop(slot);
            *locked(&entry.last_used) = Instant::now();
        }
    }

    /// Computes a group's submissions in order on the stream's state and stores the result as one checkpoint;
    /// answers every submission only after that commit (or with the error that stored nothing of it).
    async fn run_group(
        self: &Arc<Self>,
        app: &AppState,
        stream: &str,
        entry: &Arc<Entry>,
        slot: &mut Slot,
        group: Vec<Submission>,
    ) {
        let mut subs = Vec::with_capacity(group.len());
        for sub in group {
            if sub.cancelled.load(Ordering::Relaxed) {
                // Nobody waits for it; skipping it stores nothing of it, as if it never came.
                metrics::counter!("topoforge_batches_abandoned_total").increment(1);
                let _ = sub.reply.send(Err(Error::Unavailable(
                    "the request was abandoned; its batch was not analysed".into(),
                )));
            } else {
                subs.push(sub);
            }
        }
        // After a lost version check every attempt is a locked turn: it reads the row under the lock and writes it.
        let mut contended = false;
        let mut attempt = 0;
        while !subs.is_empty() {
            if attempt == MAX_ATTEMPTS {
                let e = Error::Unavailable(format!(
                    "stream `{stream}` is being updated concurrently; retry"
                ));
                fail_all(subs, &e);
                return;
            }
            attempt += 1;
            if self.owner.uses_leases(&app.store)
                && let Err(e) = self.own(app, stream, entry, slot).await
            {
                fail_all(subs, &e);
                return;
            }
            let (lock, cached) = match self.cached(app, stream, slot, contended).await {
                Ok(l) => l,
                Err(e) => {
                    fail_all(subs, &e);
                    return;
                }
            };
            let (done, checkpoint) = match self.compute_group(stream, cached, subs).await {
                Ok((done, GroupState::Changed(c))) => (done, c),
                Ok((done, GroupState::Unchanged(cached))) => {
                    // Only duplicates: nothing to store, the stream stays as it is.
                    slot.cached = Some(cached);
                    for d in done {
                        d.answer(stream);
                    }
                    return;
                }
                Err((GroupFailure { failed, error }, rest)) => {
                    // The state went down with the failed job; the others start again from the stored state.
                    let Some(failed) = failed else {
                        fail_all(rest, &error);
                        return;
                    };
                    subs = Vec::with_capacity(rest.len());
                    for (n, sub) in rest.into_iter().enumerate() {
                        if n == failed {
                            let _ = sub.reply.send(Err(error_copy(&error)));
                        } else {
                            subs.push(sub);
                        }
                    }
                    // A failed submission is not a lost race: the others get their full attempts.
                    attempt -= 1;
                    continue;
                }
            };
            let storing = Instant::now();
            let stored = self
                .store_checkpoint(app, stream, slot, lock, checkpoint)
                .await;
            metrics::histogram!("vigil_stream_checkpoint_seconds")
                .record(storing.elapsed().as_secs_f64());
            match stored {
                Ok(Some(version)) => {
                    let events: usize = done.iter().map(|d| d.batch.len()).sum();
                    metrics::counter!("vigil_stream_checkpoints_total").increment(1);
                    metrics::histogram!("vigil_stream_checkpoint_events").record(events as f64);
                    let mut done = done;
                    for d in &mut done {
                        // Published under the stream's turn, so watchers see batches in the order they were
                        // stored; the stored version and each event's ordinal let every feed (here or on another
                        // replica) drop repeats and report gaps.
                        let ordinals = std::mem::take(&mut d.ordinals);
                        let at = |o: &u64| Position {
                            version,
                            ordinal: *o,
                        };
                        if !d.watch.is_empty() {
                            let watch = std::mem::take(&mut d.watch);
                            self.watchers
                                .publish(stream, ordinals.iter().map(at).zip(watch));
                        }
                        if !d.relayed.is_empty() {
                            let relayed = std::mem::take(&mut d.relayed);
                            self.watchers
                                .relay(stream, ordinals.iter().map(at).zip(relayed));
                        }
                    }
                    for d in done {
                        d.answer(stream);
                    }
                    return;
                }
                Ok(None) => {
                    metrics::counter!("topoforge_state_conflicts_total").increment(1);
                    tracing::debug!(%stream, attempt, "stream state changed under us; re-reading");
                    contended = true;
                    // The next attempt judges every event again, against the state it reads.
                    subs = done.into_iter().map(Done::undo).collect();
                }
                Err(e) => {
                    fail_all(done.into_iter().map(|d| d.sub).collect(), &e);
                    return;
                }
            }
        }
    }

    /// The state a group starts from: the cache (authoritative while this replica holds the stream's lease, or
    /// checked by the version at the write otherwise), the stored row when there is none, or after a lost version
    /// check the row read under a locked turn.
    async fn cached(
        &self,
        app: &AppState,
        stream: &str,
        slot: &mut Slot,
        contended: bool,
    ) -> Result<(Option<streams::StreamLock>, Cached), Error> {
        if contended {
            slot.cached = None;
            let mut l = streams::lock(&app.store, stream).await?;
            let row = l.load(&app.store).await?;
            return Ok((Some(l), cached_from(stream, row)));
        }
        Ok(match slot.cached.take() {
            Some(c) => (None, c),
            None => (None, load(app, stream).await?),
        })
    }

    /// Analyses the group's submissions one after the other on the state (each with its own threshold, detail
    /// and lane), then serialises the final state once.
    async fn compute_group(
        &self,
        stream: &str,
        cached: Cached,
        subs: Vec<Submission>,
    ) -> Result<(Vec<Done>, GroupState), (GroupFailure, Vec<Submission>)> {
        let Cached {
            mut state,
            version,
            stored_generation,
            config,
            mut incidents,
            seen: seen_before,
        } = cached;
        let keyed = subs
            .iter()
            .any(|s| s.events.iter().any(|(_, k, _)| !k.is_empty()));
        // Events already applied (by an earlier attempt of the client, or earlier in the group) are set aside,
        // judged against the state this attempt builds on.
        let mut seen = keyed.then(|| seen_before.clone());
        let mut done: Vec<Done> = Vec::with_capacity(subs.len());
        let mut writes = Vec::new();
        let mut lane = Lane::Bulk;
        let mut subs = subs.into_iter();
        while let Some(mut sub) = subs.next() {
            let mut cfg = config.clone();
            if let Some(t) = sub.threshold {
                cfg.anomaly_threshold = t;
            }
            let threshold = cfg.anomaly_threshold;
            let (mut fresh, mut duplicates) = (Vec::new(), Vec::new());
            for (i, key, event) in std::mem::take(&mut sub.events) {
                match seen.as_mut() {
                    Some(seen) if seen.is_duplicate(&key) => duplicates.push((i, key, event)),
                    Some(seen) => {
                        seen.record(&key);
                        fresh.push(((i, key), event));
                    }
                    None => fresh.push(((i, key), event)),
                }
            }
            let (meta, batch): (Vec<(usize, Key)>, Vec<Event>) = fresh.into_iter().unzip();
            if batch.is_empty() {
                done.push(Done::only_duplicates(sub, duplicates, threshold));
                continue;
            }
            if sub.lane == Lane::Interactive {
                lane = Lane::Interactive;
            }
            // Asked per submission: the feeds' messages are built on the analysis thread only when someone
            // watches, here (whole results) or on another replica (compact ones, relayed).
            let watched = self.watchers.interest(stream);
            // The events travel to the analysis pool and back instead of being cloned; the job runs in slices (see
            // `bulk.rs`) and hands them back with its result.
            let mut job = Compute::new(
                state,
                incidents,
                batch,
                cfg,
                sub.cancelled.clone(),
                Wanted {
                    detail: sub.detail,
                    watched,
                },
            );
            let ran = self
                .analysis
                .run(sub.lane, move |slice| {
                    job.step(slice)
                        .map(|computed| (computed, std::mem::take(&mut job.batch)))
                })
                .await;
            let (computed, batch) = match ran {
                Ok((Ok(c), batch)) => (c, batch),
                Ok((Err(error), _)) | Err(error) => {
                    let failed = done.len();
                    let mut rest: Vec<Submission> = done.into_iter().map(Done::undo).collect();
                    rest.push(sub);
                    rest.extend(subs);
                    return Err((
                        GroupFailure {
                            failed: Some(failed),
                            error,
                        },
                        rest,
                    ));
                }
            };
            state = computed.state;
            incidents = computed.incidents;
            writes.extend(computed.batch_incidents.writes);
            done.push(Done {
                sub,
                meta,
                batch,
                analyses: computed.analyses,
                duplicates,
                notices: computed.batch_incidents.notices,
                watch: computed.watch,
                relayed: computed.relayed,
                ordinals: computed.ordinals,
                threshold,
            });
        }
        if done.iter().all(|d| d.batch.is_empty()) {
            let cached = Cached {
                state,
                version,
                stored_generation,
                config,
                incidents,
                seen: seen_before,
            };
            return Ok((done, GroupState::Unchanged(cached)));
        }
        let failure = |error: Error, done: Vec<Done>| {
            (
                GroupFailure {
                    failed: None,
                    error,
                },
                done.into_iter().map(|d| d.sub).collect::<Vec<_>>(),
            )
        };
        let seen_json = match &seen {
            Some(s) => match s.to_json() {
                Ok(j) => Some(j),
                Err(e) => return Err(failure(Error::internal(e), done)),
            },
            None => None,
        };
        // The state and tracker are serialised once per checkpoint, on the analysis pool like the analyses.
        // Called once: the job finishes in its first slice.
        let mut carried = Some((state, incidents));
        let serialised = self
            .analysis
            .run(lane, move |_| {
                let (state, incidents) = carried.take()?;
                let parts = state
                    .to_parts_after(u64::try_from(stored_generation).ok())
                    .map_err(Error::internal);
                let tracker = match &incidents.open {
                    Some(_) => serde_json::to_string(&incidents)
                        .map(Some)
                        .map_err(Error::internal),
                    None => Ok(None),
                };
                Some((state, incidents, parts, tracker))
            })
            .await;
        let (state, incidents, parts, tracker_json) = match serialised {
            Ok((state, incidents, Ok(parts), Ok(tracker))) => (state, incidents, parts, tracker),
            Ok((_, _, Err(e), _) | (_, _, _, Err(e))) | Err(e) => {
                return Err(failure(e, done));
            }
        };
        Ok((
            done,
            GroupState::Changed(Checkpoint {
                cached: Cached {
                    state,
                    version,
                    stored_generation,
                    config,
                    incidents,
                    seen: seen.unwrap_or(seen_before),
                },
                parts,
                tracker_json,
                seen_json,
                writes,
            }),
        ))
    }

    /// Writes a group's checkpoint (state, tracker, applied ids and incident rows in one transaction) if the row
    /// is still at the version the group started from; `false` when it is not (nothing was written). On success
    /// the checkpoint becomes the cache.
    async fn store_checkpoint(
        &self,
        app: &AppState,
        stream: &str,
        slot: &mut Slot,
        lock: Option<streams::StreamLock>,
        checkpoint: Checkpoint,
    ) -> Result<Option<i64>, Error> {
        let Checkpoint {
            mut cached,
            parts,
            tracker_json,
            seen_json,
            writes,
        } = checkpoint;
        let generation = i64::try_from(parts.model_generation).unwrap_or(i64::MAX);
        let model = match (&parts.model, generation != cached.stored_generation) {
            // The model is rewritten only when it was refitted since the stored one (it dominates the size).
            (Some(m), true) => Some((m.as_slice(), generation)),
            _ => None,
        };
        // Ring indexes are counts of events: far below i64::MAX.
        let int = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        let segments: Vec<SegmentWrite<'_>> = parts
            .segments
            .iter()
            .map(|s| SegmentWrite {
                ring: &s.ring,
                seg: int(s.index),
                first: int(s.first),
                data: &s.data,
            })
            .collect();
        let keep: Vec<SegmentKeep<'_>> = parts
            .prunes
            .iter()
            .map(|p| SegmentKeep {
                ring: &p.ring,
                keep_from: int(p.keep_from),
                keep_until: int(p.keep_until),
            })
            .collect();
        let write = Write {
            stream,
            expected_version: cached.version,
            state: &parts.core,
            model,
            incident: tracker_json.as_deref(),
            incidents: &writes,
            dedup: seen_json.as_deref(),
            segments: &segments,
            keep: &keep,
        };
        let saved = match lock {
            Some(l) => l.save(&app.store, write).await?,
            None => streams::save(&app.store, write).await?,
        };
        match saved {
            Saved::Ok(v) => {
                cached.version = Some(v);
                if model.is_some() {
                    cached.stored_generation = generation;
                }
                // The next checkpoint writes only the ring segments that change after this one.
                cached.state.mark_stored();
                slot.cached = Some(cached);
                Ok(Some(v))
            }
            Saved::Conflict => Ok(None),
        }
    }
}

/// What computing a group left: nothing to store (only duplicates; the cache unchanged), or a checkpoint.
enum GroupState {
    Unchanged(Cached),
    Changed(Checkpoint),
}

/// A group's result, ready to store: the cache it becomes once stored, and what the write needs.
struct Checkpoint {
    cached: Cached,
    parts: vigil_stream::StateParts,
    tracker_json: Option<String>,
    seen_json: Option<String>,
    /// The anomaly-log incident rows of every submission, in order.
    writes: Vec<IncidentWrite>,
}

/// Answers every submission with (a copy of) `error`: nothing of theirs was stored.
fn fail_all(subs: Vec<Submission>, error: &Error) {
    for sub in subs {
        let _ = sub.reply.send(Err(error_copy(error)));
    }
}

/// `error` again, for each of the submissions one failure answers. The errors that carry a source (the database,
/// internal ones) are logged here once with it; the copies keep their status and a description.
fn error_copy(error: &Error) -> Error {
    match error {
        Error::BadRequest(s) => Error::BadRequest(s.clone()),
        Error::Unauthorized(s) => Error::Unauthorized(s.clone()),
        Error::Forbidden(s) => Error::Forbidden(s.clone()),
        Error::NotFound(s) => Error::NotFound(s.clone()),
        Error::Conflict(s) => Error::Conflict(s.clone()),
        Error::PayloadTooLarge(s) => Error::PayloadTooLarge(s.clone()),
        Error::UnsupportedMediaType(s) => Error::UnsupportedMediaType(s.clone()),
        Error::Unprocessable(s) => Error::Unprocessable(s.clone()),
        Error::TooManyRequests {
            detail,
            retry_after_secs,
        } => Error::TooManyRequests {
            detail: detail.clone(),
            retry_after_secs: *retry_after_secs,
        },
        Error::Unavailable(s) => Error::Unavailable(s.clone()),
        Error::Store(vigil_store::StoreError::Conflict(s)) => {
            Error::Store(vigil_store::StoreError::Conflict(s.clone()))
        }
        Error::Store(e) => Error::internal_msg(format!("storing a stream's batch failed: {e}")),
        Error::Internal(e) => Error::internal_msg(format!("{e:#}")),
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

/// What [`Compute`] produces for one submission (the group serialises the final state once, for its checkpoint).
struct Computed {
    state: StreamState,
    analyses: Vec<(Analysis, Box<RawValue>)>,
    /// The incident tracker after the batch.
    incidents: Tracker,
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
        Ok(Computed {
            state,
            analyses: std::mem::take(&mut self.analyses),
            incidents: std::mem::take(&mut self.incidents),
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
    cancelled: &AtomicBool,
    wanted: Wanted,
) -> Result<Computed, Error> {
    let flag = Arc::new(AtomicBool::new(cancelled.load(Ordering::Relaxed)));
    let mut job = Compute::new(state, incidents, batch.to_vec(), cfg.clone(), flag, wanted);
    let slice = Slice::unbounded();
    loop {
        if let Some(done) = job.step(&slice) {
            return done;
        }
    }
}

/// The analysis state a stored row holds: its core, model and ring segments reassembled (see
/// [`StreamState::from_parts`]).
pub fn restore(row: &streams::StoredStream) -> Result<StreamState, vigil_stream::StreamError> {
    let segments: Vec<Segment> = row
        .segments
        .iter()
        .filter_map(|s| {
            Some(Segment {
                ring: s.ring.clone(),
                index: u64::try_from(s.seg).ok()?,
                first: u64::try_from(s.first).ok()?,
                data: s.data.clone(),
            })
        })
        .collect();
    StreamState::from_parts(&row.state, row.model.as_deref(), &segments)
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
        restore(&row).unwrap_or_else(|e| {
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
        let core = |c: &Computed| c.state.to_parts().expect("serialise").core;
        assert!(core(&sliced) == core(&whole), "states differ");
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
