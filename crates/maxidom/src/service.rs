//! The MaxiDOM service: model cache, training coordination and the operations the routes call.
//!
//! State that matters lives in the database (see `vigil_store::maxidom`); this process only keeps
//! decoded models, keyed by (profile, model version). Every score reads the database's active version (with the
//! profile's run state, in the same statement) before it scores, so a replica never answers with a model another
//! replica has replaced or a reset removed, and an accepted session is pooled by a write that is conditional on
//! that version (see [`crate::pool`]). A mismatch drops the cached model and scores again.
//!
//! A training's claim is the only record that someone is working on it, so this process keeps the claims it
//! holds fresh while their trainings queue and run (a heartbeat), and sweeps for claims nobody refreshed for a
//! TTL (their process died) to train those profiles itself: a crash costs one TTL, not the model.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use vigil_biometrics::lifecycle::{Counts, VectorKinds, growth_due, retraining_set};
use vigil_biometrics::model::{
    Parallelism, ProfileModels, Score, StoredVector, TrainParams, train_models,
};
use vigil_biometrics::sequential::{Run, event_span};
use vigil_biometrics::{FeatureVector, ModelError, Payload, RICH_COUNT};
use vigil_http::AppState;
use vigil_store::maxidom::{self, Claim, ExpiredClaim, Thresholds};
use vigil_store::time::now_ms;
use vigil_store::{Store, StoreError};

use crate::config::MaxidomConfig;
use crate::pool::{PoolError, PoolPolicy, PoolWriter, ScoreWrites};

/// Times a score is redone because the model changed under it before the request gives up (503). Models
/// change once per retraining, so even two in a row means something is badly wrong.
const MAX_MODEL_RACES: usize = 4;

/// Expired claims one recovery sweep handles; more wait for the next sweep (a few seconds later).
const SWEEP_BATCH: i64 = 64;

/// Shortest heartbeat and sweep period, whatever the TTL (a zero period would spin).
const MIN_BEAT: Duration = Duration::from_millis(100);

/// Process-local pieces of the MaxiDOM routes (their typed router state, `State<Arc<Maxidom>>`).
#[derive(Debug)]
pub struct Maxidom {
    pub config: MaxidomConfig,
    cache: ModelCache,
    pool: PoolWriter,
    /// Background trainings this process runs at once. Pools that fill together (every profile scored at
    /// the same rate) would otherwise start a training per profile at the same instant and take every core
    /// from the requests for the whole burst; queued, they use at most half the cores.
    training_slots: tokio::sync::Semaphore,
}

/// Decoded models by profile, each tagged with the version it was decoded from.
#[derive(Debug)]
struct ModelCache {
    capacity: usize,
    entries: RwLock<HashMap<String, (i64, Arc<ProfileModels>)>>,
}

impl ModelCache {
    /// The cached models of a profile with the version they were decoded from (possibly stale: callers check).
    fn get(&self, profile_id: &str) -> Option<(i64, Arc<ProfileModels>)> {
        let entries = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(profile_id).map(|(v, m)| (*v, m.clone()))
    }

    fn put(&self, profile_id: &str, version: i64, models: Arc<ProfileModels>) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(profile_id) {
            // Full: drop an arbitrary entry. A miss only costs one blob read and decode, so a simple bound
            // beats the bookkeeping of an LRU here.
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        if self.capacity > 0 {
            entries.insert(profile_id.to_owned(), (version, models));
        }
    }

    fn remove(&self, profile_id: &str) {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(profile_id);
    }
}

/// Why a model could not be loaded for scoring.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored model of profile {profile_id} is unreadable: {source}")]
    Corrupt {
        profile_id: String,
        #[source]
        source: ModelError,
    },
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("the model of profile {0} kept changing while it was scored")]
    ModelChurn(String),
}

/// Database trouble is the store's 500, a model that keeps changing under a score is worth a retry (503), and an
/// unreadable model or a stopped pool writer is our fault (500 with the cause logged).
impl From<LoadError> for vigil_http::Error {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Store(e) | LoadError::Pool(PoolError::Store(e)) => Self::Store(e),
            LoadError::ModelChurn(_) => Self::Unavailable(e.to_string()),
            other => Self::internal(other),
        }
    }
}

