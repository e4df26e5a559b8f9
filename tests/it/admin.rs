//! The admin server of a real daemon: authentication on every route, tenant isolation, the
//! per-tenant rolling rate limit, the webhook operations, and the page in a real headless
//! browser.

use crate::support::fake_distributor::{FakeDistributor, Reply};
use crate::support::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OPERATOR: &str = "operator-token-0123456789abcdef";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Admin {
    env: TestEnv,
    base: String,
    _daemon: Daemon,
    http: reqwest::Client,
}

/// A daemon with two tenants (acme, bravo) of one feed each, its admin server on a known
/// port and the operator token in the environment.
async fn start(extra_config: &str) -> (Admin, FakeDistributor) {
    start_with(extra_config, |_| String::new()).await
}

/// As [`start`], with `more(tenant)` appended to each tenant's catalog.
async fn start_with(extra_config: &str, more: impl Fn(&str) -> String) -> (Admin, FakeDistributor) {
    let fake = FakeDistributor::start(Reply::status(401)).await;
    let port = free_port();
    let env = TestEnv::sqlite().with_config(&format!(
        "[admin]\nbind = \"127.0.0.1:{port}\"\ntoken_env = \"TEST_ADMIN_TOKEN\"\n{extra_config}"
    ));
    for tenant in ["acme", "bravo"] {
        let feed = env.http_feed("prices", &fake.url(&format!("/{tenant}.csv")));
        let more = more(tenant);
        // Each tenant names its own variables.
        let text = format!("tenant = \"{tenant}\"\n{feed}\n{more}")
            .replace("ACME_", &format!("{}_", tenant.to_uppercase()));
        env.write_catalog(tenant, &text);
    }
    let daemon = env.spawn_with_env(&[
        ("TEST_ADMIN_TOKEN", OPERATOR),
        ("ACME_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("BRAVO_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ]);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(20), "the admin server", || {
        let (http, url) = (http.clone(), format!("{base}/healthz"));
        async move {
            http.get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        }
    })
    .await;
    (
        Admin {
            env,
            base,
            _daemon: daemon,
            http,
        },
        fake,
    )
}

impl Admin {
    /// A client that does not follow redirects, as a page test needs to see them.
    fn page_client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// The login form as a browser gets it: its CSRF cookie (`name=value`) and hidden field.
    async fn login_form(&self) -> (String, String) {
        let resp = Self::page_client()
            .get(format!("{}/", self.base))
            .send()
            .await
            .unwrap();
        let cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("syncd_login="))
            .and_then(|v| v.split(';').next())
            .expect("the login page sets its CSRF cookie")
            .to_string();
        let html = resp.text().await.unwrap();
        let field = "name=\"csrf\" value=\"";
        let at = html.find(field).expect("a csrf field") + field.len();
        let csrf = html[at..].split('"').next().unwrap().to_string();
        (cookie, csrf)
    }

    /// Logs in with `token` as the page's form does; the answer, not followed.
    async fn login(&self, token: &str) -> reqwest::Response {
        let (cookie, csrf) = self.login_form().await;
        Self::page_client()
            .post(format!("{}/login", self.base))
            .header("cookie", cookie)
            .form(&[("token", token), ("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap()
    }

    fn token(&self, tenant: Option<&str>) -> String {
        let mut args = vec!["tokens", "create", "--name", "test"];
        if let Some(t) = tenant {
            args.extend(["--tenant", t]);
        }
        let out = self.env.run(&args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    /// No token, a wrong one and an unknown stored one: 401 with the JSON error each time.
    async fn assert_unauthorized(&self, method: &str, path: &str, body: Option<Value>) {
        for token in [
            None,
            Some("wrong-token-wrong-token"),
            Some("syncd_00000000_nope"),
        ] {
            let resp = self.call(method, path, token, body.clone()).await;
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}"
            );
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["code"], "unauthorized", "{method} {path}");
        }
    }

    /// `GET path` with `token`, the body as JSON.
    async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        self.call("GET", path, token, None)
            .await
            .json()
            .await
            .unwrap()
    }
}

