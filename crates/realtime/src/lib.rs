//! # vigil-realtime: TopoForge streams over HTTP
//!
//! * `POST /api/ingest` (analyst): one event or an array → one analysis per event, in order; `?detail=compact`
//!   (or `scores`) answers each event with stream, score, `is_anomaly` and incident id only, with the whole
//!   analysis for anomalous events (or none) ([`answer`]).
//! * Idempotent events, on `POST /api/ingest` and the socket: an event may carry a client `event_id` and/or a
//!   per-source `seq`; one its stream already applied (a retried batch) is not applied again and is answered
//!   `{"stream":…,"status":"duplicate","event_id":…,"seq":…}` in place of its analysis ([`dedup`]: the rule, the
//!   bounds, and why it is stored in the state's own statement).
//! * NATS JetStream (with `NATS_URL`): producers publish events to `vigil.events.<stream>`; the replicas consume
//!   them as one group, one replica per stream, in order, each message applied once through the same pipeline
//!   and acknowledged after its state is stored ([`nats`]).
//! * `WS /ws/stream`: the dashboard's socket (protocol below); `?token=` optional unless `STREAM_REQUIRE_AUTH`.
//! * `GET /api/realtime/stream`: Server-Sent Events, event `anomaly`, data = the analysis result (same auth rule
//!   as the socket, since `EventSource` cannot send headers; `?token=` or a bearer header). With `?stream=S`
//!   (signed-in callers, any role: a viewer sees) it also carries every analysis of stream S, event `analysis`,
//!   data `{"value","timestamp","analysis"}`, in the order the stream's batches were stored, whatever `detail`
//!   the ingesting client asked for; event `lagged` `{"missed":n}` when the client fell more than
//!   `--stream-subscriber-queue` analyses behind, or when analyses relayed from another replica were lost
//!   ([`watch`]: a bounded per-stream ring, filled only while someone watches, never waited on). With PostgreSQL a
//!   watcher sees every analysis of the stream whichever replica made it: those of other replicas arrive through
//!   the relay in compact form (`"compact":true`: without persistence diagrams, landscape, security analysis and
//!   detector report, which `GET /api/streams/{stream}/analysis` serves).
//! * `GET /api/streams/{stream}/analysis` (viewer): the stream's summary and its current window's persistence
//!   diagrams, Betti numbers and landscape, computed from the stored state ([`overview`]), for a page that then
//!   follows the feed above.
//! * `GET|PUT /api/streams/{stream}/config`: a stream's analysis configuration (weights, threshold, window …;
//!   viewer reads, analyst writes).
//! * `GET /api/streams` (viewer): every stream's current window, event count, last score and calibration status, read from
//!   the stored state ([`overview`]; the console's overview polls it, since the broadcast carries anomalies only).
//!
//! Analyses run on one pool whose scheduler puts a socket's single events ahead of bulk batches, which run in
//! slices of about a millisecond and keep a guaranteed share (`bulk.rs`; no OS priority classes).
//!
//! Each event is analysed with its stream's state ([`vigil_stream`]) by the [`Pipeline`]; consecutive anomalous events of a stream form
//! an incident ([`incident`]: when it opens, grows and closes), stored as one row of `anomalies` (the peak's
//! analysis in `metadata`) in the same transaction as the stream's state, broadcast to subscribers when it opens,
//! and checked against alert configurations when it opens and when it closes ([`alerts`]). Each result carries
//! its `incident_id`.
//!
//! ## WebSocket protocol
//! Client → server text frames: `{"type":"config","payload":{"anomaly_threshold":0–100}}` (per socket, no
//! reply); `{"type":"event","payload":{…}}`; `{"type":"subscribe"}`; any other object is the event itself.
//! Server → client: `{"type":"analysis","data":<result>,"original_event":<event>}` for every event, on the socket
//! that sent it; `{"type":"anomaly","data":<result>}` for every anomaly of every stream once subscribed;
//! `{"type":"alert","data":<anomaly>}` for alert configs with the `websocket` channel of the socket's user;
//! `{"type":"error","detail":…}` for a frame that cannot be used or is not allowed — the socket stays open.
//!
//! ## Who may do what on a socket (and SSE)
//! * Feeding events takes the analyst role, as `POST /api/ingest` does; a viewer's event frames get error frames.
//!   A socket without a token may feed only the streams named in `STREAM_ANONYMOUS_STREAMS` (none by default).
//! * The anomaly broadcast (`subscribe`, SSE) is for signed-in users, and for anonymous clients only with
//!   `STREAM_ANONYMOUS_SUBSCRIBE=true`. `STREAM_REQUIRE_AUTH=true` refuses anonymous connections outright.
//! * A signed-in connection re-checks its token every `STREAM_SESSION_RECHECK_MS` (5 s) against the database,
//!   like every request does: after a logout, a logout everywhere, a password change, a deactivation or the
//!   token's expiry, the socket is closed with code 1008 and the reason, and an SSE stream ends. A role change
//!   applies to the next frames.
//!
//! A client may pipeline: frames already received together are handled as one unit, in order, with their events
//! analysed as one batch (as an `/api/ingest` array would be) and the replies written in order with one flush. A
//! `config` or `subscribe` frame ends a batch, so each event is judged with the threshold in force when it was sent.
//!
//! ## Invariants
//! * Streams never share state; a stream's state lives in the database (`stream_states`, its rings' segments in
//!   `stream_segments`: a checkpoint writes the small core and only the segments that changed since the last one)
//!   and every answer follows the commit of the checkpoint that holds its event (group commit, see [`pipeline`]), so
//!   replicas can serve any stream. With PostgreSQL one replica at a time analyses a stream (its lease;
//!   `ownership.rs`): the others' requests for it wait for a hand-over (`STREAM_LEASE_TTL_MS`,
//!   `STREAM_LEASE_IDLE_MS`).
//! * Slow consumers never slow ingestion: the anomaly broadcast is a bounded ring that never waits (a receiver
//!   that falls behind by more than `--stream-subscriber-queue` messages is disconnected, with the reason
//!   logged), socket alerts use bounded per-socket queues with `try_send`, and webhooks run in background tasks.
//! * Subscribers on every replica see every anomaly: with PostgreSQL, each replica announces what it published
//!   and republishes the other replicas' announcements to its own sockets ([`relay`]), with identical text.
//! * A client that disconnects frees everything it held (its broadcast receiver, its alert registration, its
//!   task); sockets and SSE streams end when the server shuts down.
//!
//! Metrics: `topoforge_events_total`, `topoforge_windows_analysed_total`, `topoforge_anomalies_total` (incidents
//! opened), `topoforge_incidents_total{event="opened"|"closed"}`,
//! `topoforge_analysis_duration_seconds` (histogram, per event), `topoforge_ws_reply_seconds` (histogram, from
//! reading a WebSocket event to flushing its analysis), `topoforge_analysis_job_seconds{lane}` (histogram, from
//! queueing an analysis job to its result), `topoforge_bulk_slices_yielded_total`,
//! `topoforge_duplicate_events_total`, `topoforge_state_conflicts_total`, `vigil_stream_checkpoints_total`,
//! `vigil_stream_checkpoint_events` (events per checkpoint), `vigil_stream_checkpoint_seconds` (histogram: storing
//! one checkpoint, waiting for the connection included), `vigil_stream_lease_acquisitions_total`,
//! `vigil_stream_lease_waits_total`, `vigil_stream_lease_wait_seconds`, `vigil_stream_lease_handovers_total`,
//! `topoforge_stream_connections{kind}` (gauge), `topoforge_subscribers_dropped_total{reason}`,
//! `topoforge_alert_pushes_total`, `topoforge_alert_pushes_dropped_total` (`websocket` alerts delivered and dropped;
//! the names predate the one-verb rule and stay, since dashboards read them; webhook metrics are the dispatcher's),
//! the relay's (see [`relay`]) and the watch feeds' (see [`watch`]).
//! the relay's (see [`relay`]) and the NATS consumer's (see [`nats`]).

