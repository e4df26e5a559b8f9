//! The admin server of a real daemon: authentication on every route, tenant isolation, the
//! per-tenant rolling rate limit, and the page in a real headless browser.

use crate::fake_distributor::{FakeDistributor, Reply};
use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const OPERATOR: &str = "operator-token-0123456789abcdef";

struct Admin {
    env: TestEnv,
    base: String,
    _daemon: Daemon,
    http: reqwest::Client,
}

/// A daemon with two tenants (acme, bravo) of one feed each, its admin server on a known
/// port and the operator token in the environment.
async fn start(extra_config: &str) -> (Admin, FakeDistributor) {
    let fake = FakeDistributor::start(Reply::status(401)).await;
    let port = free_port();
    let env = TestEnv::sqlite().with_config(&format!(
        "[admin]\nbind = \"127.0.0.1:{port}\"\ntoken_env = \"TEST_ADMIN_TOKEN\"\n{extra_config}"
    ));
    for tenant in ["acme", "bravo"] {
        let feed = env.http_feed("prices", &fake.url(&format!("/{tenant}.csv")));
        env.write_catalog(tenant, &format!("tenant = \"{tenant}\"\n{feed}"));
    }
    let daemon = env.spawn_with_env(&[("TEST_ADMIN_TOKEN", OPERATOR)]);
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
        for token in [
            None,
            Some("wrong-token-wrong-token"),
            Some("syncd_00000000_nope"),
        ] {
            let resp = admin.call(method, &path, token, body.clone()).await;
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}"
            );
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["code"], "unauthorized", "{method} {path}");
        }
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
    let api: Value = admin
        .call("GET", "/api/status", Some(OPERATOR), None)
        .await
        .json()
        .await
        .unwrap();
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
    let issues: Value = admin
        .call("GET", "/api/issues", Some(&acme), None)
        .await
        .json()
        .await
        .unwrap();
    let tenants: Vec<&str> = issues
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, vec!["acme"]);
    let status: Value = admin
        .call("GET", "/api/status", Some(&acme), None)
        .await
        .json()
        .await
        .unwrap();
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
    let issues: Value = admin
        .call("GET", "/api/issues", Some(OPERATOR), None)
        .await
        .json()
        .await
        .unwrap();
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

    let mut browser = crate::cdp::Browser::launch(&chromium).await;
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
