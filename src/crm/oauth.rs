//! HubSpot OAuth: access tokens refreshed before they expire, the rotated refresh token
//! persisted in the same statement as the new access token, and one refresh at a time per
//! credential across every job and every node.
//!
//! The lease is a row in the state database (`oauth_tokens.refreshing_until`), taken with a
//! single conditional UPDATE: whoever wins refreshes, the others poll the row until the new
//! token is there. A process that dies mid-refresh loses the lease after `LEASE`.

use super::{CrmEnv, excerpt};
use crate::outcome::{Outcome, parse_retry_after};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tracing::{info, warn};

/// How long a refresh may take before another process may try.
const LEASE: Duration = Duration::from_secs(30);
/// The token call's own deadline: well inside the lease, so the holder is done (or has
/// given up) before anyone else may refresh.
const REFRESH_DEADLINE: Duration = Duration::from_secs(20);
/// The longest lifetime an access token is believed to have, whatever `expires_in` says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How often a process waiting for another's refresh looks again.
const POLL: Duration = Duration::from_millis(100);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    expires_in: i64,
}

impl TokenResponse {
    /// `expires_in` as a lifetime between zero and [`MAX_TOKEN_LIFETIME`].
    fn lifetime(&self) -> Duration {
        Duration::from_secs(self.expires_in.max(0) as u64).min(MAX_TOKEN_LIFETIME)
    }
}

/// Whether an access token that lives from `refreshed_at` to `expires_at` is still good
/// at `now`: it is refreshed `margin` before it expires, but never earlier than half way
/// through its life, so short-lived tokens are refreshed once per half-lifetime at most.
fn still_good(
    refreshed_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
    margin: Duration,
    now: DateTime<Utc>,
) -> bool {
    let lifetime = refreshed_at
        .and_then(|r| (expires_at - r).to_std().ok())
        .unwrap_or(Duration::MAX);
    let margin = chrono::Duration::from_std(margin.min(lifetime / 2)).unwrap_or_default();
    expires_at
        .checked_sub_signed(margin)
        .is_some_and(|refresh_at| refresh_at > now)
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
    let margin = env.config.oauth_refresh_margin;
    let deadline = std::time::Instant::now() + LEASE + Duration::from_secs(5);
    loop {
        let tokens = env
            .store
            .oauth_tokens(tenant, name)
            .await
            .map_err(db)?
            .ok_or_else(|| Outcome::transient("the OAuth token row vanished"))?;
        if let (Some(access), Some(expires)) = (&tokens.access_token, tokens.access_expires_at)
            && still_good(tokens.refreshed_at, expires, margin, Utc::now())
        {
            let access = open(env, "access_token", access)?;
            if Some(access.as_str()) != rejected {
                return Ok(access);
            }
        }
        let until = crate::outcome::retry::after(crate::store::now(), LEASE);
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
                && still_good(t.refreshed_at, expires, margin, Utc::now())
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
                    let expires_at = crate::outcome::retry::after(Utc::now(), t.lifetime());
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
                    let kept = env
                        .store
                        .oauth_store_refreshed(
                            tenant,
                            name,
                            until,
                            &sealed_access,
                            expires_at,
                            &sealed_refresh,
                        )
                        .await
                        .map_err(db)?;
                    if !kept {
                        // The lease ran out and another process refreshed meanwhile: its
                        // tokens are newer than ours and stay.
                        warn!(
                            "the OAuth refresh outlived its lease; another process's tokens were kept"
                        );
                    }
                    info!(
                        expires_in_s = t.lifetime().as_secs(),
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
        .timeout(REFRESH_DEADLINE)
        .send()
        .await
        .map_err(|e| super::network_error(env.spec.provider, &host, e))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    let body = super::read_body(resp, &format!("HubSpot ({host})")).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_refreshed_at_most_once_per_half_lifetime() {
        let t0 = Utc::now();
        let secs = chrono::Duration::seconds;
        let five_min = Duration::from_secs(300);
        // HubSpot's 30-minute tokens: refreshed 5 minutes before they expire.
        let exp = t0 + secs(1800);
        assert!(still_good(Some(t0), exp, five_min, t0 + secs(1400)));
        assert!(!still_good(Some(t0), exp, five_min, t0 + secs(1501)));
        // 20-second tokens with the same margin: good for the first 10 seconds, not for 0.
        let exp = t0 + secs(20);
        assert!(still_good(Some(t0), exp, five_min, t0 + secs(9)));
        assert!(!still_good(Some(t0), exp, five_min, t0 + secs(11)));
        // A row from before `refreshed_at` was kept: the configured margin.
        assert!(!still_good(None, exp, five_min, t0));
    }

    #[test]
    fn a_lifetime_from_the_server_is_clamped() {
        let t = |expires_in| TokenResponse {
            access_token: String::new(),
            refresh_token: None,
            expires_in,
        };
        assert_eq!(t(1800).lifetime(), Duration::from_secs(1800));
        assert_eq!(t(-5).lifetime(), Duration::ZERO);
        assert_eq!(t(9_223_372_036_854_775).lifetime(), MAX_TOKEN_LIFETIME);
        assert_eq!(t(i64::MAX).lifetime(), MAX_TOKEN_LIFETIME);
    }
}
