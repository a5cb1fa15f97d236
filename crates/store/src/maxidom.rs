//! MaxiDOM persistence: behavioural profiles, their feature vectors, the retraining pool, trained models,
//! the training slot and password-guessing state (tables from migration `0003_maxidom`).
//!
//! Everything that must agree between server processes lives here and changes only through single
//! conditional statements or transactions, so several replicas sharing one PostgreSQL stay correct:
//! * readiness counters move in the same transaction as the vector they count (no `COUNT(*)` per request);
//! * the training slot is a compare-and-set on `training_claim`: exactly one caller wins it, and only the
//!   winner can publish a model (a reset in the meantime clears the claim, so the stale model is dropped); a live
//!   owner refreshes the claim's time (heartbeat), so a claim whose time is older than the TTL belongs to a dead
//!   process and is taken over ([`expired_claims`] finds them);
//! * `model_version` only grows, also across resets, so a cached model keyed by (profile, version) is never
//!   confused with a later one;
//! * a password attempt is charged *before* the hash is checked, so concurrent guesses cannot slip past the limit.
//!
//! Feature vectors are stored as little-endian `f64` blobs (the 15 contract features, then the rich mouse vector when
//! the server extracted one; `vigil_biometrics::model::StoredVector`); this module does not interpret them.

use sqlx::Row;

use crate::{Store, StoreError};

/// One profile's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub profile_id: String,
    pub password_hash: Option<String>,
    pub enrolled_at: Option<i64>,
    pub created_at: i64,
    pub counts: Counts,
    pub pool_count: i64,
    pub model_version: i64,
    pub model_active: bool,
    pub model_trained_at: Option<i64>,
    pub last_retrained_at: Option<i64>,
    pub training_claim: Option<String>,
    pub training_claimed_at: Option<i64>,
    pub failed_attempts: i64,
    pub first_failure_at: Option<i64>,
    pub locked_until: Option<i64>,
}

/// Readiness counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: i64,
    pub keyboard: i64,
    pub mouse: i64,
    pub digraph: i64,
}

/// Which counters one vector increments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VectorKinds {
    pub keyboard: bool,
    pub mouse: bool,
    pub digraph: bool,
}

/// What `/train` needs back after storing a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterTrain {
    pub counts: Counts,
    pub model_active: bool,
}

/// Readiness thresholds, as the claim condition needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub total: i64,
    pub keyboard: i64,
    pub mouse: i64,
    pub digraph: i64,
}

/// A won training slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub profile_id: String,
    pub token: String,
    /// The version the published model must carry.
    pub next_version: i64,
}

/// Outcome of charging a password attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// No such profile, or no password set.
    NotEnrolled,
    /// Too many failures: refused until this time (Unix ms).
    Locked { until: i64 },
    /// Charged; check the password against this hash.
    Proceed { password_hash: String },
}

/// A stored model.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredModel {
    pub version: i64,
    pub trained_at: i64,
    pub blob: Vec<u8>,
}

const PROFILE_COLUMNS: &str = "profile_id, password_hash, enrolled_at, created_at, total_count, keyboard_count, \
     mouse_count, digraph_count, pool_count, model_version, model_trained_at, last_retrained_at, \
     training_claim, training_claimed_at, failed_attempts, first_failure_at, locked_until";

fn profile_from_row(r: &sqlx::any::AnyRow) -> Result<Profile, StoreError> {
    let model_trained_at: Option<i64> = r.try_get("model_trained_at")?;
    Ok(Profile {
        profile_id: r.try_get("profile_id")?,
        password_hash: r.try_get("password_hash")?,
        enrolled_at: r.try_get("enrolled_at")?,
        created_at: r.try_get("created_at")?,
        counts: Counts {
            total: r.try_get("total_count")?,
            keyboard: r.try_get("keyboard_count")?,
            mouse: r.try_get("mouse_count")?,
            digraph: r.try_get("digraph_count")?,
        },
        pool_count: r.try_get("pool_count")?,
        model_version: r.try_get("model_version")?,
        model_active: model_trained_at.is_some(),
        model_trained_at,
        last_retrained_at: r.try_get("last_retrained_at")?,
        training_claim: r.try_get("training_claim")?,
        training_claimed_at: r.try_get("training_claimed_at")?,
        failed_attempts: r.try_get("failed_attempts")?,
        first_failure_at: r.try_get("first_failure_at")?,
        locked_until: r.try_get("locked_until")?,
    })
}

/// Encodes a feature vector as little-endian `f64`s.
pub fn encode_vector(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Decodes [`encode_vector`] output; `None` when the length is not a whole number of `f64`s.
pub fn decode_vector(bytes: &[u8]) -> Option<Vec<f64>> {
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b)
            })
            .collect(),
    )
}

/// The profile, if it exists.
pub async fn profile(store: &Store, profile_id: &str) -> Result<Option<Profile>, StoreError> {
    let sql = format!("SELECT {PROFILE_COLUMNS} FROM maxidom_profiles WHERE profile_id = $1");
    let row = sqlx::query(&sql)
        .bind(profile_id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(profile_from_row).transpose()
}

/// Creates the profile with its password hash, or sets the hash of a profile that has data but no password yet
/// (imported without a `users` row). Returns `false` when the profile already has a password.
pub async fn enroll(
    store: &Store,
    profile_id: &str,
    password_hash: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO maxidom_profiles (profile_id, password_hash, enrolled_at, created_at) VALUES ($1, $2, $3, $3) \
         ON CONFLICT (profile_id) DO UPDATE SET password_hash = excluded.password_hash, enrolled_at = excluded.enrolled_at \
         WHERE maxidom_profiles.password_hash IS NULL",
    )
    .bind(profile_id)
    .bind(password_hash)
    .bind(now)
    .execute(store.pool())
    .await
    .map_err(StoreError::from_write)?;
    Ok(done.rows_affected() == 1)
}

/// Replaces the password hash of an enrolled profile (password change, or upgrade of a bcrypt hash).
/// Returns `false` when the profile is not enrolled.
pub async fn set_password_hash(
    store: &Store,
    profile_id: &str,
    password_hash: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE maxidom_profiles SET password_hash = $2 WHERE profile_id = $1 AND password_hash IS NOT NULL",
    )
    .bind(profile_id)
    .bind(password_hash)
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Charges one password attempt against the guessing limit: at most `max_failures` attempts are admitted per
/// `window_ms` from the first failure; the attempt that reaches the limit locks the profile until the window ends.
/// A later [`password_succeeded`] clears the count. Charging before checking makes the limit hold under
/// concurrent guesses from any number of processes.
pub async fn charge_password_attempt(
    store: &Store,
    profile_id: &str,
    now: i64,
    window_ms: i64,
    max_failures: i64,
) -> Result<Attempt, StoreError> {
    // `fresh` = the previous failures are outside the window (or there are none): the count starts over.
    let fresh = "(first_failure_at IS NULL OR first_failure_at <= $2)";
    let sql = format!(
        "UPDATE maxidom_profiles SET \
           failed_attempts = CASE WHEN {fresh} THEN 1 ELSE failed_attempts + 1 END, \
           first_failure_at = CASE WHEN {fresh} THEN $3 ELSE first_failure_at END, \
           locked_until = CASE WHEN (CASE WHEN {fresh} THEN 1 ELSE failed_attempts + 1 END) >= $4 \
                               THEN (CASE WHEN {fresh} THEN $3 ELSE first_failure_at END) + $5 ELSE NULL END \
         WHERE profile_id = $1 AND password_hash IS NOT NULL AND (locked_until IS NULL OR locked_until <= $3) \
         RETURNING password_hash"
    );
    let row = sqlx::query(&sql)
        .bind(profile_id)
        .bind(now - window_ms)
        .bind(now)
        .bind(max_failures)
        .bind(window_ms)
        .fetch_optional(store.pool())
        .await?;
    if let Some(row) = row {
        let password_hash: Option<String> = row.try_get("password_hash")?;
        return Ok(match password_hash {
            Some(password_hash) => Attempt::Proceed { password_hash },
            None => Attempt::NotEnrolled,
        });
    }
    let row = sqlx::query(
        "SELECT password_hash, locked_until FROM maxidom_profiles WHERE profile_id = $1",
    )
    .bind(profile_id)
    .fetch_optional(store.pool())
    .await?;
    let Some(row) = row else {
        return Ok(Attempt::NotEnrolled);
    };
    let hash: Option<String> = row.try_get("password_hash")?;
    let until: Option<i64> = row.try_get("locked_until")?;
    Ok(match (hash, until) {
        (None, _) => Attempt::NotEnrolled,
        (Some(_), Some(until)) if until > now => Attempt::Locked { until },
        // The lock expired between the two statements: report a minimal wait rather than loop.
        (Some(_), _) => Attempt::Locked { until: now + 1000 },
    })
}