/// Which training a claim is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingKind {
    /// The first model, once the profile is ready.
    Initial,
    /// The pool filled: profiling and pool vectors, and the pool is emptied.
    Retrain,
    /// The profile grew (see [`growth_due`]) or a modality became ready: the same data as a retraining, but
    /// the pool is left alone.
    Grow,
}

/// New vectors a profile needs before a modality that became ready since the last training triggers one
/// (so a modality whose data the training window cannot cover does not retrain on every `/train`).
const MISSING_MODALITY_STEP: u64 = 5;

impl Maxidom {
    pub fn new(config: MaxidomConfig) -> Self {
        let cache = ModelCache {
            capacity: config.cache_profiles,
            entries: RwLock::new(HashMap::new()),
        };
        let pool = PoolWriter::new(PoolPolicy {
            pool_trigger: i64::try_from(config.pool_size).unwrap_or(i64::MAX),
            claim_ttl_ms: i64::try_from(config.claim_ttl_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        });
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Maxidom {
            config,
            cache,
            pool,
            training_slots: tokio::sync::Semaphore::new((cores / 2).max(1)),
        }
    }

    pub(crate) fn thresholds(&self) -> Thresholds {
        let q = self.config.quotas();
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Thresholds {
            total: i(q.total),
            keyboard: i(q.keyboard),
            mouse: i(q.mouse),
            digraph: i(q.digraph),
        }
    }

    fn stale_before(&self, now: i64) -> i64 {
        now.saturating_sub(
            i64::try_from(self.config.claim_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        )
    }

    /// How often a live training refreshes its claim, and how often this process looks for claims whose owner
    /// died: a quarter of the TTL, so a live claim survives three missed beats (a slow database) before another
    /// process may take it over, and a dead one is noticed within a quarter TTL of expiring.
    fn beat_period(&self) -> Duration {
        (Duration::from_secs(self.config.claim_ttl_secs) / 4).max(MIN_BEAT)
    }

    fn train_params(&self) -> TrainParams {
        let q = self.config.quotas();
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        TrainParams {
            mouse_rows: n(q.mouse),
            typing_rows: n(q.keyboard),
            digraph_rows: n(q.digraph),
            parallelism: Parallelism::CallingThread,
            ..TrainParams::default()
        }
    }

    /// Scores a session against the profile's active models; `None` when the profile has no model.
    ///
    /// One read and one (shared) write per request. The read fetches the active model version and the profile's
    /// run state together ([`maxidom::score_context`]); the cached model is used when it is that version, else the
    /// model is loaded. The answer's `score` is the run's combined evidence (`vigil_biometrics::sequential`), so
    /// the new run state is written before the answer, any replica continues any run (last writer wins). That
    /// write and, for an accepted session, its retraining-pool vector go to the group-commit writer
    /// ([`crate::pool`]) and are stored in one transaction with other requests' writes; the pool write only
    /// succeeds while the scoring model is still the active version (and also takes the retraining slot when
    /// the pool fills). When it is not, nothing of this score is stored and the session is scored again with
    /// what is active now, so no answer ever comes from a replaced or reset model. A score that changes nothing
    /// (no pool vector, run unchanged) writes nothing.
    ///
    /// Only sessions that are typical for the owner (calibrated score ≥ `pool_min_score`, not merely above
    /// the anomaly threshold) enter the pool, and none when the feedback loop is off: a pool that took every
    /// accepted session would let an impostor who stays just under the threshold become the owner.
    pub async fn score(
        self: &Arc<Self>,
        state: &AppState,
        profile_id: &str,
        payload: &Payload,
    ) -> Result<Option<Score>, LoadError> {
        let store = &state.store;
        let span = event_span(payload);
        let vector = StoredVector::of(payload);
        let rich = vector.rich.unwrap_or([0.0; RICH_COUNT]);
        let (mouse_points, key_events) = (payload.mouse_point_count(), payload.key_event_count());
        for _ in 0..MAX_MODEL_RACES {
            let Some(context) = maxidom::score_context(store, profile_id).await? else {
                self.cache.remove(profile_id);
                return Ok(None);
            };
            let Some((version, models)) = self
                .models_at(store, profile_id, context.model_version)
                .await?
            else {
                return Ok(None);
            };
            let prior = context
                .run_state
                .as_deref()
                .and_then(Run::from_bytes)
                .unwrap_or_default();
            let mut run = prior.clone();
            let result = models
                .score(&vector.contract, &rich, mouse_points, key_events)
                .in_run(&mut run, span, models.alpha);
            // A legacy model's score is a raw forest decision, not a p-value: its accepted sessions are pooled as
            // before, so its pool fills and the retraining replaces it with a calibrated model. Otherwise the
            // payload must be typical on its own and its run not flagged.
            let pooled = self.config.feedback
                && !result.is_anomaly
                && (models.is_legacy() || result.payload_score >= self.config.pool_min_score);
            let writes = ScoreWrites {
                pool: pooled.then(|| (version, vector.to_values())),
                run_state: (run != prior).then(|| run.to_bytes()),
            };
            if writes.pool.is_none() && writes.run_state.is_none() {
                return Ok(Some(result));
            }
            match self.pool.add(store, profile_id, writes).await? {
                maxidom::ScoreStored::Stored { claim } => {
                    self.spawn_training(state, claim, TrainingKind::Retrain);
                    return Ok(Some(result));
                }
                // Replaced or reset meanwhile: the next round reads what is active now.
                maxidom::ScoreStored::Stale => continue,
            }
        }
        Err(LoadError::ModelChurn(profile_id.to_owned()))
    }

    /// The models of a profile at `version` (the active one, just read), from the cache or else decoded from the
    /// stored blob, with the version they really are (a training may have published a newer one meanwhile).
    /// `None` when the model is gone (a reset between the reads).
    async fn models_at(
        &self,
        store: &Store,
        profile_id: &str,
        version: i64,
    ) -> Result<Option<(i64, Arc<ProfileModels>)>, LoadError> {
        if let Some((v, m)) = self.cache.get(profile_id)
            && v == version
        {
            return Ok(Some((v, m)));
        }
        let Some(stored) = maxidom::model(store, profile_id).await? else {
            self.cache.remove(profile_id);
            return Ok(None);
        };
        let blob = stored.blob;
        let decoded = tokio::task::spawn_blocking(move || ProfileModels::from_bytes(&blob))
            .await
            .map_err(|e| LoadError::Corrupt {
                profile_id: profile_id.to_owned(),
                source: ModelError::Corrupt(e.to_string()),
            })?
            .map_err(|source| LoadError::Corrupt {
                profile_id: profile_id.to_owned(),
                source,
            })?;
        let models = Arc::new(decoded);
        self.cache.put(profile_id, stored.version, models.clone());
        Ok(Some((stored.version, models)))
    }

    /// The active models of a profile and their version, read from the database (the blob is decoded only
    /// when the cache does not already hold that version). `None` when the profile has no model.
    async fn load_active(
        &self,
        store: &Store,
        profile_id: &str,
    ) -> Result<Option<(i64, Arc<ProfileModels>)>, LoadError> {
        let Some(version) = maxidom::active_model_version(store, profile_id).await? else {
            self.cache.remove(profile_id);
            return Ok(None);
        };
        self.models_at(store, profile_id, version).await
    }

    /// Forgets a profile's cached models (after a reset).
    pub fn evict(&self, profile_id: &str) {
        self.cache.remove(profile_id);
    }

    /// Starts the first training of a profile in the background if it is ready, has no model and nobody else
    /// is training it. Never waits for the training. Returns whether this call started it.
    pub async fn maybe_start_training(
        self: &Arc<Self>,
        state: &AppState,
        profile_id: &str,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let token = uuid::Uuid::new_v4().to_string();
        let claim = maxidom::claim_initial_training(
            &state.store,
            profile_id,
            &token,
            now,
            self.stale_before(now),
            self.thresholds(),
        )
        .await?;
        Ok(self.spawn_training(state, claim, TrainingKind::Initial))
    }

    /// Starts a training of a profile whose model is active when the profile has grown enough since (or a
    /// modality without a model became ready): the first model is trained on the first 30 vectors, and
    /// accuracy keeps improving up to ~150 (the accuracy curve), so the profile is retrained as it grows.
    /// Best effort: the vector is already stored, so a failure here is logged and `/train` still answers.
    pub async fn maybe_grow(
        self: &Arc<Self>,
        state: &AppState,
        profile_id: &str,
        counts: Counts,
    ) -> bool {
        let active = match self.load_active(&state.store, profile_id).await {
            Ok(Some(active)) => active,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(profile_id, error = %e, "could not check whether the profile needs a training");
                return false;
            }
        };
        let (version, models) = active;
        let q = self.config.quotas();
        let max_training = u64::try_from(self.config.retrain_profiling).unwrap_or(u64::MAX);
        let missing = (models.mouse.is_none() && counts.mouse_ready(&q))
            || (models.typing.is_none() && counts.typing_ready(&q));
        let due = growth_due(models.trained_on, counts.total, max_training)
            || (missing && counts.total >= models.trained_on.saturating_add(MISSING_MODALITY_STEP));
        if !due {
            return false;
        }
        let now = now_ms();
        let token = uuid::Uuid::new_v4().to_string();
        match maxidom::claim_growth_training(
            &state.store,
            profile_id,
            &token,
            now,
            self.stale_before(now),
            version,
        )
        .await
        {
            Ok(claim) => self.spawn_training(state, claim, TrainingKind::Grow),
            Err(e) => {
                tracing::warn!(profile_id, error = %e, "could not claim a growth training");
                false
            }
        }
    }

    fn spawn_training(
        self: &Arc<Self>,
        state: &AppState,
        claim: Option<Claim>,
        kind: TrainingKind,
    ) -> bool {
        let Some(claim) = claim else { return false };
        let svc = self.clone();
        let state = state.clone();
        state.clone().spawn(async move {
            let store = &state.store;
            let training = async {
                // Queued trainings wait here holding their claim; the heartbeat keeps it live meanwhile.
                let _slot = svc.training_slots.acquire().await;
                svc.run_training(store, &claim, kind).await
            };
            match svc.beating(store, &claim, training).await {
                Ok(true) => svc.grow_if_due(&state, &claim.profile_id).await,
                Ok(false) => {}
                Err(e) => {
                    metrics::counter!("maxidom_training_failures_total").increment(1);
                    tracing::warn!(profile_id = %claim.profile_id, ?kind, error = %e, "training failed");
                    if let Err(e) = maxidom::release_claim(store, &claim).await {
                        tracing::warn!(profile_id = %claim.profile_id, error = %e, "could not release the training claim");
                    }
                }
            }
        });
        true
    }

    /// Starts the growth training a profile became due for while its previous training ran, if any. `/train`
    /// checks growth at every post, but while a training holds the profile's claim that check cannot claim, so
    /// a profile whose posts stopped meanwhile (the end of an enrolment burst) would keep the older model until
    /// its next post. Called after every published training.
    async fn grow_if_due(self: &Arc<Self>, state: &AppState, profile_id: &str) {
        match maxidom::profile(&state.store, profile_id).await {
            Ok(Some(p)) if p.model_active => {
                self.maybe_grow(state, profile_id, counts_of(p.counts))
                    .await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(profile_id, error = %e, "could not check for a growth due after a training")
            }
        }
    }

    /// Runs `work` while refreshing `claim` every [`Self::beat_period`], so the claim stays live for as long as
    /// this process is alive and working on it, and expires one TTL after the process dies. Beats stop once the
    /// claim is no longer held (reset, or taken over after a stall); the work's publish then fails harmlessly.
    async fn beating<T>(
        &self,
        store: &Store,
        claim: &Claim,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let period = self.beat_period();
        // Polled alongside the work, never in a `select!` arm's body: a beat waiting for a connection must not
        // stop the work from finishing the query that holds it (SQLite has one).
        let heartbeat = async {
            let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                beat.tick().await;
                match maxidom::refresh_claim(store, claim, now_ms()).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    // Transient: the next beat tries again, and the TTL covers three missed ones.
                    Err(e) => {
                        tracing::warn!(profile_id = %claim.profile_id, error = %e, "could not refresh the training claim");
                    }
                }
            }
            std::future::pending::<std::convert::Infallible>().await
        };
        tokio::select! {
            out = work => out,
            never = heartbeat => match never {},
        }
    }

    /// Starts the recovery sweeper: at start and then every [`Self::beat_period`], trainings whose claim expired
    /// (the process that held it died, or lost the database for a whole TTL) are claimed again and retrained
    /// here, so a crash mid-training costs one TTL, not a model until the next `/train`. Every replica sweeps;
    /// the claims' compare-and-set decides which one retrains. Ends when the server shuts down.
    pub fn spawn_recovery(self: &Arc<Self>, state: &AppState) {
        let svc = self.clone();
        let st = state.clone();
        state.spawn(async move {
            let mut tick = tokio::time::interval(svc.beat_period());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = st.shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = svc.recover_expired(&st).await {
                    tracing::warn!(error = %e, "could not look for abandoned trainings");
                }
            }
        });
    }

    /// One recovery sweep: each expired claim is taken over for the training its profile needs now (the first
    /// model, a pool retraining or a growth training), or cleared when none is due. Returns how many trainings
    /// it started.
    pub async fn recover_expired(self: &Arc<Self>, state: &AppState) -> Result<usize, StoreError> {
        let store = &state.store;
        let stale_before = self.stale_before(now_ms());
        let mut started = 0;
        for expired in maxidom::expired_claims(store, stale_before, SWEEP_BATCH).await? {
            let restarted = match self.restart(state, &expired).await {
                Ok(restarted) => restarted,
                Err(e) => {
                    tracing::warn!(profile_id = %expired.profile_id, error = %e, "could not restart an abandoned training");
                    continue;
                }
            };
            if restarted {
                metrics::counter!("maxidom_trainings_recovered_total").increment(1);
                tracing::info!(profile_id = %expired.profile_id, "restarted a training whose process stopped");
                started += 1;
            } else if let Err(e) =
                maxidom::release_expired_claim(store, &expired, stale_before).await
            {
                tracing::warn!(profile_id = %expired.profile_id, error = %e, "could not clear an abandoned claim");
            }
        }
        Ok(started)
    }

    /// Claims the training an expired claim's profile needs (each claim takes the expired one over) and starts it.
    async fn restart(
        self: &Arc<Self>,
        state: &AppState,
        expired: &ExpiredClaim,
    ) -> Result<bool, StoreError> {
        let pid = expired.profile_id.as_str();
        let Some(p) = maxidom::profile(&state.store, pid).await? else {
            return Ok(false);
        };
        if !p.model_active {
            return self.maybe_start_training(state, pid).await;
        }
        let trigger = i64::try_from(self.config.pool_size).unwrap_or(i64::MAX);
        if p.pool_count >= trigger {
            let now = now_ms();
            let token = uuid::Uuid::new_v4().to_string();
            let claim = maxidom::claim_retraining(
                &state.store,
                pid,
                &token,
                now,
                self.stale_before(now),
                trigger,
            )
            .await?;
            return Ok(self.spawn_training(state, claim, TrainingKind::Retrain));
        }
        Ok(self.maybe_grow(state, pid, counts_of(p.counts)).await)
    }

    /// Trains under `claim` and publishes the models. Public for tests and tools that train synchronously.
    pub async fn run_training(
        &self,
        store: &Store,
        claim: &Claim,
        kind: TrainingKind,
    ) -> Result<bool, TrainingError> {
        let started = Instant::now();
        let policy = self.config.retrain_policy();
        let pid = claim.profile_id.as_str();
        let to_vectors = |rows: Vec<Vec<f64>>| -> Vec<StoredVector> {
            rows.iter()
                .filter_map(|r| StoredVector::from_values(r))
                .collect()
        };
        // Read before the vectors, so a vector stored meanwhile counts as new for the next growth check.
        let trained_on = maxidom::profile(store, pid)
            .await?
            .map_or(0, |p| u64::try_from(p.counts.total).unwrap_or(0));
        let limit = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        // Everything pooled up to now is consumed by a pool retraining (the pool is emptied up to here).
        let pool_cutoff = (kind == TrainingKind::Retrain).then(now_ms);
        let profiling =
            to_vectors(maxidom::newest_vectors(store, pid, limit(policy.max_profiling)).await?);
        let pool = match kind {
            TrainingKind::Initial => Vec::new(),
            TrainingKind::Retrain | TrainingKind::Grow => {
                to_vectors(maxidom::newest_pool(store, pid, limit(policy.max_pool)).await?)
            }
        };
        let vectors = retraining_set(&profiling, &pool, policy.max_profiling, policy.max_pool);
        let params = self.train_params();
        let version = u64::try_from(claim.next_version).unwrap_or(0);
        let trained_at = now_ms();
        let (models, blob) = tokio::task::spawn_blocking(move || {
            train_models(&vectors, &params, trained_on, trained_at, version).map(|m| {
                let blob = m.to_bytes();
                (m, blob)
            })
        })
        .await
        .map_err(|e| TrainingError::Join(e.to_string()))??;
        let published =
            maxidom::publish_model(store, claim, &blob, trained_at, pool_cutoff).await?;
        if published {
            self.cache.put(pid, claim.next_version, Arc::new(models));
            let name = match kind {
                TrainingKind::Initial => "maxidom_trainings_total",
                TrainingKind::Retrain => "maxidom_retrainings_total",
                TrainingKind::Grow => "maxidom_growth_trainings_total",
            };
            metrics::counter!(name).increment(1);
            metrics::histogram!("maxidom_training_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            tracing::info!(profile_id = %pid, ?kind, version = claim.next_version, ms = started.elapsed().as_millis() as u64, "models published");
        } else {
            tracing::info!(profile_id = %pid, ?kind, "training discarded: the profile was reset or the claim taken over");
        }
        Ok(published)
    }
}

