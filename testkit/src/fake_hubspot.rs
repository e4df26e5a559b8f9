//! A fake HubSpot on loopback that behaves like the real API, including its bad days.
//!
//! - One portal: every token (private app or OAuth) shares one rolling 10-second window of
//!   `limit_per_10s` calls; search has its own rolling 1-second window and answers without
//!   any rate-limit headers. A refused call does not consume the window.
//! - 429 bodies are HubSpot's (`TEN_SECONDLY_ROLLING`, `DAILY`, search's "secondly limit"),
//!   `Retry-After` only when the options ask for it.
//! - OAuth: refresh tokens rotate (by default), access tokens expire after
//!   `access_token_ttl`; an expired token gets `EXPIRED_AUTHENTICATION`, an unknown one
//!   "Authentication credentials not found."
//! - Search: filters, sorts, `after` paging with `paging` absent on the last page, 200 per
//!   page at most, 10,000 results per query at most.
//! - Scripted one-shot replies (`fail_next`) are served before normal handling.
//!
//! Every request is recorded with its arrival time and the status it got.
//! It depends on crates only, so the benchmarks use it as the tests do.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the fake portal is set up.
#[derive(Clone, Debug)]
pub struct HubSpotOptions {
    /// Rolling 10-second window over all non-search API calls (not the token endpoint).
    pub limit_per_10s: usize,
    /// Rolling 1-second window for `/crm/v3/objects/companies/search`.
    pub search_per_second: usize,
    /// Lifetime of an OAuth access token; `expires_in` in the token response.
    pub access_token_ttl: Duration,
    /// Each refresh returns a new refresh token and invalidates the old one.
    pub rotate_refresh_tokens: bool,
    /// `Retry-After` (seconds) on rate-limit 429s; real HubSpot often omits it.
    pub retry_after_on_429: Option<u64>,
    /// Calls per UTC day (all non-search calls); beyond → 429 with policy `DAILY`.
    pub daily_limit: usize,
    /// Search is eventually consistent in HubSpot: an edit (`touch_company`) or a new company
    /// (`add_company`) shows in search results only this long after it happened. Reads by
    /// id and the list endpoint see it at once. Default zero.
    pub search_index_lag: Duration,
    /// A bad day: the `expires_in` the token endpoint reports instead of the real lifetime
    /// (a number nobody should believe, such as 9223372036854775). The token still lives
    /// `access_token_ttl`.
    pub reported_expires_in: Option<i64>,
}

impl Default for HubSpotOptions {
    fn default() -> Self {
        HubSpotOptions {
            limit_per_10s: 100,
            search_per_second: 5,
            access_token_ttl: Duration::from_secs(30 * 60),
            rotate_refresh_tokens: true,
            retry_after_on_429: None,
            daily_limit: 250_000,
            search_index_lag: Duration::ZERO,
            reported_expires_in: None,
        }
    }
}

/// A company record in the portal.
#[derive(Clone, Debug, PartialEq)]
pub struct Company {
    pub id: String,
    pub domain: String,
    pub name: String,
    pub industry: Option<String>,
    pub employees: Option<u64>,
    pub country: Option<String>,
    pub contacts: Vec<Contact>,
    pub modified: DateTime<Utc>,
}

/// A contact associated with a company.
#[derive(Clone, Debug, PartialEq)]
pub struct Contact {
    pub id: String,
    pub firstname: String,
    pub lastname: String,
    pub email: String,
    pub phone: Option<String>,
    pub jobtitle: Option<String>,
}