/// Clears the failure count after a correct password; optionally stores an upgraded hash in the same statement.
pub async fn password_succeeded(
    store: &Store,
    profile_id: &str,
    new_hash: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE maxidom_profiles SET failed_attempts = 0, first_failure_at = NULL, locked_until = NULL, \
         password_hash = COALESCE($2, password_hash) WHERE profile_id = $1",
    )
    .bind(profile_id)
    .bind(new_hash)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Stores one profiling vector and bumps the readiness counters in one transaction.
/// `None` when the profile does not exist (nothing is stored).
pub async fn add_vector(
    store: &Store,
    profile_id: &str,
    vector_id: &str,
    features: &[f64],
    kinds: VectorKinds,
    now: i64,
) -> Result<Option<AfterTrain>, StoreError> {
    let mut tx = store.pool().begin().await?;
    let row = sqlx::query(
        "UPDATE maxidom_profiles SET total_count = total_count + 1, keyboard_count = keyboard_count + $2, \
         mouse_count = mouse_count + $3, digraph_count = digraph_count + $4 WHERE profile_id = $1 \
         RETURNING total_count, keyboard_count, mouse_count, digraph_count, model_trained_at",
    )
    .bind(profile_id)
    .bind(i64::from(kinds.keyboard))
    .bind(i64::from(kinds.mouse))
    .bind(i64::from(kinds.digraph))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok(None);
    };
    let after = AfterTrain {
        counts: Counts {
            total: row.try_get("total_count")?,
            keyboard: row.try_get("keyboard_count")?,
            mouse: row.try_get("mouse_count")?,
            digraph: row.try_get("digraph_count")?,
        },
        model_active: row.try_get::<Option<i64>, _>("model_trained_at")?.is_some(),
    };
    sqlx::query("INSERT INTO maxidom_vectors (id, profile_id, created_at, features) VALUES ($1, $2, $3, $4)")
        .bind(vector_id)
        .bind(profile_id)
        .bind(now)
        .bind(encode_vector(features))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_write)?;
    tx.commit().await?;
    Ok(Some(after))
}

/// Imports one vector idempotently: a vector whose `vector_id` already exists is left alone and counts nothing.
/// Returns whether it was new. The profile must exist (see [`ensure_profile`]).
pub async fn import_vector(
    store: &Store,
    profile_id: &str,
    vector_id: &str,
    features: &[f64],
    kinds: VectorKinds,
    created_at: i64,
) -> Result<bool, StoreError> {
    let mut tx = store.pool().begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO maxidom_vectors (id, profile_id, created_at, features) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(vector_id)
    .bind(profile_id)
    .bind(created_at)
    .bind(encode_vector(features))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        sqlx::query(
            "UPDATE maxidom_profiles SET total_count = total_count + 1, keyboard_count = keyboard_count + $2, \
             mouse_count = mouse_count + $3, digraph_count = digraph_count + $4 WHERE profile_id = $1",
        )
        .bind(profile_id)
        .bind(i64::from(kinds.keyboard))
        .bind(i64::from(kinds.mouse))
        .bind(i64::from(kinds.digraph))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(inserted)
}

/// Creates a profile row without a password if none exists (import of data for a profile the reference had no
/// `users` row for). Returns whether it was created.
pub async fn ensure_profile(store: &Store, profile_id: &str, now: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO maxidom_profiles (profile_id, created_at) VALUES ($1, $2) ON CONFLICT (profile_id) DO NOTHING",
    )
    .bind(profile_id)
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Imports a reference user: creates the profile with its (bcrypt) hash, or sets the hash if the profile exists
/// without one. Returns `false` when the profile already had a password (left unchanged).
pub async fn import_user(
    store: &Store,
    profile_id: &str,
    password_hash: &str,
    now: i64,
) -> Result<bool, StoreError> {
    enroll(store, profile_id, password_hash, now).await
}

/// Adds a vector the current model accepted to the retraining pool. Returns the new pool size, or `None` when
/// the profile has no active model (e.g. it was reset meanwhile; nothing is stored).
pub async fn add_pool_vector(
    store: &Store,
    profile_id: &str,
    vector_id: &str,
    features: &[f64],
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let mut tx = store.pool().begin().await?;
    let row = sqlx::query(
        "UPDATE maxidom_profiles SET pool_count = pool_count + 1 WHERE profile_id = $1 AND model_trained_at IS NOT NULL \
         RETURNING pool_count",
    )
    .bind(profile_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok(None);
    };
    let pool_count: i64 = row.try_get("pool_count")?;
    sqlx::query(
        "INSERT INTO maxidom_pool (id, profile_id, created_at, features) VALUES ($1, $2, $3, $4)",
    )
    .bind(vector_id)
    .bind(profile_id)
    .bind(now)
    .bind(encode_vector(features))
    .execute(&mut *tx)
    .await
    .map_err(StoreError::from_write)?;
    tx.commit().await?;
    Ok(Some(pool_count))
}

/// One accepted vector for the retraining pool, scored with the profile's model `model_version`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolEntry<'a> {
    pub profile_id: &'a str,
    /// The model that accepted the vector: the entry is stored only while it is still the active one.
    pub model_version: i64,
    pub vector_id: &'a str,
    pub features: &'a [f64],
    pub created_at: i64,
}

/// When a pool write also takes the retraining slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrainTrigger {
    /// Pool size at which a retraining is due.
    pub pool_trigger: i64,
    /// Stamped on a claim taken now.
    pub now: i64,
    /// Claims taken before this are presumed dead and may be taken over.
    pub stale_before: i64,
}

/// What became of one [`PoolEntry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pooled {
    /// Stored. `claim` is set on the one entry whose write also won the retraining slot.
    Added {
        pool_count: i64,
        claim: Option<Claim>,
    },
    /// Not stored: the model that scored the vector is no longer active (replaced by a newer version,
    /// or removed by a reset). The caller must score again with the current model, if any.
    Stale,
}

/// Most rows one multi-row pool `INSERT` carries; batches are cut into power-of-two chunks up to this size so
/// only a handful of distinct statements ever reach the prepared-statement cache.
const POOL_INSERT_CHUNK: usize = 32;

fn pool_insert_sql(rows: usize) -> String {
    let mut sql =
        String::from("INSERT INTO maxidom_pool (id, profile_id, created_at, features) VALUES ");
    for r in 0..rows {
        let b = r * 4;
        if r > 0 {
            sql.push(',');
        }
        sql.push_str(&format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4));
    }
    sql
}

/// Stores accepted vectors in their profiles' retraining pools, in one transaction, with one conditional
/// `UPDATE` per (profile, model version) and multi-row inserts: the group commit behind `/score`.
///
/// For each profile the same statement (a) checks that the scoring model is still the active one, so a replica
/// never pools a vector judged by a model another process has replaced or reset, (b) bumps the pool counter, and
/// (c) takes the retraining slot when the pool reaches `trigger.pool_trigger` and no live claim exists — exactly
/// the condition of [`claim_retraining`], without a statement of its own per request. Profiles are updated in
/// sorted order so concurrent batches (other replicas on PostgreSQL) lock rows in the same order.
/// Returns one outcome per entry, in input order.
pub async fn add_pool_vectors(
    store: &Store,
    entries: &[PoolEntry<'_>],
    trigger: RetrainTrigger,
) -> Result<Vec<Pooled>, StoreError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = store.pool().begin().await?;
    let out = pool_in_tx(&mut tx, entries, trigger).await?;
    tx.commit().await?;
    Ok(out)
}

