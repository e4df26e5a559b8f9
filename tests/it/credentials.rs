//! The encrypted credential store: the admin's loop (issue → `syncd credentials set` →
//! automatic connection test → issue resolved), encryption at rest, a wrong master key,
//! expiry warnings, and no secret in any log line, issue, output or listing.

use crate::feed_http::GOOD;
use crate::ftp::FtpServer;
use crate::support::fake_distributor::{FakeDistributor, Reply};
use crate::support::fake_hubspot::{FakeHubSpot, HubSpotOptions};
use crate::support::helpers::*;
use secrecy::ExposeSecret;
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

/// The password the test FTP server accepts for `acme`.
const FTP_PASSWORD: &str = "s3cret-feed-password";

const PRICES: &[u8] = b"IM-1;10,00;5\nIM-2;20,50;0\nIM-3;300,00;12\n";

fn ftp_feed(env: &TestEnv, port: u16) {
    env.write_catalog(
        "acme",
        &format!(
            r#"tenant = "acme"
[[feed]]
name = "ingram"
url = "ftp://127.0.0.1:{port}/PRICE.TXT"
schedule = "every 24h"
auth = {{ kind = "basic", username = "acme", credential = "acme/ingram" }}
[feed.format]
header = false
delimiter = ";"
decimal = ","
[feed.columns]
sku = 1
price = 2
stock = 3
"#
        ),
    );
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn set(env: &TestEnv, args: &[&str], secret: &str) -> Output {
    let mut all = vec!["credentials", "set"];
    all.extend_from_slice(args);
    env.run_with_stdin(&all, &format!("{secret}\n"), &[])
}

/// The state database as bytes: the main file and its write-ahead log.
fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn credentials_list(env: &TestEnv) -> Vec<Value> {
    env.json(&["credentials", "list", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_set_from_stdin_is_stored_encrypted_tested_at_once_and_ends_the_pause() {
    let server = FtpServer::start(false).await;
    server.put("PRICE.TXT", PRICES);
    let env = TestEnv::sqlite();
    ftp_feed(&env, server.port);

    // The distributor rotated the password: the stored one is refused.
    let out = set(&env, &["acme/ingram"], "an-outdated-password");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("queued a connection test of acme/ingram"),
        "{}",
        text(&out)
    );
    let daemon = env.spawn();
    let issue = wait_for_issue(
        &env,
        "ingram",
        "credentials_rejected",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        issue["message"].as_str().unwrap().contains("530"),
        "{issue}"
    );
    assert!(
        issue["hint"]
            .as_str()
            .unwrap()
            .contains("syncd credentials set"),
        "{issue}"
    );
    assert_eq!(env.status_of("ingram")["paused"], true);

    // The admin's loop: re-enter the credential; the connection test runs by itself.
    let out = set(&env, &["acme/ingram", "--field", "password"], FTP_PASSWORD);
    assert!(out.status.success(), "{}", text(&out));
    let db = env.raw_state().await;
    for secret in [FTP_PASSWORD, "an-outdated-password"] {
        assert!(!contains(&db, secret), "`{secret}` is in the database file");
    }
    let rows: Vec<(Vec<u8>, Vec<u8>)> = syncd::store::db::query_as(
        "SELECT nonce, ciphertext FROM credentials WHERE integration = 'ingram'",
    )
    .fetch_all(env.store().await.db())
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0.len(), 24, "an XChaCha20 nonce");
    assert_eq!(
        rows[0].1.len(),
        FTP_PASSWORD.len() + 16,
        "the password and the Poly1305 tag"
    );

    eventually(
        Duration::from_secs(30),
        "the connection test to resolve the issue and lift the pause",
        || {
            let resolved = open_issues(&env, "ingram", "credentials_rejected").is_empty()
                && env.status_of("ingram")["paused"] == false;
            async move { resolved.then_some(()) }
        },
    )
    .await;
    let log = daemon.log();
    assert!(
        log.contains("connection test passed") && log.contains("CredentialChange"),
        "{log}"
    );
    let listed = credentials_list(&env);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["credential"], "acme/ingram");
    assert_eq!(listed[0]["field"], "password");
    assert_eq!(listed[0]["masked"], "••••word", "{listed:?}");
    assert!(listed[0]["last_used_at"].is_string(), "{listed:?}");
    assert_eq!(listed[0]["used_by"][0], "acme/ingram");

    // The integration works again: a re-fetch imports the file with the stored password.
    assert!(env.run(&["refetch", "acme/ingram"]).status.success());
    let status =
        wait_for_outcome(&env, "ingram", Duration::from_secs(30), |o| o == "success").await;
    assert_eq!(status["items"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_is_refused_by_name_and_loses_nothing() {
    let fake = FakeDistributor::start(Reply::csv(GOOD)).await;
    let env = TestEnv::sqlite();
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("ingram", &fake.url("/p.csv")).replace(
                "password_env = \"ACME_FEED_PASSWORD\"",
                "credential = \"acme/ingram\""
            )
        ),
    );
    let secret = "correct-horse-battery-staple";
    let out = set(&env, &["acme/ingram"], secret);
    assert!(out.status.success(), "{}", text(&out));

    let key_file = env.dir.path().join("master.key");
    let right_key = std::fs::read_to_string(&key_file).unwrap();
    std::fs::write(&key_file, "11".repeat(32)).unwrap();

    // The daemon does not start, and says which key is wrong and where it came from.
    let mut daemon = env.spawn();
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    let log = daemon.log();
    assert!(
        log.contains("master key from file")
            && log.contains("master.key")
            && log.contains("[credentials] key_file")
            && log.contains("nothing was read, changed or deleted"),
        "{log}"
    );
    assert!(
        !log.contains(&"11".repeat(32)),
        "the key itself is never printed"
    );

    // Nothing is written, nothing deleted with that key.
    let out = set(&env, &["acme/ingram"], "a-replacement-secret");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("master key from file"),
        "{}",
        text(&out)
    );
    let out = env.run(&["credentials", "delete", "acme/ingram"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not deleted"), "{}", text(&out));
    let out = env.run(&["test-connection", "acme/ingram"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("master key from file"),
        "{}",
        text(&out)
    );
    let out = env.run(&["credentials", "list"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("(cannot decrypt)") && text(&out).contains("acme/ingram"),
        "{}",
        text(&out)
    );

    // A key that is not a key at all is named too.
    std::fs::write(&key_file, "not a key").unwrap();
    let out = env.run(&["credentials", "list"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("master.key") && text(&out).contains("64 hex digits"),
        "{}",
        text(&out)
    );

    // With the right key back, the credential is there as it was.
    std::fs::write(&key_file, right_key).unwrap();
    let config = syncd::config::Config::load(&env.config_path(), true).unwrap();
    let store = env.store().await;
    let secrets = syncd::credentials::Secrets::open(&config, &store)
        .await
        .unwrap();
    let got = secrets
        .resolve(
            "acme/ingram",
            &syncd::catalog::SecretRef::Stored {
                credential: "acme/ingram".into(),
                field: "password".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(got.expose_secret(), secret);
    let out = env.run(&["test-connection", "acme/ingram"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        fake.seen().last().unwrap().headers["authorization"],
        "Basic YWNtZTpjb3JyZWN0LWhvcnNlLWJhdHRlcnktc3RhcGxl",
        "the stored password is what is sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiring_is_raised_before_expiry_survives_successes_and_is_resolved_when_replaced() {
    let fake = FakeDistributor::start(Reply::csv(GOOD)).await;
    let env = TestEnv::sqlite().with_config(
        r#"
[scheduler]
stale_check_every = "1s"
[credentials]
expiry_warning = "168h"
"#,
    );
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("ingram", &fake.url("/p.csv")).replace(
                "password_env = \"ACME_FEED_PASSWORD\"",
                "credential = \"acme/ingram\""
            )
        ),
    );
    let in_two_days = (chrono::Utc::now() + chrono::Duration::days(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let out = set(
        &env,
        &["acme/ingram", "--expires-at", &in_two_days],
        "expiring-password-0001",
    );
    assert!(out.status.success(), "{}", text(&out));
    let _daemon = env.spawn();
    let issue = wait_for_issue(&env, "ingram", "token_expiring", Duration::from_secs(20)).await;
    let message = issue["message"].as_str().unwrap();
    assert!(
        message.contains("acme/ingram") && message.contains(&in_two_days),
        "{message}"
    );
    assert!(
        issue["hint"]
            .as_str()
            .unwrap()
            .contains("syncd credentials set acme/ingram"),
        "{issue}"
    );
    assert_eq!(
        credentials_list(&env)[0]["expires_at"],
        in_two_days.as_str(),
        "list shows the expiry"
    );

    // A successful run says nothing about the expiry: the warning stays.
    wait_for_outcome(&env, "ingram", Duration::from_secs(30), |o| o == "success").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(open_issues(&env, "ingram", "token_expiring").len(), 1);

    // The renewed credential, valid for a year: the warning is resolved.
    let next_year = (chrono::Utc::now() + chrono::Duration::days(365))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let out = set(
        &env,
        &["acme/ingram", "--expires-at", &next_year],
        "renewed-password-0002",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(open_issues(&env, "ingram", "token_expiring").is_empty());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        open_issues(&env, "ingram", "token_expiring").is_empty(),
        "the scheduler does not raise it again"
    );
    let resolved: Vec<Value> = env
        .issues(true)
        .into_iter()
        .filter(|i| i["kind"] == "token_expiring")
        .collect();
    assert_eq!(resolved.len(), 1);
    assert!(resolved[0]["resolved_at"].is_string());

    // A lapsed credential says so.
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let out = set(
        &env,
        &["acme/ingram", "--expires-at", &yesterday],
        "renewed-password-0002",
    );
    assert!(out.status.success(), "{}", text(&out));
    let issue = wait_for_issue(&env, "ingram", "token_expiring", Duration::from_secs(10)).await;
    assert!(
        issue["message"].as_str().unwrap().contains("expired at"),
        "{issue}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_refuses_a_credential_of_another_tenant_and_mixed_sources() {
    let env = TestEnv::sqlite();
    for (entry, words) in [
        (
            "[[feed]]\nname = \"f\"\nurl = \"https://x.example/p.csv\"\nschedule = \"every 1h\"\nauth = { kind = \"basic\", username = \"u\", credential = \"globex/f\" }\n[feed.columns]\nsku = 1\nprice = 2\n",
            "tenant `acme` may only use its own credentials",
        ),
        (
            "[[feed]]\nname = \"f\"\nurl = \"https://x.example/p.csv\"\nschedule = \"every 1h\"\nauth = { kind = \"basic\", username = \"u\", credential = \"acme/f\", password_env = \"X\" }\n[feed.columns]\nsku = 1\nprice = 2\n",
            "not both",
        ),
        (
            "[[crm]]\nname = \"h\"\nprovider = \"hubspot\"\nschedule = \"every 1h\"\ncredential = \"acme/h\"\ntoken_env = \"X\"\n",
            "key `credential` replaces the `…_env` keys",
        ),
    ] {
        env.write_catalog("acme", &format!("tenant = \"acme\"\n{entry}"));
        let out = env.run(&["check-config"]);
        assert!(!out.status.success());
        let t = text(&out);
        assert!(t.contains("acme.toml") && t.contains(words), "{t}");
    }
}

/// Every secret of the scenario below, as a test would grep for it.
struct Known(Vec<String>);

impl Known {
    fn assert_absent(&self, what: &str, text: &str) {
        for s in &self.0 {
            assert!(
                !text.contains(s.as_str()),
                "a secret appears in {what}:\n{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_logs_issues_outputs_or_listings() {
    const HUBSPOT_TOKEN: &str = "pat-na1-leakcheck-11111111-2222";
    const WRONG_TOKEN: &str = "pat-na1-leakcheck-revoked-3333";
    const CLIENT_SECRET: &str = "oauth-client-secret-leakcheck-4444";
    const REFRESH: &str = "oauth-refresh-leakcheck-5555";
    const FEED_PASSWORD: &str = "feed-password-leakcheck-6666";
    const ENV_PASSWORD: &str = "env-feed-password-leakcheck-7777";
    const ADMIN_TOKEN: &str = "admin-operator-token-leakcheck-8888";

    let hubspot = FakeHubSpot::start(HubSpotOptions {
        limit_per_10s: 5000,
        search_per_second: 100,
        ..Default::default()
    })
    .await;
    hubspot.add_private_app_token(HUBSPOT_TOKEN);
    hubspot.add_oauth_client("client-leakcheck", CLIENT_SECRET, REFRESH);
    hubspot.add_companies(5);
    let feed = FakeDistributor::start(Reply::status(401)).await;
    let admin_port = free_port();
    let env = TestEnv::sqlite().with_config(&format!(
        r#"
[log]
filter = "debug"
[crm]
hubspot_per_10s = 5000
hubspot_search_per_second = 100
[admin]
bind = "127.0.0.1:{admin_port}"
token_env = "LEAK_ADMIN_TOKEN"
"#
    ));
    env.write_catalog(
        "acme",
        &format!(
            r#"tenant = "acme"
[[crm]]
name = "hubspot"
provider = "hubspot"
schedule = "every 24h"
base_url = "{hs}"
credential = "acme/hubspot"

[[crm]]
name = "hubspot-oauth"
provider = "hubspot"
schedule = "every 24h"
base_url = "{hs}"
client_id = "client-leakcheck"
credential = "acme/hubspot-oauth"

[[feed]]
name = "stored"
url = "{url}"
schedule = "every 24h"
auth = {{ kind = "basic", username = "acme", credential = "acme/stored" }}
[feed.columns]
sku = "sku"
price = "price"

[[feed]]
name = "from-env"
url = "{url}"
schedule = "every 24h"
auth = {{ kind = "bearer", token_env = "ACME_LEAK_FEED_TOKEN" }}
[feed.columns]
sku = "sku"
price = "price"
"#,
            hs = hubspot.url,
            url = feed.url("/p.csv"),
        ),
    );
    let vars = [
        ("ACME_LEAK_FEED_TOKEN", ENV_PASSWORD),
        ("LEAK_ADMIN_TOKEN", ADMIN_TOKEN),
    ];
    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut record = |what: &str, out: Output| {
        outputs.push((what.to_string(), text(&out)));
        out
    };

    // Refused first: a revoked HubSpot token and a feed portal answering 401.
    record("set", set(&env, &["acme/hubspot"], WRONG_TOKEN));
    record("set", set(&env, &["acme/stored"], FEED_PASSWORD));
    record(
        "set",
        set(
            &env,
            &["acme/hubspot-oauth", "--field", "client_secret"],
            CLIENT_SECRET,
        ),
    );
    record(
        "set",
        set(
            &env,
            &["acme/hubspot-oauth", "--field", "refresh_token"],
            REFRESH,
        ),
    );
    let daemon = env.spawn_with_env(&vars);
    wait_for_issue(
        &env,
        "hubspot",
        "credentials_rejected",
        Duration::from_secs(30),
    )
    .await;
    wait_for_issue(
        &env,
        "stored",
        "credentials_rejected",
        Duration::from_secs(30),
    )
    .await;
    wait_for_issue(
        &env,
        "from-env",
        "credentials_rejected",
        Duration::from_secs(30),
    )
    .await;
    wait_for_outcome(&env, "hubspot-oauth", Duration::from_secs(30), |o| {
        o == "success"
    })
    .await;
    for args in [
        &["test-connection", "acme/hubspot"][..],
        &["test-connection", "acme/stored"],
        &["test-connection", "acme/from-env"],
        &["test-connection", "acme/hubspot-oauth", "--json"],
    ] {
        record("test-connection", env.run_with_env(args, &vars));
    }

    // Renewed: the admin's loop for the HubSpot token and the feed.
    feed.set_fallback(Reply::csv(GOOD));
    record("set", set(&env, &["acme/hubspot"], HUBSPOT_TOKEN));
    record("set", set(&env, &["acme/stored"], FEED_PASSWORD));
    eventually(
        Duration::from_secs(30),
        "the renewed HubSpot token to pass",
        || {
            let ok = open_issues(&env, "hubspot", "credentials_rejected").is_empty()
                && open_issues(&env, "stored", "credentials_rejected").is_empty();
            async move { ok.then_some(()) }
        },
    )
    .await;
    record("refetch", env.run(&["refetch", "acme/hubspot"]));
    wait_for_outcome(&env, "hubspot", Duration::from_secs(30), |o| o == "success").await;

    for args in [
        &["credentials", "list"][..],
        &["credentials", "list", "--json"],
        &["issues", "--all"],
        &["issues", "--all", "--json"],
        &["status", "--json"],
        &["status"],
        &["check-config"],
    ] {
        record(&args.join(" "), env.run_with_env(args, &vars));
    }
    // An error path quotes no secret either: a field no integration reads, a bad date.
    record(
        "set with a bad date",
        set(
            &env,
            &["acme/stored", "--expires-at", "soon"],
            FEED_PASSWORD,
        ),
    );

    // Tokens the provider handed out during the run count as secrets too.
    let mut known = vec![
        HUBSPOT_TOKEN,
        WRONG_TOKEN,
        CLIENT_SECRET,
        REFRESH,
        FEED_PASSWORD,
        ENV_PASSWORD,
        ADMIN_TOKEN,
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    known.extend(
        hubspot
            .requests()
            .into_iter()
            .filter_map(|r| r.token)
            .filter(|t| !t.is_empty()),
    );
    known.extend(hubspot.current_refresh_token("client-leakcheck"));
    known.sort();
    known.dedup();
    assert!(
        known.len() > 6,
        "the OAuth run handed out tokens: {known:?}"
    );
    let known = Known(known);

    // What the running daemon serves: a live /metrics scrape and the admin API's JSON.
    let http = reqwest::Client::new();
    for (path, expected) in [
        ("/metrics", "syncd_jobs_finished_total"),
        ("/api/issues?all=true", "credentials_rejected"),
        ("/api/status", "hubspot-oauth"),
    ] {
        let resp = http
            .get(format!("http://127.0.0.1:{admin_port}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        let body = resp.text().await.unwrap();
        assert!(
            body.contains(expected),
            "GET {path} answered with the daemon's data: {body}"
        );
        known.assert_absent(&format!("GET {path}"), &body);
    }

    let log = daemon.log();
    assert!(log.contains("DEBUG"), "the daemon logged at debug level");
    known.assert_absent("the daemon log", &log);
    for (what, out) in &outputs {
        known.assert_absent(what, out);
    }
    for issue in env.issues(true) {
        known.assert_absent("an issue", &issue.to_string());
    }
    let listed = env.json(&["credentials", "list", "--json"]).to_string();
    known.assert_absent("credentials list", &listed);
    assert!(listed.contains("••••2222"), "{listed}");

    // At rest: the stored credentials and the rotated OAuth tokens are ciphertext only.
    let db = env.raw_state().await;
    for s in &known.0 {
        assert!(
            !contains(&db, s),
            "a secret is in the database file in clear"
        );
    }
}

#[test]
fn the_master_key_comes_from_the_systemd_credentials_directory_or_the_environment_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("master.key"), "ab".repeat(32)).unwrap();
    let check = |vars: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncd"))
            .arg("--config")
            .arg(&config)
            .arg("check-config")
            .current_dir(dir.path())
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("SYNCD_MASTER_KEY")
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        (out.status.success(), text(&out))
    };
    let (ok, out) = check(&[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())]);
    assert!(ok, "{out}");
    assert!(
        out.contains("master key:      file") && out.contains("$CREDENTIALS_DIRECTORY"),
        "{out}"
    );
    let b64 = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";
    let (ok, out) = check(&[("SYNCD_MASTER_KEY", b64)]);
    assert!(ok, "{out}");
    assert!(
        out.contains("environment variable SYNCD_MASTER_KEY ([credentials] key_env)"),
        "{out}"
    );
    let (ok, out) = check(&[("SYNCD_MASTER_KEY", "hunter2-is-not-a-key")]);
    assert!(!ok);
    assert!(
        out.contains("SYNCD_MASTER_KEY") && !out.contains("hunter2-is-not-a-key"),
        "{out}"
    );
    // An empty credentials directory (systemd without the key) falls back to the variable.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (ok, out) = check(&[
        ("CREDENTIALS_DIRECTORY", empty.to_str().unwrap()),
        ("SYNCD_MASTER_KEY", b64),
    ]);
    assert!(ok && out.contains("SYNCD_MASTER_KEY"), "{out}");
}
