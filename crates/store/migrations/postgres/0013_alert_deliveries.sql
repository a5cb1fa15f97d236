-- Alert delivery history: one row per webhook delivery (all its attempts), written when the delivery ends, so
-- the console can show recent deliveries and their outcome. `target` is the webhook URL without its query or
-- credentials (receivers often put a secret there). Rows go with their config's owner; the anomaly and the
-- config may be deleted meanwhile (no foreign key on them: the history stays readable). Times: Unix ms.
CREATE TABLE alert_deliveries (
    id          TEXT PRIMARY KEY,
    config_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    anomaly_id  TEXT NOT NULL,
    channel     TEXT NOT NULL,
    target      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    last_status BIGINT,
    error       TEXT,
    created_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL
);
CREATE INDEX alert_deliveries_user_time ON alert_deliveries (user_id, finished_at);
CREATE INDEX alert_deliveries_time ON alert_deliveries (finished_at);