pub mod alerts;
pub mod answer;
mod bulk;
pub mod dedup;
pub mod hub;
pub mod incident;
mod messages;
pub mod nats;
pub mod overview;
mod ownership;
pub mod pipeline;
pub mod relay;
mod routes;
mod session;
pub mod watch;
mod ws;

use std::sync::{Arc, OnceLock};

use axum::extract::FromRef;
use vigil_http::AppState;
// `routes!` expands to `axum::…` paths; this crate's axum is vigil-http's re-export.
use vigil_http::axum;
use vigil_http::utoipa_axum::router::OpenApiRouter;
use vigil_http::utoipa_axum::routes;

pub use answer::Detail;
pub use hub::Hub;
pub use pipeline::{Lane, Outcome, Pipeline};

/// Command-line / environment configuration of the stream endpoints.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct RealtimeConfig {
    /// Require a valid token (`?token=` or bearer header) on `WS /ws/stream` and the SSE stream.
    #[arg(long, env = "STREAM_REQUIRE_AUTH", default_value_t = defaults::STREAM_REQUIRE_AUTH)]
    pub stream_require_auth: bool,
    /// Messages a subscriber (WebSocket or SSE) may fall behind the anomaly broadcast before it is dropped.
    #[arg(long, env = "STREAM_SUBSCRIBER_QUEUE", default_value_t = defaults::STREAM_SUBSCRIBER_QUEUE)]
    pub stream_subscriber_queue: usize,
    /// `websocket` alerts buffered per socket before further alerts to it are dropped.
    #[arg(long, env = "STREAM_SOCKET_QUEUE", default_value_t = defaults::STREAM_SOCKET_QUEUE)]
    pub stream_socket_queue: usize,
    /// Largest batch `POST /api/ingest` accepts.
    #[arg(long, env = "STREAM_MAX_BATCH", default_value_t = defaults::STREAM_MAX_BATCH)]
    pub stream_max_batch: usize,
    /// Streams whose state this process keeps in memory (others reload from the database).
    #[arg(long, env = "STREAM_CACHE_STREAMS", default_value_t = defaults::STREAM_CACHE_STREAMS)]
    pub stream_cache_streams: usize,
    /// Threads that analyse events (0: one per core). They run at normal priority; a scheduler in the process
    /// puts a socket's single events ahead of `POST /api/ingest` batches and keeps the batches a guaranteed share.
    #[arg(long, env = "STREAM_INGEST_THREADS", default_value_t = defaults::STREAM_INGEST_THREADS)]
    pub stream_ingest_threads: usize,
    /// Streams that a socket without a token may feed events into (comma-separated; `*` for every stream; empty,
    /// the default: none). The TopoForge dashboard forwards public feed events to `default` over an anonymous
    /// socket: set `default` to keep that working.
    #[arg(long, env = "STREAM_ANONYMOUS_STREAMS", default_value = defaults::STREAM_ANONYMOUS_STREAMS)]
    pub stream_anonymous_streams: String,
    /// Whether a client without a token may receive the anomaly broadcast (WebSocket `subscribe`, SSE).
    #[arg(long, env = "STREAM_ANONYMOUS_SUBSCRIBE", default_value_t = defaults::STREAM_ANONYMOUS_SUBSCRIBE)]
    pub stream_anonymous_subscribe: bool,
    /// How often an open socket or SSE stream re-checks its token (milliseconds): a logout, a revoked session, a
    /// deactivated account or a role change takes effect on open connections within this time.
    #[arg(long, env = "STREAM_SESSION_RECHECK_MS", default_value_t = defaults::STREAM_SESSION_RECHECK_MS)]
    pub stream_session_recheck_ms: u64,
    /// With PostgreSQL, a replica analyses a stream only while it holds the stream's lease: how long a lease lasts
    /// without renewal (milliseconds), i.e. how soon the other replicas take over the streams of a replica that
    /// died. Held leases are renewed after a third of it.
    #[arg(long, env = "STREAM_LEASE_TTL_MS", default_value_t = defaults::STREAM_LEASE_TTL_MS)]
    pub stream_lease_ttl_ms: u64,
    /// A replica gives up a stream's lease after this long without events for it (milliseconds), so another
    /// replica receiving the stream's events takes it at once.
    #[arg(long, env = "STREAM_LEASE_IDLE_MS", default_value_t = defaults::STREAM_LEASE_IDLE_MS)]
    pub stream_lease_idle_ms: u64,
    /// NATS server to consume events from (e.g. `nats://127.0.0.1:4222`); unset, the default: the NATS ingest
    /// path is off and nothing connects. See [`nats`].
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// The JetStream stream holding the events; created if missing (file storage, limits retention with
    /// `NATS_MAX_AGE_HOURS`, subjects `<NATS_SUBJECT_PREFIX>.>`).
    #[arg(long, env = "NATS_STREAM", default_value = defaults::NATS_STREAM)]
    pub nats_stream: String,
    /// Producers publish a stream's events to `<prefix>.<stream>`.
    #[arg(long, env = "NATS_SUBJECT_PREFIX", default_value = defaults::NATS_SUBJECT_PREFIX)]
    pub nats_subject_prefix: String,
    /// Hours JetStream keeps a message when Vigil creates the stream (its retention; acknowledged or not).
    #[arg(long, env = "NATS_MAX_AGE_HOURS", default_value_t = defaults::NATS_MAX_AGE_HOURS)]
    pub nats_max_age_hours: u64,
    /// Milliseconds JetStream waits for an acknowledgement before delivering a message again.
    #[arg(long, env = "NATS_ACK_WAIT_MS", default_value_t = defaults::NATS_ACK_WAIT_MS)]
    pub nats_ack_wait_ms: u64,
    /// Messages fetched (and applied as one batch) at a time per stream.
    #[arg(long, env = "NATS_FETCH_BATCH", default_value_t = defaults::NATS_FETCH_BATCH)]
    pub nats_fetch_batch: usize,
    /// Messages delivered and not yet acknowledged per stream (the consumer's `max_ack_pending`).
    #[arg(long, env = "NATS_MAX_IN_FLIGHT", default_value_t = defaults::NATS_MAX_IN_FLIGHT)]
    pub nats_max_in_flight: usize,
    /// Milliseconds a replica's claim on a stream (`nats:<stream>` lease) lasts without renewal: how soon another
    /// replica takes over a dead one's streams.
    #[arg(long, env = "NATS_LEASE_TTL_MS", default_value_t = defaults::NATS_LEASE_TTL_MS)]
    pub nats_lease_ttl_ms: u64,
    /// Milliseconds between two looks for new streams (subjects) in the JetStream stream and free leases.
    #[arg(long, env = "NATS_DISCOVER_MS", default_value_t = defaults::NATS_DISCOVER_MS)]
    pub nats_discover_ms: u64,
}

