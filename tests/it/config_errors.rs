//! Bad configuration and catalog files: a non-zero exit and a message naming file and key.

use crate::support::helpers::*;

fn check(env: &TestEnv) -> (bool, String) {
    let out = env.run(&["check-config"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_config_summarises_a_good_setup() {
    let env = TestEnv::sqlite();
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("prices", "https://feeds.example.com/p.csv")
        ),
    );
    let (ok, text) = check(&env);
    assert!(ok, "{text}");
    assert!(text.contains("1 tenant, 1 integration"), "{text}");
    assert!(text.contains("queue backend:   sqlite"), "{text}");
    assert!(text.contains("acme/prices: feed, every 1h"), "{text}");
}

#[test]
fn an_unknown_config_key_names_the_file_and_the_key() {
    let env = TestEnv::sqlite().with_config("[issues]\ntransient_treshold = 3");
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("config.toml") && text.contains("transient_treshold"),
        "{text}"
    );
}

#[test]
fn a_bad_config_value_names_the_file_and_the_key() {
    let env = TestEnv::sqlite().with_config("[retry]\nmax_attempts = 0");
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("config.toml") && text.contains("[retry] max_attempts"),
        "{text}"
    );

    let env = TestEnv::sqlite().with_config("[http]\nread_timeout = \"a while\"");
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("http.read_timeout") && text.contains("a while"),
        "{text}"
    );
}

#[test]
fn an_environment_override_is_validated_like_the_file() {
    let env = TestEnv::sqlite();
    let out = std::process::Command::new(crate::support::helpers::syncd_bin())
        .args(["--config"])
        .arg(env.config_path())
        .arg("check-config")
        .env("SYNCD__QUEUE__BACKEND", "kafka")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("queue.backend") && text.contains("kafka"),
        "{text}"
    );
}

#[test]
fn an_unknown_catalog_key_names_the_file_and_the_key() {
    let env = TestEnv::sqlite();
    env.write_catalog("acme", "tenant = \"acme\"\n[[feed]]\nname = \"p\"\nurll = \"https://x.example/p.csv\"\nschedule = \"every 1h\"\n");
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("acme.toml") && text.contains("urll"),
        "{text}"
    );
}

#[test]
fn a_duplicate_integration_name_names_the_file_and_the_key() {
    let env = TestEnv::sqlite();
    let feed = env.http_feed("prices", "https://feeds.example.com/p.csv");
    env.write_catalog("acme", &format!("tenant = \"acme\"\n{feed}{feed}"));
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("acme.toml") && text.contains("key `name`") && text.contains("prices"),
        "{text}"
    );
}

#[test]
fn a_bad_schedule_and_a_header_name_without_header_are_named() {
    let env = TestEnv::sqlite();
    let feed = env
        .http_feed("prices", "https://feeds.example.com/p.csv")
        .replace("every 1h", "every blue moon");
    env.write_catalog("acme", &format!("tenant = \"acme\"\n{feed}"));
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("acme.toml") && text.contains("schedule") && text.contains("blue moon"),
        "{text}"
    );

    let feed = env
        .http_feed("prices", "https://feeds.example.com/p.csv")
        .replace(
            "[feed.columns]",
            "[feed.format]\nheader = false\n[feed.columns]",
        );
    env.write_catalog("acme", &format!("tenant = \"acme\"\n{feed}"));
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("columns.sku") && text.contains("format.header = false"),
        "{text}"
    );
}

#[test]
fn a_second_refetch_while_one_is_pending_says_so() {
    let env = TestEnv::sqlite();
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("prices", "https://feeds.example.com/p.csv")
        ),
    );
    let first = env.run(&["refetch", "acme/prices"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("queued a re-fetch of acme/prices"));
    let second = env.run(&["refetch", "acme/prices", "--force"]);
    assert!(second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("already queued"),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );

    let unknown = env.run(&["refetch", "acme/nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no integration named `nope`"));
}

