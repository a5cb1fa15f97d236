-- Access tokens that stop working before they expire.
--
-- A JWT is valid until its `exp` on its own; these two make logout and "end every session" take effect at once.
-- `session_generation` is copied into every access token (`gen` claim); ending all of an account's sessions (logout
-- without a refresh token, password change or reset, a replayed refresh token) increments it, which invalidates every
-- token issued before. `revoked_access_tokens` holds the `jti` of single tokens revoked by logout, until they
-- would have expired anyway; the periodic clean-up then deletes them.
ALTER TABLE users ADD COLUMN session_generation INTEGER NOT NULL DEFAULT 0;

CREATE TABLE revoked_access_tokens (
    jti        TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL                     -- Unix ms; the row is useless afterwards
);
CREATE INDEX revoked_access_tokens_expiry ON revoked_access_tokens (expires_at);
