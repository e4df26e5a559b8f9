-- The outbox is read by what has not been dispatched yet instead of by a cursor over ids:
-- PostgreSQL hands out ids when rows are inserted, not when they commit, so with several
-- nodes a long import can commit ids below a cursor that has already moved on. Both engines
-- use the same scheme. Rows the cursor had passed are marked dispatched.
ALTER TABLE price_changes ADD COLUMN dispatched BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE company_changes ADD COLUMN dispatched BOOLEAN NOT NULL DEFAULT 0;
UPDATE price_changes SET dispatched = 1
    WHERE id <= COALESCE((SELECT last_id FROM webhook_cursors WHERE source = 'price_changes'), 0);
UPDATE company_changes SET dispatched = 1
    WHERE id <= COALESCE((SELECT last_id FROM webhook_cursors WHERE source = 'company_changes'), 0);
-- Small: only the rows waiting for the dispatcher are in it.
CREATE INDEX IF NOT EXISTS price_changes_undispatched ON price_changes (id) WHERE NOT dispatched;
CREATE INDEX IF NOT EXISTS company_changes_undispatched ON company_changes (id) WHERE NOT dispatched;
DROP TABLE IF EXISTS webhook_cursors;
