-- TopoForge: analysts, their tokens, the anomaly log, data sources and alert configs.
-- Booleans are 0/1 integers (sqlx's Any driver cannot decode SQLite BOOLEAN). Times are INTEGER Unix milliseconds (UTC); ids are TEXT UUIDs; JSON documents are TEXT.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    email         TEXT NOT NULL UNIQUE,          -- stored lower-cased
    password_hash TEXT NOT NULL,                 -- PHC string (Argon2id; bcrypt from imports until upgraded)
    full_name     TEXT,
    organization  TEXT,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'analyst', 'admin')),
    is_verified   INTEGER NOT NULL DEFAULT 0,
    is_active     INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL,
    last_login    INTEGER
);

-- Refresh tokens are random; only their SHA-256 is stored. Rotation marks the old one revoked.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Single-use tokens mailed to users: email verification and password reset. Hashed, expiring.
CREATE TABLE auth_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX auth_tokens_user ON auth_tokens (user_id, purpose);

CREATE TABLE anomalies (
    id            TEXT PRIMARY KEY,
    ts            INTEGER NOT NULL,               -- the event's time (the document's `timestamp`)
    source_type   TEXT NOT NULL,
    event_data    TEXT NOT NULL,                 -- JSON object
    betti_h0      INTEGER NOT NULL DEFAULT 0,
    betti_h1      INTEGER NOT NULL DEFAULT 0,
    betti_h2      INTEGER NOT NULL DEFAULT 0,
    anomaly_score REAL NOT NULL,     -- 0..1
    is_anomaly    INTEGER NOT NULL,
    risk_level    TEXT NOT NULL,                 -- Low | Medium | High | Critical
    entropy       REAL,              -- persistence entropy, for exports
    metadata      TEXT NOT NULL,                 -- JSON object (the full analysis for pipeline anomalies)
    created_by    TEXT,                          -- user id, or NULL for the pipeline
    created_at    INTEGER NOT NULL
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
    active      INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL
);

CREATE TABLE alert_configs (
    id                    TEXT PRIMARY KEY,
    user_id               TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    threshold             REAL NOT NULL CHECK (threshold >= 0 AND threshold <= 1),
    notification_channels TEXT NOT NULL,         -- JSON array of strings: "webhook:<url>", "websocket"
    is_active             INTEGER NOT NULL DEFAULT 1,
    created_at            INTEGER NOT NULL
);
CREATE INDEX alert_configs_active ON alert_configs (is_active, threshold);
CREATE INDEX alert_configs_user ON alert_configs (user_id);
