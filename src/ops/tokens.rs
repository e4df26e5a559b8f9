//! Admin API tokens: create (the token is shown once, only its SHA-256 is kept), list,
//! revoke.
//!
//! Stored tokens look like `syncd_<id>_<secret>`: the id finds the row, the digest of the
//! whole token is what the admin server compares.

use crate::store::Store;
use crate::store::admin_tokens::TokenInfo;
use anyhow::bail;
use sha2::{Digest, Sha256};

/// A token just created: its id, and the token itself (never stored, never shown again).
#[derive(Debug)]
pub struct Created {
    /// The id `tokens list` shows.
    pub id: String,
    /// `syncd_<id>_<secret>`.
    pub token: String,
}

/// The SHA-256 of a token.
pub fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// `GET /metrics` only: what a Prometheus server needs, nothing it could act with.
    Metrics,
}

impl Scope {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Metrics => "metrics",
        }
    }
}

/// Creates a token named `name`, for every tenant, only `tenant`, or only `scope`, and
/// stores its digest.
pub async fn create(
    store: &Store,
    name: &str,
    tenant: Option<&str>,
    scope: Option<Scope>,
) -> anyhow::Result<Created> {
    if tenant.is_some() && scope.is_some() {
        bail!("a token is for one tenant (--tenant) or for metrics (--scope metrics), not both");
    }
    let id = format!("{:08x}", rand::random::<u32>());
    let secret: String = (0..4)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect();
    let token = format!("syncd_{id}_{secret}");
    store
        .create_admin_token(
            &id,
            name,
            tenant,
            scope.map(Scope::as_str),
            &hex(&sha256(&token)),
        )
        .await?;
    Ok(Created { id, token })
}

/// Every token (never the tokens themselves).
pub async fn list(store: &Store) -> anyhow::Result<Vec<TokenInfo>> {
    Ok(store.list_admin_tokens().await?)
}

/// Revokes token `id`; it stops working at once.
pub async fn revoke(store: &Store, id: &str) -> anyhow::Result<()> {
    if !store.revoke_admin_token(id).await? {
        bail!("no active token with id `{id}` (see `syncd tokens list`)");
    }
    Ok(())
}