/// The body of [`add_pool_vectors`] inside the caller's transaction (also used by [`store_scores`]).
async fn pool_in_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    entries: &[PoolEntry<'_>],
    trigger: RetrainTrigger,
) -> Result<Vec<Pooled>, StoreError> {
    let mut out = vec![Pooled::Stale; entries.len()];
    if entries.is_empty() {
        return Ok(out);
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&entries[a], &entries[b]);
        (a.profile_id, a.model_version).cmp(&(b.profile_id, b.model_version))
    });
    let mut stored: Vec<usize> = Vec::with_capacity(entries.len());
    for group in order.chunk_by(|&a, &b| {
        (entries[a].profile_id, entries[a].model_version)
            == (entries[b].profile_id, entries[b].model_version)
    }) {
        let first = &entries[group[0]];
        let added = i64::try_from(group.len()).unwrap_or(i64::MAX);
        let token = uuid::Uuid::new_v4().to_string();
        let row = sqlx::query(
            "UPDATE maxidom_profiles SET pool_count = pool_count + $3, \
             training_claim = CASE WHEN pool_count + $3 >= $4 AND (training_claim IS NULL OR training_claimed_at < $5) \
               THEN $6 ELSE training_claim END, \
             training_claimed_at = CASE WHEN pool_count + $3 >= $4 AND (training_claim IS NULL OR training_claimed_at < $5) \
               THEN $7 ELSE training_claimed_at END \
             WHERE profile_id = $1 AND model_version = $2 AND model_trained_at IS NOT NULL \
             RETURNING pool_count, training_claim",
        )
        .bind(first.profile_id)
        .bind(first.model_version)
        .bind(added)
        .bind(trigger.pool_trigger)
        .bind(trigger.stale_before)
        .bind(&token)
        .bind(trigger.now)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else { continue };
        let pool_count: i64 = row.try_get("pool_count")?;
        let claimed = row
            .try_get::<Option<String>, _>("training_claim")?
            .as_deref()
            == Some(token.as_str());
        let mut claim = claimed.then(|| Claim {
            profile_id: first.profile_id.to_owned(),
            token,
            next_version: first.model_version + 1,
        });
        for (n, &i) in group.iter().enumerate() {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            out[i] = Pooled::Added {
                pool_count: pool_count - added + 1 + n,
                // The slot goes with the entry that filled the pool, the group's last.
                claim: if n + 1 == added { claim.take() } else { None },
            };
            stored.push(i);
        }
    }
    let mut rest = stored.as_slice();
    while !rest.is_empty() {
        let take = POOL_INSERT_CHUNK.min(1 << rest.len().ilog2());
        let (chunk, tail) = rest.split_at(take);
        let sql = pool_insert_sql(take);
        let mut q = sqlx::query(&sql);
        for &i in chunk {
            let e = &entries[i];
            q = q
                .bind(e.vector_id)
                .bind(e.profile_id)
                .bind(e.created_at)
                .bind(encode_vector(e.features));
        }
        q.execute(&mut **tx).await.map_err(StoreError::from_write)?;
        rest = tail;
    }
    Ok(out)
}

/// One answered `/score`'s writes: its vector for the retraining pool (when the session was typical enough)
/// and its profile's new run state (when the run moved on).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreEntry<'a> {
    pub profile_id: &'a str,
    /// The accepted vector; `model_version` also guards `run_state` (see [`store_scores`]).
    pub pool: Option<PoolEntry<'a>>,
    /// The run state after this payload (`vigil_biometrics::sequential::Run` encoding).
    pub run_state: Option<&'a [u8]>,
    /// Stamped on the run state.
    pub now: i64,
}

/// What became of one [`ScoreEntry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScoreStored {
    /// Everything the entry carried is stored. `claim` is set when its pool write won the retraining slot.
    Stored { claim: Option<Claim> },
    /// Nothing stored: the entry pooled a vector and the model that scored it is no longer active. The caller
    /// scores again with the current model, and that score's run state is the one stored.
    Stale,
}

/// Most rows one multi-row run-state upsert carries (power-of-two chunks, as for the pool inserts).
const RUN_UPSERT_CHUNK: usize = 32;

fn run_upsert_sql(rows: usize) -> String {
    // `VALUES` names its columns column1… on both SQLite and PostgreSQL. The join keeps rows of profiles that
    // no longer exist out (a reset keeps the profile; a deletion removes it). `WHERE true` lets SQLite's parser
    // tell the upsert clause from a join constraint.
    let mut sql = String::from(
        "INSERT INTO maxidom_runs (profile_id, state, updated_at) \
         SELECT v.column1, v.column2, v.column3 FROM (VALUES ",
    );
    for r in 0..rows {
        let b = r * 3;
        if r > 0 {
            sql.push(',');
        }
        sql.push_str(&format!("(${}, ${}, ${})", b + 1, b + 2, b + 3));
    }
    sql.push_str(
        ") AS v JOIN maxidom_profiles p ON p.profile_id = v.column1 WHERE true \
         ON CONFLICT (profile_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
    );
    sql
}

/// Stores the writes of a batch of answered `/score`s in one transaction: the pool vectors exactly as
/// [`add_pool_vectors`] does, then the run states with multi-row upserts. An entry whose pool vector is stale
/// stores nothing (its run state came from a replaced model; the request scores again). Several entries of one
/// profile leave the last one's run state (input order is arrival order: last writer wins, as for
/// [`put_run_state`]). Returns one outcome per entry, in input order.
pub async fn store_scores(
    store: &Store,
    entries: &[ScoreEntry<'_>],
    trigger: RetrainTrigger,
) -> Result<Vec<ScoreStored>, StoreError> {
    let mut out = vec![ScoreStored::Stored { claim: None }; entries.len()];
    let pooled_at: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].pool.is_some())
        .collect();
    if pooled_at.is_empty() {
        // Run states only (the usual batch at a paced rate: one or two entries). A single chunk is a single
        // statement, atomic on its own, so it needs no transaction: that saves the BEGIN and COMMIT round trips
        // (on SQLite two more hand-offs to its one connection's worker).
        let runs = newest_runs(entries, &out);
        if runs.len() <= RUN_UPSERT_CHUNK {
            upsert_runs(store.pool(), &runs).await?;
            return Ok(out);
        }
    }
    let pool: Vec<PoolEntry<'_>> = entries.iter().filter_map(|e| e.pool).collect();
    let mut tx = store.pool().begin().await?;
    let pooled = pool_in_tx(&mut tx, &pool, trigger).await?;
    for (&i, p) in pooled_at.iter().zip(pooled) {
        out[i] = match p {
            Pooled::Added { claim, .. } => ScoreStored::Stored { claim },
            Pooled::Stale => ScoreStored::Stale,
        };
    }
    let runs = newest_runs(entries, &out);
    for chunk in run_chunks(&runs) {
        upsert_runs(&mut *tx, chunk).await?;
    }
    tx.commit().await?;
    Ok(out)
}

/// The newest run state of each profile in a batch (the last in input order), skipping stale entries.
fn newest_runs<'a>(
    entries: &[ScoreEntry<'a>],
    out: &[ScoreStored],
) -> Vec<(&'a str, &'a [u8], i64)> {
    let mut newest: std::collections::BTreeMap<&'a str, (&'a [u8], i64)> =
        std::collections::BTreeMap::new();
    for (e, o) in entries.iter().zip(out) {
        if let (Some(state), ScoreStored::Stored { .. }) = (e.run_state, o) {
            newest.insert(e.profile_id, (state, e.now));
        }
    }
    newest.into_iter().map(|(p, (s, t))| (p, s, t)).collect()
}

/// Power-of-two chunks of at most [`RUN_UPSERT_CHUNK`] rows, so only a handful of distinct statements reach
/// the prepared-statement cache.
fn run_chunks<'r, 'a>(
    mut rest: &'r [(&'a str, &'a [u8], i64)],
) -> impl Iterator<Item = &'r [(&'a str, &'a [u8], i64)]> {
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let take = RUN_UPSERT_CHUNK.min(1 << rest.len().ilog2());
        let (chunk, tail) = rest.split_at(take);
        rest = tail;
        Some(chunk)
    })
}

