-- Admin page sessions: an opaque random id in the cookie, only its SHA-256 here. A session
-- remembers which token opened it (its id, or NULL for the operator token of [admin], and
-- the token's digest), so revoking or rotating that token ends it. Additive.
CREATE TABLE IF NOT EXISTS admin_sessions (
    id_sha256    TEXT PRIMARY KEY,
    token_id     TEXT,
    token_sha256 TEXT NOT NULL,
    flash        TEXT,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS admin_sessions_token ON admin_sessions (token_id);
