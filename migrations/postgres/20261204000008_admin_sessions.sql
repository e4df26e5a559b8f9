-- Admin page sessions on PostgreSQL: an opaque random id in the cookie, only its SHA-256
-- here; revoking or rotating the token that opened a session ends it. Additive.
CREATE TABLE IF NOT EXISTS admin_sessions (
    id_sha256    TEXT        PRIMARY KEY,
    token_id     TEXT,
    token_sha256 TEXT        NOT NULL,
    flash        TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS admin_sessions_token ON admin_sessions (token_id);
