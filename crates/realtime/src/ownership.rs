//! One owner per stream across replicas (PostgreSQL): a replica analyses stream S only while it holds the lease
//! `stream:S` (`vigil_store::leases`), so its cached state is the stream's state and a group of events is
//! computed on it without a read and stored as one checkpoint (`pipeline.rs`). SQLite is one process: no lease.
//!
//! * **Taking a stream** ([`Core::own`], before each group): a lease this replica renewed within two thirds of
//!   the TTL is used as is. Otherwise `acquire`; a new epoch (the stream was someone else's meanwhile, or the
//!   lease lapsed) drops the cache, so the group starts from the stored row.
//! * **Waiting**: while another live replica holds it, the group waits — backoff from 2 ms to 20 ms, for at most
//!   three TTLs, then 503 — and records itself as the lease's taker-in-waiting (`leases::want`, again every
//!   250 ms). Contention costs latency, not errors.
//! * **The keeper** (one task per replica, started with its first lease, every [`KEEPER_TICK`]): renews held leases
//!   after a third of the TTL; releases those of streams idle for `--stream-lease-idle-ms` (1 s); and hands over
//!   the ones another replica asked for (`leases::wanted`, one query per tick for all of them): it waits for the
//!   stream's group in flight (the stream's turn), then `leases::hand_over` passes the lease straight to the asker
//!   under a new epoch. The asker's next `acquire` finds it its own and reloads the row, which holds everything the
//!   previous owner acknowledged (it answers only after its checkpoint commits).
//! * **Death**: a replica that dies holds its leases until they expire (TTL, 5 s by default); waiting replicas
//!   then take them. Nothing acknowledged is lost, since every answer followed its commit. A replica that shuts
//!   down gracefully releases its leases (each after its group in flight), so its streams move at once.
//! * **The fence**: a replica that stalled past its lease without noticing still writes with the row's `version`
//!   check, so it cannot overwrite the newer owner's checkpoint; its write misses and its group is recomputed on
//!   the stored row (after waiting for the lease again).
//!
//! Clocks: lease expiry is on the database's clock (`vigil_store::leases`); the local deadlines here are measured
//! from just before each statement, so they end no later than the stored expiry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use vigil_http::{AppState, Error};
use vigil_store::leases::{self, Lease};
use vigil_store::{Backend, Store};

use crate::pipeline::{Core, Entry, Slot, locked};

/// How often the keeper renews, releases and hands over (and so the longest a hand-over request waits to be
/// seen).
pub const KEEPER_TICK: Duration = Duration::from_millis(10);
/// A waiting replica re-records its request this often (another waiter may have replaced it, or the lease was
/// taken anew, which clears it).
const WANT_AGAIN: Duration = Duration::from_millis(250);
const FIRST_BACKOFF: Duration = Duration::from_millis(2);
const MAX_BACKOFF: Duration = Duration::from_millis(20);

/// This replica's identity as a lease owner, and its lease settings.
pub(crate) struct Owner {
    id: String,
    ttl: Duration,
    idle: Duration,
    keeper: AtomicBool,
    /// The keeper task, to stop it as a crash would ([`Core::abandon_leases`]).
    keeper_task: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Owner {
    /// A new owner identity (one per pipeline, i.e. per replica process).
    pub(crate) fn new(ttl: Duration, idle: Duration) -> Owner {
        Owner {
            id: format!("replica-{}", uuid::Uuid::new_v4()),
            ttl: ttl.max(Duration::from_millis(100)),
            idle,
            keeper: AtomicBool::new(false),
            keeper_task: std::sync::Mutex::new(None),
        }
    }

    /// Streams are leased on PostgreSQL only: a SQLite database belongs to one process.
    pub(crate) fn uses_leases(&self, store: &Store) -> bool {
        store.backend() == Backend::Postgres
    }
}

impl Default for Owner {
    fn default() -> Owner {
        Owner::new(
            Duration::from_millis(crate::defaults::STREAM_LEASE_TTL_MS),
            Duration::from_millis(crate::defaults::STREAM_LEASE_IDLE_MS),
        )
    }
}

/// A lease this replica holds, and when (locally) it was last taken or renewed.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) lease: Lease,
    /// Taken just before the statement that set the lease's expiry.
    pub(crate) since: Instant,
}

