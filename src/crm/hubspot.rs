//! HubSpot: the tenant's companies with their contacts.
//!
//! A sync is a *pass* over the companies modified since the last pass began (all of them the
//! first time), found with the search API (200 a page, ordered by record id, the `after`
//! cursor until `paging` is absent). Each company is then read with its contact associations,
//! and the page's contacts in one batch read. A page is stored in one transaction, and the
//! pass's position (the last record id) is saved after it: a run stopped by a quota or a
//! crash goes on from there. The search API stops at 10,000 results per query; past that the
//! query starts again from the last id.

use super::{Api, CrmEnv, excerpt, oauth};
use crate::outcome::classify::StatusKind;
use crate::outcome::{Outcome, parse_retry_after};
use crate::store::companies::{HubspotCompany, normalize_domain};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;
use tracing::{debug, info, warn};

/// Company properties read from HubSpot.
const PROPERTIES: &[&str] = &[
    "domain",
    "name",
    "industry",
    "numberofemployees",
    "country",
    "hs_lastmodifieddate",
];
/// Contact properties read from HubSpot.
const CONTACT_PROPERTIES: &[&str] = &["firstname", "lastname", "email", "phone", "jobtitle"];
/// Search page size (HubSpot's maximum).
const PAGE: usize = 200;
/// HubSpot's cap on results of one search query.
const SEARCH_CAP: usize = 10_000;
/// Contacts kept per company.
const MAX_CONTACTS: usize = 10;
/// Modifications this close before a pass began are fetched again by the next pass (HubSpot
/// indexes search a little behind writes).
const OVERLAP: chrono::Duration = chrono::Duration::minutes(5);

/// Where a pass stands; saved in `sync_state.cursor`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Cursor {
    /// Companies modified at or after this (epoch ms) are in the current/next pass.
    #[serde(default)]
    pub since_ms: Option<i64>,
    /// When the current pass began (epoch ms); becomes `since_ms` when it completes.
    #[serde(default)]
    pub pass_started_ms: Option<i64>,
    /// The last record id stored by the current pass.
    #[serde(default)]
    pub after_id: Option<String>,
}

/// A HubSpot client for one `[[crm]]` entry.
pub struct HubSpot<'a> {
    env: CrmEnv<'a>,
}

/// What a finished sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Companies read this run.
    pub fetched: u64,
    /// Companies whose data changed.
    pub changed: u64,
    /// Records without a usable domain (not stored).
    pub skipped: u64,
}

impl<'a> HubSpot<'a> {
    /// A client.
    pub fn new(env: CrmEnv<'a>) -> Self {
        HubSpot { env }
    }

    async fn bearer(&self, rejected: Option<&str>) -> Result<(String, bool), Outcome> {
        let spec = self.env.spec;
        if !spec.is_oauth() {
            let token = self.env.secret("token").await?;
            return Ok((
                secrecy::ExposeSecret::expose_secret(&token).to_string(),
                false,
            ));
        }
        let app = oauth::OAuthApp {
            client_id: spec.client_id.as_deref().unwrap_or_default(),
        };
        Ok((oauth::access_token(&self.env, &app, rejected).await?, true))
    }

