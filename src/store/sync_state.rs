//! Per-integration sync state: last attempt, last success, counts, pause and change validators.

use super::Store;
use super::db;
use super::prices::ChangeCounts;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One integration's state as `syncd status --json` prints it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SyncState {
    /// Tenant id.
    pub tenant: String,
    /// Integration name.
    pub integration: String,
    /// `feed`, …
    pub kind: String,
    /// When a run last finished (any outcome).
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When a run last succeeded (including "unchanged").
    pub last_success_at: Option<DateTime<Utc>>,
    /// `success`, `unchanged`, `transient`, `rate_limited`, `rejected`, `invalid`, `misconfigured`.
    pub last_outcome: Option<String>,
    /// The last failure's message; null after a success.
    pub last_error: Option<String>,
    /// Rows/records currently stored for the integration.
    pub items: Option<i64>,
    /// Scheduled runs are suspended (credentials rejected).
    pub paused: bool,
    /// Transient failures since the last success.
    pub consecutive_failures: i64,
    /// When the next retry is due, if one is queued.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// When a forced re-fetch was queued that has not started yet.
    pub refetch_requested_at: Option<DateTime<Utc>>,
    /// What the last import changed (null before the first import).
    #[sqlx(flatten)]
    pub changes: LastChanges,
    #[serde(skip)]
    /// `ETag` of the last downloaded version.
    pub etag: Option<String>,
    #[serde(skip)]
    /// `Last-Modified` of the last downloaded version.
    pub last_modified: Option<String>,
    #[serde(skip)]
    /// Size of the last downloaded file.
    pub source_size: Option<i64>,
    #[serde(skip)]
    /// Modification time of the last downloaded file.
    pub source_mtime: Option<DateTime<Utc>>,
    #[serde(skip)]
    /// Latest schedule tick enqueued.
    pub last_tick_at: Option<DateTime<Utc>>,
    /// CRM sources: the tenant's companies by enrichment status (filled in by `status`).
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub companies: Option<super::companies::CompanyCounts>,
}

/// What the last import of a feed changed, as `status` shows it.
#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow)]
pub struct LastChanges {
    /// Parts added.
    #[sqlx(rename = "changes_added")]
    pub added: Option<i64>,
    /// Parts removed.
    #[sqlx(rename = "changes_removed")]
    pub removed: Option<i64>,
    /// Parts whose price changed.
    #[sqlx(rename = "changes_price")]
    pub price_changed: Option<i64>,
    /// Parts whose stock changed.
    #[sqlx(rename = "changes_stock")]
    pub stock_changed: Option<i64>,
}

/// What identifies the version of a source that was last imported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validators {
    /// HTTP `ETag`.
    pub etag: Option<String>,
    /// HTTP `Last-Modified`.
    pub last_modified: Option<String>,
    /// File size in bytes.
    pub size: Option<i64>,
    /// File modification time.
    pub mtime: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "tenant, integration, kind, last_attempt_at, last_success_at, last_outcome,
    changes_added, changes_removed, changes_price, changes_stock,
    last_error, items, paused, consecutive_failures, next_retry_at, refetch_requested_at, etag,
    last_modified, source_size, source_mtime, last_tick_at";

