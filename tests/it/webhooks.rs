//! Webhook delivery as a tenant's receiver sees it: signed (checked with the published
//! `standardwebhooks` verifier, not our signing code), retried on the schedule, never lost
//! across a SIGKILL, refused towards internal addresses, replayable.
//!
//! Events come from change records inserted the way feed and CRM imports write them (the
//! outbox tables); one test drives a real feed import end to end.

use crate::support::fake_distributor::{FakeDistributor, Reply as FeedReply};
use crate::support::helpers::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::Value;
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The endpoint's current signing secret (test value).
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub(crate) fn other_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([42u8; 32])
    )
}

/// Fast, deterministic delivery settings; loopback allowed explicitly.
pub(crate) const FAST: &str = r#"
[webhooks]
retry_schedule = ["0s", "1s", "3s", "6s"]
jitter = 0.0
allow_cidrs = ["127.0.0.0/8"]
dispatch_interval = "100ms"
failing_after = 3
timeout = "5s"
"#;

/// One scripted answer of the receiver.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    delay: Duration,
}

impl Answer {
    fn status(status: u16) -> Self {
        Answer {
            status,
            headers: vec![],
            delay: Duration::ZERO,
        }
    }
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
    fn hang(delay: Duration) -> Self {
        Answer {
            delay,
            ..Answer::status(200)
        }
    }
}

/// A request as the receiver saw it.
#[derive(Clone, Debug)]
pub(crate) struct Got {
    pub(crate) at: Instant,
    pub(crate) path: String,
    pub(crate) id: String,
    pub(crate) signature: String,
    pub(crate) body: Value,
    /// Which of the receiver's secrets verified it (standardwebhooks).
    pub(crate) verified: Vec<bool>,
    /// The status it answered.
    pub(crate) answered: u16,
}

