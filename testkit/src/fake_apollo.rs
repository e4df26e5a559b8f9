//! A fake Apollo.io on loopback that behaves like the real API, including its bad days.
//!
//! - The key goes in the `x-api-key` header; a key in the query string or the JSON body is
//!   refused with 422. A wrong key gets 401 "Invalid access credentials." as plain text (or
//!   JSON); a key without API access gets 403 `API_INACCESSIBLE` on every call.
//! - `GET /api/v1/organizations/enrich?domain=` answers `{}` when nothing matches.
//! - `POST /api/v1/organizations/bulk_enrich` takes at most 10 domains; unmatched domains are
//!   simply absent from `organizations`.
//! - Fixed windows per key aligned to the UTC minute, hour and day, counted across all
//!   endpoints (or per endpoint, as an option), with Apollo's usage headers on every counted
//!   answer. Over a window → 429 with Apollo's wording and no `Retry-After`; a 429 does not
//!   consume.
//!
//! Every request is recorded with its arrival time and the status it got.
//! It depends on crates only, so the benchmarks use it as the tests do.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Limits of the plan behind every key, and the 401 style.
#[derive(Clone, Debug)]
pub struct ApolloOptions {
    pub per_minute: u32,
    pub per_hour: u32,
    pub per_day: u32,
    /// Wrong key → `Invalid access credentials.` as text/plain (else a JSON body).
    pub plain_text_401: bool,
    /// Count each endpoint in its own windows (Apollo documents limits per endpoint);
    /// by default all endpoints share one set of windows per key.
    pub per_endpoint: bool,
}

impl Default for ApolloOptions {
    fn default() -> Self {
        ApolloOptions {
            per_minute: 50,
            per_hour: 200,
            per_day: 600,
            plain_text_401: true,
            per_endpoint: false,
        }
    }
}

/// A request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub at: Instant,
    pub status: u16,
    /// The `x-api-key` header, if any.
    pub key: Option<String>,
    pub body: String,
}

#[derive(Default, Clone, Copy)]
struct Windows {
    minute: (i64, u32),
    hour: (i64, u32),
    day: (i64, u32),
}

struct Inner {
    opts: ApolloOptions,
    keys: Vec<String>,
    keys_without_access: Vec<String>,
    orgs: HashMap<String, Value>,
    counters: HashMap<(String, String), Windows>,
    requests: Vec<Recorded>,
    next_org: u64,
}

/// The running fake; stops with the test's runtime.
#[derive(Clone)]
pub struct FakeApollo {
    /// Base URL, e.g. `http://127.0.0.1:PORT`; the API lives under `/api/v1`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(status: u16, v: Value) -> Reply {
        Reply {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: v.to_string(),
        }
    }
}

const INDUSTRIES: &[&str] = &[
    "information technology & services",
    "computer software",
    "computer hardware",
    "telecommunications",
    "wholesale",
];
const COUNTRIES: &[&str] = &["United States", "Germany", "Netherlands", "United Kingdom"];

/// Apollo matches on the bare domain: no scheme, no `www.`, no path, lower case.
pub fn normalize_domain(d: &str) -> String {
    let d = d.trim().to_lowercase();
    let d = d
        .strip_prefix("https://")
        .or_else(|| d.strip_prefix("http://"))
        .unwrap_or(&d);
    let d = d.strip_prefix("www.").unwrap_or(d);
    let d = d.split(['/', '?', '#']).next().unwrap_or("");
    d.trim_end_matches('.').to_string()
}

