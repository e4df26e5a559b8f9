-- Scoped admin tokens: a token with scope 'metrics' is good for GET /metrics only (what
-- Prometheus needs); NULL is the full scope of an operator or a tenant token. Additive.
ALTER TABLE admin_tokens ADD COLUMN IF NOT EXISTS scope TEXT;
