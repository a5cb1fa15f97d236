-- TopoForge accounts: rate-limit counters shared by every replica, and the indexes the account queries use.

-- Fixed-window request counters. One row per (key, window); `expires_at` is the window's end, after which the row
-- is garbage and is deleted by the next request that opens a window.
CREATE TABLE rate_limits (
    bucket       TEXT NOT NULL,                 -- e.g. "login:<account>:<address>"
    window_start BIGINT NOT NULL,                -- Unix ms
    hits         BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
CREATE INDEX rate_limits_expiry ON rate_limits (expires_at);

-- The admin listing pages in creation order.
CREATE INDEX users_created ON users (created_at, id);
-- Purging expired tokens.
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);
CREATE INDEX auth_tokens_expiry ON auth_tokens (expires_at);
-- The sources listing is ordered by name.
CREATE INDEX sources_name ON sources (name, id);