/// A one-shot reply served instead of normal handling.
#[derive(Clone, Debug)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Scripted {
    /// HubSpot's real 429 for the rolling ten-second limit.
    pub fn rate_limited(retry_after: Option<u64>) -> Scripted {
        let mut headers = vec![(
            "content-type".to_string(),
            "application/json;charset=utf-8".to_string(),
        )];
        if let Some(s) = retry_after {
            headers.push(("retry-after".into(), s.to_string()));
        }
        Scripted {
            status: 429,
            headers,
            body: ten_secondly_body(&correlation_id(0xdead)).to_string(),
        }
    }

    /// Any status with a body as given (JSON content type when it looks like JSON).
    pub fn status(code: u16, body: &str) -> Scripted {
        let ct = if body.trim_start().starts_with('{') {
            "application/json;charset=utf-8"
        } else {
            "text/plain;charset=utf-8"
        };
        Scripted {
            status: code,
            headers: vec![("content-type".into(), ct.into())],
            body: body.to_string(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Scripted {
        self.headers.push((name.into(), value.into()));
        self
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
    /// The bearer token, if any.
    pub token: Option<String>,
    pub body: String,
}

struct AccessToken {
    client_id: String,
    expires: Instant,
    expires_wall: DateTime<Utc>,
}

struct OAuthClient {
    secret: String,
    latest_refresh: Option<String>,
}

struct Inner {
    opts: HubSpotOptions,
    url: String,
    companies: Vec<Company>,
    created: HashMap<String, DateTime<Utc>>,
    private_tokens: Vec<String>,
    clients: HashMap<String, OAuthClient>,
    /// Valid refresh token → client id.
    refresh_tokens: HashMap<String, String>,
    access_tokens: HashMap<String, AccessToken>,
    script: Vec<(String, Scripted)>,
    requests: Vec<Recorded>,
    window: VecDeque<Instant>,
    search_window: VecDeque<Instant>,
    daily: (i64, usize),
    /// Company id → what search still sees (None: not indexed yet) and until when.
    search_lag: HashMap<String, (Option<DateTime<Utc>>, Instant)>,
    next_company: u64,
    next_contact: u64,
    serial: u64,
}

/// The running fake; stops with the test's runtime.
#[derive(Clone)]
pub struct FakeHubSpot {
    /// `http://127.0.0.1:PORT`
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
                "application/json;charset=utf-8".into(),
            )],
            body: v.to_string(),
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: String::new(),
        }
    }
}

const INDUSTRIES: &[&str] = &[
    "COMPUTER_SOFTWARE",
    "INFORMATION_TECHNOLOGY_AND_SERVICES",
    "COMPUTER_HARDWARE",
    "TELECOMMUNICATIONS",
    "WHOLESALE",
    "COMPUTER_NETWORKING",
];
const COUNTRIES: &[&str] = &["United States", "Germany", "Netherlands", "United Kingdom"];
const FIRST: &[&str] = &["Anna", "Ben", "Chloé", "Daan", "Emma", "Felix", "Greta"];
const LAST: &[&str] = &[
    "Jansen", "Müller", "Smith", "de Vries", "O'Brien", "Kowalski",
];
const TITLES: &[&str] = &["Purchasing Manager", "CTO", "IT Buyer", "Office Manager"];

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn correlation_id(n: u64) -> String {
    let t = Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (t >> 32) as u32,
        (t >> 16) as u16,
        (n & 0xfff) as u16,
        ((n >> 12) & 0xfff) as u16,
        t & 0xffff_ffff_ffff
    )
}

fn ten_secondly_body(correlation: &str) -> Value {
    json!({
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": correlation,
        "policyName": "TEN_SECONDLY_ROLLING",
        "groupName": "publicapi:portal-ten-secondly:12345678",
    })
}

fn error_body(category: &str, message: &str, correlation: &str) -> Value {
    json!({
        "status": "error",
        "message": message,
        "correlationId": correlation,
        "category": category,
    })
}

