-- CRM sources: companies pulled from HubSpot and enriched by Apollo.io, OAuth tokens.

-- Where a sync that needs many requests stopped (JSON), so that a run cut short by a
-- provider's quota or a crash goes on from there instead of starting over.
ALTER TABLE sync_state ADD COLUMN cursor TEXT;

-- A tenant's companies, keyed by web domain (lower case, no "www.").
CREATE TABLE IF NOT EXISTS companies (
    tenant             TEXT   NOT NULL,
    domain             TEXT   NOT NULL,
    name               TEXT,
    hubspot_id         TEXT,
    industry           TEXT,
    employee_count     BIGINT,
    country            TEXT,
    -- JSON array of the company's contacts in HubSpot: name, email, phone, job title.
    contacts           TEXT,
    -- The providers' own fields as they sent them (JSON objects).
    hubspot_raw        TEXT,
    apollo_raw         TEXT,
    -- pending (never looked up) | enriched | no_data (the provider knows nothing: expected
    -- for small or new companies, never an issue)
    enrichment_status  TEXT   NOT NULL DEFAULT 'pending',
    enriched_at        TEXT,
    hubspot_updated_at TEXT,
    created_at         TEXT   NOT NULL,
    updated_at         TEXT   NOT NULL,
    PRIMARY KEY (tenant, domain)
);
CREATE INDEX IF NOT EXISTS companies_by_enrichment
    ON companies (tenant, enrichment_status, enriched_at);

-- OAuth tokens per integration. The refresh token rotates: the newest one lives here (the
-- environment only seeds it). `seed_fp` identifies the environment's refresh token that was
-- seeded, so a re-authorisation (a new token in the environment) replaces the stored one.
-- `refreshing_until` is a lease: one process refreshes, the others wait for its result.
CREATE TABLE IF NOT EXISTS oauth_tokens (
    tenant            TEXT NOT NULL,
    integration       TEXT NOT NULL,
    refresh_token     TEXT NOT NULL,
    seed_fp           TEXT NOT NULL,
    access_token      TEXT,
    access_expires_at TEXT,
    refreshing_until  TEXT,
    refreshed_at      TEXT,
    PRIMARY KEY (tenant, integration)
);

-- What each CRM run changed per company, written in the same transaction as the company:
-- the source of company.enriched webhook events.
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
