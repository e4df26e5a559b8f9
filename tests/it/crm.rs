//! CRM sources against fake HubSpot and Apollo.io servers that keep the real services' rules:
//! rolling and fixed rate windows with their real 429 bodies, expiring and rotating OAuth
//! tokens, `200 {}` for an unknown domain, plain-text 401s.

use crate::support::fake_apollo::{ApolloOptions, FakeApollo};
use crate::support::fake_hubspot::{FakeHubSpot, HubSpotOptions, Scripted};
use crate::support::helpers::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const TOKEN: &str = "pat-eu1-0000-test-private-app-token";
pub(crate) const CLIENT_ID: &str = "client-1234";
pub(crate) const CLIENT_SECRET: &str = "client-secret-abcdef";
pub(crate) const REFRESH: &str = "refresh-seed-0001";
const APOLLO_KEY: &str = "apollo-key-123456";

pub(crate) fn secrets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ACME_HUBSPOT_TOKEN", TOKEN),
        ("ACME_HUBSPOT_CLIENT_SECRET", CLIENT_SECRET),
        ("ACME_HUBSPOT_REFRESH", REFRESH),
        ("ACME_APOLLO_KEY", APOLLO_KEY),
        ("BRAVO_HUBSPOT_CLIENT_SECRET", CLIENT_SECRET),
        ("BRAVO_HUBSPOT_REFRESH", REFRESH),
    ]
}

fn hubspot_private(name: &str, url: &str) -> String {
    format!(
        r#"
[[crm]]
name = "{name}"
provider = "hubspot"
schedule = "every 24h"
base_url = "{url}"
token_env = "ACME_HUBSPOT_TOKEN"
"#
    )
}

pub(crate) fn hubspot_oauth(name: &str, url: &str) -> String {
    format!(
        r#"
[[crm]]
name = "{name}"
provider = "hubspot"
schedule = "every 24h"
base_url = "{url}"
client_id = "{CLIENT_ID}"
client_secret_env = "ACME_HUBSPOT_CLIENT_SECRET"
refresh_token_env = "ACME_HUBSPOT_REFRESH"
"#
    )
}

fn apollo(url: &str) -> String {
    format!(
        r#"
[[crm]]
name = "apollo"
provider = "apollo"
schedule = "every 24h"
base_url = "{url}"
api_key_env = "ACME_APOLLO_KEY"
"#
    )
}

/// Generous limits on both sides, for tests about something else than rate limits.
pub(crate) const FAST: &str = r#"
[crm]
hubspot_per_10s = 5000
hubspot_search_per_second = 100
"#;

pub(crate) fn fast_hubspot() -> HubSpotOptions {
    HubSpotOptions {
        limit_per_10s: 5000,
        search_per_second: 100,
        ..Default::default()
    }
}

