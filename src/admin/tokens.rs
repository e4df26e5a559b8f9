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
        let id = token.strip_prefix("syncd_")?.split('_').next()?;
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
