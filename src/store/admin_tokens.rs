//! Admin API tokens, stored as SHA-256 digests.

use super::Store;
use super::db;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A token as `syncd tokens list` shows it (never the token itself).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    /// The token's public id (its prefix).
    pub id: String,
    /// What it is for.
    pub name: String,
    /// The tenant it is limited to; `null` for an operator token.
    pub tenant: Option<String>,
    /// `metrics` for a token good for `GET /metrics` only; `null` for the full scope.
    pub scope: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last accepted.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Stores a new token's digest.
    pub async fn create_admin_token(
        &self,
        id: &str,
        name: &str,
        tenant: Option<&str>,
        scope: Option<&str>,
        sha256_hex: &str,
    ) -> sqlx::Result<()> {
        db::query(
            "INSERT INTO admin_tokens (id, name, tenant, scope, token_sha256, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(name)
        .bind(tenant)
        .bind(scope)
        .bind(sha256_hex)
        .bind(super::now())
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// The digest, tenant and scope of an active token by id.
    pub async fn admin_token(
        &self,
        id: &str,
    ) -> sqlx::Result<Option<(String, Option<String>, Option<String>)>> {
        db::query_as(
            "SELECT token_sha256, tenant, scope FROM admin_tokens WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(id)
        .fetch_optional(self.db())
        .await
    }

    /// Records that a token was accepted (at most about once a minute per token).
    pub async fn touch_admin_token(&self, id: &str) -> sqlx::Result<()> {
        let now = super::now();
        db::query(
            "UPDATE admin_tokens SET last_used_at = ?
             WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
        )
        .bind(now)
        .bind(id)
        .bind(now - chrono::Duration::minutes(1))
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Every token, newest first.
    pub async fn list_admin_tokens(&self) -> sqlx::Result<Vec<TokenInfo>> {
        db::query_as(
            "SELECT id, name, tenant, scope, created_at, last_used_at, revoked_at FROM admin_tokens
             ORDER BY created_at DESC",
        )
        .fetch_all(self.db())
        .await
    }

    /// Revokes a token; false when no active token has that id.
    pub async fn revoke_admin_token(&self, id: &str) -> sqlx::Result<bool> {
        let r =
            db::query("UPDATE admin_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(super::now())
                .bind(id)
                .execute(self.db())
                .await?;
        Ok(r.rows_affected() == 1)
    }
}