impl Got {
    pub(crate) fn event_id(&self) -> String {
        self.body["data"]["event_id"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
    fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Answer>,
    fallback: Option<Answer>,
    got: Vec<Got>,
    secrets: Vec<String>,
    in_flight: usize,
    max_in_flight: usize,
}

/// A tenant's webhook receiver on loopback.
#[derive(Clone)]
pub(crate) struct Receiver {
    base: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub(crate) async fn start(secrets: &[&str]) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner {
            fallback: Some(Answer::status(200)),
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            ..Inner::default()
        }));
        let app = Router::new().fallback(receive).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { base, inner }
    }
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    fn then(&self, answers: impl IntoIterator<Item = Answer>) {
        self.inner.lock().unwrap().script.extend(answers);
    }
    fn set_fallback(&self, a: Answer) {
        self.inner.lock().unwrap().fallback = Some(a);
    }
    pub(crate) fn got(&self) -> Vec<Got> {
        self.inner.lock().unwrap().got.clone()
    }
    fn max_in_flight(&self) -> usize {
        self.inner.lock().unwrap().max_in_flight
    }
    /// Event ids answered with 2xx.
    pub(crate) fn delivered_events(&self) -> BTreeSet<String> {
        self.got()
            .iter()
            .filter(|g| (200..300).contains(&g.answered))
            .map(Got::event_id)
            .collect()
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (answer, secrets) = {
        let mut i = inner.lock().unwrap();
        i.in_flight += 1;
        i.max_in_flight = i.max_in_flight.max(i.in_flight);
        let a = match i.script.pop_front() {
            Some(a) => a,
            None => i.fallback.clone().unwrap(),
        };
        (a, i.secrets.clone())
    };
    // The independent check: the published Standard Webhooks verifier.
    let verified = secrets
        .iter()
        .map(|s| {
            standardwebhooks::Webhook::new(s)
                .unwrap()
                .verify(&body, &headers)
                .is_ok()
        })
        .collect();
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let got = Got {
        at: Instant::now(),
        path: uri.path().to_string(),
        id: header("webhook-id"),
        signature: header("webhook-signature"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        verified,
        answered: answer.status,
    };
    tokio::time::sleep(answer.delay).await;
    {
        let mut i = inner.lock().unwrap();
        i.in_flight -= 1;
        // Recorded once answered: a request cut off by a killed daemon was not received.
        i.got.push(got);
    }
    let mut resp = (
        StatusCode::from_u16(answer.status).unwrap(),
        format!("answer {}", answer.status),
    )
        .into_response();
    for (k, v) in answer.headers {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

pub(crate) fn hook(name: &str, url: &str, events: &str, extra: &str) -> String {
    format!(
        r#"
[[webhook]]
name = "{name}"
url = "{url}"
events = {events}
secret_env = "ACME_WEBHOOK_SECRET"
{extra}
"#
    )
}

fn env_with(config: &str, catalog: &str) -> TestEnv {
    let env = TestEnv::sqlite().with_config(config);
    env.write_catalog("acme", &format!("tenant = \"acme\"\n{catalog}"));
    env
}

fn spawn(env: &TestEnv) -> Daemon {
    env.spawn_with_env(&[
        ("ACME_WEBHOOK_SECRET", SECRET),
        ("ACME_WEBHOOK_SECRET_OLD", &other_secret()),
    ])
}

/// A change record: sku, change, old price, new price, old stock, new stock.
type Change<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<i64>,
    Option<i64>,
);

/// Inserts price change records as a feed import does, in one transaction; the dispatcher
/// picks them up.
async fn price_changes(env: &TestEnv, run: &str, rows: &[Change<'_>]) {
    let store = env.store().await;
    // One transaction, as an import writes them.
    let mut tx = store.db().begin().await.unwrap();
    for (sku, change, old_p, new_p, old_s, new_s) in rows {
        syncd::store::db::query(
            "INSERT INTO price_changes (tenant, feed, run, sku, change, old_price, new_price, old_stock, new_stock, recorded_at)
             VALUES ('acme', 'prices', ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(run)
        .bind(sku)
        .bind(change)
        .bind(old_p)
        .bind(new_p)
        .bind(old_s)
        .bind(new_s)
        .bind(chrono::Utc::now())
        .execute(&mut tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    store.close().await;
}

/// `n` price changes in run `run`, one per part.
async fn price_moves(env: &TestEnv, run: &str, n: usize) {
    let skus: Vec<String> = (0..n).map(|i| format!("{run}-{i}")).collect();
    let rows: Vec<_> = skus
        .iter()
        .map(|s| {
            (
                s.as_str(),
                "changed",
                Some("1.00"),
                Some("2.00"),
                Some(1),
                Some(1),
            )
        })
        .collect();
    price_changes(env, run, &rows).await;
}

fn deliveries(env: &TestEnv, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["deliveries", "--json"];
    all.extend_from_slice(args);
    env.json(&all).as_array().unwrap().clone()
}

async fn wait_delivered(rx: &Receiver, events: usize, timeout: Duration) {
    eventually(timeout, &format!("{events} events delivered"), || {
        let n = rx.delivered_events().len();
        async move { (n >= events).then_some(()) }
    })
    .await
}

async fn event_ids(env: &TestEnv) -> BTreeSet<String> {
    let store = env.store().await;
    let ids: Vec<(String,)> = syncd::store::db::query_as("SELECT id FROM webhook_events")
        .fetch_all(store.db())
        .await
        .unwrap();
    store.close().await;
    ids.into_iter().map(|(i,)| i).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_and_stock_changes_arrive_signed_so_that_the_published_verifier_accepts_them() {
    let rx = Receiver::start(&[SECRET]).await;
    let env = env_with(FAST, &hook("erp", &rx.url("/hook"), r#"["*"]"#, ""));
    let daemon = spawn(&env);
    price_changes(
        &env,
        "run-1",
        &[
            (
                "A-1",
                "changed",
                Some("10.00"),
                Some("11.00"),
                Some(5),
                Some(5),
            ),
            (
                "B-2",
                "changed",
                Some("20.50"),
                Some("20.50"),
                Some(3),
                Some(0),
            ),
            ("C-3", "added", None, Some("3.10"), None, Some(12)),
        ],
    )
    .await;
    wait_delivered(&rx, 2, Duration::from_secs(20)).await;

    let got = rx.got();
    assert_eq!(got.len(), 2, "{got:?}");
    for g in &got {
        assert_eq!(
            g.verified,
            [true],
            "the signature verifies: {}",
            g.signature
        );
        assert!(g.id.starts_with("msg_"));
        assert!(g.body["timestamp"].is_string());
        assert_eq!(g.body["data"]["tenant"], "acme");
        assert_eq!(g.body["data"]["feed"], "prices");
        assert_eq!(g.path, "/hook");
    }
    let price = got.iter().find(|g| g.kind() == "price.changed").unwrap();
    let skus: Vec<&str> = price.body["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["A-1", "C-3"], "price moves and new parts");
    assert_eq!(price.body["data"]["items"][0]["new_price"], "11.00");
    let stock = got.iter().find(|g| g.kind() == "stock.changed").unwrap();
    assert_eq!(stock.body["data"]["items"][0]["sku"], "B-2");
    assert_eq!(stock.body["data"]["items"][0]["new_stock"], 0);

    let list = deliveries(&env, &[]);
    assert_eq!(list.len(), 2);
    for d in &list {
        assert_eq!(d["status"], "delivered");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["attempt_log"][0]["status_code"], 200);
        assert_eq!(d["attempt_log"][0]["response_body"], "answer 200");
    }
    let text = String::from_utf8(env.run(&["deliveries"]).stdout).unwrap();
    assert!(
        text.contains("acme/erp") && text.contains("delivered"),
        "{text}"
    );
    let secret_body = SECRET.trim_start_matches("whsec_");
    assert!(!daemon.log().contains(secret_body), "no secret in the log");
    assert!(!text.contains(secret_body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_every_message_carries_two_valid_signatures() {
    let old = other_secret();
    let rx = Receiver::start(&[SECRET, &old]).await;
    let env = env_with(
        FAST,
        &hook(
            "erp",
            &rx.url("/hook"),
            r#"["price.changed"]"#,
            r#"previous_secret_env = "ACME_WEBHOOK_SECRET_OLD""#,
        ),
    );
    let _daemon = spawn(&env);
    price_moves(&env, "run-1", 1).await;
    wait_delivered(&rx, 1, Duration::from_secs(20)).await;
    let g = &rx.got()[0];
    assert_eq!(g.signature.split(' ').count(), 2, "{}", g.signature);
    assert!(g.signature.split(' ').all(|s| s.starts_with("v1,")));
    assert_eq!(
        g.verified,
        [true, true],
        "a receiver holding either secret accepts it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_three_times_gets_four_attempts_with_one_id_and_growing_delays() {
    let rx = Receiver::start(&[SECRET]).await;
    rx.then([
        Answer::status(500),
        Answer::status(503),
        Answer::status(500),
    ]);
    let env = env_with(FAST, &hook("erp", &rx.url("/hook"), r#"["*"]"#, ""));
    let _daemon = spawn(&env);
    price_moves(&env, "run-1", 1).await;

    // Three failures in a row (failing_after = 3) open the issue while retries go on.
    let issue = wait_for_issue(&env, "erp", "webhook_failing", Duration::from_secs(20)).await;
    let message = issue["message"].as_str().unwrap();
    assert!(
        message.contains("3 attempts in a row") && message.contains("HTTP 500"),
        "{message}"
    );
    assert!(issue["hint"].as_str().unwrap().contains("syncd deliveries"));

    wait_delivered(&rx, 1, Duration::from_secs(30)).await;
    let got = rx.got();
    assert_eq!(got.len(), 4);
    assert!(
        got.iter().all(|g| g.id == got[0].id),
        "one webhook-id for every attempt"
    );
    assert!(got.iter().all(|g| g.verified == [true]));
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps[0] >= Duration::from_secs(1) && gaps[0] < gaps[1] && gaps[1] < gaps[2],
        "delays grow along the schedule: {gaps:?}"
    );
    assert!(gaps[2] >= Duration::from_secs(6), "{gaps:?}");

    let d = &deliveries(&env, &[])[0];
    assert_eq!(d["status"], "delivered");
    let codes: Vec<i64> = d["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 503, 500, 200]);
    assert!(d["attempt_log"][0]["next_attempt_at"].is_string());
    eventually(
        Duration::from_secs(5),
        "the success resolves the issue",
        || {
            let open = open_issues(&env, "erp", "webhook_failing").is_empty();
            async move { open.then_some(()) }
        },
    )
    .await;
    let all = env.issues(true);
    assert!(
        all.iter()
            .any(|i| i["kind"] == "webhook_failing" && i["resolved_at"].is_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_disables_the_endpoint_and_its_events_wait_until_it_is_enabled() {
    let rx = Receiver::start(&[SECRET]).await;
    rx.then([Answer::status(410)]);
    let env = env_with(FAST, &hook("erp", &rx.url("/hook"), r#"["*"]"#, ""));
    let _daemon = spawn(&env);
    price_moves(&env, "run-1", 1).await;
    let issue = wait_for_issue(&env, "erp", "endpoint_disabled", Duration::from_secs(20)).await;
    assert!(
        issue["message"].as_str().unwrap().contains("410"),
        "{issue}"
    );
    assert!(
        issue["hint"]
            .as_str()
            .unwrap()
            .contains("syncd endpoint enable acme/erp")
    );

    // Events keep coming while it is disabled: kept, not sent.
    price_moves(&env, "run-2", 1).await;
    eventually(Duration::from_secs(10), "two held deliveries", || {
        let held = deliveries(&env, &[])
            .iter()
            .filter(|d| d["status"] == "held")
            .count();
        async move { (held == 2).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rx.got().len(), 1, "nothing sent to a disabled endpoint");

    let out = env.run(&["endpoint", "enable", "acme/erp"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 held deliveries released"), "{text}");
    wait_delivered(&rx, 2, Duration::from_secs(20)).await;
    assert!(open_issues(&env, "erp", "endpoint_disabled").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_a_failure_and_is_not_followed() {
    let rx = Receiver::start(&[SECRET]).await;
    rx.then([Answer::status(301).header("location", "/elsewhere")]);
    let env = env_with(FAST, &hook("erp", &rx.url("/hook"), r#"["*"]"#, ""));
    let _daemon = spawn(&env);
    price_moves(&env, "run-1", 1).await;
    let d = eventually(Duration::from_secs(20), "a failed delivery", || {
        let d = deliveries(&env, &["--failed"]).pop();
        async move { d.filter(|d| d["status"] == "failed") }
    })
    .await;
    assert_eq!(d["attempts"], 1, "3xx is not retried");
    let err = d["last_error"].as_str().unwrap();
    assert!(err.contains("301") && err.contains("not followed"), "{err}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paths: Vec<String> = rx.got().iter().map(|g| g.path.clone()).collect();
    assert_eq!(paths, ["/hook"], "the Location was never requested");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_no_earlier_than_retry_after_and_is_not_counted_as_failing() {
    let rx = Receiver::start(&[SECRET]).await;
    rx.then([Answer::status(429).header("retry-after", "3")]);
    let env = env_with(
        &FAST.replace("failing_after = 3", "failing_after = 1"),
        &hook("erp", &rx.url("/hook"), r#"["*"]"#, ""),
    );
    let _daemon = spawn(&env);
    price_moves(&env, "run-1", 1).await;
    wait_delivered(&rx, 1, Duration::from_secs(20)).await;
    let got = rx.got();
    assert_eq!(got.len(), 2);
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_secs(3),
        "the schedule said 1s, Retry-After 3s: {gap:?}"
    );
    assert!(
        env.issues(true).is_empty(),
        "a throttle is not a failure: {:?}",
        env.issues(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_client_errors_fail_without_retry_and_continuous_failure_disables_the_endpoint() {
    let rx = Receiver::start(&[SECRET]).await;
    rx.then([Answer::status(400)]);
    rx.set_fallback(Answer::status(502));
    let env = env_with(
        r#"
[webhooks]
retry_schedule = ["0s", "1s", "1s", "1s", "1s", "1s", "1s", "1s"]
jitter = 0.0
allow_cidrs = ["127.0.0.0/8"]
dispatch_interval = "100ms"
failing_after = 10
disable_after = "2s"
"#,
        &hook("erp", &rx.url("/hook"), r#"["*"]"#, ""),
    );
    let _daemon = spawn(&env);
    price_moves(&env, "run-1", 1).await;
    let d = eventually(Duration::from_secs(20), "a failed delivery", || {
        let d = deliveries(&env, &[]).pop();
        async move { d.filter(|d| d["status"] == "failed") }
    })
    .await;
    assert_eq!(d["attempts"], 1, "400 is not retried");
    assert_eq!(d["last_status"], 400);

    price_moves(&env, "run-2", 1).await;
    let issue = wait_for_issue(&env, "erp", "endpoint_disabled", Duration::from_secs(30)).await;
    assert!(
        issue["message"].as_str().unwrap().contains("disable_after"),
        "{issue}"
    );
    let list = deliveries(&env, &["--endpoint", "acme/erp", "--failed"]);
    let held = list
        .iter()
        .find(|d| d["status"] == "held")
        .expect("the 502 one is held");
    assert!(held["attempts"].as_i64().unwrap() >= 2, "{held}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_imports_are_split_into_events_and_endpoints_get_only_their_types() {
    let rx = Receiver::start(&[SECRET]).await;
    let catalog = format!(
        "{}{}",
        hook(
            "prices",
            &rx.url("/prices"),
            r#"["price.changed"]"#,
            "max_in_flight = 1"
        ),
        hook("crm", &rx.url("/crm"), r#"["company.enriched"]"#, "")
    );
    let env = env_with(&format!("{FAST}max_items_per_event = 10\n"), &catalog);
    let _daemon = spawn(&env);
    price_moves(&env, "run-1", 25).await;
    let store = env.store().await;
    syncd::store::db::query(
        "INSERT INTO company_changes (tenant, crm, run, domain, change, data, recorded_at)
         VALUES ('acme', 'hubspot', 'run-9', 'example.com', 'enriched', '{\"employees\":120}', ?)",
    )
    .bind(chrono::Utc::now())
    .execute(store.db())
    .await
    .unwrap();
    store.close().await;
    wait_delivered(&rx, 4, Duration::from_secs(20)).await;

    let got = rx.got();
    let mut sizes: Vec<usize> = got
        .iter()
        .filter(|g| g.path == "/prices")
        .map(|g| g.body["data"]["items"].as_array().unwrap().len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [5, 10, 10], "25 changes, at most 10 per event");
    let crm: Vec<&Got> = got.iter().filter(|g| g.path == "/crm").collect();
    assert_eq!(crm.len(), 1);
    assert_eq!(crm[0].kind(), "company.enriched");
    assert_eq!(crm[0].body["data"]["crm"], "hubspot");
    assert_eq!(crm[0].body["data"]["items"][0]["domain"], "example.com");
    assert_eq!(crm[0].body["data"]["items"][0]["data"]["employees"], 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_limits_concurrent_deliveries_to_one_endpoint() {
    let rx = Receiver::start(&[SECRET]).await;
    rx.set_fallback(Answer::hang(Duration::from_millis(400)));
    let env = env_with(
        FAST,
        &hook("erp", &rx.url("/hook"), r#"["*"]"#, "max_in_flight = 2"),
    );
    let _daemon = spawn(&env);
    for run in 0..6 {
        price_moves(&env, &format!("run-{run}"), 1).await;
    }
    wait_delivered(&rx, 6, Duration::from_secs(30)).await;
    assert_eq!(rx.max_in_flight(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_import_that_changes_prices_sends_the_changes() {
    let fake = FakeDistributor::start(FeedReply::csv(crate::feed_http::GOOD)).await;
    let rx = Receiver::start(&[SECRET]).await;
    let env = TestEnv::sqlite().with_config(FAST);
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}{}",
            env.http_feed("prices", &fake.url("/p.csv")),
            hook("erp", &rx.url("/hook"), r#"["price.changed"]"#, "")
        ),
    );
    let _daemon = spawn(&env);
    wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "success").await;
    fake.set_fallback(FeedReply::csv(
        "sku,price,stock\nA-1,12.00,5\nB-2,20.5,0\n  C-3  ,0003.10,12\n",
    ));
    assert!(env.run(&["refetch", "acme/prices"]).status.success());
    wait_delivered(&rx, 1, Duration::from_secs(20)).await;
    let got = rx.got();
    assert_eq!(
        got.len(),
        1,
        "the first import is not news; the second one is"
    );
    let items = got[0].body["data"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["sku"], "A-1");
    assert_eq!(items[0]["old_price"], "10.00");
    assert_eq!(items[0]["new_price"], "12.00");
}

/// SIGKILL after the events are committed and before their tasks are queued. The daemon's
/// own timing cannot be caught from outside reliably (the gap is microseconds), so a
/// test-only variable makes the dispatcher wait there and say so in its log.
async fn killed_between_commit_and_enqueue(env: TestEnv, rx: Receiver) {
    let mut daemon = env.spawn_with_env(&[
        ("ACME_WEBHOOK_SECRET", SECRET),
        ("SYNCD_TEST_PAUSE_BEFORE_QUEUEING", "30s"),
    ]);
    for run in 0..5 {
        price_moves(&env, &format!("run-{run}"), 2).await;
    }
    eventually(
        Duration::from_secs(20),
        "the dispatcher to commit and pause",
        || {
            let paused = daemon.log().contains("pausing before queueing");
            async move { paused.then_some(()) }
        },
    )
    .await;
    daemon.kill9();
    let committed = event_ids(&env).await;
    assert!(!committed.is_empty());
    assert!(rx.got().is_empty(), "nothing was queued before the kill");
    for run in 5..8 {
        price_moves(&env, &format!("run-{run}"), 2).await;
    }

    let _daemon = spawn(&env);
    wait_delivered(&rx, 8, Duration::from_secs(30)).await;
    let all = event_ids(&env).await;
    assert_eq!(all.len(), 8, "one event per run");
    assert!(committed.is_subset(&all));
    assert_eq!(rx.delivered_events(), all, "no event missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_between_commit_and_enqueue_delivers_every_event_after_restart() {
    let rx = Receiver::start(&[SECRET]).await;
    let env = env_with(FAST, &hook("erp", &rx.url("/hook"), r#"["*"]"#, ""));
    killed_between_commit_and_enqueue(env, rx).await;
}

async fn killed_mid_delivery(env: TestEnv, rx: Receiver) {
    // The receiver hangs, so deliveries are in flight when the daemon dies.
    rx.set_fallback(Answer::hang(Duration::from_secs(30)));
    let mut daemon = spawn(&env);
    for run in 0..5 {
        price_moves(&env, &format!("run-{run}"), 1).await;
    }
    let inner = rx.inner.clone();
    eventually(Duration::from_secs(20), "deliveries in flight", || {
        let n = inner.lock().unwrap().in_flight;
        async move { (n >= 2).then_some(()) }
    })
    .await;
    daemon.kill9();
    assert!(
        rx.delivered_events().is_empty(),
        "none answered before the kill"
    );
    rx.set_fallback(Answer::status(200));

    let _daemon = spawn(&env);
    wait_delivered(&rx, 5, Duration::from_secs(40)).await;
    assert_eq!(
        rx.delivered_events(),
        event_ids(&env).await,
        "no event missing"
    );
    assert!(rx.got().iter().all(|g| g.verified == [true]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_delivery_delivers_every_event_after_restart() {
    let rx = Receiver::start(&[SECRET]).await;
    let env = env_with(FAST, &hook("erp", &rx.url("/hook"), r#"["*"]"#, ""));
    killed_mid_delivery(env, rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_redis_queue_a_daemon_killed_mid_delivery_loses_no_event() {
    let rx = Receiver::start(&[SECRET]).await;
    let env = TestEnv::redis(REDIS_URL).with_config(FAST);
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            hook("erp", &rx.url("/hook"), r#"["*"]"#, "")
        ),
    );
    killed_mid_delivery(env, rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_redis_queue_a_daemon_killed_between_commit_and_enqueue_loses_no_event() {
    let rx = Receiver::start(&[SECRET]).await;
    let env = TestEnv::redis(REDIS_URL).with_config(FAST);
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            hook("erp", &rx.url("/hook"), r#"["*"]"#, "")
        ),
    );
    killed_between_commit_and_enqueue(env, rx).await;
}

/// Counts TCP connections on a loopback port (no HTTP: nothing should ever get this far).
struct Doorbell {
    port: u16,
    rings: Arc<AtomicUsize>,
}

impl Doorbell {
    fn bind(addr: &str) -> Option<Doorbell> {
        let listener = std::net::TcpListener::bind(addr).ok()?;
        let port = listener.local_addr().unwrap().port();
        let rings = Arc::new(AtomicUsize::new(0));
        let counter = rings.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        Some(Doorbell { port, rings })
    }
    fn rings(&self) -> usize {
        self.rings.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_allowlist_loopback_urls_are_refused_before_any_connection() {
    let v4 = Doorbell::bind("127.0.0.1:0").unwrap();
    // [::1] may be unavailable on the machine; the URL is refused either way.
    let v6 = Doorbell::bind("[::1]:0");
    let v6_port = v6.as_ref().map(|d| d.port).unwrap_or(v4.port);
    let catalog = format!(
        "{}{}{}",
        hook(
            "literal",
            &format!("http://127.0.0.1:{}/h", v4.port),
            r#"["*"]"#,
            ""
        ),
        hook(
            "name",
            &format!("http://localhost:{}/h", v4.port),
            r#"["*"]"#,
            ""
        ),
        hook("v6", &format!("http://[::1]:{v6_port}/h"), r#"["*"]"#, ""),
    );
    let env = env_with(
        "[webhooks]\ndispatch_interval = \"100ms\"\nretry_schedule = [\"0s\", \"1s\"]\n",
        &catalog,
    );
    let _daemon = spawn(&env);
    price_moves(&env, "run-1", 1).await;
    let list = eventually(Duration::from_secs(20), "three failed deliveries", || {
        let list = deliveries(&env, &["--failed"]);
        async move { (list.iter().filter(|d| d["status"] == "failed").count() == 3).then_some(list) }
    })
    .await;
    for d in &list {
        assert_eq!(d["attempts"], 1, "a refused URL is not retried: {d}");
        let err = d["last_error"].as_str().unwrap();
        assert!(
            err.contains("refused to connect") && err.contains("loopback"),
            "{err}"
        );
        assert!(
            err.contains("allow_cidrs"),
            "the message says how to permit it: {err}"
        );
    }
    for name in ["literal", "name", "v6"] {
        let issue = wait_for_issue(&env, name, "misconfigured", Duration::from_secs(5)).await;
        assert!(
            issue["message"].as_str().unwrap().contains("refused"),
            "{issue}"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(v4.rings(), 0, "no connection to 127.0.0.1 was made");
    if let Some(v6) = v6 {
        assert_eq!(v6.rings(), 0, "no connection to [::1] was made");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_resends_exactly_the_events_of_the_window_and_redeliver_resends_one() {
    let rx = Receiver::start(&[SECRET]).await;
    let env = env_with(FAST, &hook("erp", &rx.url("/hook"), r#"["*"]"#, ""));
    let _daemon = spawn(&env);
    price_moves(&env, "before", 1).await;
    wait_delivered(&rx, 1, Duration::from_secs(20)).await;
    let before = rx.got()[0].event_id();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    price_moves(&env, "in-1", 1).await;
    price_moves(&env, "in-2", 1).await;
    wait_delivered(&rx, 3, Duration::from_secs(20)).await;
    let window: BTreeSet<String> = rx
        .delivered_events()
        .into_iter()
        .filter(|e| *e != before)
        .collect();
    assert_eq!(window.len(), 2);

    let out = env.run(&["replay", "acme/erp", "--since", &since]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 events"));
    eventually(Duration::from_secs(20), "the window sent again", || {
        let n = rx.got().len();
        async move { (n >= 5).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = rx.got();
    assert_eq!(
        got.len(),
        5,
        "3 first deliveries + the 2 events of the window"
    );
    let replayed: BTreeSet<String> = got[3..].iter().map(Got::event_id).collect();
    assert_eq!(replayed, window, "exactly the events of the window");
    assert!(got[3..].iter().all(|g| g.verified == [true]));

    let first = got[0].id.clone();
    let out = env.run(&["redeliver", &first]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(Duration::from_secs(20), "the redelivery", || {
        let n = rx.got().len();
        async move { (n >= 6).then_some(()) }
    })
    .await;
    let again = &rx.got()[5];
    assert_eq!(
        again.id, first,
        "the same webhook-id, so receivers can deduplicate"
    );
    assert_eq!(again.event_id(), before);
    let d = deliveries(&env, &[])
        .into_iter()
        .find(|d| d["id"] == first.as_str())
        .unwrap();
    assert_eq!(d["attempts"], 2);
    assert_eq!(
        d["attempt_log"][1]["manual"], true,
        "logged as a manual attempt"
    );
    assert!(!env.run(&["redeliver", "msg_nope"]).status.success());
}

#[test]
fn bad_webhook_settings_name_the_file_and_the_key() {
    let env = TestEnv::sqlite().with_config("[webhooks]\njitter = 2.0\n");
    let out = env.run(&["check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.toml") && err.contains("[webhooks] jitter"),
        "{err}"
    );

    let env = TestEnv::sqlite();
    env.write_catalog(
        "acme",
        "tenant = \"acme\"\n[[webhook]]\nname = \"erp\"\nurl = \"https://erp.example/h\"\nevents = [\"price.moved\"]\nsecret_env = \"X\"\n",
    );
    let out = env.run(&["check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("acme.toml") && err.contains("key `events`") && err.contains("price.moved"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_and_finished_deliveries_past_the_retention_are_pruned_but_held_ones_stay() {
    let env = env_with(
        "[webhooks]\nattempt_retention = \"24h\"\n",
        &hook("erp", "https://erp.example/h", r#"["*"]"#, ""),
    );
    let store = env.store().await;
    let old = chrono::Utc::now() - chrono::Duration::days(3);
    for (event, delivery, status) in [
        ("evt_old", "msg_old", "delivered"),
        ("evt_held", "msg_held", "held"),
    ] {
        syncd::store::db::query(
            "INSERT INTO webhook_events (id, tenant, type, source, payload, created_at)
             VALUES (?, 'acme', 'price.changed', 'prices', '{}', ?)",
        )
        .bind(event)
        .bind(old)
        .execute(store.db())
        .await
        .unwrap();
        syncd::store::db::query(
            "INSERT INTO webhook_deliveries (id, event_id, tenant, endpoint, event_type, status,
                    attempts, created_at, updated_at)
             VALUES (?, ?, 'acme', 'erp', 'price.changed', ?, 1, ?, ?)",
        )
        .bind(delivery)
        .bind(event)
        .bind(status)
        .bind(old)
        .bind(old)
        .execute(store.db())
        .await
        .unwrap();
        syncd::store::db::query(
            "INSERT INTO webhook_attempts (delivery_id, tenant, endpoint, event_type, attempt,
                    started_at, duration_ms, status_code)
             VALUES (?, 'acme', 'erp', 'price.changed', 1, ?, 12, 200)",
        )
        .bind(delivery)
        .bind(old)
        .execute(store.db())
        .await
        .unwrap();
    }
    store.close().await;
    // The endpoint is disabled, so the held delivery is not sent (no traffic leaves).
    let store = env.store().await;
    store
        .disable_endpoint("acme", "erp", "test: disabled")
        .await
        .unwrap();
    store.close().await;

    let _daemon = spawn(&env);
    let left = eventually(Duration::from_secs(20), "old rows pruned", || {
        let list = deliveries(&env, &[]);
        async move { (list.len() == 1).then_some(list) }
    })
    .await;
    assert_eq!(
        left[0]["id"], "msg_held",
        "held deliveries are kept until sent"
    );
    assert!(
        left[0]["attempt_log"].as_array().unwrap().is_empty(),
        "old attempts pruned"
    );
    let events = event_ids(&env).await;
    assert_eq!(events, BTreeSet::from(["evt_held".to_string()]));
}
