//! HubSpot OAuth: access tokens refreshed before they expire, the rotated refresh token
//! persisted in the same statement as the new access token, and one refresh at a time per
//! credential across every job and every node.
//!
//! The lease is a row in the state database (`oauth_tokens.refreshing_until`), taken with a
//! single conditional UPDATE: whoever wins refreshes, the others poll the row until the new
//! token is there. A process that dies mid-refresh loses the lease after `LEASE`.

use super::{CrmEnv, excerpt};
use crate::outcome::{Outcome, parse_retry_after};
use chrono::Utc;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tracing::{info, warn};

/// How long a refresh may take before another process may try.
const LEASE: Duration = Duration::from_secs(30);
/// How often a process waiting for another's refresh looks again.
const POLL: Duration = Duration::from_millis(100);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    expires_in: i64,
}

/// The OAuth settings of a `[[crm]]` entry (its secrets, `client_secret` and
/// `refresh_token`, are resolved through [`CrmEnv::secret`]).
pub struct OAuthApp<'a> {
    /// The app's client id.
    pub client_id: &'a str,
}

/// The associated data that binds a sealed OAuth token to its row and column.
fn token_ad(env: &CrmEnv<'_>, column: &str) -> String {
    format!(
        "syncd/oauth/v1\0{}\0{}\0{column}",
        env.tenant, env.spec.name
    )
}

/// Seals a token for `oauth_tokens`: the rotated tokens are kept encrypted like every other
/// stored secret, so OAuth needs the master key.
fn seal(env: &CrmEnv<'_>, column: &str, token: &str) -> Result<String, Outcome> {
    env.secrets
        .seal_text(&token_ad(env, column), token)
        .map_err(|e| {
            Outcome::misconfigured(format!(
                "{}: OAuth tokens are stored encrypted, but {e}",
                env.target()
            ))
        })
}

/// Opens a token read from `oauth_tokens`.
fn open(env: &CrmEnv<'_>, column: &str, text: &str) -> Result<String, Outcome> {
    env.secrets
        .open_text(&token_ad(env, column), text)
        .map(|s| secrecy::ExposeSecret::expose_secret(&s).to_string())
        .map_err(|e| Outcome::misconfigured(format!(
                "{}: {e}; it was kept as it is. Put the original master key back, or re-authorise the app and store the new refresh token",
                env.target()
            )))
}