/// Why a background training did not publish.
#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("training task failed: {0}")]
    Join(String),
}

/// The store's counter flags for one vector.
pub fn kinds_of(f: &FeatureVector) -> maxidom::VectorKinds {
    let k = VectorKinds::of(f);
    maxidom::VectorKinds {
        keyboard: k.keyboard,
        mouse: k.mouse,
        digraph: k.digraph,
    }
}

/// Stored counters as the biometrics crate's type (counters are never negative).
pub fn counts_of(c: maxidom::Counts) -> Counts {
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    Counts {
        total: u(c.total),
        keyboard: u(c.keyboard),
        mouse: u(c.mouse),
        digraph: u(c.digraph),
    }
}

#[cfg(test)]
mod tests {
    use vigil_store::testing::TestDb;

    use super::*;

    const P: &str = "3f1c2d9e-8a4b-4c5d-9e6f-0a1b2c3d4e5f";

    /// A vector of every modality.
    const ALL: maxidom::VectorKinds = maxidom::VectorKinds {
        keyboard: true,
        mouse: true,
        digraph: true,
    };

    /// Total, keyboard and mouse quotas of `n` vectors (digraphs 1).
    fn quotas(n: u64) -> MaxidomConfig {
        MaxidomConfig {
            quota_total: n,
            quota_keyboard: n,
            quota_mouse: n,
            quota_digraph: 1,
            ..MaxidomConfig::default()
        }
    }

