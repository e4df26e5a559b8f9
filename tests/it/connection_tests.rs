//! `syncd test-connection`: one verdict line, exit 0 only on success; a pass clears
//! credential and connection issues and lifts the pause. And staleness, raised and resolved.

use crate::feed_http::GOOD;
use crate::support::fake_distributor::{FakeDistributor, Reply};
use crate::support::helpers::*;
use std::time::Duration;

fn verdict(env: &TestEnv) -> (i32, String) {
    let out = env.run(&["test-connection", "acme/prices"]);
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_gives_one_verdict_per_failure_and_exits_zero_only_when_ok() {
    let fake = FakeDistributor::start(
        Reply::csv(GOOD).header("last-modified", "Sun, 29 Nov 2026 01:00:00 GMT"),
    )
    .await;
    let env = TestEnv::sqlite();
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("prices", &fake.url("/p.csv"))
        ),
    );

    let (code, line) = verdict(&env);
    assert_eq!(code, 0, "{line}");
    assert!(
        line.starts_with("acme/prices: ok: HEAD http://127.0.0.1:")
            && line.contains("last modified"),
        "{line}"
    );
    assert!(
        fake.seen()[0].headers.contains_key("authorization"),
        "the test uses the configured credentials"
    );

    for (reply, words) in [
        (Reply::status(401), "credentials rejected"),
        (Reply::status(404), "file missing"),
        (Reply::status(503), "unreachable"),
        (Reply::login_page("text/html"), "credentials rejected"),
    ] {
        fake.then([reply]);
        let (code, line) = verdict(&env);
        assert_ne!(code, 0, "{line}");
        assert!(
            line.starts_with(&format!("acme/prices: {words}: ")),
            "{line}"
        );
    }

    // A portal that refuses HEAD is asked for its first byte instead.
    fake.then([Reply::status(405)]);
    let (code, line) = verdict(&env);
    assert_eq!(code, 0, "{line}");
    assert!(
        line.contains("GET") && line.contains("first byte"),
        "{line}"
    );
    assert_eq!(fake.seen().last().unwrap().headers["range"], "bytes=0-0");

    // Nothing listens on this port.
    let port = free_port();
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("prices", &format!("http://127.0.0.1:{port}/p.csv"))
        ),
    );
    let (code, line) = verdict(&env);
    assert_ne!(code, 0);
    assert!(
        line.starts_with("acme/prices: unreachable: ") && line.contains("connect"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_test_resolves_credential_issues_and_lifts_the_pause() {
    let fake = FakeDistributor::start(Reply::status(401)).await;
    let env = TestEnv::sqlite();
    // No `auth`: the in-process import below has no secret in its environment.
    let feed = env.http_feed("prices", &fake.url("/p.csv"));
    let feed: String = feed
        .lines()
        .filter(|l| !l.starts_with("auth"))
        .map(|l| format!("{l}\n"))
        .collect();
    env.write_catalog("acme", &format!("tenant = \"acme\"\n{feed}"));
    import_once(&env, "prices", false, false).await;
    assert_eq!(env.status_of("prices")["paused"], true);
    assert_eq!(open_issues(&env, "prices", "credentials_rejected").len(), 1);

    fake.set_fallback(Reply::csv(GOOD));
    let (code, line) = verdict(&env);
    assert_eq!(code, 0, "{line}");
    assert_eq!(env.status_of("prices")["paused"], false);
    assert!(env.issues(false).is_empty());
    assert_eq!(
        env.store()
            .await
            .prices("acme", "prices")
            .await
            .unwrap()
            .len(),
        0,
        "a test downloads nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_data_is_raised_once_and_resolved_by_the_next_success() {
    let env = TestEnv::sqlite().with_config("[scheduler]\nstale_check_every = \"200ms\"");
    std::fs::write(env.dir.path().join("jobs/acme/p.csv"), GOOD).unwrap();
    env.write_catalog(
        "acme",
        "tenant = \"acme\"\n[[feed]]\nname = \"prices\"\nurl = \"file:p.csv\"\nschedule = \"every 24h\"\nstale_after = \"2s\"\n[feed.columns]\nsku = \"sku\"\nprice = \"price\"\n",
    );
    let _daemon = env.spawn();
    wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "success").await;
    let issue = wait_for_issue(&env, "prices", "stale_data", Duration::from_secs(20)).await;
    assert!(
        issue["message"]
            .as_str()
            .unwrap()
            .contains("last successful sync was at"),
        "{issue}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        open_issues(&env, "prices", "stale_data")[0]["occurrences"],
        1,
        "raised once, not every check"
    );

    assert!(
        env.run(&["refetch", "acme/prices", "--force"])
            .status
            .success()
    );
    eventually(Duration::from_secs(20), "stale_data resolved", || {
        let open = open_issues(&env, "prices", "stale_data").is_empty();
        async move { open.then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_connection_test_job_lifts_a_pause_when_it_passes() {
    let fake = FakeDistributor::start(Reply::status(401)).await;
    let env = TestEnv::sqlite();
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("prices", &fake.url("/p.csv"))
        ),
    );
    let _daemon = env.spawn();
    wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "rejected").await;
    fake.set_fallback(Reply::csv(GOOD));

    let config =
        std::sync::Arc::new(syncd::config::Config::load(&env.config_path(), true).unwrap());
    let store = env.store().await;
    let queue = syncd::jobs::connect_queue(config, &store).await.unwrap();
    let job = syncd::jobs::Job::new(
        syncd::jobs::JobKind::ConnectionTest,
        "acme",
        "prices",
        syncd::jobs::Trigger::Refetch,
    );
    queue.push(&job, None, None).await.unwrap();
    eventually(Duration::from_secs(20), "the pause to lift", || {
        let lifted = env.status_of("prices")["paused"] == false;
        async move { lifted.then_some(()) }
    })
    .await;
    assert!(env.issues(false).is_empty());
    assert_eq!(
        env.store()
            .await
            .prices("acme", "prices")
            .await
            .unwrap()
            .len(),
        0,
        "a test downloads nothing"
    );
}