impl FakeHubSpot {
    pub async fn start(opts: HubSpotOptions) -> FakeHubSpot {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let inner = Arc::new(Mutex::new(Inner {
            opts,
            url: url.clone(),
            companies: Vec::new(),
            created: HashMap::new(),
            private_tokens: Vec::new(),
            clients: HashMap::new(),
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            script: Vec::new(),
            requests: Vec::new(),
            window: VecDeque::new(),
            search_window: VecDeque::new(),
            daily: (0, 0),
            search_lag: HashMap::new(),
            next_company: 5_000_000_001,
            next_contact: 70_000_000_001,
            serial: 0,
        }));
        let app = Router::new().fallback(serve).with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeHubSpot { url, inner }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    pub fn add_private_app_token(&self, token: &str) {
        self.lock().private_tokens.push(token.to_string());
    }

    /// Registers an OAuth app (or another installation of it) and a valid refresh token.
    pub fn add_oauth_client(&self, client_id: &str, client_secret: &str, refresh_token: &str) {
        let mut g = self.lock();
        let c = g
            .clients
            .entry(client_id.to_string())
            .or_insert(OAuthClient {
                secret: client_secret.to_string(),
                latest_refresh: None,
            });
        c.secret = client_secret.to_string();
        c.latest_refresh = Some(refresh_token.to_string());
        g.refresh_tokens
            .insert(refresh_token.to_string(), client_id.to_string());
    }

    /// The user uninstalled the app or an admin revoked the token: it refreshes no more.
    pub fn revoke_refresh_token(&self, refresh_token: &str) {
        self.lock().refresh_tokens.remove(refresh_token);
    }

    /// The newest refresh token issued for (or registered with) this client.
    pub fn current_refresh_token(&self, client_id: &str) -> Option<String> {
        self.lock()
            .clients
            .get(client_id)
            .and_then(|c| c.latest_refresh.clone())
    }

    /// Makes every access token issued so far expire now.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for t in self.lock().access_tokens.values_mut() {
            t.expires = now;
            t.expires_wall = Utc::now();
        }
    }

    /// Generated companies: ids ascending, domain `co{N}.example`, 0–3 contacts each.
    /// Every seventh has no industry, every eleventh no employee count (as in real portals).
    pub fn add_companies(&self, n: usize) -> Vec<Company> {
        let mut g = self.lock();
        let base = Utc::now() - chrono::Duration::days(30);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let id_num = g.next_company;
            g.next_company += 1;
            let k = (id_num - 5_000_000_000) as usize;
            let mut contacts = Vec::new();
            for j in 0..(k % 4) {
                let cid = g.next_contact;
                g.next_contact += 1;
                let first = FIRST[(k + j) % FIRST.len()];
                let last = LAST[(k * 3 + j) % LAST.len()];
                contacts.push(Contact {
                    id: cid.to_string(),
                    firstname: first.to_string(),
                    lastname: last.to_string(),
                    email: format!("{}.{}@co{k}.example", first.to_lowercase(), j + 1),
                    phone: (j % 2 == 0).then(|| format!("+31 20 555 {:04}", (k * 7 + j) % 10_000)),
                    jobtitle: (j != 2).then(|| TITLES[(k + j) % TITLES.len()].to_string()),
                });
            }
            let c = Company {
                id: id_num.to_string(),
                domain: format!("co{k}.example"),
                name: format!("Company {k} B.V."),
                industry: (!k.is_multiple_of(7))
                    .then(|| INDUSTRIES[k % INDUSTRIES.len()].to_string()),
                employees: (!k.is_multiple_of(11)).then_some(((k * 37) % 5000 + 3) as u64),
                country: Some(COUNTRIES[k % COUNTRIES.len()].to_string()),
                contacts,
                modified: base + chrono::Duration::seconds(k as i64),
            };
            g.created.insert(c.id.clone(), c.modified);
            g.companies.push(c.clone());
            out.push(c);
        }
        out
    }

    /// Adds (or replaces, by id) one company.
    pub fn add_company(&self, c: Company) {
        let mut g = self.lock();
        g.created.entry(c.id.clone()).or_insert(c.modified);
        if let Ok(n) = c.id.parse::<u64>() {
            g.next_company = g.next_company.max(n + 1);
        }
        let lag = g.opts.search_index_lag;
        if !lag.is_zero() {
            let seen = g
                .companies
                .iter()
                .find(|x| x.id == c.id)
                .map(|x| x.modified);
            let now = Instant::now();
            let e = g.search_lag.entry(c.id.clone()).or_insert((seen, now));
            if e.1 <= now {
                e.0 = seen;
            }
            e.1 = now + lag;
        }
        match g.companies.iter_mut().find(|x| x.id == c.id) {
            Some(slot) => *slot = c,
            None => g.companies.push(c),
        }
    }

    /// An edit in HubSpot: bumps `hs_lastmodifieddate` to now.
    pub fn touch_company(&self, id: &str) {
        let mut g = self.lock();
        let lag = g.opts.search_index_lag;
        let Some(c) = g.companies.iter_mut().find(|c| c.id == id) else {
            return;
        };
        let before = c.modified;
        c.modified = Utc::now();
        if !lag.is_zero() {
            let now = Instant::now();
            let e = g
                .search_lag
                .entry(id.to_string())
                .or_insert((Some(before), now));
            if e.1 <= now {
                e.0 = Some(before);
            }
            e.1 = now + lag;
        }
    }

    pub fn companies(&self) -> Vec<Company> {
        self.lock().companies.clone()
    }

    /// Queues a one-shot reply for the next request whose path contains `path_contains`;
    /// several queue up and are served in order, before auth and rate limiting.
    pub fn fail_next(&self, path_contains: &str, reply: Scripted) {
        self.lock().script.push((path_contains.to_string(), reply));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Requests whose path contains `path_contains`.
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

    /// `POST /oauth/v1/token` calls, whatever they got.
    pub fn refresh_calls(&self) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/oauth/v1/token")
            .count()
    }
}

