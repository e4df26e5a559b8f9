//! The issues log: one open row per (tenant, integration, kind), bumped on repeats,
//! resolved by the next success.

use super::Store;
use super::db;
use crate::outcome::IssueKind;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One issue as admins (and `syncd issues --json`) see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Issue {
    /// Stable id.
    pub id: i64,
    /// Tenant id.
    pub tenant: String,
    /// Integration name.
    pub integration: String,
    /// Stable kind, e.g. `credentials_rejected`.
    pub kind: String,
    /// What happened, specifically.
    pub message: String,
    /// What to do about it.
    pub hint: String,
    /// How many times it happened while open.
    pub occurrences: i64,
    /// First occurrence.
    pub first_seen: DateTime<Utc>,
    /// Latest occurrence.
    pub last_seen: DateTime<Utc>,
    /// When it was resolved (null while open).
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Filter for [`Store::list_issues`].
#[derive(Debug, Default, Clone)]
pub struct IssueFilter {
    /// Include resolved issues.
    pub all: bool,
    /// Only this tenant.
    pub tenant: Option<String>,
}

impl Store {
    /// Opens an issue, or bumps the open one of the same key (message and time refreshed).
    pub async fn raise_issue(
        &self,
        tenant: &str,
        integration: &str,
        kind: IssueKind,
        message: &str,
        hint: &str,
    ) -> sqlx::Result<()> {
        let now = super::now();
        db::query(
            "INSERT INTO issues (tenant, integration, kind, message, hint, occurrences, first_seen, last_seen)
             VALUES (?, ?, ?, ?, ?, 1, ?, ?)
             ON CONFLICT (tenant, integration, kind) WHERE resolved_at IS NULL
             DO UPDATE SET occurrences = issues.occurrences + 1,
                           message = excluded.message,
                           hint = excluded.hint,
                           last_seen = excluded.last_seen",
        )
        .bind(tenant)
        .bind(integration)
        .bind(kind.as_str())
        .bind(message)
        .bind(hint)
        .bind(now)
        .bind(now)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Resolves the open issues of an integration; `kinds = None` resolves all of them but
    /// `token_expiring` (a success says nothing about a credential's expiry date; replacing
    /// the credential resolves it). Returns how many were resolved.
    pub async fn resolve_issues(
        &self,
        tenant: &str,
        integration: &str,
        kinds: Option<&[IssueKind]>,
    ) -> sqlx::Result<u64> {
        let now = super::now();
        let mut total = 0;
        match kinds {
            None => {
                total += db::query(
                    "UPDATE issues SET resolved_at = ?
                     WHERE tenant = ? AND integration = ? AND resolved_at IS NULL AND kind <> ?",
                )
                .bind(now)
                .bind(tenant)
                .bind(integration)
                .bind(IssueKind::TokenExpiring.as_str())
                .execute(self.db())
                .await?
                .rows_affected();
            }
            Some(kinds) => {
                for kind in kinds {
                    total += db::query(
                        "UPDATE issues SET resolved_at = ?
                         WHERE tenant = ? AND integration = ? AND kind = ? AND resolved_at IS NULL",
                    )
                    .bind(now)
                    .bind(tenant)
                    .bind(integration)
                    .bind(kind.as_str())
                    .execute(self.db())
                    .await?
                    .rows_affected();
                }
            }
        }
        Ok(total)
    }

    /// Whether `tenant/integration` has an open issue of `kind`.
    pub async fn has_open_issue(
        &self,
        tenant: &str,
        integration: &str,
        kind: IssueKind,
    ) -> sqlx::Result<bool> {
        let row: Option<(i64,)> = db::query_as(
            "SELECT id FROM issues WHERE tenant = ? AND integration = ? AND kind = ? AND resolved_at IS NULL",
        )
        .bind(tenant)
        .bind(integration)
        .bind(kind.as_str())
        .fetch_optional(self.db())
        .await?;
        Ok(row.is_some())
    }

    /// Issues, newest first.
    pub async fn list_issues(&self, filter: &IssueFilter) -> sqlx::Result<Vec<Issue>> {
        db::query_as::<Issue>(
            "SELECT id, tenant, integration, kind, message, hint, occurrences,
                    first_seen, last_seen, resolved_at
             FROM issues
             WHERE (? OR resolved_at IS NULL) AND (? IS NULL OR tenant = ?)
             ORDER BY resolved_at IS NOT NULL, last_seen DESC, id DESC",
        )
        .bind(filter.all)
        .bind(filter.tenant.as_deref())
        .bind(filter.tenant.as_deref())
        .fetch_all(self.db())
        .await
    }
}

/// What an admin does next, per kind. Specifics (status, host, file) are in the message.
pub fn hint(kind: IssueKind, tenant: &str, integration: &str) -> String {
    let target = format!("{tenant}/{integration}");
    match kind {
        IssueKind::CredentialsRejected => format!(
            "The source refused our credentials (password, API key or OAuth token). Re-enter \
             them: for a stored credential `syncd credentials set` (see `syncd credentials \
             list`), which queues a connection test at once; for one from the environment, \
             renew the variable the catalog names, then run a connection test (`syncd \
             test-connection {target}`). When the test passes, the pause ends. A restart with a changed secret also resumes \
             the integration, and `syncd refetch {target}` runs it once regardless. Scheduled \
             runs are paused until then so that retries cannot lock the account."
        ),
        IssueKind::ConnectionFailed => format!(
            "The source has been unreachable for several attempts in a row; syncd keeps \
             retrying with growing delays. If this lasts, check whether the distributor is \
             down or the URL has changed; `syncd refetch {target}` retries at once."
        ),
        IssueKind::Misconfigured => format!(
            "The catalog entry points at something that does not exist. Check the URL or path \
             (and the environment variables it names) in the tenant's catalog file, then run \
             `syncd refetch {target}`."
        ),
        IssueKind::EmptyFeed => format!(
            "The file had no data rows, so the previous prices were kept. The distributor may \
             have deactivated the account or the file is temporarily unavailable: contact the \
             distributor, then run `syncd refetch {target}`."
        ),
        IssueKind::InvalidFeed => format!(
            "The file could not be used, so the previous prices were kept. Compare it with the \
             feed's `format` and `columns` in the catalog, or ask the distributor; then run \
             `syncd refetch {target}`."
        ),
        IssueKind::RetriesExhausted => format!(
            "syncd stopped retrying this run. Look at the other issues of {target} for the \
             cause; the next scheduled run tries again, or run `syncd refetch {target}` now."
        ),
        IssueKind::TokenExpiring => format!(
            "Renew the credential with the provider before it lapses, then store the new one \
             with `syncd credentials set {target}` (add `--expires-at` with the new expiry): \
             syncd tests the connection at once and this issue is resolved."
        ),
        IssueKind::StaleData => format!(
            "Quotes may use outdated prices. Check the other issues of {target}, then force a \
             fresh copy with `syncd refetch {target}`."
        ),
        IssueKind::WebhookFailing => format!(
            "The tenant's endpoint is not accepting our webhooks; syncd keeps retrying on its \
             schedule. Tell the tenant (their system may be down or refusing the signature); \
             `syncd deliveries --endpoint {target} --failed` shows each attempt's answer."
        ),
        IssueKind::EndpointDisabled => format!(
            "No webhooks are sent to {target}; its events are kept. When the tenant's endpoint \
             works again (or its URL is fixed in the catalog and syncd restarted), run `syncd \
             endpoint enable {target}` to deliver them."
        ),
    }
}
