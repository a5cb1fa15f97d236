//! Group commit of what `/score` writes: accepted sessions into the retraining pool, and run states.
//!
//! Every accepted `/score` must be stored before it is acknowledged, and so must the run state its answer
//! reports. Written one by one, each costs a transaction of several statements on the database; on SQLite,
//! whose one connection is served by one worker thread, that is a dozen thread hand-offs per request and a queue
//! that all scores wait in. Instead, requests hand their writes to one writer task and wait for its answer; the
//! writer takes everything queued (up to [`MAX_BATCH`]) and stores it in one transaction with
//! `vigil_store::maxidom::store_scores`. Under load the batches grow, so the database work per request shrinks
//! just when it matters; a lone request is written at once, as before.
//!
//! Run states joined this writer when sequential evidence made every `/score` write one (issue #14): written
//! by the request itself (an upsert of its own), saturation on 2 shared cores fell from 2,693–2,896 to
//! 1,889–2,287 req/s and the p99 at 1,600 req/s rose from 21–55 ms to ~72 ms. Batched here they cost a share of
//! one multi-row upsert (figures in ARCHITECTURE.md, MaxiDOM load).
//!
//! Nothing is acknowledged before its batch commits, so an answered score's pool vector and run state are never
//! lost; a batch that fails is retried entry by entry so one bad entry cannot fail the others.

use std::sync::OnceLock;

use tokio::sync::{mpsc, oneshot};
use vigil_store::maxidom::{self, PoolEntry, RetrainTrigger, ScoreEntry, ScoreStored};
use vigil_store::time::now_ms;
use vigil_store::{Store, StoreError};

/// Most entries one transaction stores.
const MAX_BATCH: usize = 256;
/// Requests that may wait for the writer before new ones wait to enqueue (back-pressure).
const QUEUE: usize = 4 * MAX_BATCH;

/// Pool trigger and claim TTL, as the writer needs them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolPolicy {
    pub pool_trigger: i64,
    pub claim_ttl_ms: i64,
}

/// One answered score's writes waiting to be stored.
struct Job {
    profile_id: String,
    pool: Option<PoolJob>,
    run_state: Option<Vec<u8>>,
    created_at: i64,
    reply: oneshot::Sender<Result<ScoreStored, StoreError>>,
}

/// An accepted session for the retraining pool.
struct PoolJob {
    model_version: i64,
    vector_id: String,
    features: Vec<f64>,
}

/// What one score writes: its accepted vector with the version of the model that accepted it, and its run state.
#[derive(Debug, Default)]
pub(crate) struct ScoreWrites {
    pub pool: Option<(i64, Vec<f64>)>,
    pub run_state: Option<Vec<u8>>,
}

/// Why a pool write has no answer.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the retraining-pool writer stopped")]
    WriterGone,
}

/// The handle requests use; the writer task starts with the first write (it needs the runtime and the store).
#[derive(Debug)]
pub(crate) struct PoolWriter {
    policy: PoolPolicy,
    queue: OnceLock<mpsc::Sender<Job>>,
}

impl PoolWriter {
    pub(crate) fn new(policy: PoolPolicy) -> Self {
        PoolWriter {
            policy,
            queue: OnceLock::new(),
        }
    }

    /// Stores one score's writes, waiting until its batch has committed.
    pub(crate) async fn add(
        &self,
        store: &Store,
        profile_id: &str,
        writes: ScoreWrites,
    ) -> Result<ScoreStored, PoolError> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run(store.clone(), rx, self.policy));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let job = Job {
            profile_id: profile_id.to_owned(),
            pool: writes.pool.map(|(model_version, features)| PoolJob {
                model_version,
                vector_id: uuid::Uuid::new_v4().to_string(),
                features,
            }),
            run_state: writes.run_state,
            created_at: now_ms(),
            reply,
        };
        queue.send(job).await.map_err(|_| PoolError::WriterGone)?;
        Ok(answer.await.map_err(|_| PoolError::WriterGone)??)
    }
}

/// The writer: one batch at a time, until every handle is gone.
async fn run(store: Store, mut rx: mpsc::Receiver<Job>, policy: PoolPolicy) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!("maxidom_pool_batch_size").record(batch.len() as f64);
        let results = match write(&store, &batch, policy).await {
            Ok(results) => results.into_iter().map(Ok).collect(),
            Err(e) if batch.len() > 1 => {
                tracing::warn!(error = %e, entries = batch.len(), "score write batch failed; writing its entries one by one");
                let mut results = Vec::with_capacity(batch.len());
                for job in &batch {
                    results.push(
                        write(&store, std::slice::from_ref(job), policy)
                            .await
                            .map(|mut r| r.pop().unwrap_or(ScoreStored::Stale)),
                    );
                }
                results
            }
            Err(e) => vec![Err(e)],
        };
        for (job, result) in batch.drain(..).zip(results) {
            // The request may have gone away (client disconnected); its vector is stored all the same.
            let _ = job.reply.send(result);
        }
    }
}

async fn write(
    store: &Store,
    jobs: &[Job],
    policy: PoolPolicy,
) -> Result<Vec<ScoreStored>, StoreError> {
    let entries: Vec<ScoreEntry<'_>> = jobs
        .iter()
        .map(|j| ScoreEntry {
            profile_id: &j.profile_id,
            pool: j.pool.as_ref().map(|p| PoolEntry {
                profile_id: &j.profile_id,
                model_version: p.model_version,
                vector_id: &p.vector_id,
                features: &p.features,
                created_at: j.created_at,
            }),
            run_state: j.run_state.as_deref(),
            now: j.created_at,
        })
        .collect();
    let now = now_ms();
    let trigger = RetrainTrigger {
        pool_trigger: policy.pool_trigger,
        now,
        stale_before: now.saturating_sub(policy.claim_ttl_ms),
    };
    maxidom::store_scores(store, &entries, trigger).await
}
