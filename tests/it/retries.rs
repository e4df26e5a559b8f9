//! Outcomes and durable retries as the distributor sees them: how many requests, how far apart.

use crate::feed_http::GOOD;
use crate::support::fake_distributor::{FakeDistributor, Reply};
use crate::support::helpers::*;
use std::time::Duration;

fn feed_env(fake: &FakeDistributor, config: &str) -> TestEnv {
    let env = TestEnv::sqlite().with_config(config);
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("prices", &fake.url("/p.csv"))
        ),
    );
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_errors_are_retried_with_backoff_then_succeed_without_an_issue() {
    let fake = FakeDistributor::start(Reply::csv(GOOD)).await;
    fake.then([Reply::status(500), Reply::status(500)]);
    let env = feed_env(&fake, "[retry]\nbase = \"1s\"\ncap = \"4s\"");
    let daemon = env.spawn();

    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(30), |o| o == "success").await;
    assert_eq!(status["items"], 3);
    assert_eq!(fake.count(), 3, "two failures, one success");
    assert!(
        env.issues(true).is_empty(),
        "below the threshold: no issue at all"
    );
    let log = daemon.log();
    let retries: Vec<&str> = log.lines().filter(|l| l.contains("will retry")).collect();
    assert_eq!(retries.len(), 2, "{log}");
    assert!(
        retries[0].contains("HTTP 500"),
        "the failure is logged specifically: {}",
        retries[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_opens_connection_failed_while_retrying_and_success_resolves_it() {
    let fake = FakeDistributor::start(Reply::csv(GOOD)).await;
    fake.then((0..5).map(|_| Reply::status(503)));
    let env = feed_env(
        &fake,
        "[retry]\nbase = \"500ms\"\ncap = \"1s\"\n[issues]\ntransient_threshold = 3",
    );
    let _daemon = env.spawn();

    // After the third failure the issue is open while retries continue.
    let issue = wait_for_issue(&env, "prices", "connection_failed", Duration::from_secs(30)).await;
    let message = issue["message"].as_str().unwrap();
    assert!(
        message.contains("HTTP 503") && message.contains("/p.csv"),
        "{message}"
    );
    assert!(
        issue["hint"]
            .as_str()
            .unwrap()
            .contains("refetch acme/prices")
    );

    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(30), |o| o == "success").await;
    assert_eq!(fake.count(), 6);
    assert_eq!(status["last_error"], serde_json::Value::Null);
    assert!(env.issues(false).is_empty(), "the success resolved it");
    let all = env.issues(true);
    assert_eq!(all.len(), 1, "one row for the whole outage: {all:?}");
    assert!(
        all[0]["occurrences"].as_i64().unwrap() >= 3,
        "repeats bump the counter: {all:?}"
    );
    assert!(all[0]["resolved_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_are_tried_once_and_pause_the_integration() {
    let fake = FakeDistributor::start(Reply::status(401)).await;
    let env = feed_env(&fake, "");
    let _daemon = env.spawn();

    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "rejected").await;
    assert_eq!(status["paused"], true);
    let issues = open_issues(&env, "prices", "credentials_rejected");
    assert_eq!(issues.len(), 1);
    let message = issues[0]["message"].as_str().unwrap();
    assert!(message.contains("HTTP 401"), "{message}");
    assert!(
        !message.contains("s3cret-feed-password"),
        "never a secret in an issue"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(fake.count(), 1, "a refused password is never retried");

    // The operator renews the password and re-fetches: it runs although paused, and the
    // success resolves the issue and lifts the pause.
    fake.set_fallback(Reply::csv(GOOD));
    assert!(env.run(&["refetch", "acme/prices"]).status.success());
    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "success").await;
    assert_eq!(status["paused"], false);
    assert!(env.issues(false).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_no_earlier_than_retry_after() {
    let fake = FakeDistributor::start(Reply::csv(GOOD)).await;
    fake.then([Reply::status(429).header("retry-after", "3")]);
    // A tiny base: without Retry-After the retry would come almost at once.
    let env = feed_env(&fake, "[retry]\nbase = \"100ms\"\ncap = \"200ms\"");
    let _daemon = env.spawn();

    wait_for_outcome(&env, "prices", Duration::from_secs(30), |o| o == "success").await;
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_secs(3), "retried after {gap:?}");
    assert!(env.issues(true).is_empty(), "a rate limit is not a failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_misconfigured_and_not_retried() {
    let fake = FakeDistributor::start(Reply::status(404)).await;
    let env = feed_env(&fake, "");
    let _daemon = env.spawn();
    wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| {
        o == "misconfigured"
    })
    .await;
    let issues = open_issues(&env, "prices", "misconfigured");
    assert!(issues[0]["message"].as_str().unwrap().contains("HTTP 404"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_max_attempts_retries_stop_with_retries_exhausted() {
    let fake = FakeDistributor::start(Reply::status(502)).await;
    let env = feed_env(
        &fake,
        "[retry]\nbase = \"100ms\"\ncap = \"200ms\"\nmax_attempts = 3",
    );
    let _daemon = env.spawn();
    let issue = wait_for_issue(&env, "prices", "retries_exhausted", Duration::from_secs(30)).await;
    assert!(
        issue["message"]
            .as_str()
            .unwrap()
            .contains("gave up after 3 attempts"),
        "{issue}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_secret_resumes_a_paused_integration_after_a_restart() {
    let fake = FakeDistributor::start(Reply::status(401)).await;
    let env = feed_env(&fake, "");
    let mut daemon = env.spawn();
    wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "rejected").await;
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(15)).success());

    // Restarted with the same refused secret: still paused, nothing is tried.
    let mut daemon = env.spawn();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.count(), 1);
    assert_eq!(env.status_of("prices")["paused"], true);
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(15)).success());

    // The operator renews the password in the environment file and restarts: the pause
    // lifts by itself and the feed runs at once.
    fake.set_fallback(Reply::csv(GOOD));
    let _daemon = env.spawn_with_env(&[("ACME_FEED_PASSWORD", "renewed-password")]);
    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "success").await;
    assert_eq!(status["paused"], false);
    assert_eq!(fake.count(), 2);
    assert!(
        env.issues(false).is_empty(),
        "the success resolved credentials_rejected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_is_clamped_to_a_day_and_the_job_is_retried_not_crashed() {
    // A server's bad day: a Retry-After no calendar can hold. Before the clamp the
    // arithmetic on it panicked inside the job.
    let fake =
        FakeDistributor::start(Reply::status(503).header("Retry-After", "99999999999999")).await;
    let env = feed_env(&fake, "");
    let _daemon = env.spawn();
    let status = wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| {
        o == "transient"
    })
    .await;
    let next: chrono::DateTime<chrono::Utc> =
        status["next_retry_at"].as_str().unwrap().parse().unwrap();
    let wait = next - chrono::Utc::now();
    assert!(
        wait > chrono::Duration::hours(23) && wait <= chrono::Duration::hours(24),
        "the retry waits what the server asked, at most a day: {wait}"
    );
    assert_eq!(fake.count(), 1, "and not a moment earlier");
}