async fn serve(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let at = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 32 << 20)
        .await
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).to_string();
    let token = bearer(&headers);
    let reply = {
        let mut g = inner.lock().unwrap();
        let reply = g.handle(&method, &path, &query, token.as_deref(), &body, at);
        g.requests.push(Recorded {
            method: method.to_string(),
            path,
            query,
            at,
            status: reply.status,
            token,
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

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_string())
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `properties=a,b` and `properties=a&properties=b` alike.
fn query_list(pairs: &[(String, String)], name: &str) -> Option<Vec<String>> {
    let v: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect();
    (!v.is_empty()).then_some(v)
}

enum Auth {
    PrivateApp,
    OAuth,
}

impl Inner {
    fn corr(&mut self) -> String {
        self.serial += 1;
        correlation_id(self.serial)
    }

    fn handle(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        token: Option<&str>,
        body: &str,
        at: Instant,
    ) -> Reply {
        if let Some(i) = self
            .script
            .iter()
            .position(|(p, _)| path.contains(p.as_str()))
        {
            let (_, s) = self.script.remove(i);
            return Reply {
                status: s.status,
                headers: s.headers,
                body: s.body,
            };
        }
        if path == "/oauth/v1/token" && method == Method::POST {
            return self.token(body, at);
        }

        let auth = match self.authenticate(token, at) {
            Ok(a) => a,
            Err(r) => return r,
        };

        let is_search = method == Method::POST && path == "/crm/v3/objects/companies/search";
        if is_search {
            while let Some(&t) = self.search_window.front() {
                if at.duration_since(t) >= Duration::from_secs(1) {
                    self.search_window.pop_front();
                } else {
                    break;
                }
            }
            if self.search_window.len() >= self.opts.search_per_second {
                let c = self.corr();
                let mut r = Reply::json(
                    429,
                    json!({
                        "status": "error",
                        "message": "You have reached your secondly limit.",
                        "errorType": "RATE_LIMIT",
                        "correlationId": c,
                        "policyName": "SECONDLY",
                        "groupName": "publicapi:crm-search-secondly:12345678",
                    }),
                );
                if let Some(s) = self.opts.retry_after_on_429 {
                    r.headers.push(("retry-after".into(), s.to_string()));
                }
                return r;
            }
            self.search_window.push_back(at);
            // Search answers carry no rate-limit headers at all.
            return self.route(method, path, query, body);
        }

        while let Some(&t) = self.window.front() {
            if at.duration_since(t) >= Duration::from_secs(10) {
                self.window.pop_front();
            } else {
                break;
            }
        }
        let day = Utc::now().timestamp().div_euclid(86_400);
        if self.daily.0 != day {
            self.daily = (day, 0);
        }
        let max = self.opts.limit_per_10s;
        let limit_headers = |remaining: usize| {
            vec![
                ("X-HubSpot-RateLimit-Max".to_string(), max.to_string()),
                (
                    "X-HubSpot-RateLimit-Remaining".to_string(),
                    remaining.to_string(),
                ),
                (
                    "X-HubSpot-RateLimit-Interval-Milliseconds".to_string(),
                    "10000".to_string(),
                ),
            ]
        };
        if self.daily.1 >= self.opts.daily_limit {
            let c = self.corr();
            let mut r = Reply::json(
                429,
                json!({
                    "status": "error",
                    "message": "You have reached your daily limit.",
                    "errorType": "RATE_LIMIT",
                    "correlationId": c,
                    "policyName": "DAILY",
                    "groupName": "publicapi:portal-daily:12345678",
                }),
            );
            if let Some(s) = self.opts.retry_after_on_429 {
                r.headers.push(("retry-after".into(), s.to_string()));
            }
            return r;
        }
        if self.window.len() >= max {
            let c = self.corr();
            let mut r = Reply::json(429, ten_secondly_body(&c));
            r.headers.extend(limit_headers(0));
            if let Some(s) = self.opts.retry_after_on_429 {
                r.headers.push(("retry-after".into(), s.to_string()));
            }
            return r;
        }
        self.window.push_back(at);
        self.daily.1 += 1;
        let remaining = max - self.window.len();
        let mut r = self.route(method, path, query, body);
        r.headers.extend(limit_headers(remaining));
        if matches!(auth, Auth::PrivateApp) {
            r.headers.push((
                "X-HubSpot-RateLimit-Daily".into(),
                self.opts.daily_limit.to_string(),
            ));
            r.headers.push((
                "X-HubSpot-RateLimit-Daily-Remaining".into(),
                (self.opts.daily_limit - self.daily.1).to_string(),
            ));
        }
        r
    }

    fn authenticate(&mut self, token: Option<&str>, at: Instant) -> Result<Auth, Reply> {
        if let Some(t) = token {
            if self.private_tokens.iter().any(|p| p == t) {
                return Ok(Auth::PrivateApp);
            }
            if let Some(a) = self.access_tokens.get(t) {
                if at < a.expires {
                    return Ok(Auth::OAuth);
                }
                let ago = at.duration_since(a.expires).as_secs();
                let wall = ts(a.expires_wall);
                let c = self.corr();
                return Err(Reply::json(
                    401,
                    json!({
                        "status": "error",
                        "message": format!("The OAuth token used to make this call expired {ago} second(s) ago."),
                        "correlationId": c,
                        "category": "EXPIRED_AUTHENTICATION",
                        "context": {"expire time": [wall]},
                    }),
                ));
            }
        }
        let c = self.corr();
        Err(Reply::json(
            401,
            error_body(
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                &c,
            ),
        ))
    }

    fn token(&mut self, body: &str, at: Instant) -> Reply {
        let form: HashMap<String, String> = query_pairs(body).into_iter().collect();
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let c = self.corr();
        let oauth_error = |status: &str, message: &str| {
            Reply::json(
                400,
                json!({
                    "status": status,
                    "message": message,
                    "correlationId": c,
                    "requestId": c.replace('-', ""),
                }),
            )
        };
        if get("grant_type") != "refresh_token" {
            return oauth_error(
                "BAD_GRANT_TYPE",
                "grant_type must be one of authorization_code or refresh_token",
            );
        }
        let client_id = get("client_id").to_string();
        let Some(client) = self.clients.get(&client_id) else {
            return oauth_error("BAD_CLIENT_ID", "missing or unknown client id");
        };
        if client.secret != get("client_secret") {
            return oauth_error("BAD_CLIENT_SECRET", "missing or invalid client secret");
        }
        let old = get("refresh_token").to_string();
        if self.refresh_tokens.get(&old) != Some(&client_id) {
            return oauth_error("BAD_REFRESH_TOKEN", "missing or invalid refresh token");
        }
        self.serial += 1;
        let n = self.serial;
        let refresh = if self.opts.rotate_refresh_tokens {
            let fresh = format!(
                "na1-{:04x}-{:04x}-4f1e-9c0d-{:012x}",
                n & 0xffff,
                (n >> 16) & 0xffff,
                n
            );
            self.refresh_tokens.remove(&old);
            self.refresh_tokens.insert(fresh.clone(), client_id.clone());
            fresh
        } else {
            old
        };
        if let Some(c) = self.clients.get_mut(&client_id) {
            c.latest_refresh = Some(refresh.clone());
        }
        let access = format!("CKf{n:x}EgcCAQAAAAMAGLrF-fake-access-{n}");
        let ttl = self.opts.access_token_ttl;
        self.access_tokens.insert(
            access.clone(),
            AccessToken {
                client_id,
                expires: at + ttl,
                expires_wall: Utc::now() + chrono::Duration::from_std(ttl).unwrap(),
            },
        );
        Reply::json(
            200,
            json!({
                "token_type": "bearer",
                "refresh_token": refresh,
                "access_token": access,
                "expires_in": self.opts.reported_expires_in.unwrap_or(ttl.as_secs() as i64),
            }),
        )
    }

    fn route(&mut self, method: &Method, path: &str, query: &str, body: &str) -> Reply {
        let pairs = query_pairs(query);
        match (method.as_str(), path) {
            ("POST", "/crm/v3/objects/companies/search") => self.search(body),
            ("GET", "/crm/v3/objects/companies") => self.list(&pairs),
            ("POST", "/crm/v3/objects/companies/batch/read") => self.batch_read_companies(body),
            ("POST", "/crm/v3/objects/contacts/batch/read") => self.batch_read_contacts(body),
            ("GET", p) if p.starts_with("/crm/v3/objects/companies/") => {
                let id = &p["/crm/v3/objects/companies/".len()..];
                self.get_company(id, &pairs)
            }
            _ => Reply::empty(404),
        }
    }

    fn bad_request(&mut self, message: &str) -> Reply {
        let c = self.corr();
        Reply::json(400, error_body("VALIDATION_ERROR", message, &c))
    }

    fn company_object(&self, c: &Company, requested: Option<&[String]>) -> Value {
        let created = self.created.get(&c.id).copied().unwrap_or(c.modified);
        let mut props = Map::new();
        let names: Vec<String> = match requested {
            None => [
                "createdate",
                "domain",
                "hs_lastmodifieddate",
                "hs_object_id",
                "name",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            Some(r) => {
                let mut v: Vec<String> = r.to_vec();
                for d in ["createdate", "hs_lastmodifieddate", "hs_object_id"] {
                    if !v.iter().any(|x| x == d) {
                        v.push(d.to_string());
                    }
                }
                v
            }
        };
        for n in names {
            let v = match n.as_str() {
                "hs_object_id" => Some(c.id.clone()),
                "domain" => Some(c.domain.clone()),
                "name" => Some(c.name.clone()),
                "industry" => c.industry.clone(),
                "numberofemployees" => c.employees.map(|e| e.to_string()),
                "country" => c.country.clone(),
                "hs_lastmodifieddate" => Some(ts(c.modified)),
                "createdate" => Some(ts(created)),
                // Unknown properties are silently left out, as HubSpot does.
                _ => continue,
            };
            props.insert(n, v.map(Value::String).unwrap_or(Value::Null));
        }
        json!({
            "id": c.id,
            "properties": props,
            "createdAt": ts(created),
            "updatedAt": ts(c.modified),
            "archived": false,
        })
    }

    fn search(&mut self, body: &str) -> Reply {
        let req: Value = match serde_json::from_str(body) {
            Ok(v) => v,
            Err(e) => return self.bad_request(&format!("Invalid input JSON: {e}")),
        };
        let limit = match req.get("limit") {
            None | Some(Value::Null) => 10,
            Some(v) => match as_u64(v) {
                Some(n) => n as usize,
                None => return self.bad_request("limit must be a number"),
            },
        };
        if limit > 200 {
            return self.bad_request(&format!(
                "Limit of {limit} is greater than the maximum of 200 for this endpoint."
            ));
        }
        let after = match req.get("after") {
            None | Some(Value::Null) => 0,
            Some(v) => match as_u64(v) {
                Some(n) => n as usize,
                None => return self.bad_request("after must be a numeric offset"),
            },
        };
        if after + limit > 10_000 {
            return self.bad_request(
                "The search API is limited to 10000 total results for any given query. Narrow the query's filters to page further.",
            );
        }
        // filterGroups: OR of groups, AND within a group.
        let mut groups: Vec<Vec<Filter>> = Vec::new();
        if let Some(gs) = req.get("filterGroups").and_then(Value::as_array) {
            for g in gs {
                let mut fs = Vec::new();
                for f in g
                    .get("filters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match Filter::parse(f) {
                        Ok(f) => fs.push(f),
                        Err(m) => return self.bad_request(&m),
                    }
                }
                groups.push(fs);
            }
        }
        let mut sorts: Vec<(String, bool)> = Vec::new();
        for s in req
            .get("sorts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match s {
                Value::String(s) => match s.strip_prefix('-') {
                    Some(p) => sorts.push((p.to_string(), false)),
                    None => sorts.push((s.clone(), true)),
                },
                Value::Object(_) => {
                    let p = s.get("propertyName").and_then(Value::as_str).unwrap_or("");
                    let d = s
                        .get("direction")
                        .and_then(Value::as_str)
                        .unwrap_or("ASCENDING")
                        .to_ascii_uppercase();
                    sorts.push((p.to_string(), !d.starts_with("DESC")));
                }
                _ => return self.bad_request("sorts must be strings or objects"),
            }
        }
        for (p, _) in &sorts {
            if !matches!(
                p.as_str(),
                "hs_object_id" | "hs_lastmodifieddate" | "createdate" | "domain" | "name"
            ) {
                return self.bad_request(&format!("Sorting by {p} is not supported by this fake"));
            }
        }
        let requested: Option<Vec<String>> =
            req.get("properties").and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            });

        // What the (possibly lagging) search index sees.
        let now = Instant::now();
        self.search_lag.retain(|_, (_, until)| *until > now);
        let lagging: Vec<Company>;
        let indexed: &[Company] = if self.search_lag.is_empty() {
            &self.companies
        } else {
            lagging = self
                .companies
                .iter()
                .filter_map(|c| match self.search_lag.get(&c.id) {
                    None => Some(c.clone()),
                    Some((None, _)) => None,
                    Some((Some(seen), _)) => Some(Company {
                        modified: *seen,
                        ..c.clone()
                    }),
                })
                .collect();
            &lagging
        };
        let mut matched: Vec<&Company> = indexed
            .iter()
            .filter(|c| {
                let made = self.created.get(&c.id).copied().unwrap_or(c.modified);
                groups.is_empty() || groups.iter().any(|g| g.iter().all(|f| f.matches(c, made)))
            })
            .collect();
        let created = &self.created;
        matched.sort_by(|a, b| {
            for (p, asc) in &sorts {
                let o = match p.as_str() {
                    "hs_lastmodifieddate" => a.modified.cmp(&b.modified),
                    "createdate" => created.get(&a.id).cmp(&created.get(&b.id)),
                    "domain" => a.domain.cmp(&b.domain),
                    "name" => a.name.cmp(&b.name),
                    _ => id_num(a).cmp(&id_num(b)),
                };
                let o = if *asc { o } else { o.reverse() };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            id_num(a).cmp(&id_num(b))
        });
        let total = matched.len();
        let page: Vec<Value> = matched
            .iter()
            .skip(after)
            .take(limit)
            .map(|c| self.company_object(c, requested.as_deref()))
            .collect();
        let mut out = json!({"total": total, "results": page});
        if after + limit < total {
            let next = (after + limit).to_string();
            out["paging"] = json!({"next": {"after": next, "link": format!("?after={next}")}});
        }
        Reply::json(200, out)
    }

    fn list(&mut self, pairs: &[(String, String)]) -> Reply {
        let limit = pairs
            .iter()
            .find(|(k, _)| k == "limit")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(10)
            .clamp(1, 100);
        let after: u64 = pairs
            .iter()
            .find(|(k, _)| k == "after")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let requested = query_list(pairs, "properties");
        let mut all: Vec<&Company> = self
            .companies
            .iter()
            .filter(|c| id_num(c) >= after)
            .collect();
        all.sort_by_key(|c| id_num(c));
        let page: Vec<Value> = all
            .iter()
            .take(limit)
            .map(|c| self.company_object(c, requested.as_deref()))
            .collect();
        let mut out = json!({"results": page});
        if let Some(next) = all.get(limit) {
            let n = next.id.clone();
            out["paging"] = json!({"next": {
                "after": n,
                "link": format!("{}/crm/v3/objects/companies?limit={limit}&after={n}", self.url),
            }});
        }
        Reply::json(200, out)
    }

    fn get_company(&mut self, id: &str, pairs: &[(String, String)]) -> Reply {
        let Some(c) = self.companies.iter().find(|c| c.id == id) else {
            let corr = self.corr();
            return Reply::json(
                404,
                json!({
                    "status": "error",
                    "message": "Object not found.  objectId are usually numeric.",
                    "correlationId": corr,
                    "context": {"id": [id]},
                    "category": "OBJECT_NOT_FOUND",
                }),
            );
        };
        let requested = query_list(pairs, "properties");
        let mut v = self.company_object(c, requested.as_deref());
        let assoc = query_list(pairs, "associations").unwrap_or_default();
        if assoc.iter().any(|a| a == "contacts" || a == "contact") && !c.contacts.is_empty() {
            let results: Vec<Value> = c
                .contacts
                .iter()
                .map(|ct| json!({"id": ct.id, "type": "company_to_contact"}))
                .collect();
            v["associations"] = json!({"contacts": {"results": results}});
        }
        Reply::json(200, v)
    }

    fn batch_inputs(&mut self, body: &str) -> Result<(Vec<String>, Option<Vec<String>>), Reply> {
        let req: Value = serde_json::from_str(body)
            .map_err(|e| self.bad_request(&format!("Invalid input JSON: {e}")))?;
        let inputs: Vec<String> = req
            .get("inputs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| match i.get("id") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            })
            .collect();
        if inputs.len() > 100 {
            return Err(self.bad_request(&format!(
                "Batch input of {} is larger than the maximum of 100.",
                inputs.len()
            )));
        }
        let props = req.get("properties").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        });
        Ok((inputs, props))
    }

    fn batch_reply(&mut self, kind: &str, results: Vec<Value>, missing: Vec<String>) -> Reply {
        let now = ts(Utc::now());
        let mut out = json!({
            "status": "COMPLETE",
            "results": results,
            "startedAt": now,
            "completedAt": now,
        });
        if missing.is_empty() {
            return Reply::json(200, out);
        }
        out["numErrors"] = json!(1);
        out["errors"] = json!([{
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": format!("Could not get some {kind} objects, they may be deleted or not exist. Check that ids are valid."),
            "context": {"ids": missing},
        }]);
        Reply::json(207, out)
    }

    fn batch_read_companies(&mut self, body: &str) -> Reply {
        let (ids, props) = match self.batch_inputs(body) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for id in ids {
            match self.companies.iter().find(|c| c.id == id) {
                Some(c) => results.push(self.company_object(c, props.as_deref())),
                None => missing.push(id),
            }
        }
        self.batch_reply("COMPANY", results, missing)
    }

    fn batch_read_contacts(&mut self, body: &str) -> Reply {
        let (ids, props) = match self.batch_inputs(body) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for id in ids {
            let found = self.companies.iter().find_map(|c| {
                c.contacts
                    .iter()
                    .find(|ct| ct.id == id)
                    .map(|ct| (ct, c.modified))
            });
            match found {
                Some((ct, when)) => results.push(contact_object(ct, when, props.as_deref())),
                None => missing.push(id),
            }
        }
        self.batch_reply("CONTACT", results, missing)
    }
}

