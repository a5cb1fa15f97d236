-- TopoForge: analysts, their tokens, the anomaly log, data sources and alert configs.
-- Booleans are 0/1 integers (sqlx's Any driver cannot decode SQLite BOOLEAN). Times are BIGINT Unix milliseconds (UTC); ids are TEXT UUIDs; JSON documents are TEXT.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    email         TEXT NOT NULL UNIQUE,          -- stored lower-cased
    password_hash TEXT NOT NULL,                 -- PHC string (Argon2id; bcrypt from imports until upgraded)
    full_name     TEXT,
    organization  TEXT,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'analyst', 'admin')),
    is_verified   BIGINT NOT NULL DEFAULT 0,
    is_active     BIGINT NOT NULL DEFAULT 1,
    created_at    BIGINT NOT NULL,
    last_login    BIGINT
);

-- Refresh tokens are random; only their SHA-256 is stored. Rotation marks the old one revoked.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    revoked    BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Single-use tokens mailed to users: email verification and password reset. Hashed, expiring.
CREATE TABLE auth_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX auth_tokens_user ON auth_tokens (user_id, purpose);

CREATE TABLE anomalies (
    id            TEXT PRIMARY KEY,
    ts            BIGINT NOT NULL,               -- the event's time (the document's `timestamp`)
    source_type   TEXT NOT NULL,
    event_data    TEXT NOT NULL,                 -- JSON object
    betti_h0      BIGINT NOT NULL DEFAULT 0,
    betti_h1      BIGINT NOT NULL DEFAULT 0,
    betti_h2      BIGINT NOT NULL DEFAULT 0,
    anomaly_score DOUBLE PRECISION NOT NULL,     -- 0..1
    is_anomaly    BIGINT NOT NULL,
    risk_level    TEXT NOT NULL,                 -- Low | Medium | High | Critical
    entropy       DOUBLE PRECISION,              -- persistence entropy, for exports
    metadata      TEXT NOT NULL,                 -- JSON object (the full analysis for pipeline anomalies)
    created_by    TEXT,                          -- user id, or NULL for the pipeline
    created_at    BIGINT NOT NULL
);
-- Listing is newest first, optionally narrowed by one of these columns; stats group by them.
CREATE INDEX anomalies_ts ON anomalies (ts DESC, id);
CREATE INDEX anomalies_source_ts ON anomalies (source_type, ts DESC);
CREATE INDEX anomalies_risk_ts ON anomalies (risk_level, ts DESC);
CREATE INDEX anomalies_flag_ts ON anomalies (is_anomaly, ts DESC);

CREATE TABLE sources (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    type        TEXT NOT NULL,
    url         TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    active      BIGINT NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL
);

CREATE TABLE alert_configs (
    id                    TEXT PRIMARY KEY,
    user_id               TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    threshold             DOUBLE PRECISION NOT NULL CHECK (threshold >= 0 AND threshold <= 1),
    notification_channels TEXT NOT NULL,         -- JSON array of strings: "webhook:<url>", "websocket"
    is_active             BIGINT NOT NULL DEFAULT 1,
    created_at            BIGINT NOT NULL
);
CREATE INDEX alert_configs_active ON alert_configs (is_active, threshold);
CREATE INDEX alert_configs_user ON alert_configs (user_id);