impl RealtimeConfig {
    /// Whether a client without a token may feed events into `stream`.
    pub fn anonymous_may_feed(&self, stream: &str) -> bool {
        self.stream_anonymous_streams
            .split(',')
            .map(str::trim)
            .any(|s| s == "*" || (!s.is_empty() && s == stream))
    }
}

/// The default of every setting, shared by the command line (`default_value_t`) and `Default`.
pub mod defaults {
    pub const STREAM_REQUIRE_AUTH: bool = false;
    pub const STREAM_SUBSCRIBER_QUEUE: usize = 1024;
    pub const STREAM_SOCKET_QUEUE: usize = 64;
    pub const STREAM_MAX_BATCH: usize = 10_000;
    pub const STREAM_CACHE_STREAMS: usize = 10_000;
    pub const STREAM_INGEST_THREADS: usize = 0;
    pub const STREAM_ANONYMOUS_STREAMS: &str = "";
    pub const STREAM_ANONYMOUS_SUBSCRIBE: bool = false;
    pub const STREAM_SESSION_RECHECK_MS: u64 = 5_000;
    pub const STREAM_LEASE_TTL_MS: u64 = 5_000;
    pub const STREAM_LEASE_IDLE_MS: u64 = 1_000;
    pub const NATS_STREAM: &str = "VIGIL_EVENTS";
    pub const NATS_SUBJECT_PREFIX: &str = "vigil.events";
    /// A week: time to bring a consumer back after an outage.
    pub const NATS_MAX_AGE_HOURS: u64 = 168;
    pub const NATS_ACK_WAIT_MS: u64 = 30_000;
    pub const NATS_FETCH_BATCH: usize = 100;
    pub const NATS_MAX_IN_FLIGHT: usize = 1_000;
    pub const NATS_LEASE_TTL_MS: u64 = 5_000;
    pub const NATS_DISCOVER_MS: u64 = 1_000;
}