fn contact_object(ct: &Contact, when: DateTime<Utc>, requested: Option<&[String]>) -> Value {
    let defaults = [
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    ];
    let mut names: Vec<String> = defaults.iter().map(|s| s.to_string()).collect();
    for r in requested.unwrap_or(&[]) {
        if !names.contains(r) {
            names.push(r.clone());
        }
    }
    let mut props = Map::new();
    for n in names {
        let v = match n.as_str() {
            "hs_object_id" => Some(ct.id.clone()),
            "firstname" => Some(ct.firstname.clone()),
            "lastname" => Some(ct.lastname.clone()),
            "email" => Some(ct.email.clone()),
            "phone" => ct.phone.clone(),
            "jobtitle" => ct.jobtitle.clone(),
            "createdate" | "lastmodifieddate" => Some(ts(when)),
            _ => continue,
        };
        props.insert(n, v.map(Value::String).unwrap_or(Value::Null));
    }
    json!({
        "id": ct.id,
        "properties": props,
        "createdAt": ts(when),
        "updatedAt": ts(when),
        "archived": false,
    })
}

fn id_num(c: &Company) -> u64 {
    c.id.parse().unwrap_or(u64::MAX)
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Epoch milliseconds (number or digit string) or ISO 8601 (with or without time).
fn parse_millis(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<i64>() {
                return Some(n);
            }
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Some(t.timestamp_millis());
            }
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .map(|d| {
                    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
                        .timestamp_millis()
                })
        }
        _ => None,
    }
}

