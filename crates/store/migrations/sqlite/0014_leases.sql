-- Leases (store `leases` module): a named, time-limited claim held by one owner at a time, shared by every replica
-- (`stream:<name>` for stream ownership in vigil-realtime, `nats:<name>` for the NATS ingest). `epoch` grows every
-- time the lease is taken anew and is the fencing token; `expires_at` is Unix ms on the database's clock.
-- `wanted_by`/`wanted_at`: the last other owner that asked for the lease while it was held, and when (Unix ms on the
-- database's clock), so a holder can hand over early; cleared whenever the lease is taken anew.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    wanted_by TEXT,
    wanted_at BIGINT
);