    /// One API call within the budget: `Ok(None)` for a 404 when `missing_ok`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        api: Api,
        missing_ok: bool,
    ) -> Result<Option<Value>, Outcome> {
        let env = &self.env;
        let host = env.host();
        let url = format!("{}{path}", env.spec.base_url());
        let what = path.split('?').next().unwrap_or(path);
        let mut rejected: Option<String> = None;
        let mut waited = Duration::ZERO;
        loop {
            env.acquire(api).await?;
            let (token, oauth) = self.bearer(rejected.as_deref()).await?;
            let mut req = env.http.request(method.clone(), &url).bearer_auth(&token);
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
            self.observe(&headers, api).await;
            let text = super::read_body(resp, &format!("HubSpot ({host})")).await?;
            match status {
                200..=299 => {
                    return serde_json::from_str(&text).map(Some).map_err(|e| {
                        Outcome::transient(format!(
                            "HubSpot ({host}) answered {what} with invalid JSON ({e})"
                        ))
                    });
                }
                404 if missing_ok => return Ok(None),
                401 if oauth && rejected.is_none() => {
                    // Expired (or revoked) access token: one refresh, one more try.
                    debug!(%what, "access token refused; refreshing once");
                    rejected = Some(token);
                }
                401 => {
                    let category = field(&text, "category").unwrap_or_default();
                    let message = field(&text, "message").unwrap_or_else(|| excerpt(&text, 160));
                    let kind = if oauth {
                        "OAuth access token"
                    } else {
                        "private app token"
                    };
                    return Err(Outcome::Rejected {
                        message: format!(
                            "HubSpot ({host}) refused the {kind} of {} (401 {category}): {message}",
                            env.target()
                        ),
                    });
                }
                403 => {
                    let message = field(&text, "message").unwrap_or_else(|| excerpt(&text, 160));
                    return Err(Outcome::misconfigured(format!(
                        "HubSpot ({host}) forbade {what} (403): {message}; the app probably lacks the crm.objects.companies.read or crm.objects.contacts.read scope"
                    )));
                }
                429 => {
                    let policy = field(&text, "policyName").unwrap_or_default();
                    let header_wait = headers
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
                    let wait = header_wait.unwrap_or_else(|| policy_wait(&policy));
                    env.hold(api, wait).await;
                    warn!(%what, %policy, wait_ms = wait.as_millis() as u64, "HubSpot answered 429");
                    if waited + wait > env.max_wait {
                        return Err(Outcome::RateLimited {
                            message: format!("HubSpot ({host}) rate-limited {what} (429 {policy})"),
                            retry_after: Some(wait),
                        });
                    }
                    tokio::time::sleep(wait).await;
                    waited += wait;
                }
                _ => {
                    let kind = StatusKind::of(status);
                    let message = if kind == StatusKind::Transient {
                        format!(
                            "HubSpot ({host}) answered {what} with HTTP {status}: {}",
                            excerpt(&text, 200)
                        )
                    } else {
                        let message =
                            field(&text, "message").unwrap_or_else(|| excerpt(&text, 200));
                        format!("HubSpot ({host}) refused {what} with HTTP {status}: {message}")
                    };
                    return Err(kind.outcome(message, None));
                }
            }
        }
    }

    /// Slows down before the wall: when HubSpot says the window is spent (someone else
    /// shares the account's budget), nobody here spends it for a moment.
    async fn observe(&self, headers: &reqwest::header::HeaderMap, api: Api) {
        let num = |name: &str| -> Option<u64> {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
        };
        let (Some(remaining), Some(max)) = (
            num("x-hubspot-ratelimit-remaining"),
            num("x-hubspot-ratelimit-max"),
        ) else {
            return;
        };
        let interval = num("x-hubspot-ratelimit-interval-milliseconds").unwrap_or(10_000);
        // Our own pacing keeps the window nearly full by design, so a low count is normal;
        // none left means someone else shares the account's budget (another app of the
        // tenant): the next call would hit the wall, so pause for two slots' time.
        if remaining == 0 {
            let hold = Duration::from_millis(2 * interval / max.max(1));
            debug!(
                max,
                hold_ms = hold.as_millis() as u64,
                "HubSpot budget spent by others too; slowing down"
            );
            self.env.hold(api, hold).await;
        }
    }

    /// Proves the credentials: one list call for a single company.
    pub async fn test(&self) -> Result<String, Outcome> {
        self.call(
            Method::GET,
            "/crm/v3/objects/companies?limit=1",
            None,
            Api::HubspotGeneral,
            false,
        )
        .await?;
        let how = if !self.env.spec.is_oauth() {
            "private app token"
        } else {
            "OAuth (token refreshed)"
        };
        Ok(format!(
            "HubSpot ({}) accepted the {how}; companies are readable",
            self.env.host()
        ))
    }

    /// Runs (or resumes) a pass. `full` starts a pass over every company.
    pub async fn sync(&self, run: &str, full: bool) -> Result<SyncReport, Outcome> {
        let env = &self.env;
        let (tenant, name) = (env.tenant, env.spec.name.as_str());
        let db = |e: sqlx::Error| Outcome::transient(format!("syncd's state database failed: {e}"));
        let saved: Cursor = env
            .store
            .cursor(tenant, name)
            .await
            .map_err(db)?
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or_default();
        let mut cursor = if full {
            Cursor {
                since_ms: None,
                pass_started_ms: Some(Utc::now().timestamp_millis()),
                after_id: None,
            }
        } else if saved.pass_started_ms.is_some() {
            saved // an unfinished pass: go on
        } else {
            Cursor {
                since_ms: saved.since_ms,
                pass_started_ms: Some(Utc::now().timestamp_millis()),
                after_id: None,
            }
        };
        let mut report = SyncReport::default();
        // One search query pages with `after`; its id filter stays fixed while it does.
        let mut query_from = cursor.after_id.clone();
        let mut offset: usize = 0;
        loop {
            let page = self
                .search_page(cursor.since_ms, query_from.as_deref(), offset)
                .await?;
            let results = page
                .get("results")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut companies = Vec::with_capacity(results.len());
            let mut last_id = None;
            for r in &results {
                let Some(id) = r.get("id").and_then(Value::as_str) else {
                    continue;
                };
                last_id = Some(id.to_string());
                let path = format!(
                    "/crm/v3/objects/companies/{id}?properties={}&associations=contacts",
                    PROPERTIES.join(",")
                );
                // Deleted between the search and the read: nothing to store.
                let Some(full) = self
                    .call(Method::GET, &path, None, Api::HubspotGeneral, true)
                    .await?
                else {
                    continue;
                };
                companies.push(full);
            }
            report.fetched += companies.len() as u64;
            let contacts = self.contacts_of(&companies).await?;
            let mut rows = Vec::with_capacity(companies.len());
            for c in &companies {
                match to_company(c, &contacts) {
                    Some(row) => rows.push(row),
                    None => report.skipped += 1,
                }
            }
            report.changed += env
                .store
                .upsert_hubspot_companies(tenant, name, run, &rows)
                .await
                .map_err(db)?;
            if let Some(id) = last_id {
                cursor.after_id = Some(id);
            }
            env.store
                .set_cursor(tenant, name, &json!(cursor).to_string())
                .await
                .map_err(db)?;
            let next = page.pointer("/paging/next/after").and_then(|a| {
                a.as_str()
                    .map(str::to_string)
                    .or_else(|| a.as_u64().map(|n| n.to_string()))
            });
            match next {
                None => break,
                Some(_) if results.is_empty() => break,
                Some(after) => {
                    let after: usize = after.parse().unwrap_or(offset + PAGE);
                    if after + PAGE > SEARCH_CAP {
                        // HubSpot answers at most 10,000 results per query: a new query
                        // from the last id stored.
                        query_from = cursor.after_id.clone();
                        offset = 0;
                    } else {
                        offset = after;
                    }
                }
            }
        }
        let done = Cursor {
            since_ms: cursor
                .pass_started_ms
                .map(|t| t - OVERLAP.num_milliseconds()),
            pass_started_ms: None,
            after_id: None,
        };
        env.store
            .set_cursor(tenant, name, &json!(done).to_string())
            .await
            .map_err(db)?;
        info!(
            fetched = report.fetched,
            changed = report.changed,
            skipped = report.skipped,
            "HubSpot pass complete"
        );
        Ok(report)
    }

    async fn search_page(
        &self,
        since_ms: Option<i64>,
        after_id: Option<&str>,
        offset: usize,
    ) -> Result<Value, Outcome> {
        let mut filters = Vec::new();
        if let Some(since) = since_ms {
            filters.push(json!({"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": since.to_string()}));
        }
        if let Some(id) = after_id {
            filters.push(json!({"propertyName": "hs_object_id", "operator": "GT", "value": id}));
        }
        let mut body = json!({
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "properties": ["hs_object_id", "hs_lastmodifieddate"],
            "limit": PAGE,
        });
        if !filters.is_empty() {
            body["filterGroups"] = json!([{ "filters": filters }]);
        }
        if offset > 0 {
            body["after"] = json!(offset.to_string());
        }
        self.call(
            Method::POST,
            "/crm/v3/objects/companies/search",
            Some(&body),
            Api::HubspotSearch,
            false,
        )
        .await
        .map(Option::unwrap_or_default)
    }

    /// The contacts associated with `companies`, read in batches of 100.
    async fn contacts_of(&self, companies: &[Value]) -> Result<Vec<Value>, Outcome> {
        let mut ids: Vec<String> = companies
            .iter()
            .flat_map(|c| contact_ids(c).into_iter().take(MAX_CONTACTS))
            .collect();
        ids.sort();
        ids.dedup();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let body = json!({
                "inputs": chunk.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
                "properties": CONTACT_PROPERTIES,
            });
            let resp = self
                .call(
                    Method::POST,
                    "/crm/v3/objects/contacts/batch/read",
                    Some(&body),
                    Api::HubspotGeneral,
                    false,
                )
                .await?
                .unwrap_or_default();
            if let Some(results) = resp.get("results").and_then(Value::as_array) {
                out.extend(results.iter().cloned());
            }
        }
        Ok(out)
    }
}

