-- MaxiDOM sequential evidence: each profile's current activity run (the newest payloads' evidence and the last
-- event time seen), so any replica continues any run. `state` is vigil-biometrics' `sequential::Run` encoding;
-- one small row per profile, overwritten on every score, deleted when the run ends by a password verification or
-- a reset.
CREATE TABLE maxidom_runs (
    profile_id TEXT PRIMARY KEY REFERENCES maxidom_profiles(profile_id) ON DELETE CASCADE,
    state      BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);