fn generated_org(n: u64, domain: &str) -> Value {
    let k = n as usize;
    let stem = domain.split('.').next().unwrap_or(domain);
    let employees = (k * 37) % 5000 + 3;
    let mut org = json!({
        "id": format!("5f{:022x}", n),
        "name": format!("{} Inc.", capitalize(stem)),
        "website_url": format!("http://www.{domain}"),
        "blog_url": null,
        "angellist_url": null,
        "linkedin_url": format!("http://www.linkedin.com/company/{stem}"),
        "twitter_url": null,
        "facebook_url": null,
        "primary_phone": {},
        "languages": [],
        "alexa_ranking": null,
        "phone": null,
        "linkedin_uid": format!("{}", 1_000_000 + n),
        "founded_year": 1990 + (k % 34) as u64,
    });
    let more = json!({
        "publicly_traded_symbol": null,
        "publicly_traded_exchange": null,
        "logo_url": null,
        "crunchbase_url": null,
        "primary_domain": domain,
        "industry": INDUSTRIES[k % INDUSTRIES.len()],
        "keywords": ["b2b", "it distribution"],
        "estimated_num_employees": employees,
        "industries": [INDUSTRIES[k % INDUSTRIES.len()]],
        "secondary_industries": [],
        "snippets_loaded": true,
        "industry_tag_id": format!("5567cd{:018x}", k % INDUSTRIES.len()),
        "retail_location_count": 0,
        "raw_address": format!("{} Main Street, Springfield", k % 900 + 1),
        "street_address": format!("{} Main Street", k % 900 + 1),
        "city": "Springfield",
        "state": null,
        "postal_code": null,
        "country": COUNTRIES[k % COUNTRIES.len()],
        "owned_by_organization_id": null,
        "short_description": format!("{} sells IT hardware and services.", capitalize(stem)),
        "annual_revenue_printed": null,
        "annual_revenue": null,
        "total_funding": null,
        "technology_names": ["Google Workspace", "HubSpot"],
        "departmental_head_count": {"engineering": employees / 5, "sales": employees / 6},
    });
    if let (Some(a), Value::Object(b)) = (org.as_object_mut(), more) {
        a.extend(b);
    }
    org
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

impl FakeApollo {
    pub async fn start(opts: ApolloOptions) -> FakeApollo {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let inner = Arc::new(Mutex::new(Inner {
            opts,
            keys: Vec::new(),
            keys_without_access: Vec::new(),
            orgs: HashMap::new(),
            counters: HashMap::new(),
            requests: Vec::new(),
            next_org: 1,
        }));
        let app = Router::new().fallback(serve).with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeApollo { url, inner }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    pub fn add_key(&self, key: &str) {
        self.lock().keys.push(key.to_string());
    }

    /// A key on a plan without API access: every call → 403 `API_INACCESSIBLE`.
    pub fn add_key_without_access(&self, key: &str) {
        self.lock().keys_without_access.push(key.to_string());
    }

    /// An organization Apollo knows; `org`'s fields override the generated defaults.
    pub fn add_org(&self, domain: &str, org: Value) {
        let mut g = self.lock();
        let d = normalize_domain(domain);
        let n = g.next_org;
        g.next_org += 1;
        let mut base = generated_org(n, &d);
        if let (Some(b), Value::Object(o)) = (base.as_object_mut(), org) {
            for (k, v) in o {
                b.insert(k, v);
            }
        }
        g.orgs.insert(d, base);
    }

    /// Generated organizations for `co{N}.example`, N counting from 1 across calls.
    pub fn add_orgs(&self, n: usize) -> Vec<String> {
        let mut g = self.lock();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let k = g.next_org;
            g.next_org += 1;
            let d = format!("co{k}.example");
            g.orgs.insert(d.clone(), generated_org(k, &d));
            out.push(d);
        }
        out
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn count(&self, path_contains: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path.contains(path_contains))
            .count()
    }

    pub fn count_429(&self) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.status == 429)
            .count()
    }
}

async fn serve(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let at = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 8 << 20)
        .await
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).to_string();
    let key = api_key(&headers);
    let reply = {
        let mut g = inner.lock().unwrap();
        let reply = g.handle(&method, &path, &query, key.as_deref(), &body);
        g.requests.push(Recorded {
            method: method.to_string(),
            path,
            query,
            at,
            status: reply.status,
            key,
            body,
        });
        reply
    };
    let mut b = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (k, v) in &reply.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Body::from(reply.body)).unwrap()
}

fn api_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

