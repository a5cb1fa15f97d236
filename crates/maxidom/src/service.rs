//! The MaxiDOM service: model cache, training coordination and the operations the routes call.
//!
//! State that matters lives in the database (see `vigil_store::maxidom`); this process only keeps
//! decoded models, keyed by (profile, model version). Every score is checked against the database's active
//! version before it is answered, so a replica never answers with a model another replica has replaced or a
//! reset removed: an accepted session is pooled by a write that is conditional on that version (see
//! [`crate::pool`]), an anomaly reads the version. A mismatch drops the cached model and scores again.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use vigil_biometrics::lifecycle::{Counts, VectorKinds, growth_due, retraining_set};
use vigil_biometrics::model::{
    Parallelism, ProfileModels, Score, StoredVector, TrainParams, train_models,
};
use vigil_biometrics::{FeatureVector, ModelError, Payload, RICH_COUNT};
use vigil_http::AppState;
use vigil_store::maxidom::{self as db, Claim, Thresholds};
use vigil_store::time::now_ms;
use vigil_store::{Store, StoreError};

use crate::config::MaxidomConfig;
use crate::pool::{PoolError, PoolPolicy, PoolWriter};

/// Times a score is redone because the model changed under it before the request gives up (503). Models
/// change once per retraining, so even two in a row means something is badly wrong.
const MAX_MODEL_RACES: usize = 4;

/// Process-local pieces of the MaxiDOM routes (shared through an axum `Extension`).
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
    /// The cached model is used optimistically and validated afterwards, in the same round trip that has to
    /// happen anyway: an accepted session goes to the retraining pool through a write that only succeeds while
    /// the scoring model is still the active version (and that also takes the retraining slot when the pool
    /// fills); any other answer, which writes nothing, reads the active version. On a mismatch the model is
    /// loaded again and the session rescored, so no answer ever comes from a replaced or reset model.
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
        let vector = StoredVector::of(payload);
        let rich = vector.rich.unwrap_or([0.0; RICH_COUNT]);
        let (mouse_points, key_events) = (payload.mouse_point_count(), payload.key_event_count());
        let mut cached = self.cache.get(profile_id);
        for _ in 0..MAX_MODEL_RACES {
            // `fresh`: the version was read from the database just now, so an anomaly needs no second read.
            let (version, models, fresh) = match cached.take() {
                Some((version, models)) => (version, models, false),
                None => match self.load_active(store, profile_id).await? {
                    Some((version, models)) => (version, models, true),
                    None => return Ok(None),
                },
            };
            let result = models.score(&vector.contract, &rich, mouse_points, key_events);
            // A legacy model's score is a raw forest decision, not a p-value: its accepted sessions are pooled as
            // before, so its pool fills and the retraining replaces it with a calibrated model.
            let pooled = self.config.feedback
                && !result.is_anomaly
                && (models.is_legacy() || result.score >= self.config.pool_min_score);
            if !pooled {
                if fresh {
                    return Ok(Some(result));
                }
                match db::active_model_version(store, profile_id).await? {
                    Some(active) if active == version => return Ok(Some(result)),
                    Some(_) => continue,
                    None => {
                        self.cache.remove(profile_id);
                        return Ok(None);
                    }
                }
            }
            match self
                .pool
                .add(store, profile_id, version, vector.to_values())
                .await?
            {
                db::Pooled::Added { claim, .. } => {
                    self.spawn_training(state, claim, TrainingKind::Retrain);
                    return Ok(Some(result));
                }
                // Replaced or reset meanwhile: the next round reads what is active now.
                db::Pooled::Stale => continue,
            }
        }
        Err(LoadError::ModelChurn(profile_id.to_owned()))
    }

    /// The active models of a profile and their version, read from the database (the blob is decoded only
    /// when the cache does not already hold that version). `None` when the profile has no model.
    async fn load_active(
        &self,
        store: &Store,
        profile_id: &str,
    ) -> Result<Option<(i64, Arc<ProfileModels>)>, LoadError> {
        let Some(version) = db::active_model_version(store, profile_id).await? else {
            self.cache.remove(profile_id);
            return Ok(None);
        };
        if let Some((v, m)) = self.cache.get(profile_id) {
            if v == version {
                return Ok(Some((v, m)));
            }
        }
        let Some(stored) = db::model(store, profile_id).await? else {
            // Reset between the two reads.
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
        let claim = db::claim_initial_training(
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
        match db::claim_growth_training(
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
        let store = state.store.clone();
        state.spawn(async move {
            // Queued trainings wait here holding their claim (its TTL is minutes; a training takes tens of ms).
            let _slot = svc.training_slots.acquire().await;
            if let Err(e) = svc.run_training(&store, &claim, kind).await {
                metrics::counter!("maxidom_training_failures_total").increment(1);
                tracing::warn!(profile_id = %claim.profile_id, ?kind, error = %e, "training failed");
                if let Err(e) = db::release_claim(&store, &claim).await {
                    tracing::warn!(profile_id = %claim.profile_id, error = %e, "could not release the training claim");
                }
            }
        });
        true
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
        let trained_on = db::profile(store, pid)
            .await?
            .map_or(0, |p| u64::try_from(p.counts.total).unwrap_or(0));
        let limit = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        // Everything pooled up to now is consumed by a pool retraining (the pool is emptied up to here).
        let pool_cutoff = (kind == TrainingKind::Retrain).then(now_ms);
        let profiling =
            to_vectors(db::newest_vectors(store, pid, limit(policy.max_profiling)).await?);
        let pool = match kind {
            TrainingKind::Initial => Vec::new(),
            TrainingKind::Retrain | TrainingKind::Grow => {
                to_vectors(db::newest_pool(store, pid, limit(policy.max_pool)).await?)
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
        let published = db::publish_model(store, claim, &blob, trained_at, pool_cutoff).await?;
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
pub fn kinds_of(f: &FeatureVector) -> db::VectorKinds {
    let k = VectorKinds::of(f);
    db::VectorKinds {
        keyboard: k.keyboard,
        mouse: k.mouse,
        digraph: k.digraph,
    }
}

/// Stored counters as the biometrics crate's type (counters are never negative).
pub fn counts_of(c: db::Counts) -> Counts {
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    Counts {
        total: u(c.total),
        keyboard: u(c.keyboard),
        mouse: u(c.mouse),
        digraph: u(c.digraph),
    }
}