impl Default for RealtimeConfig {
    /// The same values as the command-line defaults.
    fn default() -> Self {
        RealtimeConfig {
            stream_require_auth: defaults::STREAM_REQUIRE_AUTH,
            stream_subscriber_queue: defaults::STREAM_SUBSCRIBER_QUEUE,
            stream_socket_queue: defaults::STREAM_SOCKET_QUEUE,
            stream_max_batch: defaults::STREAM_MAX_BATCH,
            stream_cache_streams: defaults::STREAM_CACHE_STREAMS,
            stream_ingest_threads: defaults::STREAM_INGEST_THREADS,
            stream_anonymous_streams: defaults::STREAM_ANONYMOUS_STREAMS.to_owned(),
            stream_anonymous_subscribe: defaults::STREAM_ANONYMOUS_SUBSCRIBE,
            stream_session_recheck_ms: defaults::STREAM_SESSION_RECHECK_MS,
            stream_lease_ttl_ms: defaults::STREAM_LEASE_TTL_MS,
            stream_lease_idle_ms: defaults::STREAM_LEASE_IDLE_MS,
            nats_url: None,
            nats_stream: defaults::NATS_STREAM.to_owned(),
            nats_subject_prefix: defaults::NATS_SUBJECT_PREFIX.to_owned(),
            nats_max_age_hours: defaults::NATS_MAX_AGE_HOURS,
            nats_ack_wait_ms: defaults::NATS_ACK_WAIT_MS,
            nats_fetch_batch: defaults::NATS_FETCH_BATCH,
            nats_max_in_flight: defaults::NATS_MAX_IN_FLIGHT,
            nats_lease_ttl_ms: defaults::NATS_LEASE_TTL_MS,
            nats_discover_ms: defaults::NATS_DISCOVER_MS,
        }
    }
}