impl Store {
    /// Makes sure the integration has a row (so `status` lists it before its first run).
    pub async fn ensure_state(
        &self,
        tenant: &str,
        integration: &str,
        kind: &str,
    ) -> sqlx::Result<()> {
        db::query(
            "INSERT INTO sync_state (tenant, integration, kind) VALUES (?, ?, ?)
             ON CONFLICT (tenant, integration) DO NOTHING",
        )
        .bind(tenant)
        .bind(integration)
        .bind(kind)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// One integration's state.
    pub async fn state(&self, tenant: &str, integration: &str) -> sqlx::Result<Option<SyncState>> {
        db::query_as::<SyncState>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sync_state WHERE tenant = ? AND integration = ?"
        )))
        .bind(tenant)
        .bind(integration)
        .fetch_optional(self.db())
        .await
    }

    /// Every integration's state, optionally for one tenant.
    pub async fn list_states(&self, tenant: Option<&str>) -> sqlx::Result<Vec<SyncState>> {
        db::query_as::<SyncState>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sync_state WHERE (? IS NULL OR tenant = ?)
             ORDER BY tenant, integration"
        )))
        .bind(tenant)
        .bind(tenant)
        .fetch_all(self.db())
        .await
    }

    /// A success: clears failures and the pause, stores the new validators. `items = None`
    /// keeps the previous count (nothing was re-imported).
    pub async fn record_success(
        &self,
        tenant: &str,
        integration: &str,
        items: Option<i64>,
        outcome: &str,
        validators: Option<&Validators>,
    ) -> sqlx::Result<()> {
        let now = super::now();
        let v = validators.cloned().unwrap_or_default();
        db::query(
            "UPDATE sync_state SET last_attempt_at = ?, last_success_at = ?, last_outcome = ?,
                 last_error = NULL, items = COALESCE(?, items), consecutive_failures = 0,
                 paused = FALSE, paused_reason = NULL, paused_secret_fp = NULL, next_retry_at = NULL,
                 etag = CASE WHEN ? THEN ? ELSE etag END,
                 last_modified = CASE WHEN ? THEN ? ELSE last_modified END,
                 source_size = CASE WHEN ? THEN ? ELSE source_size END,
                 source_mtime = CASE WHEN ? THEN ? ELSE source_mtime END
             WHERE tenant = ? AND integration = ?",
        )
        .bind(now)
        .bind(now)
        .bind(outcome)
        .bind(items)
        .bind(validators.is_some())
        .bind(v.etag)
        .bind(validators.is_some())
        .bind(v.last_modified)
        .bind(validators.is_some())
        .bind(v.size)
        .bind(validators.is_some())
        .bind(v.mtime)
        .bind(tenant)
        .bind(integration)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// A failure. `counts` says whether it counts towards `connection_failed` (rate limits and
    /// permanent failures do not). Returns the consecutive transient failures after this one.
    pub async fn record_failure(
        &self,
        tenant: &str,
        integration: &str,
        outcome: &str,
        message: &str,
        counts: bool,
        next_retry_at: Option<DateTime<Utc>>,
    ) -> sqlx::Result<i64> {
        let now = super::now();
        let row: (i64,) = db::query_as(
            "UPDATE sync_state SET last_attempt_at = ?, last_outcome = ?, last_error = ?,
                 consecutive_failures = consecutive_failures + ?, next_retry_at = ?
             WHERE tenant = ? AND integration = ?
             RETURNING consecutive_failures",
        )
        .bind(now)
        .bind(outcome)
        .bind(message)
        .bind(i64::from(counts))
        .bind(next_retry_at)
        .bind(tenant)
        .bind(integration)
        .fetch_one(self.db())
        .await?;
        Ok(row.0)
    }

    /// A run stopped to wait for quota: not a failure, the consecutive count stays.
    pub async fn record_waiting(
        &self,
        tenant: &str,
        integration: &str,
        message: &str,
        until: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        db::query(
            "UPDATE sync_state SET last_attempt_at = ?, last_outcome = 'waiting', last_error = ?,
                 next_retry_at = ?
             WHERE tenant = ? AND integration = ?",
        )
        .bind(super::now())
        .bind(message)
        .bind(until)
        .bind(tenant)
        .bind(integration)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Where a multi-request sync stands (JSON), if it saved anything.
    pub async fn cursor(&self, tenant: &str, integration: &str) -> sqlx::Result<Option<String>> {
        let row: Option<(Option<String>,)> =
            db::query_as("SELECT cursor FROM sync_state WHERE tenant = ? AND integration = ?")
                .bind(tenant)
                .bind(integration)
                .fetch_optional(self.db())
                .await?;
        Ok(row.and_then(|r| r.0))
    }

    /// Saves where a multi-request sync stands.
    pub async fn set_cursor(
        &self,
        tenant: &str,
        integration: &str,
        cursor: &str,
    ) -> sqlx::Result<()> {
        db::query("UPDATE sync_state SET cursor = ? WHERE tenant = ? AND integration = ?")
            .bind(cursor)
            .bind(tenant)
            .bind(integration)
            .execute(self.db())
            .await?;
        Ok(())
    }

    /// Suspends scheduled runs (credentials rejected). `secret_fp` identifies the refused
    /// secret (see [`crate::credentials::Secrets::fingerprint`]).
    pub async fn pause(
        &self,
        tenant: &str,
        integration: &str,
        reason: &str,
        secret_fp: Option<&str>,
    ) -> sqlx::Result<()> {
        db::query(
            "UPDATE sync_state SET paused = TRUE, paused_reason = ?, paused_secret_fp = ?, next_retry_at = NULL
             WHERE tenant = ? AND integration = ?",
        )
        .bind(reason)
        .bind(secret_fp)
        .bind(tenant)
        .bind(integration)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Stores what the last import changed.
    pub async fn record_changes(
        &self,
        tenant: &str,
        integration: &str,
        c: &ChangeCounts,
    ) -> sqlx::Result<()> {
        db::query(
            "UPDATE sync_state SET changes_added = ?, changes_removed = ?, changes_price = ?, changes_stock = ?
             WHERE tenant = ? AND integration = ?",
        )
        .bind(c.added)
        .bind(c.removed)
        .bind(c.price_changed)
        .bind(c.stock_changed)
        .bind(tenant)
        .bind(integration)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// The fingerprint of the secret refused when the integration was paused.
    pub async fn paused_secret_fp(
        &self,
        tenant: &str,
        integration: &str,
    ) -> sqlx::Result<Option<String>> {
        let row: Option<(Option<String>,)> = db::query_as(
            "SELECT paused_secret_fp FROM sync_state WHERE tenant = ? AND integration = ? AND paused = TRUE",
        )
        .bind(tenant)
        .bind(integration)
        .fetch_optional(self.db())
        .await?;
        Ok(row.and_then(|r| r.0))
    }

    /// Lifts a pause (credentials changed).
    pub async fn unpause(&self, tenant: &str, integration: &str) -> sqlx::Result<()> {
        db::query(
            "UPDATE sync_state SET paused = FALSE, paused_reason = NULL, paused_secret_fp = NULL
             WHERE tenant = ? AND integration = ?",
        )
        .bind(tenant)
        .bind(integration)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Remembers the latest schedule tick enqueued.
    pub async fn set_last_tick(
        &self,
        tenant: &str,
        integration: &str,
        tick: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        db::query("UPDATE sync_state SET last_tick_at = ? WHERE tenant = ? AND integration = ?")
            .bind(tick)
            .bind(tenant)
            .bind(integration)
            .execute(self.db())
            .await?;
        Ok(())
    }

    /// Marks a forced re-fetch as queued. Returns the time of the one already pending instead
    /// when there is one younger than `stale_after` (older marks are from a lost request).
    pub async fn request_refetch(
        &self,
        tenant: &str,
        integration: &str,
        stale_after: chrono::Duration,
    ) -> sqlx::Result<Result<(), DateTime<Utc>>> {
        let now = super::now();
        let claimed = db::query(
            "UPDATE sync_state SET refetch_requested_at = ?
             WHERE tenant = ? AND integration = ?
               AND (refetch_requested_at IS NULL OR refetch_requested_at < ?)",
        )
        .bind(now)
        .bind(tenant)
        .bind(integration)
        .bind(now - stale_after)
        .execute(self.db())
        .await?
        .rows_affected();
        if claimed == 1 {
            return Ok(Ok(()));
        }
        let pending = self
            .state(tenant, integration)
            .await?
            .and_then(|s| s.refetch_requested_at)
            .unwrap_or(now);
        Ok(Err(pending))
    }

    /// Clears the pending re-fetch mark (the re-fetch has started, or could not be queued).
    pub async fn clear_refetch(&self, tenant: &str, integration: &str) -> sqlx::Result<()> {
        db::query(
            "UPDATE sync_state SET refetch_requested_at = NULL WHERE tenant = ? AND integration = ?",
        )
        .bind(tenant)
        .bind(integration)
        .execute(self.db())
        .await?;
        Ok(())
    }
}

impl SyncState {
    /// The state of an integration that has no row yet.
    pub fn never_run(tenant: &str, integration: &str, kind: &str) -> SyncState {
        SyncState {
            tenant: tenant.into(),
            integration: integration.into(),
            kind: kind.into(),
            last_attempt_at: None,
            last_success_at: None,
            last_outcome: None,
            last_error: None,
            items: None,
            paused: false,
            consecutive_failures: 0,
            next_retry_at: None,
            refetch_requested_at: None,
            changes: LastChanges::default(),
            etag: None,
            last_modified: None,
            source_size: None,
            source_mtime: None,
            last_tick_at: None,
            companies: None,
        }
    }
}
