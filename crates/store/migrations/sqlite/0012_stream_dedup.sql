-- Idempotent events (vigil-realtime's `dedup` module): per stream, the highest client `seq` applied and the newest
-- client `event_id`s (at most a fixed window), as JSON. Written in the same statement as `state`, so the events'
-- effects and the record that they were applied are stored together. NULL: the stream never saw either.
ALTER TABLE stream_states ADD COLUMN dedup TEXT;
