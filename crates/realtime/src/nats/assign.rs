//! Which replica consumes which stream: discovery of the streams in the JetStream stream, leases, fair shares.
//!
//! Every `NATS_DISCOVER_MS` a replica (1) says it is alive on the core-NATS subject
//! `_VIGIL.<jetstream stream>.members` (the replicas it heard from recently are the group), (2) asks JetStream
//! which subjects under `<prefix>.>` hold messages (`STREAM.INFO` with `subjects_filter`, NATS 2.9), and (3)
//! takes free `nats:<stream>` leases up to its fair share, ⌈streams / replicas⌉, trying streams in an order of its
//! own (a hash of its id and the stream's name) so replicas starting together do not all race for the same
//! stream. A replica holding more than its share gives one stream back per round (its worker finishes its batch
//! and releases the lease), so a replica that joins later gets streams within a few rounds. A replica that dies
//! stops renewing: its leases expire after `NATS_LEASE_TTL_MS` and the others take them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use futures_util::{StreamExt, TryStreamExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_http::AppState;
use vigil_store::leases;

use super::message::{self, stream_of};
use super::worker::Worker;
use super::{NatsIngest, Shared};
use crate::Realtime;

/// A stream this replica consumes.
struct Held {
    stop: CancellationToken,
    join: JoinHandle<()>,
    /// Asked to give the stream back; no longer counted in the share.
    leaving: bool,
}

pub(super) async fn run(app: AppState, rt: Realtime, ingest: NatsIngest) {
    let shared = ingest.shared.clone();
    let settings = &shared.settings;
    // Connects in the background and keeps reconnecting; `/health` shows the state meanwhile.
    let client = match async_nats::ConnectOptions::new()
        .name(format!("vigil {}", shared.owner))
        .retry_on_initial_connect()
        .connect(settings.url.as_str())
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "NATS_URL is unusable; the NATS ingest path is off");
            return;
        }
    };
    let _ = shared.client.set(client.clone());
    let js = jetstream::new(client.clone());
    let tick = settings.discover;
    let js_stream = loop {
        match ensure_stream(&js, &shared).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, stream = %settings.stream, "cannot open the JetStream stream; retrying");
                tokio::select! {
                    _ = app.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(tick.max(Duration::from_secs(1))) => {}
                }
            }
        }
    };
    let members_subject = format!("_VIGIL.{}.members", settings.stream);
    let mut members = match client.subscribe(members_subject.clone()).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot hear the other replicas; taking streams as if alone");
            None
        }
    };
    let mut round = Round {
        app: &app,
        rt: &rt,
        shared: &shared,
        js: &js,
        js_stream,
        held: HashMap::new(),
        peers: HashMap::new(),
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => break,
            Some(m) = async {
                match members.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            } => {
                let peer = String::from_utf8_lossy(&m.payload).into_owned();
                if peer != shared.owner {
                    round.peers.insert(peer, Instant::now());
                }
            }
            _ = interval.tick() => {
                if let Err(e) = client.publish(members_subject.clone(), shared.owner.clone().into()).await {
                    tracing::debug!(error = %e, "announcing this replica on NATS");
                }
                round.run().await;
            }
        }
    }
    // Graceful shutdown: every worker finishes its batch and releases its lease, so others take over at once.
    let workers: Vec<_> = round.held.into_values().collect();
    for h in &workers {
        h.stop.cancel();
    }
    for h in workers {
        let _ = h.join.await;
    }
}

async fn ensure_stream(
    js: &jetstream::Context,
    shared: &Shared,
) -> Result<stream::Stream, async_nats::Error> {
    let s = &shared.settings;
    let wanted = format!("{}.>", s.subject_prefix);
    let created = js
        .get_or_create_stream(stream::Config {
            name: s.stream.clone(),
            subjects: vec![wanted.clone()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: s.max_age,
            ..Default::default()
        })
        .await?;
    let subjects = &created.cached_info().config.subjects;
    if !subjects.contains(&wanted) {
        tracing::warn!(stream = %s.stream, ?subjects, %wanted,
            "the existing JetStream stream does not take the configured subjects; events published there are not seen");
    }
    Ok(created)
}

struct Round<'a> {
    app: &'a AppState,
    rt: &'a Realtime,
    shared: &'a Arc<Shared>,
    js: &'a jetstream::Context,
    js_stream: stream::Stream,
    held: HashMap<String, Held>,
    /// Other replicas, by when they last said they were alive.
    peers: HashMap<String, Instant>,
}

impl Round<'_> {
    async fn run(&mut self) {
        self.held.retain(|_, h| !h.join.is_finished());
        let settings = &self.shared.settings;
        let streams = match self.discover().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "listing the streams in JetStream failed");
                return;
            }
        };
        // A peer silent for three rounds and a lease's time is gone.
        let horizon = settings.discover * 3 + settings.lease_ttl;
        self.peers.retain(|_, seen| seen.elapsed() < horizon);
        let replicas = self.peers.len() + 1;
        let mut all: Vec<&String> = streams.iter().collect();
        all.extend(self.held.keys().filter(|k| !streams.contains(k)));
        let share = all.len().div_ceil(replicas);
        let active = self.held.values().filter(|h| !h.leaving).count();
        metrics::gauge!("topoforge_nats_streams_held").set(active as f64);
        if active > share {
            // One per round: the others see it free on their next round.
            if let Some((name, h)) = self
                .held
                .iter_mut()
                .filter(|(_, h)| !h.leaving)
                .max_by_key(|(name, _)| (*name).clone())
            {
                tracing::info!(stream = %name, share, replicas, "giving a NATS stream back to balance the replicas");
                h.leaving = true;
                h.stop.cancel();
            }
            return;
        }
        let owner = &self.shared.owner;
        let mut free: Vec<String> = streams
            .into_iter()
            .filter(|s| !self.held.contains_key(s))
            .collect();
        free.sort_by_key(|s| message::order_key(owner, s));
        let mut active = active;
        for name in free {
            if active >= share {
                break;
            }
            match leases::acquire(
                &self.app.store,
                &format!("nats:{name}"),
                owner,
                settings.lease_ttl,
            )
            .await
            {
                Ok(Some(lease)) => {
                    self.start(name, lease);
                    active += 1;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "taking a NATS stream lease failed");
                    break;
                }
            }
        }
    }

    /// The Vigil streams with messages in the JetStream stream.
    async fn discover(&self) -> Result<Vec<String>, async_nats::Error> {
        let prefix = &self.shared.settings.subject_prefix;
        let mut subjects = self
            .js_stream
            .info_with_subjects(format!("{prefix}.>"))
            .await?;
        let mut out = Vec::new();
        while let Some((subject, _count)) = subjects.try_next().await? {
            if let Some(s) = stream_of(prefix, &subject) {
                out.push(s.to_owned());
            }
        }
        Ok(out)
    }

    fn start(&mut self, stream: String, lease: vigil_store::leases::Lease) {
        tracing::info!(%stream, "consuming NATS stream");
        let stop = CancellationToken::new();
        let worker = Worker {
            app: self.app.clone(),
            rt: self.rt.clone(),
            shared: self.shared.clone(),
            js: self.js.clone(),
            stream: stream.clone(),
            lease,
            stop: stop.clone(),
        };
        let join = self.app.spawn(worker.run());
        self.shared.track(join.abort_handle());
        self.held.insert(
            stream,
            Held {
                stop,
                join,
                leaving: false,
            },
        );
    }
}