    /// After a training publishes, a growth the profile became due for meanwhile starts without another
    /// `/train` post (those posts' own checks could not claim while the training held the profile), and none
    /// starts before the profile has grown by a quarter.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_growth_due_when_a_training_ends_starts_without_another_post() {
        let svc = Arc::new(Maxidom::new(quotas(30)));
        for test_db in TestDb::all().await {
            let (s, l) = (&test_db.store, test_db.label);
            let state = AppState::new(
                s.clone(),
                vigil_http::HttpConfig::for_tests(),
                b"test-secret-test-secret-test-secret!",
            );
            maxidom::enroll(s, P, "h", 1).await.unwrap();
            let add = async |from: usize, to: usize| {
                for i in from..to {
                    let v = [1.0 + i as f64 / 100.0; 15];
                    maxidom::add_vector(s, P, &format!("v{i}"), &v, ALL, 2 + i as i64)
                        .await
                        .unwrap();
                }
            };
            add(0, 30).await;
            let claim =
                maxidom::claim_initial_training(s, P, "first", now_ms(), 0, svc.thresholds())
                    .await
                    .unwrap()
                    .unwrap();
            assert!(
                svc.run_training(s, &claim, TrainingKind::Initial)
                    .await
                    .unwrap()
            );
            let version = |p: maxidom::Profile| (p.model_version, p.training_claim.is_some());
            add(30, 36).await;
            svc.grow_if_due(&state, P).await;
            let p = maxidom::profile(s, P).await.unwrap().unwrap();
            assert_eq!(
                version(p),
                (1, false),
                "{l}: 36 is not a quarter more than 30"
            );
            add(36, 37).await;
            svc.grow_if_due(&state, P).await;
            let mut grown = (0, true);
            for _ in 0..100 {
                grown = version(maxidom::profile(s, P).await.unwrap().unwrap());
                if grown == (2, false) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(grown, (2, false), "{l}: the growth training published");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_claim_outlives_its_ttl_while_its_owner_beats_and_expires_once_it_stops() {
        let svc = Maxidom::new(MaxidomConfig {
            claim_ttl_secs: 1,
            ..quotas(1)
        });
        for test_db in TestDb::all().await {
            let (s, l) = (&test_db.store, test_db.label);
            maxidom::enroll(s, P, "h", 1).await.unwrap();
            maxidom::add_vector(s, P, "v", &[1.0; 15], ALL, 2)
                .await
                .unwrap();
            let claim =
                maxidom::claim_initial_training(s, P, "owner", now_ms(), 0, svc.thresholds())
                    .await
                    .unwrap()
                    .unwrap();
            // The owner works for three TTLs (a queued or slow training); nobody may presume it dead meanwhile.
            let watcher = async {
                for _ in 0..12 {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let now = now_ms();
                    let cut = svc.stale_before(now);
                    assert!(
                        maxidom::expired_claims(s, cut, 10)
                            .await
                            .unwrap()
                            .is_empty(),
                        "{l}"
                    );
                    let thief =
                        maxidom::claim_initial_training(s, P, "thief", now, cut, svc.thresholds())
                            .await
                            .unwrap();
                    assert!(thief.is_none(), "{l}: a live training was taken over");
                }
            };
            svc.beating(s, &claim, watcher).await;
            // Its process gone, the claim expires one TTL after the last beat.
            tokio::time::sleep(Duration::from_millis(1_100)).await;
            let expired = maxidom::expired_claims(s, svc.stale_before(now_ms()), 10)
                .await
                .unwrap();
            assert_eq!(
                expired,
                vec![ExpiredClaim {
                    profile_id: P.into(),
                    token: "owner".into()
                }],
                "{l}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_heartbeat_never_stalls_work_that_holds_the_only_connection() {
        let svc = Maxidom::new(MaxidomConfig {
            claim_ttl_secs: 1,
            ..MaxidomConfig::default()
        });
        for test_db in TestDb::all().await {
            let (s, l) = (&test_db.store, test_db.label);
            maxidom::enroll(s, P, "h", 1).await.unwrap();
            let claim = Claim {
                profile_id: P.into(),
                token: "owner".into(),
                next_version: 1,
            };
            // SQLite's pool has one connection: a beat that waited for it with the work unpolled would wait for
            // the acquire timeout (10 s).
            let started = Instant::now();
            let work = vigil_store::testing::occupy_connection(s, svc.beat_period() * 3);
            svc.beating(s, &claim, work).await;
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{l}: {:?}",
                started.elapsed()
            );
        }
    }
}