#[test]
fn an_unreachable_postgresql_state_says_why_without_the_password() {
    // Port 1 on loopback: nothing listens there.
    let env = TestEnv::sqlite()
        .with_config("[state]\nurl = \"postgres://syncd:hunter2-secret@127.0.0.1:1/syncd\"");
    let out = env.run(&["status"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("127.0.0.1:1/syncd") && text.contains("refused"),
        "{text}"
    );
    assert!(!text.contains("hunter2-secret"), "{text}");
}

#[test]
fn a_missing_postgresql_database_is_named_with_what_to_do() {
    let server = postgres_server();
    let env = TestEnv::sqlite().with_config(&format!(
        "[state]\nurl = \"{server}/syncd_no_such_database\""
    ));
    let out = env.run(&["status"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("syncd_no_such_database") && text.contains("createdb"),
        "{text}"
    );
}

#[test]
fn a_state_url_of_another_database_is_refused_by_check_config() {
    let env = TestEnv::sqlite().with_config("[state]\nurl = \"mysql://127.0.0.1/syncd\"");
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("config.toml") && text.contains("[state] url"),
        "{text}"
    );
}

#[test]
fn a_tenant_file_naming_another_tenants_or_the_daemons_variables_is_refused_by_file_and_key() {
    // mallory tries to have its feed's password read from acme's secret, from the state
    // database URL, from the master key and from systemd's credentials directory: each would
    // send that value to a host of mallory's choosing.
    for (key, var, why) in [
        (
            "auth.password_env",
            "ACME_INGRAM_PASSWORD",
            "not tenant `mallory`'s variable",
        ),
        ("auth.password_env", "SYNCD__STATE__URL", "daemon's own"),
        ("auth.password_env", "SYNCD_MASTER_KEY", "daemon's own"),
        ("auth.password_env", "CREDENTIALS_DIRECTORY", "daemon's own"),
        (
            "token_env",
            "ACME_HUBSPOT_TOKEN",
            "not tenant `mallory`'s variable",
        ),
        (
            "secret_env",
            "ACME_ERP_WEBHOOK_SECRET",
            "not tenant `mallory`'s variable",
        ),
    ] {
        let env = TestEnv::sqlite();
        env.write_catalog(
            "acme",
            &format!(
                "tenant = \"acme\"\n{}",
                env.http_feed("prices", "https://feeds.example.com/p.csv")
            ),
        );
        let entry = match key {
            "token_env" => format!(
                "[[crm]]\nname = \"hubspot\"\nprovider = \"hubspot\"\nschedule = \"every 24h\"\ntoken_env = \"{var}\"\n"
            ),
            "secret_env" => format!(
                "[[webhook]]\nname = \"hook\"\nurl = \"https://hooks.example.com/in\"\nevents = [\"*\"]\nsecret_env = \"{var}\"\n"
            ),
            _ => env
                .http_feed("steal", "https://mallory.example.com/p.csv")
                .replace("ACME_FEED_PASSWORD", var),
        };
        env.write_catalog("mallory", &format!("tenant = \"mallory\"\n{entry}"));
        let (ok, text) = check(&env);
        assert!(!ok, "{var}: {text}");
        assert!(
            text.contains("mallory.toml")
                && text.contains(&format!("key `{key}`"))
                && text.contains(var)
                && text.contains(why),
            "{var}: {text}"
        );
    }
    // Its own variables are fine.
    let env = TestEnv::sqlite();
    env.write_catalog(
        "mallory",
        &format!(
            "tenant = \"mallory\"\n{}",
            env.http_feed("own", "https://mallory.example.com/p.csv")
                .replace("ACME_", "MALLORY_")
        ),
    );
    let (ok, text) = check(&env);
    assert!(ok, "{text}");
}

#[test]
fn the_operator_sets_a_tenants_variable_prefix_in_config_toml_not_the_tenant() {
    let env = TestEnv::sqlite().with_config("[tenants.acme]\nenv_prefix = \"AC1_\"");
    let feed = env.http_feed("prices", "https://feeds.example.com/p.csv");
    env.write_catalog("acme", &format!("tenant = \"acme\"\n{feed}"));
    let (ok, text) = check(&env);
    assert!(!ok && text.contains("`AC1_`"), "{text}");
    env.write_catalog(
        "acme",
        &format!("tenant = \"acme\"\n{}", feed.replace("ACME_", "AC1_")),
    );
    let (ok, text) = check(&env);
    assert!(ok, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_tenant_file_takes_out_that_tenant_only() {
    use crate::feed_http::GOOD;
    use crate::support::fake_distributor::{FakeDistributor, Reply};
    use std::time::Duration;

    let fake = FakeDistributor::start(Reply::csv(GOOD)).await;
    let env = TestEnv::sqlite();
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("prices", &fake.url("/p.csv"))
        ),
    );
    // mallory's file has a typo; before, it stopped every tenant at start-up.
    let good_mallory = format!(
        "tenant = \"mallory\"\n{}",
        env.http_feed("feed", &fake.url("/m.csv"))
            .replace("ACME_", "MALLORY_")
    );
    env.write_catalog(
        "mallory",
        &good_mallory.replace("schedule = ", "shedule = "),
    );

    // Deploys still gate on check-config.
    let (ok, text) = check(&env);
    assert!(!ok, "{text}");
    assert!(
        text.contains("mallory.toml") && text.contains("shedule"),
        "{text}"
    );

    let mallory_env = [("MALLORY_FEED_PASSWORD", "mallory-password")];
    let mut daemon = env.spawn_with_env(&mallory_env);
    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(30), |o| o == "success").await;
    assert_eq!(status["items"], 3, "acme runs on schedule");
    let issue = wait_for_issue(&env, "catalog", "misconfigured", Duration::from_secs(10)).await;
    assert_eq!(issue["tenant"], "mallory");
    let message = issue["message"].as_str().unwrap();
    assert!(
        message.contains("mallory.toml") && message.contains("shedule"),
        "{message}"
    );
    assert!(
        env.issues(false).iter().all(|i| i["tenant"] != "acme"),
        "acme has no issue"
    );
    assert!(
        !fake.seen().iter().any(|r| r.path == "/m.csv"),
        "mallory's broken file runs nothing"
    );

    // The read-only commands work during the incident, and say what is left out.
    for args in [
        &["status", "--json"][..],
        &["issues", "--json"],
        &["deliveries", "--json"],
        &["tokens", "list", "--json"],
        &["credentials", "list", "--json"],
    ] {
        let out = env.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains("mallory.toml") && stderr.contains("left out"),
            "{args:?}: {stderr}"
        );
    }

    // Fixed and restarted: the issue is resolved and mallory runs too.
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(20));
    env.write_catalog("mallory", &good_mallory);
    let (ok, text) = check(&env);
    assert!(ok, "{text}");
    let _daemon = env.spawn_with_env(&mallory_env);
    eventually(Duration::from_secs(30), "mallory's feed to run", || {
        let ran = fake.seen().iter().any(|r| r.path == "/m.csv");
        async move { ran.then_some(()) }
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the catalog issue to resolve",
        || {
            let open = env
                .issues(false)
                .into_iter()
                .any(|i| i["tenant"] == "mallory" && i["integration"] == "catalog");
            async move { (!open).then_some(()) }
        },
    )
    .await;
}