/// A usable access token. `rejected` is a token the API just refused as expired: it is not
/// returned again, a fresh one is (fetched once, whoever fetches it).
pub async fn access_token(
    env: &CrmEnv<'_>,
    app: &OAuthApp<'_>,
    rejected: Option<&str>,
) -> Result<String, Outcome> {
    let (tenant, name) = (env.tenant, env.spec.name.as_str());
    let db = |e: sqlx::Error| Outcome::transient(format!("syncd's state database failed: {e}"));
    let seed = env.secret("refresh_token").await?;
    let seed = secrecy::ExposeSecret::expose_secret(&seed);
    let seed_fp = hex(&Sha256::digest(seed.as_bytes()));
    let sealed_seed = seal(env, "refresh_token", seed)?;
    env.store
        .oauth_seed(tenant, name, &sealed_seed, &seed_fp)
        .await
        .map_err(db)?;
    let margin = chrono::Duration::from_std(env.config.oauth_refresh_margin).unwrap_or_default();
    let deadline = std::time::Instant::now() + LEASE + Duration::from_secs(5);
    loop {
        let tokens = env
            .store
            .oauth_tokens(tenant, name)
            .await
            .map_err(db)?
            .ok_or_else(|| Outcome::transient("the OAuth token row vanished"))?;
        if let (Some(access), Some(expires)) = (&tokens.access_token, tokens.access_expires_at)
            && expires - margin > Utc::now()
        {
            let access = open(env, "access_token", access)?;
            if Some(access.as_str()) != rejected {
                return Ok(access);
            }
        }
        let until = Utc::now() + chrono::Duration::from_std(LEASE).unwrap_or_default();
        if env
            .store
            .oauth_try_lease(tenant, name, until)
            .await
            .map_err(db)?
        {
            // Someone may have finished a refresh between our read and the lease.
            let fresh = env.store.oauth_tokens(tenant, name).await.map_err(db)?;
            if let Some(t) = &fresh
                && let (Some(access), Some(expires)) = (&t.access_token, t.access_expires_at)
                && expires - margin > Utc::now()
            {
                let access = open(env, "access_token", access)?;
                if Some(access.as_str()) != rejected {
                    env.store.oauth_release(tenant, name).await.map_err(db)?;
                    return Ok(access);
                }
            }
            let sealed_refresh = fresh
                .map(|t| t.refresh_token)
                .unwrap_or(tokens.refresh_token);
            let refresh_token = match open(env, "refresh_token", &sealed_refresh) {
                Ok(t) => t,
                Err(outcome) => {
                    let _ = env.store.oauth_release(tenant, name).await;
                    return Err(outcome);
                }
            };
            let result = refresh(env, app, &refresh_token).await;
            match result {
                Ok(t) => {
                    let expires_at = Utc::now() + chrono::Duration::seconds(t.expires_in.max(0));
                    let next_refresh = t.refresh_token.as_deref().unwrap_or(&refresh_token);
                    let sealed = seal(env, "access_token", &t.access_token)
                        .and_then(|a| Ok((a, seal(env, "refresh_token", next_refresh)?)));
                    let (sealed_access, sealed_refresh) = match sealed {
                        Ok(s) => s,
                        Err(outcome) => {
                            let _ = env.store.oauth_release(tenant, name).await;
                            return Err(outcome);
                        }
                    };
                    env.store
                        .oauth_store_refreshed(
                            tenant,
                            name,
                            &sealed_access,
                            expires_at,
                            &sealed_refresh,
                        )
                        .await
                        .map_err(db)?;
                    info!(
                        expires_in_s = t.expires_in,
                        rotated = t
                            .refresh_token
                            .as_deref()
                            .is_some_and(|r| r != refresh_token),
                        "OAuth access token refreshed"
                    );
                    return Ok(t.access_token);
                }
                Err(outcome) => {
                    if let Err(e) = env.store.oauth_release(tenant, name).await {
                        warn!(error = %e, "cannot release the OAuth refresh lease");
                    }
                    return Err(outcome);
                }
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(Outcome::transient(format!(
                "{}: another process has been refreshing the OAuth token for over {}s",
                env.target(),
                LEASE.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn refresh(
    env: &CrmEnv<'_>,
    app: &OAuthApp<'_>,
    refresh_token: &str,
) -> Result<TokenResponse, Outcome> {
    let secret = env.secret("client_secret").await?;
    let secret = secrecy::ExposeSecret::expose_secret(&secret);
    let url = format!("{}/oauth/v1/token", env.spec.base_url());
    let host = env.host();
    let resp = env
        .http
        .post(&url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", app.client_id),
            ("client_secret", secret),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .map_err(|e| super::network_error(env.spec.provider, &host, e))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    let body = resp.text().await.unwrap_or_default();
    match status {
        200..=299 => serde_json::from_str(&body).map_err(|e| {
            Outcome::transient(format!(
                "HubSpot ({host}) answered the token refresh with something that is not a token ({e})"
            ))
        }),
        400 | 401 | 403 => {
            let code = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("status")
                        .or_else(|| v.get("error"))
                        .and_then(|s| s.as_str().map(str::to_string))
                })
                .unwrap_or_else(|| format!("HTTP {status}"));
            let what = if code == "BAD_REFRESH_TOKEN" {
                "the refresh token is revoked or invalid (the app was uninstalled or re-authorised)"
            } else {
                "the client id or client secret was refused"
            };
            Err(Outcome::Rejected {
                message: format!(
                    "HubSpot ({host}) refused the OAuth token refresh for {}: {code}: {what}",
                    env.target()
                ),
            })
        }
        429 => Err(Outcome::RateLimited {
            message: format!("HubSpot ({host}) rate-limited the OAuth token refresh (429)"),
            retry_after: retry_after.or(Some(Duration::from_secs(10))),
        }),
        _ => Err(Outcome::Transient {
            message: format!(
                "HubSpot ({host}) answered the OAuth token refresh with HTTP {status}: {}",
                excerpt(&body, 200)
            ),
            retry_after,
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
