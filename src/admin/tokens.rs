//! Admin tokens: who a request is, checked in constant time.
//!
//! Stored tokens look like `syncd_<id>_<secret>`: the id finds the row, and the SHA-256 of the
//! whole token is compared with the stored digest in constant time. Only the digest is kept.
//! The operator token from `[admin] token_file` / `token_env` (or systemd's
//! `$CREDENTIALS_DIRECTORY/admin.token`) is compared the same way.

use crate::config::Config;
use crate::ops::tokens::{hex, sha256};
use crate::store::Store;
use subtle::ConstantTimeEq;

/// Who a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Every tenant.
    Operator,
    /// One tenant only.
    Tenant(String),
    /// `GET /metrics` only (a token created with `--scope metrics`).
    Metrics,
}

impl Principal {
    /// Whether this principal may see and act on `tenant`.
    pub fn sees(&self, tenant: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Tenant(t) => t == tenant,
            Principal::Metrics => false,
        }
    }

    /// Whether this is the operator.
    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Operator)
    }

    /// The rate-limit bucket: one per tenant, one for operators.
    pub fn rate_key(&self) -> String {
        match self {
            Principal::Operator => "operator".into(),
            Principal::Tenant(t) => format!("tenant:{t}"),
            Principal::Metrics => "metrics".into(),
        }
    }
}

/// Verifies tokens.
pub struct TokenCheck {
    operator_sha256: Option<[u8; 32]>,
}

impl TokenCheck {
    /// Reads the operator token the configuration names, if any. An unreadable or empty file
    /// is an error naming it.
    pub fn from_config(config: &Config) -> anyhow::Result<TokenCheck> {
        let admin = &config.admin;
        let token = if let Some(var) = &admin.token_env {
            Some(std::env::var(var).map_err(|_| {
                anyhow::anyhow!("[admin] token_env: environment variable {var} is not set")
            })?)
        } else {
            let file = admin
                .token_file
                .as_ref()
                .map(|f| config.resolve(f))
                .or_else(|| {
                    std::env::var_os("CREDENTIALS_DIRECTORY")
                        .map(|d| std::path::Path::new(&d).join("admin.token"))
                        .filter(|p| p.exists())
                });
            match file {
                Some(f) => Some(std::fs::read_to_string(&f).map_err(|e| {
                    anyhow::anyhow!("[admin] token_file {}: cannot read ({e})", f.display())
                })?),
                None => None,
            }
        };
        let token = token.map(|t| t.trim().to_string());
        if let Some(t) = &token
            && t.len() < 16
        {
            anyhow::bail!("[admin] the operator token must be at least 16 characters");
        }
        Ok(TokenCheck {
            operator_sha256: token.as_deref().map(sha256),
        })
    }

    /// Whether an operator token is configured.
    pub fn has_operator_token(&self) -> bool {
        self.operator_sha256.is_some()
    }

    /// Who `token` is, or `None` when it is not a valid token.
    pub async fn verify(&self, store: &Store, token: &str) -> Option<Principal> {
        let digest = sha256(token);
        if let Some(op) = &self.operator_sha256
            && bool::from(op.ct_eq(&digest))
        {
            return Some(Principal::Operator);
        }
        let id = stored_id(token)?;
        let (stored, tenant, scope) = store.admin_token(id).await.ok()??;
        let ok = bool::from(stored.as_bytes().ct_eq(hex(&digest).as_bytes()));
        if !ok {
            return None;
        }
        if let Err(e) = store.touch_admin_token(id).await {
            tracing::debug!(error = %e, "cannot record the token's use");
        }
        Some(match (scope.as_deref(), tenant) {
            (Some(_), _) => Principal::Metrics,
            (None, Some(t)) => Principal::Tenant(t),
            (None, None) => Principal::Operator,
        })
    }
}

impl TokenCheck {
    /// Opens a page session for `token`: `(principal, session id)`, the id random and opaque
    /// (only its SHA-256 is stored), good until `ttl` has passed. `None` when the token is
    /// not valid, or is a metrics token (which has no page).
    pub async fn open_session(
        &self,
        store: &Store,
        token: &str,
        ttl: std::time::Duration,
    ) -> anyhow::Result<Option<(Principal, String)>> {
        let Some(principal) = self.verify(store, token).await else {
            return Ok(None);
        };
        if principal == Principal::Metrics {
            return Ok(None);
        }
        let id: String = (0..4)
            .map(|_| format!("{:016x}", rand::random::<u64>()))
            .collect();
        let token_id = match &self.operator_sha256 {
            Some(op) if bool::from(op.ct_eq(&sha256(token))) => None,
            _ => stored_id(token),
        };
        let expires = crate::outcome::retry::after(crate::store::now(), ttl);
        store
            .create_admin_session(&session_key(&id), token_id, &hex(&sha256(token)), expires)
            .await?;
        Ok(Some((principal, id)))
    }

    /// Who the page session `id` is: `None` when it is unknown, expired, or the token that
    /// opened it has since been revoked (or, for the operator token, changed).
    pub async fn session(&self, store: &Store, id: &str) -> Option<(Principal, Option<String>)> {
        let row = store.admin_session(&session_key(id)).await.ok()??;
        let principal = match &row.token_id {
            None => {
                let op = self.operator_sha256.as_ref()?;
                bool::from(hex(op).as_bytes().ct_eq(row.token_sha256.as_bytes()))
                    .then_some(Principal::Operator)?
            }
            Some(token_id) => {
                let (stored, tenant, scope) = store.admin_token(token_id).await.ok()??;
                if scope.is_some()
                    || !bool::from(stored.as_bytes().ct_eq(row.token_sha256.as_bytes()))
                {
                    return None;
                }
                tenant.map_or(Principal::Operator, Principal::Tenant)
            }
        };
        Some((principal, row.flash))
    }
}

/// The key a page session is stored under: the SHA-256 of its id, never the id itself.
pub fn session_key(id: &str) -> String {
    hex(&sha256(id))
}

/// The id of a stored token (`syncd_<id>_<secret>`).
fn stored_id(token: &str) -> Option<&str> {
    token.strip_prefix("syncd_")?.split('_').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_principal_sees_only_its_own_tenant() {
        let p = Principal::Tenant("acme".into());
        assert!(p.sees("acme"));
        assert!(!p.sees("bravo"));
        assert!(Principal::Operator.sees("bravo"));
        assert_ne!(p.rate_key(), Principal::Tenant("bravo".into()).rate_key());
    }
}
