-- The outbox is read by what has not been dispatched yet instead of by a cursor over ids:
-- PostgreSQL hands out ids when rows are inserted, not when they commit, so with several
-- nodes a long import can commit ids below a cursor that has already moved on.
ALTER TABLE price_changes ADD COLUMN IF NOT EXISTS dispatched BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE company_changes ADD COLUMN IF NOT EXISTS dispatched BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE price_changes SET dispatched = TRUE
    WHERE id <= COALESCE((SELECT last_id FROM webhook_cursors WHERE source = 'price_changes'), 0);
UPDATE company_changes SET dispatched = TRUE
    WHERE id <= COALESCE((SELECT last_id FROM webhook_cursors WHERE source = 'company_changes'), 0);
CREATE INDEX IF NOT EXISTS price_changes_undispatched ON price_changes (id) WHERE NOT dispatched;
CREATE INDEX IF NOT EXISTS company_changes_undispatched ON company_changes (id) WHERE NOT dispatched;
DROP TABLE IF EXISTS webhook_cursors;
