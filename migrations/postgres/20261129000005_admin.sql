-- Admin API tokens on PostgreSQL: a SHA-256 of each token, never the token.
CREATE TABLE IF NOT EXISTS admin_tokens (
    id           TEXT        PRIMARY KEY,
    name         TEXT        NOT NULL,
    tenant       TEXT,
    token_sha256 TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
