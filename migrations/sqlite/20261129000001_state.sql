-- syncd state. Portable SQL: the same statements run on SQLite and PostgreSQL.
-- Times are RFC 3339 UTC (TEXT on SQLite, TIMESTAMPTZ on PostgreSQL via sqlx).

-- One row per integration: what happened last, and what the next run needs to know.
CREATE TABLE IF NOT EXISTS sync_state (
    tenant               TEXT    NOT NULL,
    integration          TEXT    NOT NULL,
    kind                 TEXT    NOT NULL,
    last_attempt_at      TEXT,
    last_success_at      TEXT,
    last_outcome         TEXT,
    last_error           TEXT,
    items                BIGINT,
    -- Transient failures since the last success (rate limits do not count).
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    -- Set on rejected credentials: no scheduled runs until a re-fetch or a passing test.
    paused               INTEGER NOT NULL DEFAULT 0,
    paused_reason        TEXT,
    -- Salted SHA-256 of the secret that was refused ("salt$hash"): when the secret in the
    -- environment differs, the credentials have changed and scheduled runs resume.
    paused_secret_fp     TEXT,
    next_retry_at        TEXT,
    -- Change detection for the source (HTTP validators, file size and mtime).
    etag                 TEXT,
    last_modified        TEXT,
    source_size          BIGINT,
    source_mtime         TEXT,
    -- The latest schedule tick enqueued, so a restart knows what is overdue.
    last_tick_at         TEXT,
    -- A forced re-fetch that is queued and not yet started.
    refetch_requested_at TEXT,
    -- What the last import changed.
    changes_added        BIGINT,
    changes_removed      BIGINT,
    changes_price        BIGINT,
    changes_stock        BIGINT,
    PRIMARY KEY (tenant, integration)
);

-- The admins' issues log. One open row per (tenant, integration, kind).
CREATE TABLE IF NOT EXISTS issues (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT    NOT NULL,
    integration TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    hint        TEXT    NOT NULL,
    occurrences INTEGER NOT NULL DEFAULT 1,
    first_seen  TEXT    NOT NULL,
    last_seen   TEXT    NOT NULL,
    resolved_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS issues_one_open
    ON issues (tenant, integration, kind) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS issues_by_tenant ON issues (tenant, resolved_at);

-- A feed's current price list. A full file replaces it, a delta file (action codes) changes
-- it; either way inside one transaction, so readers never see a half-imported list.
CREATE TABLE IF NOT EXISTS prices (
    tenant      TEXT    NOT NULL,
    feed        TEXT    NOT NULL,
    sku         TEXT    NOT NULL,
    -- Exact decimal text ("123.45"): money is never a float.
    price       TEXT    NOT NULL,
    stock       BIGINT,
    mpn         TEXT,
    ean         TEXT,
    description TEXT,
    currency    TEXT,
    PRIMARY KEY (tenant, feed, sku)
) WITHOUT ROWID; -- clustered on the key: one B-tree to write instead of a table and an index

-- What each import changed, per part, written in the same transaction as the prices: the
-- source of price.changed / stock.changed events. A first import records no per-part rows
-- (everything would be "added"); its count is in sync_state.
CREATE TABLE IF NOT EXISTS price_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT    NOT NULL,
    feed        TEXT    NOT NULL,
    run         TEXT    NOT NULL,
    sku         TEXT    NOT NULL,
    -- added | removed | changed
    change      TEXT    NOT NULL,
    old_price   TEXT,
    new_price   TEXT,
    old_stock   BIGINT,
    new_stock   BIGINT,
    recorded_at TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS price_changes_by_feed ON price_changes (tenant, feed, id);

-- Runs per job id, counted by us: a job that kills its worker again and again ends in an
-- issue instead of looping through the queue's orphan recovery forever.
CREATE TABLE IF NOT EXISTS job_runs (
    job_id      TEXT    PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    integration TEXT    NOT NULL,
    starts      INTEGER NOT NULL DEFAULT 0,
    started_at  TEXT    NOT NULL,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS job_runs_finished ON job_runs (finished_at);
