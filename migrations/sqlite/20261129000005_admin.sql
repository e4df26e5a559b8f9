-- Admin API tokens. Only a SHA-256 of each token is kept; the token itself is shown once,
-- when it is created. tenant NULL = an operator token (every tenant).
CREATE TABLE IF NOT EXISTS admin_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    tenant       TEXT,
    token_sha256 TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