/// Upserts the run states of a chunk (each profile at most once) in one statement.
async fn upsert_runs<'e, E>(executor: E, runs: &[(&str, &[u8], i64)]) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    if runs.is_empty() {
        return Ok(());
    }
    let sql = run_upsert_sql(runs.len());
    let mut q = sqlx::query(&sql);
    for &(profile_id, state, now) in runs {
        q = q.bind(profile_id).bind(state).bind(now);
    }
    q.execute(executor).await.map_err(StoreError::from_write)?;
    Ok(())
}

fn claim_from(
    row: Option<sqlx::any::AnyRow>,
    profile_id: &str,
    token: &str,
) -> Result<Option<Claim>, StoreError> {
    let Some(row) = row else { return Ok(None) };
    let current: i64 = row.try_get("model_version")?;
    Ok(Some(Claim {
        profile_id: profile_id.to_owned(),
        token: token.to_owned(),
        next_version: current + 1,
    }))
}

/// Takes the training slot for the first model: succeeds for exactly one caller, and only while the profile is
/// ready, has no model, and no live claim exists (claims older than `stale_before` are presumed dead). Ready:
/// `total` vectors and at least one modality at its quota (mouse; or keyboard together with digraph).
pub async fn claim_initial_training(
    store: &Store,
    profile_id: &str,
    token: &str,
    now: i64,
    stale_before: i64,
    ready: Thresholds,
) -> Result<Option<Claim>, StoreError> {
    let row = sqlx::query(
        "UPDATE maxidom_profiles SET training_claim = $2, training_claimed_at = $3 \
         WHERE profile_id = $1 AND model_trained_at IS NULL \
           AND (training_claim IS NULL OR training_claimed_at < $4) \
           AND total_count >= $5 AND (mouse_count >= $7 OR (keyboard_count >= $6 AND digraph_count >= $8)) \
         RETURNING model_version",
    )
    .bind(profile_id)
    .bind(token)
    .bind(now)
    .bind(stale_before)
    .bind(ready.total)
    .bind(ready.keyboard)
    .bind(ready.mouse)
    .bind(ready.digraph)
    .fetch_optional(store.pool())
    .await?;
    claim_from(row, profile_id, token)
}

/// Takes the training slot for a retraining: only with an active model, a pool of at least `pool_trigger`
/// vectors, and no live claim.
pub async fn claim_retraining(
    store: &Store,
    profile_id: &str,
    token: &str,
    now: i64,
    stale_before: i64,
    pool_trigger: i64,
) -> Result<Option<Claim>, StoreError> {
    let row = sqlx::query(
        "UPDATE maxidom_profiles SET training_claim = $2, training_claimed_at = $3 \
         WHERE profile_id = $1 AND model_trained_at IS NOT NULL AND pool_count >= $5 \
           AND (training_claim IS NULL OR training_claimed_at < $4) \
         RETURNING model_version",
    )
    .bind(profile_id)
    .bind(token)
    .bind(now)
    .bind(stale_before)
    .bind(pool_trigger)
    .fetch_optional(store.pool())
    .await?;
    claim_from(row, profile_id, token)
}

/// Takes the training slot for a training on a grown profile (more vectors, or a modality that became ready
/// since): only while the model `trained_version` is still the active one, so a growth is trained once however
/// many `/train` calls notice it, and no live claim exists.
pub async fn claim_growth_training(
    store: &Store,
    profile_id: &str,
    token: &str,
    now: i64,
    stale_before: i64,
    trained_version: i64,
) -> Result<Option<Claim>, StoreError> {
    let row = sqlx::query(
        "UPDATE maxidom_profiles SET training_claim = $2, training_claimed_at = $3 \
         WHERE profile_id = $1 AND model_trained_at IS NOT NULL AND model_version = $5 \
           AND (training_claim IS NULL OR training_claimed_at < $4) \
         RETURNING model_version",
    )
    .bind(profile_id)
    .bind(token)
    .bind(now)
    .bind(stale_before)
    .bind(trained_version)
    .fetch_optional(store.pool())
    .await?;
    claim_from(row, profile_id, token)
}

/// Gives the slot back without publishing (training failed).
pub async fn release_claim(store: &Store, claim: &Claim) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE maxidom_profiles SET training_claim = NULL, training_claimed_at = NULL \
         WHERE profile_id = $1 AND training_claim = $2",
    )
    .bind(&claim.profile_id)
    .bind(&claim.token)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The heartbeat of a live training: moves the claim's time to `now`, so other processes (whose TTL counts from
/// it) keep presuming its owner alive. Returns `false` when the claim is no longer held (published, reset or
/// taken over), so the owner stops beating.
pub async fn refresh_claim(store: &Store, claim: &Claim, now: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE maxidom_profiles SET training_claimed_at = $3 WHERE profile_id = $1 AND training_claim = $2",
    )
    .bind(&claim.profile_id)
    .bind(&claim.token)
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A training claim whose owner stopped beating: its process died (or lost the database) mid-training.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredClaim {
    pub profile_id: String,
    pub token: String,
}

/// Up to `limit` claims last refreshed before `stale_before`, oldest first (a range scan of the claim-time index,
/// migration `0009`).
pub async fn expired_claims(
    store: &Store,
    stale_before: i64,
    limit: i64,
) -> Result<Vec<ExpiredClaim>, StoreError> {
    let rows = sqlx::query(
        "SELECT profile_id, training_claim FROM maxidom_profiles \
         WHERE training_claimed_at < $1 AND training_claim IS NOT NULL \
         ORDER BY training_claimed_at LIMIT $2",
    )
    .bind(stale_before)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ExpiredClaim {
                profile_id: r.try_get("profile_id")?,
                token: r.try_get("training_claim")?,
            })
        })
        .collect()
}

/// Clears an expired claim that nothing needs to take over (the training it stood for is no longer due), so it is
/// not found again. Conditional on the same token and on still being expired: a claim another process took or
/// refreshed meanwhile is left alone. Returns whether it was cleared.
pub async fn release_expired_claim(
    store: &Store,
    expired: &ExpiredClaim,
    stale_before: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE maxidom_profiles SET training_claim = NULL, training_claimed_at = NULL \
         WHERE profile_id = $1 AND training_claim = $2 AND training_claimed_at < $3",
    )
    .bind(&expired.profile_id)
    .bind(&expired.token)
    .bind(stale_before)
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn load_blobs(
    store: &Store,
    sql: &str,
    profile_id: &str,
    limit: i64,
) -> Result<Vec<Vec<f64>>, StoreError> {
    let rows = sqlx::query(sql)
        .bind(profile_id)
        .bind(limit)
        .fetch_all(store.reader())
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows.iter().rev() {
        let bytes: Vec<u8> = row.try_get("features")?;
        // A blob of the wrong length cannot come from this code; skip it rather than fail the whole training.
        if let Some(v) = decode_vector(&bytes) {
            out.push(v);
        }
    }
    Ok(out)
}

/// The newest `limit` profiling vectors, oldest first.
pub async fn newest_vectors(
    store: &Store,
    profile_id: &str,
    limit: i64,
) -> Result<Vec<Vec<f64>>, StoreError> {
    load_blobs(
        store,
        "SELECT features FROM maxidom_vectors WHERE profile_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        profile_id,
        limit,
    )
    .await
}

/// The newest `limit` pool vectors, oldest first.
pub async fn newest_pool(
    store: &Store,
    profile_id: &str,
    limit: i64,
) -> Result<Vec<Vec<f64>>, StoreError> {
    load_blobs(
        store,
        "SELECT features FROM maxidom_pool WHERE profile_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        profile_id,
        limit,
    )
    .await
}