fn lease_name(stream: &str) -> String {
    format!("stream:{stream}")
}

impl Core {
    /// Makes sure this replica holds `stream`'s lease before a group is computed, waiting while another replica
    /// holds it (see the module docs). Drops the cache when the lease is new to us.
    pub(crate) async fn own(
        self: &Arc<Self>,
        app: &AppState,
        stream: &str,
        entry: &Arc<Entry>,
        slot: &mut Slot,
    ) -> Result<(), Error> {
        let owner = &self.owner;
        let held = locked(&entry.lease).clone();
        if let Some(h) = &held
            && h.since.elapsed() < owner.ttl * 2 / 3
        {
            return Ok(());
        }
        let name = lease_name(stream);
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut asked: Option<Instant> = None;
        loop {
            let at = Instant::now();
            if let Some(lease) = leases::acquire(&app.store, &name, &owner.id, owner.ttl).await? {
                if held.as_ref().map(|h| h.lease.epoch) != Some(lease.epoch) {
                    // The stream may have been someone else's since we last had it: start from its stored row.
                    slot.cached = None;
                    metrics::counter!("vigil_stream_lease_acquisitions_total").increment(1);
                }
                if asked.is_some() {
                    metrics::histogram!("vigil_stream_lease_wait_seconds")
                        .record(started.elapsed().as_secs_f64());
                }
                *locked(&entry.lease) = Some(Held { lease, since: at });
                self.start_keeper(app);
                return Ok(());
            }
            // Another live replica holds it; anything we cached is not the stream's state any more.
            *locked(&entry.lease) = None;
            slot.cached = None;
            if asked.is_none_or(|t| t.elapsed() >= WANT_AGAIN) {
                if asked.is_none() {
                    metrics::counter!("vigil_stream_lease_waits_total").increment(1);
                }
                leases::want(&app.store, &name, &owner.id).await?;
                asked = Some(Instant::now());
            }
            if started.elapsed() >= owner.ttl * 3 {
                return Err(Error::Unavailable(format!(
                    "stream `{stream}` is held by another replica; retry"
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn start_keeper(self: &Arc<Self>, app: &AppState) {
        if self.owner.keeper.swap(true, Ordering::AcqRel) {
            return;
        }
        // Tracked, so a graceful shutdown waits for the keeper to give the leases up.
        let task = app.tasks.spawn(keep(Arc::downgrade(self), app.clone()));
        *locked(&self.owner.keeper_task) = Some(task.abort_handle());
    }

    /// Stops the keeper without releasing anything, as a crash would: the leases lapse after their TTL.
    pub(crate) fn abandon_leases(&self) {
        if let Some(task) = locked(&self.owner.keeper_task).take() {
            task.abort();
        }
    }

    /// Gives up every stream lease this replica holds, each after its group in flight (graceful shutdown), so the
    /// other replicas take the streams at once instead of after the TTL.
    async fn release_all(&self, store: &Store) {
        for (stream, entry) in self.leased() {
            let _turn = entry.slot.lock().await;
            let held = locked(&entry.lease).take();
            if let Some(h) = held
                && let Err(e) = leases::release(store, &h.lease).await
            {
                tracing::warn!(%stream, error = %e, "could not release a stream lease at shutdown");
            }
        }
    }

    /// One round of the keeper: hand-overs, renewals, idle releases.
    async fn keep_once(self: &Arc<Self>, store: &Store) {
        let held = self.leased();
        if held.is_empty() {
            return;
        }
        let owner = &self.owner;
        match leases::wanted(store, &owner.id, owner.ttl).await {
            Ok(wanted) => {
                for lease in wanted {
                    let Some(stream) = lease.name.strip_prefix("stream:").map(str::to_owned) else {
                        continue;
                    };
                    // Also a lease the database says is ours while this process holds no entry or lease for
                    // it (handed to us just as our waiting group gave up): passing it on beats waiting for expiry.
                    let entry = self.existing(&stream);
                    if entry
                        .as_ref()
                        .is_none_or(|e| !e.handing_over.swap(true, Ordering::AcqRel))
                    {
                        self.spawn_hand_over(store, &stream, entry, lease);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the stream leases other replicas want")
            }
        }
        let mut renew = false;
        for (stream, entry) in &held {
            let Some(h) = locked(&entry.lease).clone() else {
                continue;
            };
            let idle = locked(&entry.last_used).elapsed() >= owner.idle;
            if idle && let Ok(_turn) = entry.slot.try_lock() {
                // The stream's turn is free and nothing was stored for a while: let another replica have it at
                // once, instead of after the TTL, if its clients move there.
                if let Err(e) = leases::release(store, &h.lease).await {
                    tracing::warn!(%stream, error = %e, "could not release an idle stream lease");
                }
                *locked(&entry.lease) = None;
                continue;
            }
            renew |= h.since.elapsed() >= owner.ttl / 3;
        }
        if renew {
            self.renew_all(store, held).await;
        }
    }

    /// Renews every stream lease of this replica in one statement, and forgets those it lost.
    async fn renew_all(&self, store: &Store, held: Vec<(String, Arc<Entry>)>) {
        let owner = &self.owner;
        let at = Instant::now();
        let renewed = match leases::renew_all(store, &owner.id, "stream:", owner.ttl).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the stream leases");
                return;
            }
        };
        let renewed: std::collections::HashMap<String, Lease> =
            renewed.into_iter().map(|l| (l.name.clone(), l)).collect();
        for (stream, entry) in held {
            let mut lease = locked(&entry.lease);
            // Only the lease as it was before the statement: one taken anew meanwhile is newer than the answer.
            let Some(h) = lease.as_ref().filter(|h| h.since <= at) else {
                continue;
            };
            match renewed.get(&lease_name(&stream)) {
                Some(l) if l.epoch == h.lease.epoch => {
                    *lease = Some(Held {
                        lease: l.clone(),
                        since: at,
                    });
                }
                _ => {
                    // Lost (it lapsed, or was handed over); the next group takes it again, and the version check
                    // fences any write computed meanwhile.
                    tracing::info!(%stream, "a stream lease was lost before it was renewed");
                    *lease = None;
                }
            }
        }
    }

    /// Passes `stream`'s lease (as the database showed it) to the replica that asked, once the group in flight is
    /// stored.
    fn spawn_hand_over(
        self: &Arc<Self>,
        store: &Store,
        stream: &str,
        entry: Option<Arc<Entry>>,
        lease: Lease,
    ) {
        let store = store.clone();
        let stream = stream.to_owned();
        let (ttl, fresh) = (self.owner.ttl, self.owner.ttl);
        tokio::spawn(async move {
            // A group in flight is stored and answered first.
            let mut slot = match &entry {
                Some(e) => Some(e.slot.lock().await),
                None => None,
            };
            // `hand_over` checks the owner and epoch: a lease taken anew since the query is left alone.
            match leases::hand_over(&store, &lease, fresh, ttl).await {
                Ok(Some(to)) => {
                    metrics::counter!("vigil_stream_lease_handovers_total").increment(1);
                    tracing::debug!(%stream, %to, "handed a stream lease over");
                    if let Some(e) = &entry {
                        let mut held = locked(&e.lease);
                        if held.as_ref().is_some_and(|h| h.lease.epoch == lease.epoch) {
                            *held = None;
                        }
                    }
                    if let Some(slot) = slot.as_mut() {
                        slot.cached = None;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(%stream, error = %e, "could not hand a stream lease over"),
            }
            drop(slot);
            if let Some(e) = entry {
                e.handing_over.store(false, Ordering::Release);
            }
        });
    }
}

/// The keeper's loop. It ends with the pipeline (then the leases lapse after their TTL) or at shutdown, after
/// releasing them.
async fn keep(core: Weak<Core>, app: AppState) {
    let mut tick = tokio::time::interval(KEEPER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = app.shutdown.cancelled() => {
                if let Some(core) = core.upgrade() {
                    core.release_all(&app.store).await;
                }
                return;
            }
        }
        let Some(core) = core.upgrade() else {
            return;
        };
        core.keep_once(&app.store).await;
    }
}