/// HubSpot's own advice per rate-limit policy when it gives no `Retry-After`.
fn policy_wait(policy: &str) -> Duration {
    match policy {
        "SECONDLY" => Duration::from_secs(1),
        "DAILY" => {
            let now = Utc::now();
            let midnight = (now + chrono::Duration::days(1))
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc())
                .unwrap_or(now);
            (midnight - now)
                .to_std()
                .unwrap_or(Duration::from_secs(3600))
        }
        _ => Duration::from_secs(10), // TEN_SECONDLY_ROLLING and anything unknown
    }
}

fn field(body: &str, name: &str) -> Option<String> {
    serde_json::from_str::<Value>(body)
        .ok()?
        .get(name)?
        .as_str()
        .map(str::to_string)
}

fn contact_ids(company: &Value) -> Vec<String> {
    company
        .pointer("/associations/contacts/results")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    r.get("id").and_then(|i| {
                        i.as_str()
                            .map(str::to_string)
                            .or_else(|| i.as_u64().map(|n| n.to_string()))
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn prop(v: &Value, name: &str) -> Option<String> {
    v.pointer(&format!("/properties/{name}"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn to_company(c: &Value, contacts: &[Value]) -> Option<HubspotCompany> {
    let id = c.get("id")?.as_str()?.to_string();
    let domain = normalize_domain(&prop(c, "domain")?)?;
    let mut ids = contact_ids(c);
    ids.truncate(MAX_CONTACTS);
    let people: Vec<Value> = ids
        .iter()
        .filter_map(|cid| {
            contacts
                .iter()
                .find(|k| k.get("id").and_then(Value::as_str) == Some(cid))
        })
        .map(|k| {
            let name = [prop(k, "firstname"), prop(k, "lastname")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            json!({
                "hubspot_id": k.get("id"),
                "name": name,
                "email": prop(k, "email"),
                "phone": prop(k, "phone"),
                "job_title": prop(k, "jobtitle"),
            })
        })
        .collect();
    let updated_at = prop(c, "hs_lastmodifieddate")
        .or_else(|| {
            c.get("updatedAt")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc));
    Some(HubspotCompany {
        id,
        domain,
        name: prop(c, "name"),
        industry: prop(c, "industry"),
        employee_count: prop(c, "numberofemployees")
            .and_then(|n| n.parse::<f64>().ok())
            .map(|n| n as i64),
        country: prop(c, "country"),
        contacts: Value::Array(people),
        updated_at,
        raw: c.get("properties").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_company_record_becomes_a_row_with_its_contacts() {
        let company = json!({
            "id": "512",
            "properties": {"domain": "WWW.Acme.example", "name": "Acme", "industry": "COMPUTER_HARDWARE",
                           "numberofemployees": "250", "country": "Netherlands",
                           "hs_lastmodifieddate": "2026-11-28T10:00:00.000Z"},
            "associations": {"contacts": {"results": [{"id": "9", "type": "company_to_contact"}]}}
        });
        let contacts = vec![
            json!({"id": "9", "properties": {"firstname": "Ada", "lastname": "Lovelace",
                                    "email": "ada@acme.example", "phone": null, "jobtitle": "CTO"}}),
        ];
        let row = to_company(&company, &contacts).unwrap();
        assert_eq!(row.domain, "acme.example");
        assert_eq!(row.employee_count, Some(250));
        assert_eq!(row.contacts[0]["name"], "Ada Lovelace");
        assert_eq!(row.contacts[0]["job_title"], "CTO");
        assert!(row.updated_at.is_some());
    }

    #[test]
    fn a_company_without_a_domain_is_skipped() {
        let company = json!({"id": "1", "properties": {"name": "No web"}});
        assert!(to_company(&company, &[]).is_none());
    }

    #[test]
    fn rate_limit_policies_map_to_hubspots_own_waits() {
        assert_eq!(policy_wait("TEN_SECONDLY_ROLLING"), Duration::from_secs(10));
        assert_eq!(policy_wait("SECONDLY"), Duration::from_secs(1));
        assert!(policy_wait("DAILY") <= Duration::from_secs(86_400));
    }
}