impl Inner {
    fn handle(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        key: Option<&str>,
        body: &str,
    ) -> Reply {
        let pairs = query_pairs(query);
        let body_json: Option<Value> = serde_json::from_str(body).ok();
        let key_elsewhere = pairs.iter().any(|(k, _)| k == "api_key")
            || body_json.as_ref().and_then(|b| b.get("api_key")).is_some();
        if key_elsewhere {
            return Reply::json(
                422,
                json!({"error": "api_key is no longer accepted as a parameter. Please pass the API key in the X-Api-Key header."}),
            );
        }
        let endpoint = path.trim_start_matches('/').to_string();
        let key = key.unwrap_or("");
        if self.keys_without_access.iter().any(|k| k == key) {
            return Reply::json(
                403,
                json!({
                    "error": format!("{endpoint} is not accessible with this api_key"),
                    "error_code": "API_INACCESSIBLE",
                }),
            );
        }
        if !self.keys.iter().any(|k| k == key) {
            return if self.opts.plain_text_401 {
                Reply {
                    status: 401,
                    headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
                    body: "Invalid access credentials.".into(),
                }
            } else {
                Reply::json(401, json!({"error": "Invalid access credentials."}))
            };
        }
        let known = matches!(
            (method.as_str(), path),
            ("GET" | "POST", "/api/v1/organizations/enrich")
                | ("POST", "/api/v1/organizations/bulk_enrich")
                | ("GET" | "POST", "/api/v1/auth/health")
        );
        if !known {
            return Reply::json(404, json!({"error": "Not Found"}));
        }

        // Fixed windows aligned to the UTC minute, hour and day.
        let now = Utc::now().timestamp();
        let bucket = if self.opts.per_endpoint {
            endpoint.clone()
        } else {
            String::new()
        };
        let w = self.counters.entry((key.to_string(), bucket)).or_default();
        for (slot, len) in [
            (&mut w.minute, 60),
            (&mut w.hour, 3600),
            (&mut w.day, 86_400),
        ] {
            let id = now.div_euclid(len);
            if slot.0 != id {
                *slot = (id, 0);
            }
        }
        let o = &self.opts;
        let over = if w.day.1 >= o.per_day {
            Some((o.per_day, "day"))
        } else if w.hour.1 >= o.per_hour {
            Some((o.per_hour, "hour"))
        } else if w.minute.1 >= o.per_minute {
            Some((o.per_minute, "minute"))
        } else {
            None
        };
        let snapshot = *w;
        let usage_headers = |w: &Windows| {
            vec![
                ("x-rate-limit-minute".to_string(), o.per_minute.to_string()),
                ("x-minute-usage".to_string(), w.minute.1.to_string()),
                (
                    "x-minute-requests-left".to_string(),
                    o.per_minute.saturating_sub(w.minute.1).to_string(),
                ),
                ("x-rate-limit-hourly".to_string(), o.per_hour.to_string()),
                ("x-hourly-usage".to_string(), w.hour.1.to_string()),
                (
                    "x-hourly-requests-left".to_string(),
                    o.per_hour.saturating_sub(w.hour.1).to_string(),
                ),
                ("x-rate-limit-24-hour".to_string(), o.per_day.to_string()),
                ("x-24-hour-usage".to_string(), w.day.1.to_string()),
                (
                    "x-24-hour-requests-left".to_string(),
                    o.per_day.saturating_sub(w.day.1).to_string(),
                ),
            ]
        };
        if let Some((limit, unit)) = over {
            let mut r = Reply::json(
                429,
                json!({"message": format!(
                    "The maximum number of api calls allowed for {endpoint} is {limit} times per {unit}. Please upgrade your plan from https://app.apollo.io/#/settings/plans/upgrade."
                )}),
            );
            r.headers.extend(usage_headers(&snapshot));
            return r;
        }
        w.minute.1 += 1;
        w.hour.1 += 1;
        w.day.1 += 1;
        let counted = *w;
        let headers = usage_headers(&counted);

        let mut r = match path {
            "/api/v1/auth/health" => {
                Reply::json(200, json!({"healthy": true, "is_logged_in": true}))
            }
            "/api/v1/organizations/enrich" => {
                let domain = pairs
                    .iter()
                    .find(|(k, _)| k == "domain")
                    .map(|(_, v)| v.clone())
                    .or_else(|| {
                        body_json
                            .as_ref()
                            .and_then(|b| b.get("domain"))
                            .and_then(Value::as_str)
                            .map(String::from)
                    })
                    .unwrap_or_default();
                if normalize_domain(&domain).is_empty() {
                    Reply::json(422, json!({"error": "domain is required"}))
                } else {
                    match self.orgs.get(&normalize_domain(&domain)) {
                        Some(org) => Reply::json(200, json!({"organization": org})),
                        None => Reply::json(200, json!({})),
                    }
                }
            }
            _ => self.bulk_enrich(&pairs, body_json.as_ref()),
        };
        r.headers.extend(headers);
        r
    }

    fn bulk_enrich(&self, pairs: &[(String, String)], body: Option<&Value>) -> Reply {
        let mut domains: Vec<String> = body
            .and_then(|b| b.get("domains"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        domains.extend(
            pairs
                .iter()
                .filter(|(k, _)| k == "domains[]" || k == "domains")
                .map(|(_, v)| v.clone()),
        );
        if domains.is_empty() {
            return Reply::json(422, json!({"error": "domains is required"}));
        }
        if domains.len() > 10 {
            return Reply::json(
                422,
                json!({"error": "The maximum number of domains allowed is 10"}),
            );
        }
        let mut unique: Vec<String> = Vec::new();
        for d in &domains {
            let n = normalize_domain(d);
            if !n.is_empty() && !unique.contains(&n) {
                unique.push(n);
            }
        }
        let orgs: Vec<Value> = unique
            .iter()
            .filter_map(|d| self.orgs.get(d).cloned())
            .collect();
        Reply::json(
            200,
            json!({
                "status": "success",
                "error_code": null,
                "error_message": null,
                "total_requested_domains": domains.len(),
                "unique_domains": unique.len(),
                "unique_enriched_records": orgs.len(),
                "missing_records": unique.len() - orgs.len(),
                "organizations": orgs,
            }),
        )
    }
}
