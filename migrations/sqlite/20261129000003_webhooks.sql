-- Webhook delivery: events built from the change records (the outbox), one delivery per
-- subscribed endpoint, every attempt logged, endpoint health.

-- What a CRM enrichment changed, per company, written in the same transaction as the
-- companies: the source of company.enriched events.
CREATE TABLE IF NOT EXISTS company_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT NOT NULL,
    crm         TEXT NOT NULL,   -- the [[crm]] integration name
    run         TEXT NOT NULL,
    domain      TEXT NOT NULL,
    change      TEXT NOT NULL,   -- 'enriched'
    data        TEXT NOT NULL,   -- JSON object: the company's enriched fields
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS company_changes_by_tenant ON company_changes (tenant, id);

-- How far the dispatcher has turned each outbox table into events: the id of the last change
-- row it has read. Moved in the same transaction as the events it produced. Change records
-- written before this migration are history, not news: the cursors start at the end.
CREATE TABLE IF NOT EXISTS webhook_cursors (
    source  TEXT    PRIMARY KEY,
    last_id BIGINT  NOT NULL
);
INSERT OR IGNORE INTO webhook_cursors (source, last_id)
    SELECT 'price_changes', COALESCE(MAX(id), 0) FROM price_changes;
INSERT OR IGNORE INTO webhook_cursors (source, last_id)
    SELECT 'company_changes', COALESCE(MAX(id), 0) FROM company_changes;

-- One event: the exact JSON body every endpoint receives (signatures cover these bytes).
CREATE TABLE IF NOT EXISTS webhook_events (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    type        TEXT NOT NULL,
    -- The feed or CRM integration the changes came from.
    source      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_events_by_tenant ON webhook_events (tenant, created_at);

-- One event for one endpoint. `id` is the `webhook-id` header, the same on every attempt.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              TEXT    PRIMARY KEY,
    event_id        TEXT    NOT NULL,
    tenant          TEXT    NOT NULL,
    endpoint        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    -- pending | delivered | failed | held (the endpoint is disabled)
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- When the next attempt is due (pending only).
    next_attempt_at TEXT,
    -- Whether a queue task for the next attempt has been pushed. A pending delivery that is
    -- not queued is pushed by the dispatcher: after a commit, after a crash, after a retry.
    queued          INTEGER NOT NULL DEFAULT 0,
    -- Asked for by an operator (redeliver, replay).
    manual          INTEGER NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    delivered_at    TEXT
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_unqueued
    ON webhook_deliveries (next_attempt_at) WHERE status = 'pending' AND queued = 0;
CREATE INDEX IF NOT EXISTS webhook_deliveries_pending
    ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_endpoint
    ON webhook_deliveries (tenant, endpoint, created_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_event ON webhook_deliveries (event_id);

-- Every attempt, successful or not, automatic or manual.
CREATE TABLE IF NOT EXISTS webhook_attempts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     TEXT    NOT NULL,
    tenant          TEXT    NOT NULL,
    endpoint        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    manual          INTEGER NOT NULL DEFAULT 0,
    started_at      TEXT    NOT NULL,
    duration_ms     BIGINT  NOT NULL,
    status_code     INTEGER,
    error           TEXT,
    -- The first 16 KiB of the response body.
    response_body   TEXT,
    next_attempt_at TEXT
);
CREATE INDEX IF NOT EXISTS webhook_attempts_by_delivery ON webhook_attempts (delivery_id, attempt);
CREATE INDEX IF NOT EXISTS webhook_attempts_by_time ON webhook_attempts (started_at);

-- Endpoint health, one row per [[webhook]] that has been used.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    tenant               TEXT    NOT NULL,
    endpoint             TEXT    NOT NULL,
    disabled             INTEGER NOT NULL DEFAULT 0,
    disabled_at          TEXT,
    disabled_reason      TEXT,
    -- Failed attempts since the last success (429 does not count).
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    -- The first failure after the last success.
    failing_since        TEXT,
    last_success_at      TEXT,
    last_failure_at      TEXT,
    PRIMARY KEY (tenant, endpoint)
);