/// The process-local side of the stream endpoints: the pipeline (with its per-stream caches) and the fan-out hub.
/// Cheap to clone.
///
/// Wiring, as for every feature crate: `Realtime::new(config, &anomalies)`, then [`Realtime::router`].
#[derive(Clone)]
pub struct Realtime {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: RealtimeConfig,
    pub pipeline: Pipeline,
    pub hub: Arc<Hub>,
    pub dispatcher: vigil_anomalies::AlertDispatcher,
    /// Set once the routes are built over a PostgreSQL store (see [`relay`]); empty with SQLite.
    pub relay: OnceLock<Option<relay::Relay>>,
    /// Set when the routes are built: the NATS consumer, if `NATS_URL` is set ([`nats`]).
    pub nats: OnceLock<Option<nats::NatsIngest>>,
}

impl Realtime {
    /// The stream side of the process, delivering its alerts through `anomalies`' dispatcher (one queue, one
    /// concurrency limit and the configured `WEBHOOK_*` settings for every alert of the process).
    pub fn new(config: RealtimeConfig, anomalies: &vigil_anomalies::Anomalies) -> Self {
        let dispatcher = anomalies.dispatcher().clone();
        let rt = Realtime {
            inner: Arc::new(Inner {
                pipeline: Pipeline::with_settings(
                    config.stream_cache_streams,
                    config.stream_ingest_threads,
                    config.stream_subscriber_queue,
                    ownership::Owner::new(
                        std::time::Duration::from_millis(config.stream_lease_ttl_ms),
                        std::time::Duration::from_millis(config.stream_lease_idle_ms),
                    ),
                ),
                hub: Arc::new(Hub::new(
                    config.stream_subscriber_queue,
                    config.stream_socket_queue,
                )),
                dispatcher,
                config,
                relay: OnceLock::new(),
                nats: OnceLock::new(),
            }),
        };
        // `websocket` alert channels fired anywhere in the process (the pipeline, POST /api/anomalies) reach
        // the sockets this side holds.
        let sink = alerts::SocketSink(Arc::downgrade(&rt.inner));
        if !rt.inner.dispatcher.set_socket_alerts(Arc::new(sink)) {
            tracing::warn!(
                "the alert dispatcher already delivers websocket alerts elsewhere; this Realtime gets none"
            );
        }
        rt
    }

