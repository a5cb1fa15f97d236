-- Incidents (issue #13): consecutive anomalous events of a stream are one row of the anomaly log, updated while
-- the incident grows (its peak, its event count) and closed when it ends. Manual anomalies (POST /api/anomalies)
-- leave these columns NULL.
--
-- event_count:   events from the incident's first to its last anomalous event (NULL: not a pipeline incident).
-- ended_at:      Unix ms of its last anomalous event once it is closed (NULL while open).
-- incident_open: 1 while the incident is open, NULL otherwise; at most one open incident per stream (the unique
--                partial index), enforced by the database whatever the replicas do.
ALTER TABLE anomalies ADD COLUMN event_count INTEGER;
ALTER TABLE anomalies ADD COLUMN ended_at INTEGER;
ALTER TABLE anomalies ADD COLUMN incident_open INTEGER;
CREATE UNIQUE INDEX anomalies_open_incident ON anomalies (source_type) WHERE incident_open = 1;

-- The stream's incident tracker (JSON: the open incident's id, peak, counters), written in the same statement as
-- the stream's state, so the state and the incident it belongs to are stored (or lost) together.
ALTER TABLE stream_states ADD COLUMN incident TEXT;
