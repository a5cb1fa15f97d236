//! One Vigil stream consumed by the replica holding its lease: bind the durable consumer where the stored state
//! ends, fetch, apply through the pipeline, acknowledge after the state is stored.
//!
//! Why the consumer is re-created at each bind, starting after the stored high-water mark, instead of resuming
//! where the server's acknowledgements say: the pipeline's high-water mark ([`crate::dedup`]) drops any event at
//! or below the highest `seq` applied, so a message must never be applied after a later one. A consumer that
//! resumed would deliver the messages a dead holder left unacknowledged only after `ack_wait`, behind newer
//! ones, and they would then be dropped as "already applied". Starting from the database's own record of what
//! was applied delivers them first, at once (no wait for `ack_wait`), and what the dead holder applied but did
//! not acknowledge is not redelivered at all. The stream's retention (limits, not interest) keeps messages
//! whatever happens to consumers. The same re-bind follows any failure to store a batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use vigil_http::{AppState, Error};
use vigil_store::leases::{self, Lease};
use vigil_stream::Event;

use super::Shared;
use super::message::{self, Malformed};
use crate::Realtime;
use crate::answer::Detail;
use crate::dedup::Seen;
use crate::pipeline::Lane;

/// Why a worker stopped consuming.
enum Stop {
    /// Asked to (shutdown, or the replica gives the stream back): release the lease.
    Cancelled,
    /// The lease expired or was taken: another replica owns the stream now; touch nothing.
    LeaseLost,
    /// Binding, fetching or storing failed: pause, then bind again from the stored state.
    Failed,
}

pub(super) struct Worker {
    pub app: AppState,
    pub rt: Realtime,
    pub shared: Arc<Shared>,
    pub js: jetstream::Context,
    /// The Vigil stream.
    pub stream: String,
    pub lease: Lease,
    pub stop: CancellationToken,
}

