//! CRM sources: HubSpot (companies and their contacts) and Apollo.io (organization
//! enrichment), each inside the provider's rate limits.
//!
//! Clients return `Result<T, Outcome>`: every way a call can fail is already classified the
//! way the engine needs it (see DESIGN.md, "Outcomes and retries").

pub mod apollo;
pub mod hubspot;
pub mod limiter;
pub mod oauth;

use crate::catalog::{CrmProvider, CrmSpec};
use crate::config::CrmConfig;
use crate::outcome::Outcome;
use crate::store::Store;
use chrono::Utc;
use limiter::{Budget, Limiter};
use secrecy::SecretString;
use std::time::Duration;

/// What a CRM client needs.
#[derive(Clone, Copy)]
pub struct CrmEnv<'a> {
    /// Shared HTTP client.
    pub http: &'a reqwest::Client,
    /// State database (tokens, companies).
    pub store: &'a Store,
    /// Shared rate limiter.
    pub limiter: &'a Limiter,
    /// `[crm]` settings.
    pub config: &'a CrmConfig,
    /// Tenant id.
    pub tenant: &'a str,
    /// The catalog entry.
    pub spec: &'a CrmSpec,
    /// How long a call may wait in place for quota (longer: the run stops and continues later).
    pub max_wait: Duration,
    /// Where secrets come from (environment or the encrypted credential store).
    pub secrets: &'a crate::credentials::Secrets,
}

/// Which of a provider's budgets a call spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// HubSpot's general API limit (rolling 10 s).
    HubspotGeneral,
    /// HubSpot's separate search limit (per second).
    HubspotSearch,
    /// Apollo.io's fixed windows.
    Apollo,
}

impl<'a> CrmEnv<'a> {
    /// The limiter key and budget of `api` for this tenant. One budget per (tenant,
    /// provider, API): every integration of the tenant on that provider shares it, as the
    /// provider counts per account.
    pub fn budget(&self, api: Api) -> (String, Budget) {
        let c = self.config;
        let (name, budget) = match api {
            Api::HubspotGeneral => (
                "hubspot",
                Budget::Paced {
                    limit: c.hubspot_per_10s,
                    window: Duration::from_secs(10),
                },
            ),
            Api::HubspotSearch => (
                "hubspot-search",
                Budget::Paced {
                    limit: c.hubspot_search_per_second,
                    window: Duration::from_secs(1),
                },
            ),
            Api::Apollo => (
                "apollo",
                Budget::Fixed(vec![
                    (c.apollo_per_minute, Duration::from_secs(60)),
                    (c.apollo_per_hour, Duration::from_secs(3600)),
                    (c.apollo_per_day, Duration::from_secs(86_400)),
                ]),
            ),
        };
        (
            format!("{}:{name}", self.tenant),
            budget.with_headroom(c.headroom),
        )
    }

    /// Takes one call from `api`'s budget, waiting in place up to `max_wait`; beyond that the
    /// run must stop: `Err(Outcome::Waiting)` says until when.
    pub async fn acquire(&self, api: Api) -> Result<(), Outcome> {
        let (key, budget) = self.budget(api);
        let mut waited = Duration::ZERO;
        loop {
            let wait = self
                .limiter
                .try_acquire(&key, &budget)
                .await
                .map_err(|e| Outcome::transient(format!("the rate limiter failed: {e:#}")))?;
            let provider = self.spec.provider.as_str();
            let Some(wait) = wait else {
                if !waited.is_zero() {
                    crate::metrics::rate_limit_wait(provider, waited);
                }
                return Ok(());
            };
            if waited + wait > self.max_wait {
                crate::metrics::rate_limit_wait(provider, waited);
                let until = crate::outcome::retry::after(Utc::now(), wait);
                return Err(Outcome::Waiting {
                    message: format!(
                        "{} quota for tenant {} is spent; continuing at {}",
                        self.spec.provider.as_str(),
                        self.tenant,
                        until.format("%H:%M:%S UTC")
                    ),
                    until,
                });
            }
            tokio::time::sleep(wait).await;
            waited += wait;
        }
    }

    /// Stops everyone spending `api`'s budget for `duration`.
    pub async fn hold(&self, api: Api, duration: Duration) {
        let (key, _) = self.budget(api);
        if let Err(e) = self.limiter.hold(&key, duration).await {
            tracing::warn!(error = %e, "cannot record the provider's quota in the limiter");
        }
    }

    /// The secret `field` (`token`, `client_secret`, `refresh_token`, `api_key`) of this
    /// source, from its stored credential or the environment variable the catalog names.
    pub async fn secret(&self, field: &str) -> Result<SecretString, Outcome> {
        let Some(r) = self.spec.secret_ref(field) else {
            return Err(Outcome::misconfigured(format!(
                "{}: the catalog gives no `{field}`",
                self.target()
            )));
        };
        self.secrets.resolve(&self.target(), &r).await
    }

    /// `tenant/name`.
    pub fn target(&self) -> String {
        format!("{}/{}", self.tenant, self.spec.name)
    }

    /// The host of the base URL, for messages.
    pub fn host(&self) -> String {
        url::Url::parse(self.spec.base_url())
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| self.spec.base_url().to_string())
    }
}

/// The provider's name as admins know it.
pub fn provider_name(p: CrmProvider) -> &'static str {
    match p {
        CrmProvider::Hubspot => "HubSpot",
        CrmProvider::Apollo => "Apollo.io",
    }
}

/// A network-level failure of a call, classified (timeouts, resets, refused connections).
pub fn network_error(provider: CrmProvider, host: &str, e: reqwest::Error) -> Outcome {
    let what = format!("{} ({host})", provider_name(provider));
    crate::outcome::classify::classify_reqwest(&what, e)
}

/// The longest any one CRM call may take, answer included: a provider that trickles its
/// answer cannot hold a worker slot for longer.
pub const CALL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// The largest answer a CRM call reads: a page of 200 companies is a few hundred KB.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// Reads a response body of at most [`MAX_BODY`] bytes, as text; a longer answer is cut off
/// there and the call fails as transient, naming `who` (`HubSpot (api.hubapi.com)`).
pub async fn read_body(resp: reqwest::Response, who: &str) -> Result<String, Outcome> {
    use futures::StreamExt;
    let mut buf = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Outcome::transient(format!(
                "{who}: reading the answer failed ({})",
                crate::outcome::classify::describe(&e.without_url())
            ))
        })?;
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(Outcome::transient(format!(
                "{who} answered with more than {MAX_BODY} bytes; the answer was not read"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// At most `max` characters of a response body, on one line, for a message.
pub fn excerpt(body: &str, max: usize) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > max {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}