/// Publishes a model trained under `claim`, atomically: stores the blob, activates it as `claim.next_version`,
/// releases the slot and, for a retraining, empties the pool up to `pool_cutoff` (vectors pooled after the job
/// read the pool stay for the next round). Returns `false`, changing nothing, when the claim is no longer held
/// (the profile was reset, or the claim went stale and was taken over).
pub async fn publish_model(
    store: &Store,
    claim: &Claim,
    blob: &[u8],
    trained_at: i64,
    pool_cutoff: Option<i64>,
) -> Result<bool, StoreError> {
    let mut tx = store.pool().begin().await?;
    let retrained_at = pool_cutoff.map(|_| trained_at);
    let done = sqlx::query(
        "UPDATE maxidom_profiles SET model_version = $3, model_trained_at = $4, \
         last_retrained_at = COALESCE($5, last_retrained_at), training_claim = NULL, training_claimed_at = NULL \
         WHERE profile_id = $1 AND training_claim = $2",
    )
    .bind(&claim.profile_id)
    .bind(&claim.token)
    .bind(claim.next_version)
    .bind(trained_at)
    .bind(retrained_at)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO maxidom_models (profile_id, version, trained_at, blob) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (profile_id) DO UPDATE SET version = excluded.version, trained_at = excluded.trained_at, \
         blob = excluded.blob",
    )
    .bind(&claim.profile_id)
    .bind(claim.next_version)
    .bind(trained_at)
    .bind(blob)
    .execute(&mut *tx)
    .await?;
    if let Some(cutoff) = pool_cutoff {
        sqlx::query("DELETE FROM maxidom_pool WHERE profile_id = $1 AND created_at <= $2")
            .bind(&claim.profile_id)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE maxidom_profiles SET pool_count = (SELECT COUNT(*) FROM maxidom_pool WHERE profile_id = $1) \
             WHERE profile_id = $1",
        )
        .bind(&claim.profile_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// The active model's version, `None` when the profile has no model (or does not exist). One indexed lookup:
/// the scoring path calls it on every request to validate its cache.
pub async fn active_model_version(
    store: &Store,
    profile_id: &str,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(
        "SELECT model_version, model_trained_at FROM maxidom_profiles WHERE profile_id = $1",
    )
    .bind(profile_id)
    .fetch_optional(store.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let trained_at: Option<i64> = row.try_get("model_trained_at")?;
    Ok(if trained_at.is_some() {
        Some(row.try_get("model_version")?)
    } else {
        None
    })
}

/// What scoring a payload needs from the database, read in one statement: the active model's version and the
/// profile's run state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreContext {
    pub model_version: i64,
    pub run_state: Option<Vec<u8>>,
}

/// The active model's version and the run state of a profile; `None` when it has no model (or does not exist).
/// One indexed lookup with a primary-key join: the scoring path calls it on every request, to validate its
/// cached model and to continue the run (this replaced a version read and a run read of their own). It reads on
/// [`Store::reader`], so on SQLite it does not wait behind the scores' group commits; a score answered before
/// this read started is committed and therefore seen.
pub async fn score_context(
    store: &Store,
    profile_id: &str,
) -> Result<Option<ScoreContext>, StoreError> {
    let row = sqlx::query(
        "SELECT p.model_version, p.model_trained_at, r.state FROM maxidom_profiles p \
         LEFT JOIN maxidom_runs r ON r.profile_id = p.profile_id WHERE p.profile_id = $1",
    )
    .bind(profile_id)
    .fetch_optional(store.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let trained_at: Option<i64> = row.try_get("model_trained_at")?;
    if trained_at.is_none() {
        return Ok(None);
    }
    Ok(Some(ScoreContext {
        model_version: row.try_get("model_version")?,
        run_state: row.try_get("state")?,
    }))
}

/// The stored model, if any.
pub async fn model(store: &Store, profile_id: &str) -> Result<Option<StoredModel>, StoreError> {
    let row =
        sqlx::query("SELECT version, trained_at, blob FROM maxidom_models WHERE profile_id = $1")
            .bind(profile_id)
            .fetch_optional(store.reader())
            .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(StoredModel {
        version: row.try_get("version")?,
        trained_at: row.try_get("trained_at")?,
        blob: row.try_get("blob")?,
    }))
}

/// Deletes the profile's vectors, pool, model and run and zeroes its counters; keeps the password (and the
/// guessing state). `model_version` is kept so versions stay unique. Returns whether the profile exists.
pub async fn reset(store: &Store, profile_id: &str) -> Result<bool, StoreError> {
    let mut tx = store.pool().begin().await?;
    for sql in [
        "DELETE FROM maxidom_vectors WHERE profile_id = $1",
        "DELETE FROM maxidom_pool WHERE profile_id = $1",
        "DELETE FROM maxidom_models WHERE profile_id = $1",
        "DELETE FROM maxidom_runs WHERE profile_id = $1",
    ] {
        sqlx::query(sql).bind(profile_id).execute(&mut *tx).await?;
    }
    let done = sqlx::query(
        "UPDATE maxidom_profiles SET total_count = 0, keyboard_count = 0, mouse_count = 0, digraph_count = 0, \
         pool_count = 0, model_trained_at = NULL, last_retrained_at = NULL, \
         training_claim = NULL, training_claimed_at = NULL WHERE profile_id = $1",
    )
    .bind(profile_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// One profile as the admin listing shows it: its row and its current run (the opaque run state and when it
/// was last written), if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileListing {
    pub profile: Profile,
    pub run_state: Option<Vec<u8>>,
    pub run_updated_at: Option<i64>,
}

/// Most profiles one page of [`list_profiles`] returns.
pub const MAX_PROFILES_LISTED: i64 = 200;

/// The number of profiles and one page of them, newest first, each with its run state (one statement for the
/// page; the run is a LEFT JOIN on its primary key).
pub async fn list_profiles(
    store: &Store,
    limit: i64,
    offset: i64,
) -> Result<(i64, Vec<ProfileListing>), StoreError> {
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM maxidom_profiles")
        .fetch_one(store.pool())
        .await?;
    let columns = PROFILE_COLUMNS
        .split(',')
        .map(|c| format!("p.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {columns}, r.state AS run_state, r.updated_at AS run_updated_at \
         FROM maxidom_profiles p LEFT JOIN maxidom_runs r ON r.profile_id = p.profile_id \
         ORDER BY p.created_at DESC, p.profile_id LIMIT $1 OFFSET $2"
    );
    let rows = sqlx::query(&sql)
        .bind(limit.clamp(0, MAX_PROFILES_LISTED))
        .bind(offset.max(0))
        .fetch_all(store.pool())
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(ProfileListing {
            profile: profile_from_row(r)?,
            run_state: r.try_get("run_state")?,
            run_updated_at: r.try_get("run_updated_at")?,
        });
    }
    Ok((total, out))
}

/// The profile's current run state (an opaque `vigil_biometrics::sequential::Run` encoding), if any.
pub async fn run_state(store: &Store, profile_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let row = sqlx::query("SELECT state FROM maxidom_runs WHERE profile_id = $1")
        .bind(profile_id)
        .fetch_optional(store.pool())
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get("state")?),
        None => None,
    })
}

