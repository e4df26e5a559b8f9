//! Apollo.io: organization enrichment by domain.
//!
//! Companies that were never looked up, or longer ago than `[crm] enrich_max_age`, are
//! looked up ten domains a call (`bulk_enrich`; a single domain uses `enrich`). Each batch is
//! stored in one transaction, so a run stopped by a quota goes on with the companies still
//! pending. No match (`200 {}`, or a domain absent from a bulk answer) is `no_data`: expected
//! for small or new companies, counted in `status`, never an issue.

use super::limiter::until_window_end;
use super::{Api, CrmEnv, excerpt};
use crate::outcome::Outcome;
use crate::outcome::classify::StatusKind;
use crate::store::companies::{Enrichment, normalize_domain};
use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tracing::{debug, info, warn};

/// Domains per bulk call (Apollo's maximum).
const BULK: usize = 10;

/// An Apollo.io client for one `[[crm]]` entry.
pub struct Apollo<'a> {
    env: CrmEnv<'a>,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct EnrichReport {
    /// Companies enriched with data.
    pub enriched: u64,
    /// Companies Apollo knows nothing about.
    pub no_data: u64,
}

impl<'a> Apollo<'a> {
    /// A client.
    pub fn new(env: CrmEnv<'a>) -> Self {
        Apollo { env }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Outcome> {
        let env = &self.env;
        let host = env.host();
        let key = env.secret("api_key").await?;
        let url = format!("{}/api/v1{path}", env.spec.base_url());
        let what = path.split('?').next().unwrap_or(path);
        env.acquire(Api::Apollo).await?;
        let mut req = env
            .http
            .request(method, &url)
            .header("x-api-key", secrecy::ExposeSecret::expose_secret(&key))
            .header(reqwest::header::CACHE_CONTROL, "no-cache");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .timeout(super::CALL_DEADLINE)
            .send()
            .await
            .map_err(|e| super::network_error(env.spec.provider, &host, e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        self.observe(&headers).await;
        let text = super::read_body(resp, &format!("Apollo.io ({host})")).await?;
        let message = || {
            serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("error")
                        .or_else(|| v.get("message"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| excerpt(&text, 200))
        };
        match status {
            200..=299 => serde_json::from_str(&text).map_err(|e| {
                Outcome::transient(format!(
                    "Apollo.io ({host}) answered {what} with invalid JSON ({e})"
                ))
            }),
            401 => Err(Outcome::Rejected {
                message: format!(
                    "Apollo.io ({host}) refused the API key of {} (401): {}",
                    env.target(),
                    message()
                ),
            }),
            403 => {
                let code = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| {
                        v.get("error_code")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                if code == "API_INACCESSIBLE" {
                    Err(Outcome::misconfigured(format!(
                        "Apollo.io ({host}) says {what} is not accessible with the API key of {} (403 API_INACCESSIBLE): the plan or the key lacks access to this endpoint",
                        env.target()
                    )))
                } else {
                    Err(Outcome::Rejected {
                        message: format!(
                            "Apollo.io ({host}) refused {what} for {} (403): {}",
                            env.target(),
                            message()
                        ),
                    })
                }
            }
            429 => {
                let text_msg = message();
                let wait = window_of_message(&text_msg);
                env.hold(Api::Apollo, wait).await;
                warn!(%what, wait_s = wait.as_secs(), "Apollo.io answered 429");
                Err(Outcome::RateLimited {
                    message: format!("Apollo.io ({host}) rate-limited {what} (429): {text_msg}"),
                    retry_after: Some(wait),
                })
            }
            _ => {
                let kind = StatusKind::of(status);
                let message = if kind == StatusKind::Transient {
                    format!(
                        "Apollo.io ({host}) answered {what} with HTTP {status}: {}",
                        excerpt(&text, 200)
                    )
                } else {
                    format!(
                        "Apollo.io ({host}) refused {what} with HTTP {status}: {}",
                        message()
                    )
                };
                Err(kind.outcome(message, None))
            }
        }
    }

    /// Apollo sends what is left of each window; at zero, nobody calls before it resets.
    async fn observe(&self, headers: &reqwest::header::HeaderMap) {
        for (name, window) in [
            ("x-minute-requests-left", Duration::from_secs(60)),
            ("x-hourly-requests-left", Duration::from_secs(3600)),
            ("x-24-hour-requests-left", Duration::from_secs(86_400)),
        ] {
            let left = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok());
            if left.is_some_and(|l| l <= 0) {
                let wait = until_window_end(window);
                debug!(
                    header = name,
                    wait_ms = wait.as_millis() as u64,
                    "Apollo.io window spent"
                );
                self.env.hold(Api::Apollo, wait).await;
            }
        }
    }

    /// Proves the key: Apollo's health call, which reports whether the key logged in.
    pub async fn test(&self) -> Result<String, Outcome> {
        let v = self.call(Method::GET, "/auth/health", None).await?;
        if v.get("is_logged_in").and_then(Value::as_bool) == Some(false) {
            return Err(Outcome::Rejected {
                message: format!(
                    "Apollo.io ({}) did not log in with the API key of {}",
                    self.env.host(),
                    self.env.target()
                ),
            });
        }
        Ok(format!(
            "Apollo.io ({}) accepted the API key",
            self.env.host()
        ))
    }

    /// Enriches every company due for it, ten a call.
    pub async fn enrich(&self, run: &str) -> Result<EnrichReport, Outcome> {
        let env = &self.env;
        let (tenant, name) = (env.tenant, env.spec.name.as_str());
        let db = |e: sqlx::Error| Outcome::transient(format!("syncd's state database failed: {e}"));
        let max_age = chrono::Duration::from_std(env.config.enrich_max_age).unwrap_or_default();
        let mut report = EnrichReport::default();
        loop {
            let cutoff = Utc::now() - max_age;
            let domains = env
                .store
                .companies_to_enrich(tenant, cutoff, BULK as i64)
                .await
                .map_err(db)?;
            if domains.is_empty() {
                break;
            }
            let found = self.lookup(&domains).await?;
            let (enriched, no_data) = env
                .store
                .record_enrichment(tenant, name, run, &domains, &found)
                .await
                .map_err(db)?;
            report.enriched += enriched;
            report.no_data += no_data;
        }
        info!(
            enriched = report.enriched,
            no_data = report.no_data,
            "Apollo.io enrichment complete"
        );
        Ok(report)
    }

    async fn lookup(&self, domains: &[String]) -> Result<Vec<Enrichment>, Outcome> {
        let orgs: Vec<Value> = if let [only] = domains {
            let v = self
                .call(
                    Method::GET,
                    &format!("/organizations/enrich?domain={}", urlencode(only)),
                    None,
                )
                .await?;
            // No match is `200 {}`.
            v.get("organization").into_iter().cloned().collect()
        } else {
            let v = self
                .call(
                    Method::POST,
                    "/organizations/bulk_enrich",
                    Some(&json!({ "domains": domains })),
                )
                .await?;
            v.get("organizations")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for org in orgs.iter().filter(|o| o.is_object()) {
            let org_domain = ["primary_domain", "website_url", "domain"]
                .iter()
                .filter_map(|k| org.get(*k).and_then(Value::as_str))
                .find_map(normalize_domain);
            // Match the answer to what we asked (Apollo may answer for a parent domain).
            let Some(domain) = org_domain
                .filter(|d| domains.contains(d))
                .or_else(|| (domains.len() == 1).then(|| domains[0].clone()))
            else {
                continue;
            };
            let text = |k: &str| {
                org.get(k)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            out.push(Enrichment {
                domain,
                name: text("name"),
                industry: text("industry"),
                employee_count: org.get("estimated_num_employees").and_then(Value::as_i64),
                country: text("country"),
                raw: org.clone(),
            });
        }
        Ok(out)
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Apollo's 429 names the window ("… 50 times per minute", "… per hour", "… per day"): wait
/// for that window to reset.
fn window_of_message(message: &str) -> Duration {
    let m = message.to_ascii_lowercase();
    let window = if m.contains("per minute") {
        Duration::from_secs(60)
    } else if m.contains("per hour") {
        Duration::from_secs(3600)
    } else if m.contains("per day") || m.contains("24 hour") {
        Duration::from_secs(86_400)
    } else {
        Duration::from_secs(60)
    };
    until_window_end(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_waits_for_the_window_its_message_names() {
        let hour = window_of_message(
            "The maximum number of api calls allowed for api/v1/organizations/enrich is 600 times per hour. Please upgrade your plan",
        );
        assert!(hour <= Duration::from_secs(3600));
        let minute = window_of_message("… is 50 times per minute …");
        assert!(minute <= Duration::from_secs(60));
    }
}