fn companies(env: &TestEnv) -> Vec<Value> {
    env.json(&["companies", "list", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

async fn success(env: &TestEnv, name: &str, timeout: Duration) -> Value {
    wait_for_outcome(env, name, timeout, |o| o == "success").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_pages_through_three_pages_of_200_and_the_next_run_fetches_only_changes() {
    let fake = FakeHubSpot::start(fast_hubspot()).await;
    fake.add_private_app_token(TOKEN);
    let all = fake.add_companies(600);
    let env = TestEnv::sqlite().with_config(FAST);
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            hubspot_private("hubspot", &fake.url)
        ),
    );
    let _daemon = env.spawn_with_env(&secrets());
    let status = success(&env, "hubspot", Duration::from_secs(60)).await;
    assert_eq!(status["items"], 600);
    assert_eq!(fake.count("/companies/search"), 3, "3 pages of 200");
    assert_eq!(fake.count_429(), 0);

    let stored = companies(&env);
    assert_eq!(stored.len(), 600);
    let first = stored
        .iter()
        .find(|c| c["domain"] == all[1].domain.as_str())
        .unwrap();
    assert_eq!(first["hubspot_id"], all[1].id.as_str());
    assert_eq!(first["name"], all[1].name.as_str());
    assert_eq!(
        first["contacts"].as_array().unwrap().len(),
        all[1].contacts.len()
    );
    assert_eq!(
        first["contacts"][0]["email"],
        all[1].contacts[0].email.as_str()
    );

    // Two companies are edited in HubSpot; the next run reads only those.
    let gets_before = fake.count("/crm/v3/objects/companies/5");
    fake.touch_company(&all[10].id);
    fake.touch_company(&all[20].id);
    let before = env.status_of("hubspot")["last_success_at"].clone();
    let out = env.run(&["refetch", "acme/hubspot"]);
    assert!(out.status.success(), "{out:?}");
    eventually(Duration::from_secs(30), "a second HubSpot run", || {
        let changed = env.status_of("hubspot")["last_success_at"] != before;
        async move { changed.then_some(()) }
    })
    .await;
    assert_eq!(
        fake.count("/crm/v3/objects/companies/5") - gets_before,
        2,
        "only the two changed companies are read again"
    );
    let last_search = fake
        .requests()
        .into_iter()
        .rfind(|r| r.path.ends_with("/search"))
        .unwrap();
    assert!(
        last_search.body.contains("hs_lastmodifieddate"),
        "the second search asks for modified companies: {}",
        last_search.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_that_expires_mid_sync_is_refreshed_and_the_rotated_refresh_token_is_kept()
{
    let fake = FakeHubSpot::start(HubSpotOptions {
        access_token_ttl: Duration::from_secs(2),
        ..fast_hubspot()
    })
    .await;
    fake.add_oauth_client(CLIENT_ID, CLIENT_SECRET, REFRESH);
    fake.add_companies(150);
    // 150 companies at 40 calls a second take about 4 s: the 2 s tokens lapse twice.
    let env = TestEnv::sqlite().with_config(
        r#"
[crm]
hubspot_per_10s = 400
hubspot_search_per_second = 100
oauth_refresh_margin = "500ms"
"#,
    );
    env.write_catalog(
        "acme",
        &format!("tenant = \"acme\"\n{}", hubspot_oauth("hubspot", &fake.url)),
    );
    let mut daemon = env.spawn_with_env(&secrets());
    let status = success(&env, "hubspot", Duration::from_secs(60)).await;
    assert_eq!(status["items"], 150);
    assert!(
        fake.refresh_calls() >= 2,
        "{} refreshes during a sync longer than two token lifetimes",
        fake.refresh_calls()
    );
    assert_eq!(fake.count_429(), 0);
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(20));

    // The refresh token the environment holds was rotated away at the first refresh; a new
    // process must use the newest one, which syncd stored.
    let current = fake.current_refresh_token(CLIENT_ID).unwrap();
    assert_ne!(current, REFRESH);
    let out = env.run_with_env(&["test-connection", "acme/hubspot"], &secrets());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(CLIENT_SECRET) && !text.contains(&current));
}

/// Runs `syncd test-connection acme/hubspot` with each config at the same moment (one process
/// each); every one must pass.
pub(crate) fn test_connections_at_once(configs: &[std::path::PathBuf]) {
    let runs: Vec<_> = configs
        .iter()
        .cloned()
        .map(|config| {
            std::thread::spawn(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_syncd"))
                    .arg("--config")
                    .arg(config)
                    .args(["test-connection", "acme/hubspot"])
                    .envs(secrets())
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for r in runs {
        let out = r.join().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_needing_a_token_at_once_cause_one_refresh() {
    let fake = FakeHubSpot::start(fast_hubspot()).await;
    fake.add_oauth_client(CLIENT_ID, CLIENT_SECRET, REFRESH);
    let env = TestEnv::sqlite().with_config(FAST);
    env.write_catalog(
        "acme",
        &format!("tenant = \"acme\"\n{}", hubspot_oauth("hubspot", &fake.url)),
    );
    // Create the state database first, so both processes start on the same file.
    env.json(&["status", "--json"]);
    test_connections_at_once(&[env.config_path(), env.config_path()]);
    assert_eq!(fake.refresh_calls(), 1, "one refresh for two processes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_refresh_token_pauses_that_tenant_while_another_tenant_syncs() {
    let fake = FakeHubSpot::start(fast_hubspot()).await;
    fake.add_private_app_token(TOKEN);
    fake.add_oauth_client(CLIENT_ID, CLIENT_SECRET, REFRESH);
    fake.revoke_refresh_token(REFRESH);
    fake.add_companies(30);
    let env = TestEnv::sqlite().with_config(FAST);
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            hubspot_private("hubspot", &fake.url)
        ),
    );
    env.write_catalog(
        "bravo",
        &format!(
            "tenant = \"bravo\"\n{}",
            hubspot_oauth("hubspot", &fake.url).replace("ACME_", "BRAVO_")
        ),
    );
    let _daemon = env.spawn_with_env(&secrets());
    success(&env, "hubspot", Duration::from_secs(30)).await;
    let issue = eventually(Duration::from_secs(30), "bravo's issue", || {
        let found = env
            .issues(false)
            .into_iter()
            .find(|i| i["tenant"] == "bravo" && i["kind"] == "credentials_rejected");
        async move { found }
    })
    .await;
    let message = issue["message"].as_str().unwrap();
    assert!(message.contains("BAD_REFRESH_TOKEN"), "{message}");
    assert!(!message.contains(REFRESH) && !message.contains(CLIENT_SECRET));
    assert!(
        issue["hint"].as_str().unwrap().contains("connection test"),
        "{issue}"
    );
    let bravo = env.json(&["status", "--tenant", "bravo", "--json"]);
    assert_eq!(bravo[0]["paused"], true);
    // The refused token was tried once: no retries against a revoked grant.
    assert_eq!(fake.refresh_calls(), 1);
    assert!(
        env.issues(false).iter().all(|i| i["tenant"] != "acme"),
        "acme is unaffected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enriching_1000_companies_at_hubspots_real_rate_limit_meets_no_429() {
    // The fake enforces 100 calls per rolling 10 s, as HubSpot does for a private app; syncd
    // runs with its defaults. About 1,000 reads: 100 s.
    let fake = FakeHubSpot::start(HubSpotOptions::default()).await;
    fake.add_private_app_token(TOKEN);
    fake.add_companies(1000);
    let env = TestEnv::sqlite();
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            hubspot_private("hubspot", &fake.url)
        ),
    );
    let _daemon = env.spawn_with_env(&secrets());
    let status = success(&env, "hubspot", Duration::from_secs(240)).await;
    assert_eq!(status["items"], 1000);
    assert_eq!(fake.count_429(), 0, "syncd stayed inside the budget");
    let general: Vec<Instant> = fake
        .requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/search") && !r.path.contains("/oauth/"))
        .map(|r| r.at)
        .collect();
    assert!(general.len() >= 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_without_retry_after_waits_hubspots_ten_seconds_and_one_with_it_waits_as_told() {
    let fake = FakeHubSpot::start(fast_hubspot()).await;
    fake.add_private_app_token(TOKEN);
    let all = fake.add_companies(20);
    // First a 429 with Retry-After: 2 (short: waited for in place), then one without
    // (HubSpot's policy says 10 s: longer than max_inline_wait, so a durable retry).
    fake.fail_next(
        "/crm/v3/objects/companies/5",
        Scripted::rate_limited(Some(2)),
    );
    let env = TestEnv::sqlite().with_config(FAST);
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            hubspot_private("hubspot", &fake.url)
        ),
    );
    let _daemon = env.spawn_with_env(&secrets());
    success(&env, "hubspot", Duration::from_secs(30)).await;
    let reqs = fake.requests();
    let i = reqs.iter().position(|r| r.status == 429).unwrap();
    let gap = reqs[i + 1].at - reqs[i].at;
    assert!(
        gap >= Duration::from_millis(1900) && gap < Duration::from_secs(9),
        "waited {gap:?} after a 429 with Retry-After: 2"
    );

    fake.touch_company(&all[3].id);
    fake.fail_next("/crm/v3/objects/companies/5", Scripted::rate_limited(None));
    let before = env.status_of("hubspot")["last_success_at"].clone();
    let out = env.run(&["refetch", "acme/hubspot", "--force"]);
    assert!(out.status.success());
    eventually(Duration::from_secs(60), "the run after the 429", || {
        let s = env.status_of("hubspot");
        let done = s["last_success_at"] != before && s["last_outcome"] == "success";
        async move { done.then_some(()) }
    })
    .await;
    let reqs = fake.requests();
    let i = reqs.iter().rposition(|r| r.status == 429).unwrap();
    let gap = reqs[i + 1].at - reqs[i].at;
    assert!(
        gap >= Duration::from_millis(9500),
        "waited only {gap:?} after a 429 without Retry-After (HubSpot asks for 10 s)"
    );
    // No company was written twice: one change record per company per changed run.
    let store = env.store().await;
    let changes = store.company_changes("acme", "hubspot").await.unwrap();
    assert_eq!(
        changes.len(),
        20,
        "first run: 20 new companies; forced run: nothing differs"
    );
    assert_eq!(companies(&env).len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apollo_enriches_known_domains_and_records_unknown_ones_as_no_data_without_an_issue() {
    let fake = FakeApollo::start(ApolloOptions::default()).await;
    fake.add_key(APOLLO_KEY);
    let known = fake.add_orgs(12);
    let env = TestEnv::sqlite();
    env.write_catalog("acme", &format!("tenant = \"acme\"\n{}", apollo(&fake.url)));
    let csv = env.dir.path().join("companies.csv");
    let mut text = String::from("domain,name\n");
    for d in &known {
        text.push_str(&format!("https://www.{d}/,\n"));
    }
    text.push_str("tiny-startup.example,Tiny Startup\nbrand-new.example,\n");
    std::fs::write(&csv, text).unwrap();
    let out = env.run(&["companies", "import", csv.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("14 new"));

    let _daemon = env.spawn_with_env(&secrets());
    let status = success(&env, "apollo", Duration::from_secs(30)).await;
    assert_eq!(status["companies"]["enriched"], 12);
    assert_eq!(status["companies"]["no_data"], 2);
    assert_eq!(status["companies"]["pending"], 0);
    assert!(env.issues(false).is_empty(), "no data is not an issue");
    // 14 domains: two bulk calls of at most 10.
    assert_eq!(fake.count("/organizations/bulk_enrich"), 2);
    let list = companies(&env);
    let tiny = list
        .iter()
        .find(|c| c["domain"] == "tiny-startup.example")
        .unwrap();
    assert_eq!(tiny["enrichment_status"], "no_data");
    assert_eq!(tiny["name"], "Tiny Startup");
    let one = list
        .iter()
        .find(|c| c["domain"] == known[0].as_str())
        .unwrap();
    assert_eq!(one["enrichment_status"], "enriched");
    assert!(one["industry"].is_string() && one["employee_count"].is_number());
    let store = env.store().await;
    assert_eq!(
        store.company_changes("acme", "apollo").await.unwrap().len(),
        12
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apollo_plan_without_access_is_misconfigured_and_a_plain_text_401_is_rejected() {
    let fake = FakeApollo::start(ApolloOptions::default()).await;
    fake.add_key_without_access(APOLLO_KEY);
    let env = TestEnv::sqlite();
    env.write_catalog("acme", &format!("tenant = \"acme\"\n{}", apollo(&fake.url)));
    let csv = env.dir.path().join("c.csv");
    std::fs::write(&csv, "domain\nacme.example\nbeta.example\n").unwrap();
    assert!(
        env.run(&["companies", "import", csv.to_str().unwrap()])
            .status
            .success()
    );

    let mut daemon = env.spawn_with_env(&secrets());
    let issue = wait_for_issue(&env, "apollo", "misconfigured", Duration::from_secs(30)).await;
    assert!(
        issue["message"]
            .as_str()
            .unwrap()
            .contains("API_INACCESSIBLE"),
        "{issue}"
    );
    assert_eq!(env.status_of("apollo")["paused"], false);
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(20));

    // A key Apollo does not know: 401 in plain text.
    let out = env.run_with_env(
        &["test-connection", "acme/apollo"],
        &[("ACME_APOLLO_KEY", "wrong-key-000")],
    );
    assert_eq!(out.status.code(), Some(2));
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.contains("credentials rejected"), "{line}");
    assert!(!line.contains("wrong-key-000"));
    let _daemon = env.spawn_with_env(&[("ACME_APOLLO_KEY", "wrong-key-000")]);
    env.run(&["refetch", "acme/apollo"]);
    let issue = wait_for_issue(
        &env,
        "apollo",
        "credentials_rejected",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        issue["message"]
            .as_str()
            .unwrap()
            .contains("Invalid access credentials"),
        "{issue}"
    );
    assert_eq!(env.status_of("apollo")["paused"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apollo_saying_no_requests_are_left_this_minute_makes_syncd_wait_for_the_next_minute() {
    let fake = FakeApollo::start(ApolloOptions {
        per_minute: 2,
        ..Default::default()
    })
    .await;
    fake.add_key(APOLLO_KEY);
    let domains = fake.add_orgs(25);
    let env = TestEnv::sqlite();
    env.write_catalog("acme", &format!("tenant = \"acme\"\n{}", apollo(&fake.url)));
    let csv = env.dir.path().join("c.csv");
    std::fs::write(&csv, format!("domain\n{}\n", domains.join("\n"))).unwrap();
    assert!(
        env.run(&["companies", "import", csv.to_str().unwrap()])
            .status
            .success()
    );
    // Not in the last seconds of a minute, so the wait is visible.
    let into_minute = chrono::Utc::now().timestamp() % 60;
    if into_minute > 50 {
        tokio::time::sleep(Duration::from_secs((61 - into_minute) as u64)).await;
    }

    let _daemon = env.spawn_with_env(&secrets());
    let status = success(&env, "apollo", Duration::from_secs(90)).await;
    assert_eq!(status["companies"]["enriched"], 25);
    assert_eq!(
        fake.count_429(),
        0,
        "syncd waited instead of running into the wall"
    );
    let calls: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("enrich"))
        .collect();
    assert_eq!(calls.len(), 3);
    // The second call said 0 left this minute; the third came after the minute turned.
    let wall = |at: Instant| chrono::Utc::now() - (Instant::now() - at);
    let second = wall(calls[1].at).timestamp();
    let third = wall(calls[2].at).timestamp();
    assert!(
        third / 60 > second / 60,
        "third call at {third} in the same minute as the second at {second}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_redis_share_one_tenants_hubspot_budget() {
    // A small budget, so that two integrations of one tenant compete for it.
    let fake = FakeHubSpot::start(HubSpotOptions {
        limit_per_10s: 30,
        ..Default::default()
    })
    .await;
    fake.add_private_app_token(TOKEN);
    fake.add_companies(40);
    let config = r#"
[queue]
concurrency = 1
[crm]
hubspot_per_10s = 30
"#;
    let a = TestEnv::redis(REDIS_URL).with_config(config);
    let b = TestEnv::redis(REDIS_URL)
        .with_namespace(&a.namespace)
        .with_config(config);
    for env in [&a, &b] {
        env.write_catalog(
            "acme",
            &format!(
                "tenant = \"acme\"\n{}{}",
                hubspot_private("hubspot-1", &fake.url),
                hubspot_private("hubspot-2", &fake.url)
            ),
        );
    }
    let na = a.spawn_with_env(&secrets());
    let nb = b.spawn_with_env(&secrets());
    // Each node runs one job at a time: the two syncs run on different nodes, at once.
    eventually(Duration::from_secs(120), "both syncs on both nodes", || {
        let done = na.log().matches("HubSpot pass complete").count()
            + nb.log().matches("HubSpot pass complete").count();
        async move { (done >= 2).then_some(()) }
    })
    .await;
    assert_eq!(
        fake.count_429(),
        0,
        "the two nodes together stayed within 30 calls per 10 s"
    );
    assert!(
        na.log().contains("HubSpot pass complete") && nb.log().contains("HubSpot pass complete"),
        "each node ran one of the syncs"
    );
}

#[test]
fn a_crm_entry_with_mixed_auth_is_refused_naming_the_file_and_key() {
    let env = TestEnv::sqlite();
    env.write_catalog(
        "acme",
        r#"tenant = "acme"
[[crm]]
name = "hubspot"
provider = "hubspot"
schedule = "every 24h"
token_env = "X"
client_id = "abc"
"#,
    );
    let out = env.run(&["check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("acme.toml") && err.contains("[[crm]] #1 (`hubspot`)"),
        "{err}"
    );
    assert!(err.contains("token_env"), "{err}");

    env.write_catalog(
        "acme",
        r#"tenant = "acme"
[[crm]]
name = "apollo"
provider = "apollo"
schedule = "every 24h"
"#,
    );
    let err = String::from_utf8_lossy(&env.run(&["check-config"]).stderr).to_string();
    assert!(err.contains("api_key_env"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_quota_spent_mid_run_keeps_what_was_done_and_continues_after_the_reset() {
    let fake = FakeApollo::start(ApolloOptions::default()).await;
    fake.add_key(APOLLO_KEY);
    let domains = fake.add_orgs(25);
    // Our side of the budget: two calls a day.
    let env = TestEnv::sqlite().with_config("[crm]\napollo_per_day = 2\nheadroom = 0\n");
    env.write_catalog("acme", &format!("tenant = \"acme\"\n{}", apollo(&fake.url)));
    let csv = env.dir.path().join("c.csv");
    std::fs::write(&csv, format!("domain\n{}\n", domains.join("\n"))).unwrap();
    assert!(
        env.run(&["companies", "import", csv.to_str().unwrap()])
            .status
            .success()
    );

    let _daemon = env.spawn_with_env(&secrets());
    let status =
        wait_for_outcome(&env, "apollo", Duration::from_secs(30), |o| o == "waiting").await;
    // Two bulk calls done and stored; the rest waits for the next day window (UTC).
    assert_eq!(fake.count("/organizations/"), 2);
    assert_eq!(status["companies"]["enriched"], 20);
    assert_eq!(status["companies"]["pending"], 5);
    let next: chrono::DateTime<chrono::Utc> =
        status["next_retry_at"].as_str().unwrap().parse().unwrap();
    let midnight = (chrono::Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert!(
        (next - midnight).num_seconds().abs() <= 2,
        "continues at {next}, the window resets at {midnight}"
    );
    assert!(
        env.issues(false).is_empty(),
        "waiting for quota is not a failure"
    );
    assert_eq!(fake.count_429(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_second_tokens_are_refreshed_once_per_half_lifetime_not_before_every_call() {
    // A provider that issues 20-second tokens, with the default 5-minute refresh margin:
    // before the margin was capped at half a token's life, every call refreshed first.
    let fake = FakeHubSpot::start(HubSpotOptions {
        access_token_ttl: Duration::from_secs(20),
        ..fast_hubspot()
    })
    .await;
    fake.add_oauth_client(CLIENT_ID, CLIENT_SECRET, REFRESH);
    fake.add_companies(1000);
    let env = TestEnv::sqlite().with_config(FAST);
    env.write_catalog(
        "acme",
        &format!("tenant = \"acme\"\n{}", hubspot_oauth("hubspot", &fake.url)),
    );
    let started = Instant::now();
    let _daemon = env.spawn_with_env(&secrets());
    let status = success(&env, "hubspot", Duration::from_secs(60)).await;
    assert_eq!(status["items"], 1000);
    let calls = fake.requests().len() - fake.refresh_calls();
    let allowed = 1 + started.elapsed().as_secs() as usize / 10;
    assert!(
        fake.refresh_calls() <= allowed,
        "{} refreshes for {calls} calls in {:?}: at most one per half-lifetime ({allowed})",
        fake.refresh_calls(),
        started.elapsed()
    );
    assert!(
        calls > allowed,
        "the pass made more calls ({calls}) than it may refresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_expires_in_neither_crashes_the_sync_nor_loses_the_rotated_refresh_token() {
    // The token endpoint's bad day: `expires_in` of 9223372036854775 seconds. The sync must
    // go on, and the refresh token HubSpot rotated at that refresh must be the one kept.
    let fake = FakeHubSpot::start(HubSpotOptions {
        reported_expires_in: Some(9_223_372_036_854_775),
        ..fast_hubspot()
    })
    .await;
    fake.add_oauth_client(CLIENT_ID, CLIENT_SECRET, REFRESH);
    fake.add_companies(50);
    let env = TestEnv::sqlite().with_config(FAST);
    env.write_catalog(
        "acme",
        &format!("tenant = \"acme\"\n{}", hubspot_oauth("hubspot", &fake.url)),
    );
    let mut daemon = env.spawn_with_env(&secrets());
    let status = success(&env, "hubspot", Duration::from_secs(30)).await;
    assert_eq!(status["items"], 50);
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(20));
    let current = fake.current_refresh_token(CLIENT_ID).unwrap();
    assert_ne!(current, REFRESH, "the seed was rotated away");
    let out = env.run_with_env(&["test-connection", "acme/hubspot"], &secrets());
    assert!(
        out.status.success(),
        "a new process still gets in with the stored, rotated token: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
