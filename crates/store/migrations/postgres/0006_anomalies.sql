-- Anomaly statistics at scale (GET /api/anomalies/stats over millions of rows).
--
-- 1. anomaly_counts: a per-hour rollup of the anomaly log by (source_type, risk_level, is_anomaly), kept exact by a
--    trigger in the same transaction as every write to `anomalies`. Statistics whose filters it can express (time,
--    source, risk level, flag; not min_score) read whole hours from it and only the partial hours at the edges of
--    the requested range from `anomalies`. Hours are floor(ts / 3600000) * 3600000 (UTC), also for ts < 0.
-- 2. anomalies_stats_ts: a covering index (every column the stats queries read), so the edge scans and the
--    fallback scans (min_score) can be index-only.

CREATE TABLE anomaly_counts (
    hour        BIGINT NOT NULL,
    source_type TEXT NOT NULL,
    risk_level  TEXT NOT NULL,
    is_anomaly  BIGINT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (hour, source_type, risk_level, is_anomaly)
);

CREATE INDEX anomalies_stats_ts ON anomalies (ts, source_type, risk_level, is_anomaly, anomaly_score);

-- Rows stored before this migration.
INSERT INTO anomaly_counts (hour, source_type, risk_level, is_anomaly, n)
SELECT ts - (((ts % 3600000) + 3600000) % 3600000), source_type, risk_level, is_anomaly, COUNT(*)
FROM anomalies
GROUP BY 1, 2, 3, 4;

CREATE FUNCTION anomalies_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE anomaly_counts SET n = n - 1
        WHERE hour = OLD.ts - (((OLD.ts % 3600000) + 3600000) % 3600000) AND source_type = OLD.source_type
          AND risk_level = OLD.risk_level AND is_anomaly = OLD.is_anomaly;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO anomaly_counts (hour, source_type, risk_level, is_anomaly, n)
        VALUES (NEW.ts - (((NEW.ts % 3600000) + 3600000) % 3600000), NEW.source_type, NEW.risk_level, NEW.is_anomaly, 1)
        ON CONFLICT (hour, source_type, risk_level, is_anomaly) DO UPDATE SET n = anomaly_counts.n + 1;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER anomalies_count_insert AFTER INSERT OR DELETE ON anomalies
    FOR EACH ROW EXECUTE FUNCTION anomalies_count();
CREATE TRIGGER anomalies_count_update AFTER UPDATE OF ts, source_type, risk_level, is_anomaly ON anomalies
    FOR EACH ROW EXECUTE FUNCTION anomalies_count();