enum FilterValue {
    Millis(i64),
    Id(u64),
    Text(String),
}

struct Filter {
    property: String,
    operator: String,
    value: Option<FilterValue>,
}

impl Filter {
    fn parse(f: &Value) -> Result<Filter, String> {
        let property = f
            .get("propertyName")
            .and_then(Value::as_str)
            .ok_or("a filter needs a propertyName")?
            .to_string();
        let operator = f
            .get("operator")
            .and_then(Value::as_str)
            .ok_or("a filter needs an operator")?
            .to_ascii_uppercase();
        if !matches!(
            operator.as_str(),
            "EQ" | "NEQ" | "GT" | "GTE" | "LT" | "LTE" | "HAS_PROPERTY" | "NOT_HAS_PROPERTY"
        ) {
            return Err(format!("Operator {operator} is not supported by this fake"));
        }
        let raw = f.get("value");
        let value = match (property.as_str(), raw) {
            (_, None) if operator.ends_with("HAS_PROPERTY") => None,
            (_, None) => return Err(format!("filter on {property} needs a value")),
            ("hs_lastmodifieddate" | "createdate", Some(v)) => {
                Some(FilterValue::Millis(parse_millis(v).ok_or_else(|| {
                    format!("{v} is not a valid date for {property}")
                })?))
            }
            ("hs_object_id", Some(v)) => Some(FilterValue::Id(
                as_u64(v).ok_or_else(|| format!("{v} is not a valid object id"))?,
            )),
            (_, Some(Value::String(s))) => Some(FilterValue::Text(s.clone())),
            (_, Some(v)) => Some(FilterValue::Text(v.to_string())),
        };
        Ok(Filter {
            property,
            operator,
            value,
        })
    }

