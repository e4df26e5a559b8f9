-- The encrypted credential store on PostgreSQL (see migrations/sqlite): only nonces and
-- XChaCha20-Poly1305 ciphertexts are stored; the master key never reaches the database.

CREATE TABLE IF NOT EXISTS credentials (
    tenant       TEXT        NOT NULL,
    integration  TEXT        NOT NULL,
    field        TEXT        NOT NULL,
    nonce        BYTEA       NOT NULL,
    ciphertext   BYTEA       NOT NULL,
    expires_at   TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    PRIMARY KEY (tenant, integration, field)
);

CREATE TABLE IF NOT EXISTS credential_key_check (
    id         BIGINT      PRIMARY KEY CHECK (id = 1),
    nonce      BYTEA       NOT NULL,
    ciphertext BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
