//! The NATS JetStream ingest path (issue #18 item 5): a durable log for high-volume producers, consumed by the
//! replicas as one group, one replica per stream, in order, each message applied once.
//!
//! * **Off unless `NATS_URL` is set** (nothing connects otherwise). Settings: `NATS_STREAM` (the JetStream
//!   stream, default `VIGIL_EVENTS`, created if missing with file storage and limits retention of
//!   `NATS_MAX_AGE_HOURS`, default a week, over the subjects `<NATS_SUBJECT_PREFIX>.>`, default `vigil.events.>`),
//!   `NATS_ACK_WAIT_MS`, `NATS_FETCH_BATCH` (messages applied as one batch), `NATS_MAX_IN_FLIGHT` (unacknowledged
//!   messages per stream), `NATS_LEASE_TTL_MS`, `NATS_DISCOVER_MS`.
//! * **Producers** publish to `<prefix>.<stream>` (e.g. `vigil.events.cpu`; a stream name may contain dots) one
//!   event object, as one element of `POST /api/ingest`, or a JSON array of up to 10,000 of them. The subject names
//!   the stream: an event without `stream` gets it, an event naming another stream makes its whole message
//!   malformed ([`message`]). Each event's `seq` is replaced by one derived from the message's JetStream sequence;
//!   an `event_id` is kept (and deduplicates as on `POST /api/ingest`). Use JetStream's `Nats-Msg-Id` header for
//!   publisher-side deduplication.
//! * **One consumer per stream** ([`assign`]): a replica consumes a stream only while it holds the lease
//!   `nats:<stream>` (`vigil_store::leases`, in the database), discovering streams from the subjects that hold
//!   messages and taking at most its fair share; a dead replica's streams move within `NATS_LEASE_TTL_MS` plus a
//!   discovery round. The holder binds the stream's durable pull consumer (`vigil-<name>-<hash>`, filter
//!   `<prefix>.<stream>`, explicit acks), re-created to start right after the last message the stored state
//!   applied ([`worker`] says why), so nothing waits for `ack_wait` after a takeover.
//! * **Exactly-once application over at-least-once delivery**: fetched messages go through the same pipeline
//!   entry point as `POST /api/ingest` (bulk lane; incidents reach the anomaly log, sockets, SSE and alerts the
//!   same way) and are acknowledged after their batch is stored. A message delivered again after it was applied
//!   (a crash between store and ack) is recognised by its events' `seq` at or below the stream's stored
//!   high-water mark and dropped, in the state's own transaction ([`crate::dedup`]), then acknowledged.
//! * **A malformed message never stalls a stream**: bad JSON, a bad event, an event of another stream, or an
//!   event the analysis refuses: the message is terminated (`AckKind::Term`), counted and logged with its
//!   sequence; the stream goes on.
//! * Do not also give `seq` numbers to a NATS-fed stream through `POST /api/ingest`: both set the same
//!   high-water mark.
//!
//! Metrics: `topoforge_nats_messages_consumed_total`, `_acked_total`, `topoforge_nats_redeliveries_total`,
//! `topoforge_nats_malformed_messages_total`, `topoforge_nats_duplicate_events_total` (events of redelivered
//! messages dropped as already applied), `topoforge_nats_streams_held` and
//! `topoforge_nats_pending_messages{stream}` (the consumer's lag, as of its last delivered message). `/health`
//! reports `"components": {"nats": "connected" | "connecting" | "disconnected"}` (a status of `degraded`, still
//! 200, while not connected).

mod assign;
pub mod message;
mod worker;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::task::AbortHandle;
use vigil_http::AppState;
use vigil_http::health::ComponentState;

use crate::{Realtime, RealtimeConfig};

/// The NATS settings in force (from [`RealtimeConfig`]).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
    pub max_age: Duration,
    pub ack_wait: Duration,
    pub fetch_batch: usize,
    pub max_in_flight: usize,
    pub lease_ttl: Duration,
    pub discover: Duration,
}

impl Settings {
    /// `None` when `NATS_URL` is unset (or empty): the path is off.
    fn from_config(c: &RealtimeConfig) -> Option<Settings> {
        let url = c
            .nats_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())?;
        Some(Settings {
            url: url.to_owned(),
            stream: c.nats_stream.clone(),
            subject_prefix: c.nats_subject_prefix.trim_end_matches('.').to_owned(),
            max_age: Duration::from_secs(c.nats_max_age_hours.saturating_mul(3600)),
            ack_wait: Duration::from_millis(c.nats_ack_wait_ms.max(1)),
            fetch_batch: c.nats_fetch_batch.max(1),
            max_in_flight: c.nats_max_in_flight.max(1),
            lease_ttl: Duration::from_millis(c.nats_lease_ttl_ms.max(300)),
            discover: Duration::from_millis(c.nats_discover_ms.max(50)),
        })
    }
}

