-- TopoForge stream state: one row per event stream, shared by every replica.
-- `state` is the engine's state without its model (JSON, rewritten with every analysed batch); `model` is the
-- stream's Isolation Forest (rewritten only when `model_generation` moves). `version` is the optimistic-concurrency
-- counter: a writer updates `WHERE version = <the version it read>` and re-reads on a miss.
CREATE TABLE stream_states (
    stream           TEXT PRIMARY KEY,
    version          INTEGER NOT NULL,
    state            TEXT NOT NULL,
    model            BLOB,
    model_generation INTEGER NOT NULL DEFAULT 0,
    config           TEXT,                       -- JSON StreamConfig overrides; NULL = defaults
    updated_at       INTEGER NOT NULL
);
