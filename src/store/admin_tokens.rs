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

    /// Revokes a token and ends the page sessions it opened; false when no active token has
    /// that id.
    pub async fn revoke_admin_token(&self, id: &str) -> sqlx::Result<bool> {
        let r =
            db::query("UPDATE admin_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(super::now())
                .bind(id)
                .execute(self.db())
                .await?;
        db::query("DELETE FROM admin_sessions WHERE token_id = ?")
            .bind(id)
            .execute(self.db())
            .await?;
        Ok(r.rows_affected() == 1)
    }
}

/// An open admin page session.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    /// The stored token that opened it; `None` for the operator token of `[admin]`.
    pub token_id: Option<String>,
    /// The SHA-256 (hex) of the token that opened it.
    pub token_sha256: String,
    /// A status message waiting to be shown once.
    pub flash: Option<String>,
}

impl Store {
    /// Opens a session whose id hashes to `id_sha256`, until `expires_at`.
    pub async fn create_admin_session(
        &self,
        id_sha256: &str,
        token_id: Option<&str>,
        token_sha256: &str,
        expires_at: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        let now = super::now();
        // Expired sessions go as new ones come: the table stays small without a timer.
        db::query("DELETE FROM admin_sessions WHERE expires_at < ?")
            .bind(now)
            .execute(self.db())
            .await?;
        db::query(
            "INSERT INTO admin_sessions (id_sha256, token_id, token_sha256, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id_sha256)
        .bind(token_id)
        .bind(token_sha256)
        .bind(now)
        .bind(expires_at)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// The session whose id hashes to `id_sha256`, if open and not expired.
    pub async fn admin_session(&self, id_sha256: &str) -> sqlx::Result<Option<SessionRow>> {
        db::query_as(
            "SELECT token_id, token_sha256, flash FROM admin_sessions
             WHERE id_sha256 = ? AND expires_at > ?",
        )
        .bind(id_sha256)
        .bind(super::now())
        .fetch_optional(self.db())
        .await
    }

    /// Ends a session (logout).
    pub async fn delete_admin_session(&self, id_sha256: &str) -> sqlx::Result<()> {
        db::query("DELETE FROM admin_sessions WHERE id_sha256 = ?")
            .bind(id_sha256)
            .execute(self.db())
            .await?;
        Ok(())
    }

    /// Leaves a status message for the session's next page (`None` clears it).
    pub async fn set_admin_flash(&self, id_sha256: &str, flash: Option<&str>) -> sqlx::Result<()> {
        db::query("UPDATE admin_sessions SET flash = ? WHERE id_sha256 = ?")
            .bind(flash)
            .bind(id_sha256)
            .execute(self.db())
            .await?;
        Ok(())
    }
}
