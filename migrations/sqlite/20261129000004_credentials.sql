-- The encrypted credential store. Every secret is sealed with XChaCha20-Poly1305 under the
-- master key (which never touches the database), with a fresh random 24-byte nonce per
-- write, and with "tenant/integration/field" bound as associated data: a ciphertext copied
-- to another row does not decrypt. Only the ciphertext and its metadata are stored here.
CREATE TABLE IF NOT EXISTS credentials (
    tenant       TEXT NOT NULL,
    integration  TEXT NOT NULL,   -- the credential's name: `credential = "tenant/integration"`
    field        TEXT NOT NULL,   -- password | token | client_secret | refresh_token | api_key
    nonce        BLOB NOT NULL,
    ciphertext   BLOB NOT NULL,
    expires_at   TEXT,            -- when the provider says it lapses, if known
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    last_used_at TEXT,            -- the last job of an integration using it that succeeded
    PRIMARY KEY (tenant, integration, field)
);

-- A known value sealed under the master key when the first secret is stored: a different
-- key is recognised before anything is written with it, so a mistyped or swapped key can
-- never leave the store encrypted under two keys.
CREATE TABLE IF NOT EXISTS credential_key_check (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at TEXT NOT NULL
);