/// Stores the profile's run state (last writer wins: two payloads of one profile scored at the same instant
/// are not one person's sequence anyway, and losing one payload's evidence is harmless). Nothing is stored
/// for a profile that does not exist (a reset or deletion meanwhile).
pub async fn put_run_state(
    store: &Store,
    profile_id: &str,
    state: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO maxidom_runs (profile_id, state, updated_at) \
         SELECT profile_id, $2, $3 FROM maxidom_profiles WHERE profile_id = $1 \
         ON CONFLICT (profile_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
    )
    .bind(profile_id)
    .bind(state)
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Ends the profile's run (after a successful password verification): the next payload starts a new one.
pub async fn end_run(store: &Store, profile_id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM maxidom_runs WHERE profile_id = $1")
        .bind(profile_id)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Stored vector and pool row counts (for checks and the import report; not on a request path).
pub async fn row_counts(store: &Store, profile_id: &str) -> Result<(i64, i64), StoreError> {
    let v: i64 = sqlx::query("SELECT COUNT(*) AS n FROM maxidom_vectors WHERE profile_id = $1")
        .bind(profile_id)
        .fetch_one(store.pool())
        .await?
        .try_get("n")?;
    let p: i64 = sqlx::query("SELECT COUNT(*) AS n FROM maxidom_pool WHERE profile_id = $1")
        .bind(profile_id)
        .fetch_one(store.pool())
        .await?
        .try_get("n")?;
    Ok((v, p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;

    const P: &str = "3f1c2d9e-8a4b-4c5d-9e6f-0a1b2c3d4e5f";

    /// One vector, then the claim of the profile's first training (quotas of 1).
    async fn claim_first_training(s: &Store, profile_id: &str) -> Claim {
        add_vector(s, profile_id, "v", &[1.0; 15], kinds(true), 2)
            .await
            .unwrap();
        let ready = Thresholds {
            total: 1,
            keyboard: 1,
            mouse: 1,
            digraph: 1,
        };
        claim_initial_training(s, profile_id, "t", 3, 0, ready)
            .await
            .unwrap()
            .unwrap()
    }

    /// One vector, then the profile's first model (version 1) published, for tests that score against it.
    async fn publish_first_model(s: &Store, profile_id: &str) {
        let claim = claim_first_training(s, profile_id).await;
        assert!(publish_model(s, &claim, b"m1", 4, None).await.unwrap());
    }

    fn kinds(all: bool) -> VectorKinds {
        VectorKinds {
            keyboard: all,
            mouse: all,
            digraph: all,
        }
    }

    #[test]
    fn vectors_round_trip() {
        let v = [1.5, -0.0, f64::MAX, 0.1];
        assert_eq!(decode_vector(&encode_vector(&v)), Some(v.to_vec()));
        assert_eq!(decode_vector(&[0u8; 7]), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_state_is_stored_replaced_ended_and_reset() {
        for db in TestDb::all().await {
            let (s, l) = (&db.store, db.label);
            // No profile: nothing is stored.
            put_run_state(s, P, &[1, 2], 1).await.unwrap();
            assert_eq!(run_state(s, P).await.unwrap(), None, "{l}");
            enroll(s, P, "h", 1).await.unwrap();
            put_run_state(s, P, &[1, 2], 2).await.unwrap();
            assert_eq!(run_state(s, P).await.unwrap(), Some(vec![1, 2]), "{l}");
            put_run_state(s, P, &[3], 3).await.unwrap();
            assert_eq!(run_state(s, P).await.unwrap(), Some(vec![3]), "{l}");
            end_run(s, P).await.unwrap();
            assert_eq!(run_state(s, P).await.unwrap(), None, "{l}");
            put_run_state(s, P, &[4], 4).await.unwrap();
            assert!(reset(s, P).await.unwrap());
            assert_eq!(
                run_state(s, P).await.unwrap(),
                None,
                "{l}: a reset ends the run"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn profiles_are_listed_newest_first_with_their_runs() {
        const Q: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
        for db in TestDb::all().await {
            let (s, l) = (&db.store, db.label);
            assert_eq!(
                list_profiles(s, 10, 0).await.unwrap(),
                (0, Vec::new()),
                "{l}"
            );
            enroll(s, P, "h", 1).await.unwrap();
            enroll(s, Q, "h", 2).await.unwrap();
            publish_first_model(s, P).await;
            put_run_state(s, P, &[7, 8], 9).await.unwrap();
            let (total, page) = list_profiles(s, 10, 0).await.unwrap();
            assert_eq!(total, 2, "{l}");
            let ids: Vec<&str> = page.iter().map(|p| p.profile.profile_id.as_str()).collect();
            assert_eq!(ids, [Q, P], "{l}: newest first");
            assert_eq!(
                (page[0].run_state.as_deref(), page[0].run_updated_at),
                (None, None)
            );
            assert_eq!(page[1].run_state.as_deref(), Some(&[7u8, 8][..]), "{l}");
            assert_eq!(page[1].run_updated_at, Some(9));
            assert_eq!(page[1].profile.model_version, 1);
            assert!(page[1].profile.model_active && page[1].profile.counts.total == 1);
            let (_, second) = list_profiles(s, 1, 1).await.unwrap();
            assert_eq!(second.len(), 1);
            assert_eq!(second[0].profile.profile_id, P, "{l}: paged");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lifecycle_on_every_backend() {
        for db in TestDb::all().await {
            let s = &db.store;
            assert!(enroll(s, P, "hash-1", 10).await.unwrap(), "{}", db.label);
            assert!(!enroll(s, P, "hash-2", 11).await.unwrap(), "{}", db.label);
            assert_eq!(
                profile(s, P)
                    .await
                    .unwrap()
                    .unwrap()
                    .password_hash
                    .as_deref(),
                Some("hash-1")
            );
            assert!(
                add_vector(s, "nope", "v0", &[1.0; 15], kinds(true), 1)
                    .await
                    .unwrap()
                    .is_none()
            );

            let ready = Thresholds {
                total: 3,
                keyboard: 2,
                mouse: 1,
                digraph: 1,
            };
            for i in 0..2 {
                let after = add_vector(
                    s,
                    P,
                    &format!("v{i}"),
                    &[i as f64; 15],
                    kinds(i == 0),
                    100 + i,
                )
                .await
                .unwrap();
                assert!(after.is_some());
            }
            assert!(
                claim_initial_training(s, P, "t0", 200, 0, ready)
                    .await
                    .unwrap()
                    .is_none(),
                "not ready yet"
            );
            let after = add_vector(s, P, "v2", &[2.0; 15], kinds(true), 102)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                after.counts,
                Counts {
                    total: 3,
                    keyboard: 2,
                    mouse: 2,
                    digraph: 2
                }
            );
            assert!(!after.model_active);

            let claim = claim_initial_training(s, P, "t1", 200, 0, ready)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(claim.next_version, 1);
            assert!(
                claim_initial_training(s, P, "t2", 201, 0, ready)
                    .await
                    .unwrap()
                    .is_none(),
                "slot is taken"
            );
            // A claim older than `stale_before` can be taken over.
            let claim = claim_initial_training(s, P, "t3", 300, 250, ready)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                newest_vectors(s, P, 2).await.unwrap(),
                vec![vec![1.0; 15], vec![2.0; 15]]
            );

            assert!(
                !publish_model(
                    s,
                    &Claim {
                        token: "t1".into(),
                        ..claim.clone()
                    },
                    b"m",
                    400,
                    None
                )
                .await
                .unwrap()
            );
            assert!(
                publish_model(s, &claim, b"model-1", 400, None)
                    .await
                    .unwrap()
            );
            assert_eq!(active_model_version(s, P).await.unwrap(), Some(1));
            let m = model(s, P).await.unwrap().unwrap();
            assert_eq!(
                (m.version, m.trained_at, m.blob.as_slice()),
                (1, 400, &b"model-1"[..])
            );

            // Pool and retraining.
            for i in 0..3 {
                assert_eq!(
                    add_pool_vector(s, P, &format!("p{i}"), &[9.0; 15], 500 + i)
                        .await
                        .unwrap(),
                    Some(i + 1)
                );
            }
            assert!(
                claim_retraining(s, P, "r0", 600, 0, 4)
                    .await
                    .unwrap()
                    .is_none(),
                "pool below trigger"
            );
            let claim = claim_retraining(s, P, "r1", 600, 0, 3)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(claim.next_version, 2);
            assert_eq!(newest_pool(s, P, 10).await.unwrap().len(), 3);
            add_pool_vector(s, P, "p-late", &[8.0; 15], 700)
                .await
                .unwrap();
            assert!(
                publish_model(s, &claim, b"model-2", 650, Some(650))
                    .await
                    .unwrap()
            );
            let p = profile(s, P).await.unwrap().unwrap();
            assert_eq!(
                (p.model_version, p.pool_count, p.last_retrained_at),
                (2, 1, Some(650))
            );
            assert_eq!(row_counts(s, P).await.unwrap(), (3, 1));

            // Reset keeps the password and the version counter.
            assert!(reset(s, P).await.unwrap());
            let p = profile(s, P).await.unwrap().unwrap();
            assert_eq!(p.counts, Counts::default());
            assert!(!p.model_active);
            assert_eq!(p.model_version, 2);
            assert_eq!(p.password_hash.as_deref(), Some("hash-1"));
            assert_eq!(active_model_version(s, P).await.unwrap(), None);
            assert!(model(s, P).await.unwrap().is_none());
            assert_eq!(row_counts(s, P).await.unwrap(), (0, 0));
            assert_eq!(
                add_pool_vector(s, P, "p-x", &[1.0; 15], 800).await.unwrap(),
                None
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batched_score_writes_store_runs_with_their_pool_vectors_and_last_writer_wins() {
        const Q: &str = "0b7e1a52-7c1e-4c39-9a35-2f1d6c0e9b11";
        const GONE: &str = "5d2c8f0a-1b3e-4f6a-8c9d-0e1f2a3b4c5d";
        for db in TestDb::all().await {
            let (s, l) = (&db.store, db.label);
            enroll(s, P, "h", 1).await.unwrap();
            enroll(s, Q, "h", 1).await.unwrap();
            // No model yet: nothing to score with.
            assert_eq!(score_context(s, P).await.unwrap(), None, "{l}");
            assert_eq!(score_context(s, GONE).await.unwrap(), None, "{l}");
            publish_first_model(s, P).await;
            assert_eq!(
                score_context(s, P).await.unwrap(),
                Some(ScoreContext {
                    model_version: 1,
                    run_state: None
                }),
                "{l}"
            );
            let pool = |version, id| PoolEntry {
                profile_id: P,
                model_version: version,
                vector_id: id,
                features: &[5.0; 15],
                created_at: 10,
            };
            let trigger = RetrainTrigger {
                pool_trigger: 100,
                now: 20,
                stale_before: 0,
            };
            let entry = |pid, pool, state: &'static [u8], now| ScoreEntry {
                profile_id: pid,
                pool,
                run_state: Some(state),
                now,
            };
            let out = store_scores(
                s,
                &[
                    entry(P, Some(pool(1, "a")), b"p1", 11),
                    // Scored by a replaced model: neither its vector nor its run state is stored.
                    entry(P, Some(pool(0, "b")), b"stale", 12),
                    entry(Q, None, b"q1", 13),
                    // A profile that does not exist gets no run row (and does not fail the batch).
                    entry(GONE, None, b"gone", 14),
                    // The same profile again: the later run state wins.
                    entry(Q, None, b"q2", 15),
                    ScoreEntry {
                        profile_id: P,
                        pool: None,
                        run_state: None,
                        now: 16,
                    },
                ],
                trigger,
            )
            .await
            .unwrap();
            let stored = ScoreStored::Stored { claim: None };
            assert_eq!(
                out,
                vec![
                    stored.clone(),
                    ScoreStored::Stale,
                    stored.clone(),
                    stored.clone(),
                    stored.clone(),
                    stored
                ],
                "{l}"
            );
            assert_eq!(
                score_context(s, P).await.unwrap(),
                Some(ScoreContext {
                    model_version: 1,
                    run_state: Some(b"p1".to_vec())
                }),
                "{l}"
            );
            assert_eq!(run_state(s, Q).await.unwrap(), Some(b"q2".to_vec()), "{l}");
            assert_eq!(run_state(s, GONE).await.unwrap(), None, "{l}");
            assert_eq!(row_counts(s, P).await.unwrap(), (1, 1), "{l}");
            assert_eq!(profile(s, P).await.unwrap().unwrap().pool_count, 1, "{l}");
            // More profiles than one upsert chunk holds (chunks of 32, 16, … rows).
            let ids: Vec<String> = (0..45)
                .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
                .collect();
            for id in &ids {
                enroll(s, id, "h", 1).await.unwrap();
            }
            let states: Vec<[u8; 1]> = (0..45u8).map(|i| [i]).collect();
            let many: Vec<ScoreEntry<'_>> = ids
                .iter()
                .zip(&states)
                .map(|(id, st)| ScoreEntry {
                    profile_id: id,
                    pool: None,
                    run_state: Some(st),
                    now: 30,
                })
                .collect();
            let out = store_scores(s, &many, trigger).await.unwrap();
            assert!(
                out.iter()
                    .all(|o| *o == ScoreStored::Stored { claim: None }),
                "{l}"
            );
            for (id, st) in ids.iter().zip(&states) {
                assert_eq!(run_state(s, id).await.unwrap(), Some(st.to_vec()), "{l}");
            }
            // Run states only, one chunk (written without a transaction): the same rules.
            let out = store_scores(
                s,
                &[
                    entry(Q, None, b"q3", 40),
                    entry(GONE, None, b"gone", 41),
                    entry(Q, None, b"q4", 42),
                ],
                trigger,
            )
            .await
            .unwrap();
            assert_eq!(out, vec![ScoreStored::Stored { claim: None }; 3], "{l}");
            assert_eq!(run_state(s, Q).await.unwrap(), Some(b"q4".to_vec()), "{l}");
            assert_eq!(run_state(s, GONE).await.unwrap(), None, "{l}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batched_pool_writes_check_the_model_version_and_claim_once() {
        const Q: &str = "0b7e1a52-7c1e-4c39-9a35-2f1d6c0e9b11";
        for db in TestDb::all().await {
            let s = &db.store;
            let l = db.label;
            enroll(s, P, "h", 1).await.unwrap();
            enroll(s, Q, "h", 1).await.unwrap();
            publish_first_model(s, P).await;
            let entry = |pid, version, id, x: &'static [f64; 15]| PoolEntry {
                profile_id: pid,
                model_version: version,
                vector_id: id,
                features: x,
                created_at: 10,
            };
            let trigger = |now| RetrainTrigger {
                pool_trigger: 4,
                now,
                stale_before: 0,
            };
            // Interleaved profiles and versions: only entries scored by P's active model (1) are stored.
            let out = add_pool_vectors(
                s,
                &[
                    entry(P, 1, "a", &[1.0; 15]),
                    entry(Q, 1, "b", &[2.0; 15]),
                    entry(P, 0, "c", &[3.0; 15]),
                    entry(P, 1, "d", &[4.0; 15]),
                    entry(P, 1, "e", &[5.0; 15]),
                ],
                trigger(20),
            )
            .await
            .unwrap();
            let added = |n| Pooled::Added {
                pool_count: n,
                claim: None,
            };
            assert_eq!(
                out,
                vec![added(1), Pooled::Stale, Pooled::Stale, added(2), added(3)],
                "{l}"
            );
            assert_eq!(row_counts(s, P).await.unwrap(), (1, 3), "{l}");
            assert_eq!(row_counts(s, Q).await.unwrap(), (0, 0), "{l}");
            assert_eq!(
                newest_pool(s, P, 10).await.unwrap().len(),
                3,
                "{l}: the features are stored"
            );
            // The batch that fills the pool takes the slot, once, on its last entry.
            let out = add_pool_vectors(
                s,
                &[entry(P, 1, "f", &[6.0; 15]), entry(P, 1, "g", &[7.0; 15])],
                trigger(30),
            )
            .await
            .unwrap();
            let Pooled::Added {
                pool_count: 5,
                claim: Some(won),
            } = &out[1]
            else {
                panic!("{l}: {out:?}");
            };
            assert_eq!(out[0], added(4), "{l}");
            assert_eq!((won.profile_id.as_str(), won.next_version), (P, 2));
            let p = profile(s, P).await.unwrap().unwrap();
            assert_eq!(
                (p.training_claim.as_deref(), p.training_claimed_at),
                (Some(won.token.as_str()), Some(30)),
                "{l}"
            );
            // While the claim is live, neither a batch nor the single-statement claim takes it.
            let out = add_pool_vectors(s, &[entry(P, 1, "h", &[8.0; 15])], trigger(40))
                .await
                .unwrap();
            assert_eq!(out, vec![added(6)], "{l}");
            assert!(
                claim_retraining(s, P, "x", 40, 0, 4)
                    .await
                    .unwrap()
                    .is_none()
            );
            // A dead claim (older than `stale_before`) is taken over.
            let out = add_pool_vectors(
                s,
                &[entry(P, 1, "i", &[9.0; 15])],
                RetrainTrigger {
                    pool_trigger: 4,
                    now: 50,
                    stale_before: 35,
                },
            )
            .await
            .unwrap();
            assert!(
                matches!(&out[0], Pooled::Added { pool_count: 7, claim: Some(c) } if c.token != won.token),
                "{l}: {out:?}"
            );
            // Once version 2 is active, vectors scored by version 1 are refused.
            let Pooled::Added {
                claim: Some(current),
                ..
            } = &out[0]
            else {
                unreachable!()
            };
            assert!(
                publish_model(s, current, b"m2", 60, Some(55))
                    .await
                    .unwrap()
            );
            let out = add_pool_vectors(
                s,
                &[entry(P, 1, "j", &[1.0; 15]), entry(P, 2, "k", &[1.0; 15])],
                trigger(70),
            )
            .await
            .unwrap();
            assert_eq!(out, vec![Pooled::Stale, added(1)], "{l}");
            // A batch larger than one insert chunk keeps every row.
            let ids: Vec<String> = (0..45).map(|i| format!("bulk-{i}")).collect();
            let many: Vec<PoolEntry> = ids.iter().map(|id| entry(P, 2, id, &[2.0; 15])).collect();
            let out = add_pool_vectors(
                s,
                &many,
                RetrainTrigger {
                    pool_trigger: 1000,
                    now: 80,
                    stale_before: 0,
                },
            )
            .await
            .unwrap();
            assert_eq!(out.last(), Some(&added(46)), "{l}");
            assert_eq!(row_counts(s, P).await.unwrap(), (1, 46), "{l}");
            assert!(
                add_pool_vectors(s, &[], trigger(90))
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_needs_one_modality_and_growth_is_claimed_once_per_model_version() {
        for db in TestDb::all().await {
            let s = &db.store;
            let l = db.label;
            enroll(s, P, "h", 1).await.unwrap();
            let mouse_only = VectorKinds {
                keyboard: false,
                mouse: true,
                digraph: false,
            };
            for i in 0..2 {
                add_vector(s, P, &format!("v{i}"), &[1.0; 15], mouse_only, 2 + i)
                    .await
                    .unwrap();
            }
            let ready = Thresholds {
                total: 2,
                keyboard: 2,
                mouse: 2,
                digraph: 1,
            };
            // No typing at all: the mouse quota alone makes the profile ready.
            let claim = claim_initial_training(s, P, "t", 3, 0, ready)
                .await
                .unwrap()
                .expect("ready on the mouse alone");
            assert!(
                claim_growth_training(s, P, "g0", 3, 0, 0)
                    .await
                    .unwrap()
                    .is_none(),
                "{l}: no growth training without an active model"
            );
            assert!(publish_model(s, &claim, b"m1", 4, None).await.unwrap());
            assert!(
                claim_growth_training(s, P, "g1", 5, 0, 0)
                    .await
                    .unwrap()
                    .is_none(),
                "{l}: only for the active version"
            );
            let g = claim_growth_training(s, P, "g2", 5, 0, 1)
                .await
                .unwrap()
                .expect("growth claim");
            assert_eq!(g.next_version, 2);
            assert!(
                claim_growth_training(s, P, "g3", 6, 0, 1)
                    .await
                    .unwrap()
                    .is_none(),
                "{l}: the slot is taken"
            );
            assert!(publish_model(s, &g, b"m2", 7, None).await.unwrap());
            assert!(
                claim_growth_training(s, P, "g4", 8, 0, 1)
                    .await
                    .unwrap()
                    .is_none(),
                "{l}: that growth is trained"
            );
            assert_eq!(active_model_version(s, P).await.unwrap(), Some(2));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publishing_after_a_reset_is_refused() {
        for db in TestDb::all().await {
            let s = &db.store;
            enroll(s, P, "h", 1).await.unwrap();
            let claim = claim_first_training(s, P).await;
            reset(s, P).await.unwrap();
            assert!(
                !publish_model(s, &claim, b"stale", 4, None).await.unwrap(),
                "{}",
                db.label
            );
            assert_eq!(active_model_version(s, P).await.unwrap(), None);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_beating_claim_stays_live_and_a_silent_one_expires() {
        for db in TestDb::all().await {
            let (s, l) = (&db.store, db.label);
            enroll(s, P, "h", 1).await.unwrap();
            add_vector(s, P, "v", &[1.0; 15], kinds(true), 2)
                .await
                .unwrap();
            let ready = Thresholds {
                total: 1,
                keyboard: 1,
                mouse: 1,
                digraph: 1,
            };
            let claim = claim_initial_training(s, P, "t", 100, 0, ready)
                .await
                .unwrap()
                .unwrap();
            assert!(expired_claims(s, 100, 10).await.unwrap().is_empty(), "{l}");
            let expired = expired_claims(s, 101, 10).await.unwrap();
            assert_eq!(
                expired,
                vec![ExpiredClaim {
                    profile_id: P.into(),
                    token: "t".into()
                }],
                "{l}"
            );
            // A heartbeat moves the claim out of reach of the same cut-off, and of a takeover.
            assert!(refresh_claim(s, &claim, 200).await.unwrap(), "{l}");
            assert!(expired_claims(s, 101, 10).await.unwrap().is_empty(), "{l}");
            assert!(
                claim_initial_training(s, P, "x", 201, 150, ready)
                    .await
                    .unwrap()
                    .is_none(),
                "{l}"
            );
            assert!(
                !release_expired_claim(s, &expired[0], 150).await.unwrap(),
                "{l}: a refreshed claim is not released"
            );
            // Once silent past the cut-off it is released (and only with its own token).
            let wrong = ExpiredClaim {
                profile_id: P.into(),
                token: "other".into(),
            };
            assert!(!release_expired_claim(s, &wrong, 300).await.unwrap(), "{l}");
            assert!(
                release_expired_claim(s, &expired[0], 300).await.unwrap(),
                "{l}"
            );
            assert!(
                !refresh_claim(s, &claim, 301).await.unwrap(),
                "{l}: the owner stops beating"
            );
            let p = profile(s, P).await.unwrap().unwrap();
            assert_eq!(
                (p.training_claim, p.training_claimed_at),
                (None, None),
                "{l}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_attempts_lock_after_the_limit_and_reset_on_success() {
        for db in TestDb::all().await {
            let s = &db.store;
            assert_eq!(
                charge_password_attempt(s, P, 0, 900, 5).await.unwrap(),
                Attempt::NotEnrolled
            );
            ensure_profile(s, P, 0).await.unwrap();
            assert_eq!(
                charge_password_attempt(s, P, 0, 900, 5).await.unwrap(),
                Attempt::NotEnrolled
            );
            enroll(s, P, "h", 0).await.unwrap();
            for t in 1000..1005 {
                assert!(matches!(
                    charge_password_attempt(s, P, t, 900, 5).await.unwrap(),
                    Attempt::Proceed { .. }
                ));
            }
            assert_eq!(
                charge_password_attempt(s, P, 1006, 900, 5).await.unwrap(),
                Attempt::Locked { until: 1900 }
            );
            // After the window, attempts are admitted again and the count starts over.
            assert!(matches!(
                charge_password_attempt(s, P, 1900, 900, 5).await.unwrap(),
                Attempt::Proceed { .. }
            ));
            assert_eq!(profile(s, P).await.unwrap().unwrap().failed_attempts, 1);
            password_succeeded(s, P, Some("h2")).await.unwrap();
            let p = profile(s, P).await.unwrap().unwrap();
            assert_eq!(
                (
                    p.failed_attempts,
                    p.locked_until,
                    p.password_hash.as_deref()
                ),
                (0, None, Some("h2"))
            );
            password_succeeded(s, P, None).await.unwrap();
            assert_eq!(
                profile(s, P)
                    .await
                    .unwrap()
                    .unwrap()
                    .password_hash
                    .as_deref(),
                Some("h2")
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn import_is_idempotent() {
        for db in TestDb::all().await {
            let s = &db.store;
            assert!(ensure_profile(s, P, 0).await.unwrap());
            assert!(!ensure_profile(s, P, 0).await.unwrap());
            assert!(
                import_vector(s, P, "csv:1", &[1.0; 15], kinds(true), 5)
                    .await
                    .unwrap()
            );
            assert!(
                !import_vector(s, P, "csv:1", &[1.0; 15], kinds(true), 5)
                    .await
                    .unwrap()
            );
            assert_eq!(profile(s, P).await.unwrap().unwrap().counts.total, 1);
            // A profile created by import can still be enrolled once.
            assert!(import_user(s, P, "$2b$12$abc", 1).await.unwrap());
            assert!(!import_user(s, P, "$2b$12$def", 1).await.unwrap());
        }
    }
}