#[test]
fn a_tenant_file_naming_files_outside_its_own_directory_is_refused_by_file_and_key() {
    let columns = "[feed.columns]\nsku = \"sku\"\nprice = \"price\"\n";
    for (entry, key) in [
        ("url = \"file:../acme/p.csv\"", "key `url`"),
        (
            "url = \"file:///run/credentials/syncd.service/master.key\"",
            "key `url`",
        ),
        (
            "url = \"ftps://ftp.example.com/p.csv\"\nca_file = \"../../config.toml\"",
            "key `ca_file`",
        ),
        (
            "url = \"sftp://sftp.example.com/p.csv\"\nauth = { kind = \"ssh_key\", username = \"m\", key_file = \"/etc/ssh/ssh_host_ed25519_key\" }",
            "key `auth.key_file`",
        ),
    ] {
        let env = TestEnv::sqlite();
        env.write_catalog(
            "mallory",
            &format!(
                "tenant = \"mallory\"\n[[feed]]\nname = \"steal\"\nschedule = \"every 1h\"\n{entry}\n{columns}"
            ),
        );
        let (ok, text) = check(&env);
        assert!(!ok, "{entry}: {text}");
        assert!(
            text.contains("mallory.toml")
                && text.contains(key)
                && text.contains("outside the tenant's directory"),
            "{entry}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_planted_in_a_tenants_directory_cannot_read_another_tenants_file() {
    use std::time::Duration;
    let env = TestEnv::sqlite();
    let acme_file = env.dir.path().join("jobs/acme/p.csv");
    std::fs::write(&acme_file, "sku,price\nACME-SECRET-PART,123.45\n").unwrap();
    env.write_catalog(
        "mallory",
        "tenant = \"mallory\"\n[[feed]]\nname = \"steal\"\nurl = \"file:p.csv\"\nschedule = \"every 1h\"\n[feed.columns]\nsku = \"sku\"\nprice = \"price\"\n",
    );
    // The path as written is inside mallory's directory; what it leads to is not.
    std::os::unix::fs::symlink(&acme_file, env.dir.path().join("jobs/mallory/p.csv")).unwrap();
    let (ok, text) = check(&env);
    assert!(ok, "{text}");

    let out = env.run(&["test-connection", "mallory/steal"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("outside the tenant's directory"), "{said}");

    let _daemon = env.spawn();
    let issue = wait_for_issue(&env, "steal", "misconfigured", Duration::from_secs(30)).await;
    assert_eq!(issue["tenant"], "mallory");
    let message = issue["message"].as_str().unwrap();
    assert!(
        message.contains("outside the tenant's directory"),
        "{message}"
    );
    assert!(
        !message.contains("ACME-SECRET-PART") && !message.contains("jobs/acme"),
        "neither acme's data nor where the link leads: {message}"
    );
    let status = env.json(&["status", "--tenant", "mallory", "--json"]);
    assert_ne!(status[0]["last_outcome"], "success");
}