impl Worker {
    pub async fn run(mut self) {
        let held = HeldGuard::new(&self.shared, &self.stream);
        let mut renewed = Instant::now();
        loop {
            let stop = tokio::select! {
                _ = self.stop.cancelled() => Stop::Cancelled,
                bound = self.bind() => match bound {
                    Ok(c) => self.consume(c, &mut renewed).await,
                    Err(e) => {
                        tracing::warn!(stream = %self.stream, error = %e, "cannot bind the NATS consumer");
                        Stop::Failed
                    }
                },
            };
            match stop {
                Stop::Cancelled => {
                    if let Err(e) = leases::release(&self.app.store, &self.lease).await {
                        tracing::warn!(stream = %self.stream, error = %e, "releasing the NATS lease");
                    }
                    break;
                }
                Stop::LeaseLost => {
                    tracing::info!(stream = %self.stream, "NATS lease lost; another replica consumes the stream");
                    break;
                }
                Stop::Failed => {
                    tokio::select! {
                        _ = self.stop.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    if !self.keep_lease(&mut renewed).await {
                        break;
                    }
                }
            }
        }
        drop(held);
    }

    /// Renews the lease when a third of its time has passed. `false`: it is no longer ours (or could not be
    /// confirmed for two thirds of its time, after which another replica may take it).
    async fn keep_lease(&mut self, renewed: &mut Instant) -> bool {
        let ttl = self.shared.settings.lease_ttl;
        if renewed.elapsed() < ttl / 3 {
            return true;
        }
        match leases::renew(&self.app.store, &self.lease, ttl).await {
            Ok(Some(l)) => {
                self.lease = l;
                *renewed = Instant::now();
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(stream = %self.stream, error = %e, "renewing the NATS lease");
                renewed.elapsed() < ttl * 2 / 3
            }
        }
    }

    /// Re-creates the stream's durable consumer to start after the last message the stored state applied.
    async fn bind(&self) -> Result<PullConsumer, async_nats::Error> {
        let settings = &self.shared.settings;
        let seq = vigil_store::streams::load(&self.app.store, &self.stream)
            .await?
            .and_then(|row| row.dedup)
            .and_then(|d| Seen::from_json(&d).ok())
            .and_then(|s| s.seq());
        let last = message::last_applied(seq);
        let js_stream = self.js.get_stream(&settings.stream).await?;
        let tail = js_stream.cached_info().state.last_sequence;
        if let Some(l) = last
            && l > tail
        {
            // Nothing published until the sequence passes `l` will be applied: the high-water mark was set by
            // another JetStream stream (recreated since?) or by `seq` numbers given to `POST /api/ingest`.
            tracing::error!(stream = %self.stream, applied = l, jetstream_last = tail,
                "the stream's stored sequence is ahead of the JetStream stream; its messages are taken as applied");
        }
        let durable = message::durable_name(&self.stream);
        // Absent the first time; any other failure shows in the create below.
        let _ = js_stream.delete_consumer(&durable).await;
        let consumer = js_stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(durable),
                filter_subject: format!("{}.{}", settings.subject_prefix, self.stream),
                ack_policy: AckPolicy::Explicit,
                ack_wait: settings.ack_wait,
                max_ack_pending: i64::try_from(settings.max_in_flight).unwrap_or(i64::MAX),
                deliver_policy: match last {
                    Some(l) => DeliverPolicy::ByStartSequence {
                        start_sequence: l + 1,
                    },
                    None => DeliverPolicy::All,
                },
                ..Default::default()
            })
            .await?;
        Ok(consumer)
    }

    async fn consume(&mut self, consumer: PullConsumer, renewed: &mut Instant) -> Stop {
        let settings = &self.shared.settings;
        // Short enough that a stop or a due renewal waits at most this long.
        let wait =
            (settings.lease_ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let batch = settings.fetch_batch.clamp(1, settings.max_in_flight.max(1));
        loop {
            if self.stop.is_cancelled() {
                return Stop::Cancelled;
            }
            if !self.keep_lease(renewed).await {
                return Stop::LeaseLost;
            }
            let mut fetched = match consumer
                .fetch()
                .max_messages(batch)
                .expires(wait)
                .messages()
                .await
            {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(stream = %self.stream, error = %e, "NATS fetch failed");
                    return Stop::Failed;
                }
            };
            let mut messages = Vec::new();
            let mut broken = false;
            while let Some(m) = fetched.next().await {
                match m {
                    Ok(m) => messages.push(m),
                    Err(e) => {
                        // What arrived before the error is applied; then the consumer is bound again, since
                        // messages the server counts as delivered but we never read would otherwise come back
                        // only after `ack_wait`, behind newer ones (and be dropped as applied).
                        tracing::warn!(stream = %self.stream, error = %e, "NATS fetch ended early");
                        broken = true;
                        break;
                    }
                }
            }
            if messages.is_empty() {
                if broken {
                    return Stop::Failed;
                }
                continue;
            }
            // A batch must be stored while the lease is surely ours: renew first if it is due.
            if !self.keep_lease(renewed).await {
                return Stop::LeaseLost;
            }
            if self.apply(messages).await.is_err() || broken {
                return Stop::Failed;
            }
        }
    }

    /// Applies fetched messages in order: malformed ones are terminated, the rest applied as one batch (one
    /// stored write) and acknowledged. `Err`: nothing of the batch was stored; bind again.
    async fn apply(&self, messages: Vec<jetstream::Message>) -> Result<(), ()> {
        let mut ready = Vec::with_capacity(messages.len());
        let mut events = Vec::new();
        for m in messages {
            counter("topoforge_nats_messages_consumed_total", 1);
            let sequence = match m.info() {
                Ok(info) => {
                    if info.delivered > 1 {
                        counter("topoforge_nats_redeliveries_total", 1);
                    }
                    metrics::gauge!("topoforge_nats_pending_messages", "stream" => self.stream.clone())
                        .set(info.pending as f64);
                    info.stream_sequence
                }
                Err(e) => {
                    self.malformed(
                        &m,
                        0,
                        &Malformed::Event(format!("not a JetStream message: {e}")),
                    )
                    .await;
                    continue;
                }
            };
            match message::events(&self.stream, sequence, &m.payload) {
                Ok(evs) => {
                    events.extend(evs);
                    ready.push((m, sequence));
                }
                Err(e) => self.malformed(&m, sequence, &e).await,
            }
        }
        if ready.is_empty() {
            return Ok(());
        }
        match self.store(events).await {
            Ok(()) => {
                self.ack(&ready).await;
                Ok(())
            }
            // One event the analysis refuses must not stall the stream: find its message, one at a time.
            Err(Error::Unprocessable(_)) if ready.len() > 1 => {
                for (m, sequence) in &ready {
                    let evs = match message::events(&self.stream, *sequence, &m.payload) {
                        Ok(evs) => evs,
                        Err(e) => {
                            self.malformed(m, *sequence, &e).await;
                            continue;
                        }
                    };
                    match self.store(evs).await {
                        Ok(()) => {
                            self.ack(std::slice::from_ref(&(m.clone(), *sequence)))
                                .await
                        }
                        Err(Error::Unprocessable(d)) => {
                            self.malformed(m, *sequence, &Malformed::Event(d)).await;
                        }
                        Err(e) => {
                            tracing::warn!(stream = %self.stream, error = %e, "storing a NATS batch failed");
                            return Err(());
                        }
                    }
                }
                Ok(())
            }
            Err(Error::Unprocessable(d)) => {
                if let Some((m, sequence)) = ready.first() {
                    self.malformed(m, *sequence, &Malformed::Event(d)).await;
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(stream = %self.stream, error = %e, "storing a NATS batch failed");
                Err(())
            }
        }
    }

    /// Runs `events` through the pipeline as `POST /api/ingest` does (bulk lane), announcing incidents to the
    /// sockets, SSE and alerts; counts the events already applied.
    async fn store(&self, events: Vec<Event>) -> Result<(), Error> {
        let (outcomes, notices) = self
            .rt
            .pipeline()
            .process_incidents(&self.app, events, None, Lane::Bulk, Detail::Scores)
            .await;
        crate::alerts::handle_incidents(&self.app, &self.rt, notices);
        let outcomes = outcomes?;
        tracing::debug!(stream = %self.stream, events = outcomes.len(), "NATS batch stored");
        let duplicates = outcomes.iter().filter(|o| o.analysis.is_none()).count();
        counter("topoforge_nats_duplicate_events_total", duplicates as u64);
        Ok(())
    }

    async fn ack(&self, done: &[(jetstream::Message, u64)]) {
        for (m, sequence) in done {
            match m.ack().await {
                Ok(()) => counter("topoforge_nats_messages_acked_total", 1),
                // Applied and stored: a redelivery will be recognised and dropped.
                Err(e) => {
                    tracing::warn!(stream = %self.stream, sequence, error = %e, "acknowledging a NATS message")
                }
            }
        }
    }

    async fn malformed(&self, m: &jetstream::Message, sequence: u64, why: &Malformed) {
        counter("topoforge_nats_malformed_messages_total", 1);
        tracing::warn!(stream = %self.stream, sequence, subject = %m.subject, error = %why,
            "malformed NATS message terminated");
        if let Err(e) = m.ack_with(AckKind::Term).await {
            tracing::warn!(stream = %self.stream, sequence, error = %e, "terminating a NATS message");
        }
    }
}

fn counter(name: &'static str, n: u64) {
    metrics::counter!(name).increment(n);
}

/// Lists the stream among those this replica consumes while the worker lives.
struct HeldGuard {
    shared: Arc<Shared>,
    stream: String,
}

impl HeldGuard {
    fn new(shared: &Arc<Shared>, stream: &str) -> Self {
        shared.set_held(stream, true);
        HeldGuard {
            shared: shared.clone(),
            stream: stream.to_owned(),
        }
    }
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.shared.set_held(&self.stream, false);
    }
}