fn routes(target: &str) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", "/readyz".into(), None),
        ("GET", "/api/issues".into(), None),
        ("GET", "/api/status".into(), None),
        (
            "POST",
            "/api/refetch".into(),
            Some(json!({ "target": target })),
        ),
        (
            "POST",
            "/api/test-connection".into(),
            Some(json!({ "target": target })),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_needs_a_valid_token_and_answers_json_with_one() {
    let (admin, _fake) = start("").await;
    for (method, path, body) in routes("acme/prices") {
        admin.assert_unauthorized(method, &path, body.clone()).await;
        let resp = admin
            .call(method, &path, Some(OPERATOR), body.clone())
            .await;
        assert!(
            resp.status().is_success(),
            "{method} {path}: {}",
            resp.status()
        );
        let v: Value = resp.json().await.unwrap();
        assert!(v.is_object() || v.is_array(), "{method} {path}: {v}");
    }
    // /healthz needs nothing.
    assert_eq!(
        admin.call("GET", "/healthz", None, None).await.status(),
        200
    );

    // /metrics: a token, then Prometheus text that promtool accepts (a live scrape).
    assert_eq!(
        admin.call("GET", "/metrics", None, None).await.status(),
        401
    );
    let scrape = admin.call("GET", "/metrics", Some(OPERATOR), None).await;
    assert_eq!(scrape.status(), 200);
    assert!(
        scrape.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = scrape.text().await.unwrap();
    assert!(text.contains("syncd_build_info"), "{text}");
    assert!(!text.contains(OPERATOR));
    promtool_check(&text);
    let tenant = admin.token(Some("acme"));
    assert_eq!(
        admin
            .call("GET", "/metrics", Some(&tenant), None)
            .await
            .status(),
        404
    );

    // The same data and shapes as the CLI.
    let api: Value = admin.get_json("/api/status", Some(OPERATOR)).await;
    let cli = admin.env.json(&["status", "--json"]);
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s["tenant"].as_str().unwrap(),
                    s["integration"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(names(&api), names(&cli));
    assert_eq!(
        api[0].as_object().unwrap().keys().collect::<Vec<_>>(),
        cli[0].as_object().unwrap().keys().collect::<Vec<_>>()
    );

    let test: Value = admin
        .call(
            "POST",
            "/api/test-connection",
            Some(OPERATOR),
            Some(json!({"target": "acme/prices"})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(test["verdict"], "credentials_rejected", "{test}");
    assert_eq!(test["ok"], false);

    // A revoked token stops working at once.
    let token = admin.token(None);
    assert_eq!(
        admin
            .call("GET", "/api/issues", Some(&token), None)
            .await
            .status(),
        200
    );
    let id = token.split('_').nth(1).unwrap();
    assert!(admin.env.run(&["tokens", "revoke", id]).status.success());
    assert_eq!(
        admin
            .call("GET", "/api/issues", Some(&token), None)
            .await
            .status(),
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_token_gets_404_for_everything_of_another_tenant() {
    let (admin, _fake) = start("").await;
    // Both tenants' feeds answer 401: each gets a credentials_rejected issue.
    eventually(Duration::from_secs(30), "issues for both tenants", || {
        let n = admin.env.issues(false).len();
        async move { (n == 2).then_some(()) }
    })
    .await;
    let acme = admin.token(Some("acme"));

    for (method, path, body) in routes("bravo/prices") {
        if path == "/readyz" {
            continue;
        }
        let path = if method == "GET" {
            format!("{path}?tenant=bravo")
        } else {
            path
        };
        let resp = admin.call(method, &path, Some(&acme), body).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "not_found");
        assert!(
            !v.to_string().contains("bravo/prices\","),
            "no data of bravo: {v}"
        );
    }
    // Without a filter a tenant sees its own, and only its own.
    let issues: Value = admin.get_json("/api/issues", Some(&acme)).await;
    let tenants: Vec<&str> = issues
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, vec!["acme"]);
    let status: Value = admin.get_json("/api/status", Some(&acme)).await;
    assert_eq!(status.as_array().unwrap().len(), 1);
    assert_eq!(status[0]["tenant"], "acme");
    // Its own actions work.
    let resp = admin
        .call(
            "POST",
            "/api/refetch",
            Some(&acme),
            Some(json!({"target": "acme/prices"})),
        )
        .await;
    assert!(resp.status().is_success(), "{}", resp.status());
    // The operator sees both.
    let issues: Value = admin.get_json("/api/issues", Some(OPERATOR)).await;
    assert_eq!(issues.as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_rolling_window_gets_429_until_retry_after_and_others_are_unaffected() {
    let (admin, _fake) = start("rate_limit = 5\nrate_window = \"4s\"\n").await;
    let acme = admin.token(Some("acme"));
    let bravo = admin.token(Some("bravo"));
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let resp = admin.call("GET", "/api/issues", Some(&acme), None).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-ratelimit-limit"], "5");
        remaining.push(
            resp.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(remaining, ["4", "3", "2", "1", "0"]);
    let refused = admin.call("GET", "/api/issues", Some(&acme), None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=4).contains(&retry_after), "Retry-After {retry_after}");
    let v: Value = refused.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    assert!(v["error"]["message"].as_str().unwrap().contains("retry in"));

    // Another tenant has a window of its own.
    let other = admin.call("GET", "/api/issues", Some(&bravo), None).await;
    assert_eq!(other.status(), 200);
    assert_eq!(other.headers()["x-ratelimit-remaining"], "4");

    // Honouring Retry-After lets the next request through.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let again = admin.call("GET", "/api/issues", Some(&acme), None).await;
    assert_eq!(again.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_in_a_real_browser_logs_in_shows_the_issue_and_queues_a_refetch() {
    let Some(chromium) = browser() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have chromium (.ci/run installs it)"
        );
        eprintln!("skipping: no chromium here (apt-get install chromium)");
        return;
    };
    let (admin, _fake) = start("").await;
    wait_for_issue(
        &admin.env,
        "prices",
        "credentials_rejected",
        Duration::from_secs(30),
    )
    .await;
    let token = admin.token(Some("acme"));

    let mut browser = crate::support::cdp::Browser::launch(&chromium).await;
    let page = &mut browser.page;
    page.navigate(&format!("{}/", admin.base)).await;
    page.wait_for_text("Admin token").await;
    page.eval(&format!(
        "document.querySelector('#token').value = {}; document.querySelector('form.login button').click(); true",
        json!(token)
    ))
    .await;
    let text = page.wait_for_text("Open issues (1)").await;
    assert!(text.contains("credentials_rejected"), "{text}");
    assert!(text.contains("acme/prices"));
    assert!(
        !text.contains("bravo"),
        "a tenant's page shows only its tenant"
    );
    page.eval(
        "document.querySelector('form[action=\"/ui/refetch\"] input[value=\"acme/prices\"]').form.querySelector('button').click(); true",
    )
    .await;
    let text = page.wait_for_text("Re-fetch of acme/prices").await;
    // SYNCD_SCREENSHOT=page.b64 keeps a picture of the page (base64 PNG) to look at.
    if let Some(path) = std::env::var_os("SYNCD_SCREENSHOT") {
        std::fs::write(path, page.screenshot_base64().await).unwrap();
    }
    assert!(
        text.contains("queued"),
        "the page says the re-fetch is queued: {text}"
    );
}

/// A webhook receiver on loopback for both tenants (`/acme`, `/bravo`): answers a scripted
/// status per path, then 200, and keeps the `webhook-id` of every request per path.
#[derive(Clone, Default)]
struct Hooks {
    base: String,
    inner: Arc<Mutex<HooksInner>>,
}

#[derive(Default)]
struct HooksInner {
    script: HashMap<String, VecDeque<u16>>,
    got: HashMap<String, Vec<String>>,
}

impl Hooks {
    async fn start() -> Hooks {
        let inner: Arc<Mutex<HooksInner>> = Arc::default();
        let state = inner.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
                let state = state.clone();
                async move {
                    let path = uri.path().to_string();
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let mut i = state.lock().unwrap();
                    let status = i
                        .script
                        .get_mut(&path)
                        .and_then(VecDeque::pop_front)
                        .unwrap_or(200);
                    i.got.entry(path).or_default().push(id);
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Hooks { base, inner }
    }

    fn answer(&self, path: &str, statuses: &[u16]) {
        let mut i = self.inner.lock().unwrap();
        i.script
            .entry(path.into())
            .or_default()
            .extend(statuses.iter().copied());
    }

    /// The `webhook-id`s received on `path`, in order.
    fn got(&self, path: &str) -> Vec<String> {
        let i = self.inner.lock().unwrap();
        i.got.get(path).cloned().unwrap_or_default()
    }

    async fn wait_for(&self, path: &str, n: usize) -> Vec<String> {
        eventually(
            Duration::from_secs(20),
            &format!("{n} requests on {path}"),
            || {
                let got = self.got(path);
                async move { (got.len() >= n).then_some(got) }
            },
        )
        .await
    }
}

/// Webhook delivery settings fast enough for a test; loopback allowed explicitly.
const WEBHOOKS: &str = r#"
[webhooks]
retry_schedule = ["0s", "1s", "3s"]
jitter = 0.0
allow_cidrs = ["127.0.0.0/8"]
dispatch_interval = "100ms"
"#;

/// The webhook world of the tests below: acme's endpoint `erp` took its delivery; bravo's
/// answered 410, so bravo/erp is disabled and its delivery is held.
struct WebhookWorld {
    admin: Admin,
    _fake: FakeDistributor,
    hooks: Hooks,
    acme_delivery: String,
    bravo_delivery: String,
}

async fn start_webhooks() -> WebhookWorld {
    start_webhooks_with("").await
}

/// The same world, with `admin` settings (keys of `[admin]`) added.
async fn start_webhooks_with(admin_settings: &str) -> WebhookWorld {
    let hooks = Hooks::start().await;
    hooks.answer("/bravo", &[410]);
    let base = hooks.base.clone();
    let (admin, fake) = start_with(&format!("{admin_settings}{WEBHOOKS}"), |tenant| {
        format!(
            "[[webhook]]\nname = \"erp\"\nurl = \"{base}/{tenant}\"\nevents = [\"*\"]\nsecret_env = \"ACME_WEBHOOK_SECRET\"\n"
        )
    })
    .await;
    // One price change per tenant, written the way an import writes its outbox.
    let store = admin.env.store().await;
    for tenant in ["acme", "bravo"] {
        syncd::store::db::query(
            "INSERT INTO price_changes (tenant, feed, run, sku, change, old_price, new_price, old_stock, new_stock, recorded_at)
             VALUES (?, 'prices', 'run-1', 'A-1', 'changed', '1.00', '2.00', 1, 1, ?)",
        )
        .bind(tenant)
        .bind(chrono::Utc::now())
        .execute(store.db())
        .await
        .unwrap();
    }
    store.close().await;
    let env = &admin.env;
    let acme_delivery = eventually(Duration::from_secs(20), "acme's delivery", || {
        let d = endpoint_deliveries(env, "acme/erp");
        async move {
            d.first()
                .filter(|d| d["status"] == "delivered")
                .map(|d| d["id"].as_str().unwrap().to_string())
        }
    })
    .await;
    let bravo_delivery = eventually(
        Duration::from_secs(20),
        "bravo's delivery held at a disabled endpoint",
        || {
            let d = endpoint_deliveries(env, "bravo/erp");
            let disabled = env
                .issues(false)
                .iter()
                .any(|i| i["tenant"] == "bravo" && i["kind"] == "endpoint_disabled");
            async move {
                d.first()
                    .filter(|d| d["status"] == "held" && disabled)
                    .map(|d| d["id"].as_str().unwrap().to_string())
            }
        },
    )
    .await;
    WebhookWorld {
        admin,
        _fake: fake,
        hooks,
        acme_delivery,
        bravo_delivery,
    }
}

/// `syncd deliveries --json --endpoint T/E`.
fn endpoint_deliveries(env: &TestEnv, target: &str) -> Vec<Value> {
    env.json(&["deliveries", "--json", "--endpoint", target])
        .as_array()
        .unwrap()
        .clone()
}

fn webhook_routes(delivery: &str, target: &str) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", format!("/api/deliveries?endpoint={target}"), None),
        (
            "POST",
            "/api/redeliver".into(),
            Some(json!({ "delivery": delivery })),
        ),
        (
            "POST",
            "/api/replay".into(),
            Some(json!({ "target": target, "since": "2h" })),
        ),
        (
            "POST",
            "/api/endpoint/enable".into(),
            Some(json!({ "target": target })),
        ),
    ]
}

async fn endpoint_disabled(env: &TestEnv, tenant: &str) -> bool {
    let store = env.store().await;
    let disabled = store.endpoint_disabled(tenant, "erp").await.unwrap();
    store.close().await;
    disabled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_routes_need_a_valid_token_and_do_what_the_cli_does_for_the_operator() {
    let w = start_webhooks().await;
    let (admin, hooks) = (&w.admin, &w.hooks);
    let before = admin.env.json(&["deliveries", "--json"]);

    for (method, path, body) in webhook_routes(&w.bravo_delivery, "bravo/erp") {
        admin.assert_unauthorized(method, &path, body.clone()).await;
    }
    // Refused requests changed nothing: no redelivery, no replay, still disabled.
    assert_eq!(admin.env.json(&["deliveries", "--json"]), before);
    assert!(endpoint_disabled(&admin.env, "bravo").await);

    // GET /api/deliveries answers what `syncd deliveries --json` prints, filters included.
    for (query, args) in [
        ("", &[][..]),
        ("?endpoint=bravo/erp", &["--endpoint", "bravo/erp"][..]),
        ("?failed=true", &["--failed"][..]),
        ("?limit=1", &["--limit", "1"][..]),
    ] {
        // With the receivers' answers only when asked for.
        let with_bodies = format!(
            "/api/deliveries{query}{}bodies=true",
            if query.is_empty() { "?" } else { "&" }
        );
        let resp = admin.call("GET", &with_bodies, Some(OPERATOR), None).await;
        assert_eq!(resp.status(), 200, "{query}");
        let api: Value = resp.json().await.unwrap();
        let mut cli_args = vec!["deliveries", "--json"];
        cli_args.extend_from_slice(args);
        let mut cli = admin.env.json(&cli_args);
        assert_eq!(api, cli, "{query}");
        let lean: Value = admin
            .get_json(&format!("/api/deliveries{query}"), Some(OPERATOR))
            .await;
        for d in cli.as_array_mut().unwrap() {
            for a in d["attempt_log"].as_array_mut().unwrap() {
                a["response_body"] = Value::Null;
            }
        }
        assert_eq!(lean, cli, "{query}: the same, bodies left out");
    }
    let all: Value = admin.get_json("/api/deliveries", Some(OPERATOR)).await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    assert_eq!(all[0]["attempt_log"].as_array().unwrap().len(), 1);

    // Replay: a disabled endpoint is a conflict, a bad `since` a bad request, an unknown
    // endpoint 404 — each a JSON error, none changing anything.
    for (body, status, code) in [
        (
            json!({"target": "bravo/erp", "since": "2h"}),
            StatusCode::CONFLICT,
            "endpoint_disabled",
        ),
        (
            json!({"target": "acme/erp", "since": "yesterday"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({"target": "acme/nope", "since": "2h"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"target": "acme", "since": "2h"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ] {
        let resp = admin
            .call("POST", "/api/replay", Some(OPERATOR), Some(body.clone()))
            .await;
        assert_eq!(resp.status(), status, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
        assert!(v["error"]["message"].is_string());
    }
    let resp = admin
        .call(
            "POST",
            "/api/replay",
            Some(OPERATOR),
            Some(json!({"target": "acme/erp", "since": "yesterday"})),
        )
        .await;
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("RFC 3339"),
        "the error says what a `since` is: {v}"
    );
    assert_eq!(admin.env.json(&["deliveries", "--json"]), before);

    // Enabling bravo/erp releases its held delivery, which the receiver then gets.
    let resp = admin
        .call(
            "POST",
            "/api/endpoint/enable",
            Some(OPERATOR),
            Some(json!({"target": "bravo/erp"})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"target": "bravo/erp", "was_disabled": true, "released": 1})
    );
    let got = hooks.wait_for("/bravo", 2).await;
    assert_eq!(
        got[1], w.bravo_delivery,
        "the held delivery, same webhook-id"
    );
    assert!(!endpoint_disabled(&admin.env, "bravo").await);
    assert!(
        !admin
            .env
            .issues(false)
            .iter()
            .any(|i| i["kind"] == "endpoint_disabled"),
        "enabling resolves the endpoint_disabled issue"
    );

    // Redeliver: due now, sent again with the same webhook-id as a manual attempt.
    let resp = admin
        .call(
            "POST",
            "/api/redeliver",
            Some(OPERATOR),
            Some(json!({"delivery": w.acme_delivery})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["delivery"], w.acme_delivery.as_str());
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["endpoint"], "erp");
    assert_eq!(v["previous_status"], "delivered");
    assert_eq!(v["status"], "pending");
    let got = hooks.wait_for("/acme", 2).await;
    assert_eq!(got[1], w.acme_delivery);
    eventually(
        Duration::from_secs(20),
        "the manual attempt in the log",
        || {
            let d = endpoint_deliveries(&admin.env, "acme/erp");
            let id = w.acme_delivery.clone();
            async move {
                let log = d.iter().find(|d| d["id"] == id.as_str())?["attempt_log"]
                    .as_array()?
                    .clone();
                (log.len() == 2 && log[1]["manual"] == true).then_some(())
            }
        },
    )
    .await;
    let resp = admin
        .call(
            "POST",
            "/api/redeliver",
            Some(OPERATOR),
            Some(json!({"delivery": "msg_nope"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Replay: the window's event again, as a new delivery.
    let resp = admin
        .call(
            "POST",
            "/api/replay",
            Some(OPERATOR),
            Some(json!({"target": "acme/erp", "since": "1h"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["target"], "acme/erp");
    assert_eq!(v["events"], 1, "{v}");
    let new_id = v["deliveries"][0].as_str().unwrap().to_string();
    assert_ne!(new_id, w.acme_delivery);
    let got = hooks.wait_for("/acme", 3).await;
    assert_eq!(got[2], new_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_token_gets_404_for_another_tenants_deliveries_and_endpoints_and_nothing_changes()
{
    let w = start_webhooks().await;
    let admin = &w.admin;
    let acme = admin.token(Some("acme"));
    let bravo_before = endpoint_deliveries(&admin.env, "bravo/erp");
    assert_eq!(bravo_before.len(), 1);

    let mut refused = webhook_routes(&w.bravo_delivery, "bravo/erp");
    refused.push(("GET", "/api/deliveries?tenant=bravo".into(), None));
    refused.push((
        "POST",
        "/api/replay".into(),
        Some(json!({"target": "bravo/erp", "since": "not-a-time"})),
    ));
    for (method, path, body) in refused {
        let resp = admin.call(method, &path, Some(&acme), body.clone()).await;
        assert_eq!(
            resp.status(),
            StatusCode::NOT_FOUND,
            "{method} {path} {body:?}"
        );
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "not_found", "{method} {path}: {v}");
        let text = v.to_string();
        assert!(
            !text.contains("held") && !text.contains("disabled"),
            "nothing of bravo's state: {text}"
        );
    }
    // Another tenant's delivery looks exactly like an unknown one.
    let unknown: Value = admin
        .call(
            "POST",
            "/api/redeliver",
            Some(&acme),
            Some(json!({"delivery": "msg_nope"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let other: Value = admin
        .call(
            "POST",
            "/api/redeliver",
            Some(&acme),
            Some(json!({"delivery": w.bravo_delivery})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        other["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&w.bravo_delivery, "ID"),
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .replace("msg_nope", "ID")
    );

    // Nothing of bravo changed: not redelivered, nothing replayed, still disabled.
    assert_eq!(endpoint_deliveries(&admin.env, "bravo/erp"), bravo_before);
    assert_eq!(bravo_before[0]["manual"], false);
    assert!(endpoint_disabled(&admin.env, "bravo").await);
    assert!(
        admin
            .env
            .issues(false)
            .iter()
            .any(|i| i["tenant"] == "bravo" && i["kind"] == "endpoint_disabled"),
        "bravo's endpoint_disabled issue is still open"
    );
    assert_eq!(
        w.hooks.got("/bravo").len(),
        1,
        "bravo got only the 410'd request"
    );

    // Its own deliveries, and only those, without a filter.
    let own: Value = admin.get_json("/api/deliveries", Some(&acme)).await;
    let ids: Vec<&str> = own
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [w.acme_delivery.as_str()]);
    let filtered: Value = admin
        .get_json("/api/deliveries?endpoint=acme/erp", Some(&acme))
        .await;
    assert_eq!(filtered, own);

    // Its own actions work.
    let resp = admin
        .call(
            "POST",
            "/api/redeliver",
            Some(&acme),
            Some(json!({"delivery": w.acme_delivery})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    w.hooks.wait_for("/acme", 2).await;
    let resp = admin
        .call(
            "POST",
            "/api/endpoint/enable",
            Some(&acme),
            Some(json!({"target": "acme/erp"})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["was_disabled"], false);
    let resp = admin
        .call(
            "POST",
            "/api/replay",
            Some(&acme),
            Some(json!({"target": "acme/erp", "since": "1h"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    // The operator sees both tenants' deliveries.
    let all: Value = admin.get_json("/api/deliveries", Some(OPERATOR)).await;
    let tenants: BTreeSet<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, BTreeSet::from(["acme", "bravo"]));
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == w.bravo_delivery.as_str())
    );
}

/// `promtool check metrics` on a scrape; CI installs promtool (.ci/run), elsewhere it may be
/// missing and the check is skipped with a note.
fn promtool_check(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        assert!(std::env::var_os("CI").is_none(), "CI must have promtool");
        eprintln!("skipping promtool: not installed (apt-get install prometheus)");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn browser() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new("which")
                .arg(b)
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_leaves_receivers_answers_out_unless_asked_and_caps_a_replay() {
    let w = start_webhooks_with("replay_max_events = 0\n").await;
    let admin = &w.admin;
    let lean: Value = admin
        .get_json("/api/deliveries?endpoint=acme/erp", Some(OPERATOR))
        .await;
    let full: Value = admin
        .get_json(
            "/api/deliveries?endpoint=acme/erp&bodies=true",
            Some(OPERATOR),
        )
        .await;
    assert!(
        full[0]["attempt_log"][0]["response_body"].is_string(),
        "{full}"
    );
    assert!(
        lean[0]["attempt_log"][0]["response_body"].is_null(),
        "{lean}"
    );
    assert_eq!(lean[0]["id"], full[0]["id"]);

    // The window holds acme's one event: more than this API's cap of zero a call.
    let before = admin.env.json(&["deliveries", "--json"]);
    let resp = admin
        .call(
            "POST",
            "/api/replay",
            Some(OPERATOR),
            Some(json!({"target": "acme/erp", "since": "2h"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("replay_max_events"), "{message}");
    assert_eq!(
        admin.env.json(&["deliveries", "--json"]),
        before,
        "nothing queued"
    );
    // The operator's CLI has no cap.
    let out = admin.env.run(&["replay", "acme/erp", "--since", "2h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_token_reads_the_metrics_and_nothing_else() {
    let (admin, _fake) = start("").await;
    let out = admin.env.run(&[
        "tokens",
        "create",
        "--name",
        "prometheus",
        "--scope",
        "metrics",
    ]);
    assert!(out.status.success(), "{out:?}");
    let metrics = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let listed = admin.env.json(&["tokens", "list", "--json"]);
    assert_eq!(listed[0]["scope"], "metrics", "{listed}");
    assert!(listed[0]["tenant"].is_null());

    let resp = admin.call("GET", "/metrics", Some(&metrics), None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("syncd_build_info"));
    // Nothing it could read tenants' data or act with.
    for (method, path, body) in [
        ("GET", "/api/status", None),
        ("GET", "/api/issues", None),
        ("GET", "/api/deliveries", None),
        (
            "POST",
            "/api/refetch",
            Some(json!({"target": "acme/prices"})),
        ),
    ] {
        let resp = admin.call(method, path, Some(&metrics), body).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "forbidden");
    }
    // Nor the page.
    let resp = admin.login(&metrics).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // A tenant token cannot also be a metrics token.
    let out = admin.env.run(&[
        "tokens", "create", "--name", "x", "--tenant", "acme", "--scope", "metrics",
    ]);
    assert!(!out.status.success());
}

/// The session cookie a login answer sets (`syncd_session=…`), and its attributes.
fn session_cookie(resp: &reqwest::Response) -> (String, String) {
    let set = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("syncd_session="))
        .unwrap_or_else(|| panic!("no session cookie: {resp:?}"))
        .to_string();
    let pair = set.split(';').next().unwrap().to_string();
    (pair, set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_session_is_an_opaque_id_that_logout_revocation_and_time_end() {
    let (admin, _fake) = start("session_ttl = \"3s\"\n").await;
    let page = |cookie: String| {
        let base = admin.base.clone();
        async move {
            Admin::page_client()
                .get(format!("{base}/"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
        }
    };
    let is_dashboard = |html: &str| html.contains("Log out");

    // A login form without its CSRF value (another site's form) is refused.
    let resp = Admin::page_client()
        .post(format!("{}/login", admin.base))
        .form(&[("token", OPERATOR)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    let resp = admin.login(OPERATOR).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (cookie, attributes) = session_cookie(&resp);
    assert!(!cookie.contains(OPERATOR), "the cookie is not the token");
    for attr in ["HttpOnly", "SameSite=Strict", "Max-Age=3"] {
        assert!(attributes.contains(attr), "{attributes}");
    }
    assert!(
        !attributes.contains("Secure"),
        "only with [admin] cookie_secure"
    );
    let resp = page(cookie.clone()).await;
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(is_dashboard(&resp.text().await.unwrap()));

    // Status text comes from the server only, never from the URL.
    let resp = Admin::page_client()
        .get(format!("{}/?msg=%3Cb%3Eforged%3C/b%3E", admin.base))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    assert!(!resp.text().await.unwrap().contains("forged"));

    // Logging out ends the session, not just the cookie.
    let resp = Admin::page_client()
        .post(format!("{}/logout", admin.base))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(!is_dashboard(&page(cookie).await.text().await.unwrap()));

    // Revoking the token that opened a session ends it.
    let tenant = admin.token(Some("acme"));
    let (cookie, _) = session_cookie(&admin.login(&tenant).await);
    assert!(is_dashboard(
        &page(cookie.clone()).await.text().await.unwrap()
    ));
    let id = tenant.split('_').nth(1).unwrap();
    assert!(admin.env.run(&["tokens", "revoke", id]).status.success());
    assert!(!is_dashboard(&page(cookie).await.text().await.unwrap()));

    // And time does: session_ttl is 3 s here.
    let (cookie, _) = session_cookie(&admin.login(OPERATOR).await);
    assert!(is_dashboard(
        &page(cookie.clone()).await.text().await.unwrap()
    ));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(!is_dashboard(&page(cookie).await.text().await.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_and_bad_tokens_from_one_address_are_limited_and_logged_without_them() {
    let (admin, _fake) = start("auth_failures = 3\ncookie_secure = true\n").await;
    let (_, attributes) = session_cookie(&admin.login(OPERATOR).await);
    assert!(
        attributes.contains("; Secure"),
        "[admin] cookie_secure: {attributes}"
    );
    let guesses = ["guess-one-guess-one", "guess-two-guess-two"];
    for g in guesses {
        assert_eq!(admin.login(g).await.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = admin
        .call("GET", "/api/status", Some("guess-three-guess"), None)
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Three refused: this address is now turned away, whatever it sends.
    assert_eq!(
        admin.login(OPERATOR).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let resp = admin.call("GET", "/api/status", Some(OPERATOR), None).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "too_many_failures");
    let log = admin._daemon.log();
    assert!(log.contains("refused an admin token"), "{log}");
    for g in guesses {
        assert!(!log.contains(g), "a guess is never logged");
    }
}