    /// The pipeline that analyses and stores events (for tests and benchmarks).
    pub fn pipeline(&self) -> &Pipeline {
        &self.inner.pipeline
    }

    /// The fan-out hub (for tests and benchmarks).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    /// Starts the cross-replica relay if `app`'s store is PostgreSQL; later calls do nothing. The routes call it
    /// on first use (a socket or SSE client connecting, an ingest request, an anomaly to announce), so a replica
    /// listens as soon as it has someone to deliver to or analyses someone elsewhere may watch; calling it at
    /// startup only makes that earlier.
    pub fn start(&self, app: &AppState) {
        self.relay(app);
    }

    /// Whether this replica currently receives the other replicas' anomalies (`false` with SQLite, where there
    /// are no other replicas, before the relay started, and while its connection is down).
    pub fn relay_listening(&self) -> bool {
        matches!(self.inner.relay.get(), Some(Some(r)) if r.listening())
    }

    fn relay(&self, app: &AppState) -> Option<&relay::Relay> {
        self.inner
            .relay
            .get_or_init(|| {
                relay::Relay::start(
                    app,
                    self.inner.hub.clone(),
                    self.inner.pipeline.watchers().clone(),
                )
            })
            .as_ref()
    }

    /// The stream routes (ingest, the socket, SSE, stream configuration and overview), bound to `state` and to
    /// this side. Keep a clone to inspect the pipeline or the hub from tests.
    pub fn router(self, state: &AppState) -> OpenApiRouter<AppState> {
        self.inner
            .nats
            .get_or_init(|| nats::NatsIngest::start(&self.inner.config, state, &self));
        OpenApiRouter::new()
            .routes(routes!(routes::ingest))
            .routes(routes!(routes::sse))
            .routes(routes!(routes::get_config, routes::put_config))
            .routes(routes!(overview::list))
            .routes(routes!(overview::current))
            .routes(routes!(ws::ws))
            .with_state(RouterState {
                app: state.clone(),
                realtime: self,
            })
    }

    /// The NATS consumer side, when `NATS_URL` is set and the routes were built.
    pub fn nats(&self) -> Option<&nats::NatsIngest> {
        self.inner.nats.get().and_then(Option::as_ref)
    }

    /// Tells the other replicas (if any) what was just published here.
    pub(crate) fn announce(&self, app: &AppState, item: relay::Item) {
        if let Some(r) = self.relay(app) {
            r.announce(item);
        }
    }
}

/// What the handlers extract with `State<…>`: a handler asking for anything else does not compile.
#[derive(Clone)]
struct RouterState {
    app: AppState,
    realtime: Realtime,
}

impl FromRef<RouterState> for AppState {
    fn from_ref(s: &RouterState) -> Self {
        s.app.clone()
    }
}

impl FromRef<RouterState> for Realtime {
    fn from_ref(s: &RouterState) -> Self {
        s.realtime.clone()
    }
}