    fn matches(&self, c: &Company, created: DateTime<Utc>) -> bool {
        let text = |c: &Company| -> Option<String> {
            match self.property.as_str() {
                "domain" => Some(c.domain.clone()),
                "name" => Some(c.name.clone()),
                "industry" => c.industry.clone(),
                "country" => c.country.clone(),
                "numberofemployees" => c.employees.map(|e| e.to_string()),
                "hs_object_id" => Some(c.id.clone()),
                "hs_lastmodifieddate" => Some(ts(c.modified)),
                _ => None,
            }
        };
        match self.operator.as_str() {
            "HAS_PROPERTY" => return text(c).is_some(),
            "NOT_HAS_PROPERTY" => return text(c).is_none(),
            _ => {}
        }
        let ord = match &self.value {
            Some(FilterValue::Millis(m)) if self.property == "createdate" => {
                created.timestamp_millis().cmp(m)
            }
            Some(FilterValue::Millis(m)) => c.modified.timestamp_millis().cmp(m),
            Some(FilterValue::Id(n)) => id_num(c).cmp(n),
            Some(FilterValue::Text(s)) => match text(c) {
                // HubSpot compares text case-insensitively.
                Some(t) => t.to_lowercase().cmp(&s.to_lowercase()),
                None => return self.operator == "NEQ",
            },
            None => return false,
        };
        use std::cmp::Ordering::*;
        match self.operator.as_str() {
            "EQ" => ord == Equal,
            "NEQ" => ord != Equal,
            "GT" => ord == Greater,
            "GTE" => ord != Less,
            "LT" => ord == Less,
            "LTE" => ord != Greater,
            _ => false,
        }
    }
}
