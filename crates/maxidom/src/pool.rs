//! Group commit of accepted sessions into the retraining pool.
//!
//! Every accepted `/score` must be stored before it is acknowledged. Written one by one, each costs a
//! transaction of four statements on the database; on SQLite, whose one connection is served by one worker
//! thread, that is a dozen thread hand-offs per request and a queue that all scores wait in. Instead, requests
//! hand their vector to one writer task and wait for its answer; the writer takes everything queued (up to
//! [`MAX_BATCH`]) and stores it in one transaction with `vigil_store::maxidom::add_pool_vectors`. Under load
//! the batches grow, so the database work per request shrinks just when it matters; a lone request is written
//! at once, as before.
//!
//! Nothing is acknowledged before its batch commits, so an answered score is never lost; a batch that fails is
//! retried entry by entry so one bad entry cannot fail the others.

use std::sync::OnceLock;

use tokio::sync::{mpsc, oneshot};
use vigil_store::maxidom::{self as db, PoolEntry, Pooled, RetrainTrigger};
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

/// One accepted session waiting to be stored.
struct Job {
    profile_id: String,
    model_version: i64,
    vector_id: String,
    features: Vec<f64>,
    created_at: i64,
    reply: oneshot::Sender<Result<Pooled, StoreError>>,
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

    /// Stores one accepted vector scored by `model_version`, waiting until its batch has committed.
    pub(crate) async fn add(
        &self,
        store: &Store,
        profile_id: &str,
        model_version: i64,
        features: Vec<f64>,
    ) -> Result<Pooled, PoolError> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run(store.clone(), rx, self.policy));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let job = Job {
            profile_id: profile_id.to_owned(),
            model_version,
            vector_id: uuid::Uuid::new_v4().to_string(),
            features,
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
                tracing::warn!(error = %e, entries = batch.len(), "pool batch failed; writing its entries one by one");
                let mut results = Vec::with_capacity(batch.len());
                for job in &batch {
                    results.push(
                        write(&store, std::slice::from_ref(job), policy)
                            .await
                            .map(|mut r| r.pop().unwrap_or(Pooled::Stale)),
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

async fn write(store: &Store, jobs: &[Job], policy: PoolPolicy) -> Result<Vec<Pooled>, StoreError> {
    let entries: Vec<PoolEntry<'_>> = jobs
        .iter()
        .map(|j| PoolEntry {
            profile_id: &j.profile_id,
            model_version: j.model_version,
            vector_id: &j.vector_id,
            features: &j.features,
            created_at: j.created_at,
        })
        .collect();
    let now = now_ms();
    let trigger = RetrainTrigger {
        pool_trigger: policy.pool_trigger,
        now,
        stale_before: now.saturating_sub(policy.claim_ttl_ms),
    };
    db::add_pool_vectors(store, &entries, trigger).await
}
