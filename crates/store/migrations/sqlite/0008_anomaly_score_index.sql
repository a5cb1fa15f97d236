-- Listing and counting with a `min_score` filter over millions of rows.
--
-- The hourly rollup (0006) cannot express a score bound, so `total` for a `min_score` listing is counted from the
-- table. Led by the score, this covering index turns that count into a range scan over just the matching entries
-- (with source, risk level, flag and time checked inside the index), instead of a scan of the whole log.
CREATE INDEX anomalies_score ON anomalies (anomaly_score, source_type, risk_level, is_anomaly, ts);
