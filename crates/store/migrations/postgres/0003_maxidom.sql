-- MaxiDOM: behavioural profiles, their feature vectors, the retraining pool and the trained models.
-- Times are BIGINT Unix milliseconds (UTC); ids are TEXT (profile ids are canonical UUIDs); vectors are
-- 15 little-endian f64 in a BYTEA; models are the serialised ProfileModels of vigil-biometrics.

CREATE TABLE maxidom_profiles (
    profile_id          TEXT PRIMARY KEY,
    password_hash       TEXT,                        -- PHC Argon2id, or bcrypt from the reference until upgraded; NULL: not enrolled
    enrolled_at         BIGINT,
    created_at          BIGINT NOT NULL,
    -- Readiness counters, kept in step with maxidom_vectors inside the same transactions, so /train never counts rows.
    total_count         BIGINT NOT NULL DEFAULT 0,
    keyboard_count      BIGINT NOT NULL DEFAULT 0,
    mouse_count         BIGINT NOT NULL DEFAULT 0,
    digraph_count       BIGINT NOT NULL DEFAULT 0,
    pool_count          BIGINT NOT NULL DEFAULT 0,
    -- model_version only ever grows (caches key on it, also across resets); a model is active while model_trained_at
    -- is set (one column, so the two can never disagree).
    model_version       BIGINT NOT NULL DEFAULT 0,
    model_trained_at    BIGINT,
    last_retrained_at   BIGINT,
    -- The training slot: the job holding training_claim may publish a model; a stale claim can be taken over.
    training_claim      TEXT,
    training_claimed_at BIGINT,
    -- verify_password guessing protection.
    failed_attempts     BIGINT NOT NULL DEFAULT 0,
    first_failure_at    BIGINT,
    locked_until        BIGINT
);

CREATE TABLE maxidom_vectors (
    id         TEXT PRIMARY KEY,
    profile_id TEXT NOT NULL REFERENCES maxidom_profiles(profile_id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    features   BYTEA NOT NULL
);
CREATE INDEX maxidom_vectors_profile ON maxidom_vectors (profile_id, created_at);

CREATE TABLE maxidom_pool (
    id         TEXT PRIMARY KEY,
    profile_id TEXT NOT NULL REFERENCES maxidom_profiles(profile_id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    features   BYTEA NOT NULL
);
CREATE INDEX maxidom_pool_profile ON maxidom_pool (profile_id, created_at);

CREATE TABLE maxidom_models (
    profile_id TEXT PRIMARY KEY REFERENCES maxidom_profiles(profile_id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    trained_at BIGINT NOT NULL,
    blob       BYTEA NOT NULL
);
