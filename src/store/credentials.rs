//! Rows of the encrypted credential store. Only ciphertexts go in and out here; sealing and
//! opening them is [`crate::credentials`]' job.

use super::Store;
use super::db;
use chrono::{DateTime, Utc};

/// One stored field of a credential, still sealed.
#[derive(Clone, sqlx::FromRow)]
pub struct SealedRow {
    /// Tenant id.
    pub tenant: String,
    /// The credential's name (`tenant/integration`).
    pub integration: String,
    /// `password`, `token`, `client_secret`, `refresh_token`, `api_key`, `passphrase`.
    pub field: String,
    /// The random nonce of this write.
    pub nonce: Vec<u8>,
    /// The sealed secret with its tag.
    pub ciphertext: Vec<u8>,
    /// When the secret lapses, if known.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
    /// When an integration using it last succeeded.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for SealedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedRow")
            .field("tenant", &self.tenant)
            .field("integration", &self.integration)
            .field("field", &self.field)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Stores (or replaces) one sealed field.
    pub async fn put_credential(
        &self,
        tenant: &str,
        integration: &str,
        field: &str,
        nonce: &[u8],
        ciphertext: &[u8],
        expires_at: Option<DateTime<Utc>>,
    ) -> sqlx::Result<()> {
        let now = super::now();
        db::query(
            "INSERT INTO credentials
                 (tenant, integration, field, nonce, ciphertext, expires_at, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (tenant, integration, field) DO UPDATE SET
                 nonce = excluded.nonce, ciphertext = excluded.ciphertext,
                 expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(integration)
        .bind(field)
        .bind(nonce)
        .bind(ciphertext)
        .bind(expires_at)
        .bind(now)
        .bind(now)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// One sealed field.
    pub async fn credential(
        &self,
        tenant: &str,
        integration: &str,
        field: &str,
    ) -> sqlx::Result<Option<SealedRow>> {
        db::query_as(
            "SELECT tenant, integration, field, nonce, ciphertext, expires_at, updated_at, last_used_at
             FROM credentials WHERE tenant = ? AND integration = ? AND field = ?",
        )
        .bind(tenant)
        .bind(integration)
        .bind(field)
        .fetch_optional(self.db())
        .await
    }

    /// Every stored field, in name order.
    pub async fn credentials(&self) -> sqlx::Result<Vec<SealedRow>> {
        db::query_as(
            "SELECT tenant, integration, field, nonce, ciphertext, expires_at, updated_at, last_used_at
             FROM credentials ORDER BY tenant, integration, field",
        )
        .fetch_all(self.db())
        .await
    }

    /// Deletes a credential (every field, or one); returns how many fields went.
    pub async fn delete_credential(
        &self,
        tenant: &str,
        integration: &str,
        field: Option<&str>,
    ) -> sqlx::Result<u64> {
        Ok(db::query(
            "DELETE FROM credentials WHERE tenant = ? AND integration = ? AND (? IS NULL OR field = ?)",
        )
        .bind(tenant)
        .bind(integration)
        .bind(field)
        .bind(field)
        .execute(self.db())
        .await?
        .rows_affected())
    }

    /// Records that an integration using this credential just succeeded with it.
    pub async fn touch_credential(&self, tenant: &str, integration: &str) -> sqlx::Result<()> {
        db::query("UPDATE credentials SET last_used_at = ? WHERE tenant = ? AND integration = ?")
            .bind(super::now())
            .bind(tenant)
            .bind(integration)
            .execute(self.db())
            .await?;
        Ok(())
    }

    /// The sealed key-check value, if a key was ever used with this database.
    pub async fn key_check(&self) -> sqlx::Result<Option<(Vec<u8>, Vec<u8>)>> {
        db::query_as("SELECT nonce, ciphertext FROM credential_key_check WHERE id = 1")
            .fetch_optional(self.db())
            .await
    }

    /// Stores the key-check value unless one is there already (a concurrent first writer
    /// wins; the caller reads it back and checks its key against it).
    pub async fn init_key_check(&self, nonce: &[u8], ciphertext: &[u8]) -> sqlx::Result<()> {
        db::query(
            "INSERT INTO credential_key_check (id, nonce, ciphertext, created_at)
             VALUES (1, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(nonce)
        .bind(ciphertext)
        .bind(super::now())
        .execute(self.db())
        .await?;
        Ok(())
    }
}