/// The NATS side of a process: its identity as a consumer, its connection, and the streams it consumes.
/// Cheap to clone.
#[derive(Clone)]
pub struct NatsIngest {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub settings: Settings,
    /// This replica's lease owner id.
    pub owner: String,
    pub client: OnceLock<async_nats::Client>,
    held: Mutex<BTreeSet<String>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Shared {
    fn set_held(&self, stream: &str, held: bool) {
        let mut h = match self.held.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if held {
            h.insert(stream.to_owned());
        } else {
            h.remove(stream);
        }
    }

    fn track(&self, task: AbortHandle) {
        let mut t = match self.tasks.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        t.retain(|h| !h.is_finished());
        t.push(task);
    }
}

impl NatsIngest {
    /// Starts consuming if `config` names a NATS server (`None`: the path is off). Registers `nats` on `/health`.
    pub(crate) fn start(config: &RealtimeConfig, app: &AppState, rt: &Realtime) -> Option<Self> {
        let settings = Settings::from_config(config)?;
        let ingest = NatsIngest {
            shared: Arc::new(Shared {
                settings,
                owner: format!("nats-{}", uuid::Uuid::new_v4()),
                client: OnceLock::new(),
                held: Mutex::new(BTreeSet::new()),
                tasks: Mutex::new(Vec::new()),
            }),
        };
        let probe = ingest.clone();
        app.health.register("nats", move || probe.health());
        let task = app.spawn(assign::run(app.clone(), rt.clone(), ingest.clone()));
        ingest.shared.track(task.abort_handle());
        Some(ingest)
    }

    /// The connection's state for `/health`.
    fn health(&self) -> ComponentState {
        use async_nats::connection::State;
        let (state, healthy) = match self.shared.client.get().map(|c| c.connection_state()) {
            Some(State::Connected) => ("connected", true),
            Some(State::Disconnected) => ("disconnected", false),
            Some(State::Pending) | None => ("connecting", false),
        };
        ComponentState {
            state: state.into(),
            healthy,
        }
    }

    /// Whether the client is connected to the NATS server.
    pub fn connected(&self) -> bool {
        self.health().healthy
    }

    /// This replica's lease owner id.
    pub fn owner(&self) -> &str {
        &self.shared.owner
    }

    /// The streams this replica consumes now.
    pub fn held_streams(&self) -> Vec<String> {
        match self.shared.held.lock() {
            Ok(g) => g.iter().cloned().collect(),
            Err(p) => p.into_inner().iter().cloned().collect(),
        }
    }

    /// Stops consuming at once, as a crashed process would: no batch finishes, nothing is acknowledged or
    /// released (its leases expire). For tests of the takeover.
    pub fn halt(&self) {
        let tasks = match self.shared.tasks.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        for t in tasks {
            t.abort();
        }
        self.shared.set_held_none();
    }
}

impl Shared {
    fn set_held_none(&self) {
        match self.held.lock() {
            Ok(mut g) => g.clear(),
            Err(p) => p.into_inner().clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_is_off_without_a_url_and_settings_are_bounded() {
        assert!(Settings::from_config(&RealtimeConfig::default()).is_none());
        let blank = RealtimeConfig {
            nats_url: Some("  ".into()),
            ..RealtimeConfig::default()
        };
        assert!(Settings::from_config(&blank).is_none());
        let s = Settings::from_config(&RealtimeConfig {
            nats_url: Some("nats://127.0.0.1:4222".into()),
            nats_subject_prefix: "a.b.".into(),
            nats_fetch_batch: 0,
            nats_lease_ttl_ms: 1,
            ..RealtimeConfig::default()
        })
        .expect("on");
        assert_eq!(s.subject_prefix, "a.b", "a trailing dot is not doubled");
        assert_eq!(s.fetch_batch, 1);
        assert_eq!(s.lease_ttl, Duration::from_millis(300));
        assert_eq!(s.stream, "VIGIL_EVENTS");
        assert_eq!(s.max_age, Duration::from_secs(168 * 3600));
    }
}
