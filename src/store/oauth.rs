//! OAuth tokens per integration, and the lease that lets one process refresh at a time.
//! The tokens arrive here already sealed under the master key ([`crate::crm::oauth`]); a row
//! written before encryption existed holds plain text until its next refresh.

use super::Store;
use super::db;
use chrono::{DateTime, Utc};

/// The stored tokens of one integration.
#[derive(Clone, sqlx::FromRow)]
pub struct StoredTokens {
    /// The newest refresh token (sealed).
    pub refresh_token: String,
    /// The current access token, if any (sealed).
    pub access_token: Option<String>,
    /// When it expires.
    pub access_expires_at: Option<DateTime<Utc>>,
    /// When it was fetched (with `access_expires_at`: its lifetime).
    pub refreshed_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens")
            .field("access_expires_at", &self.access_expires_at)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Seeds the refresh token from the environment or the credential store the first time,
    /// and again whenever that holds a different one than was seeded (the app was
    /// re-authorised). `seed_fp` is a SHA-256 of the seed, which compares seeds without
    /// keeping one in clear.
    pub async fn oauth_seed(
        &self,
        tenant: &str,
        integration: &str,
        refresh_token: &str,
        seed_fp: &str,
    ) -> sqlx::Result<()> {
        db::query(
            "INSERT INTO oauth_tokens (tenant, integration, refresh_token, seed_fp)
             VALUES (?, ?, ?, ?)
             ON CONFLICT (tenant, integration) DO UPDATE SET
                 refresh_token = excluded.refresh_token, seed_fp = excluded.seed_fp,
                 access_token = NULL, access_expires_at = NULL
             WHERE oauth_tokens.seed_fp <> excluded.seed_fp",
        )
        .bind(tenant)
        .bind(integration)
        .bind(refresh_token)
        .bind(seed_fp)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// The stored tokens.
    pub async fn oauth_tokens(
        &self,
        tenant: &str,
        integration: &str,
    ) -> sqlx::Result<Option<StoredTokens>> {
        db::query_as(
            "SELECT refresh_token, access_token, access_expires_at, refreshed_at FROM oauth_tokens
             WHERE tenant = ? AND integration = ?",
        )
        .bind(tenant)
        .bind(integration)
        .fetch_optional(self.db())
        .await
    }

    /// Takes the refresh lease until `until` if nobody holds it. One UPDATE, so exactly one
    /// of any number of processes racing for it wins.
    pub async fn oauth_try_lease(
        &self,
        tenant: &str,
        integration: &str,
        until: DateTime<Utc>,
    ) -> sqlx::Result<bool> {
        let r = db::query(
            "UPDATE oauth_tokens SET refreshing_until = ?
             WHERE tenant = ? AND integration = ?
               AND (refreshing_until IS NULL OR refreshing_until < ?)",
        )
        .bind(until)
        .bind(tenant)
        .bind(integration)
        .bind(super::now())
        .execute(self.db())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Stores a refresh's result and gives the lease back, in one statement: the rotated
    /// refresh token is never lost between two writes. Only the holder of the lease taken
    /// until `lease` may write; `false` when the lease had run out and another process took
    /// it (its tokens are newer and stay).
    pub async fn oauth_store_refreshed(
        &self,
        tenant: &str,
        integration: &str,
        lease: DateTime<Utc>,
        access_token: &str,
        expires_at: DateTime<Utc>,
        refresh_token: &str,
    ) -> sqlx::Result<bool> {
        let r = db::query(
            "UPDATE oauth_tokens SET access_token = ?, access_expires_at = ?, refresh_token = ?,
                 refreshing_until = NULL, refreshed_at = ?
             WHERE tenant = ? AND integration = ? AND refreshing_until = ?",
        )
        .bind(access_token)
        .bind(expires_at)
        .bind(refresh_token)
        .bind(super::now())
        .bind(tenant)
        .bind(integration)
        .bind(lease)
        .execute(self.db())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Gives the lease back without a new token (the refresh failed).
    pub async fn oauth_release(&self, tenant: &str, integration: &str) -> sqlx::Result<()> {
        db::query(
            "UPDATE oauth_tokens SET refreshing_until = NULL WHERE tenant = ? AND integration = ?",
        )
        .bind(tenant)
        .bind(integration)
        .execute(self.db())
        .await?;
        Ok(())
    }
}
