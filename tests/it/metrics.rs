//! Prometheus metrics: jobs run through the real engine show up under the documented names,
//! the gauges follow the queue and the issues log, and `promtool check metrics` accepts the
//! text the admin server will serve.

use crate::feed_http::GOOD;
use crate::support::fake_distributor::{FakeDistributor, Reply};
use crate::support::helpers::*;
use std::io::Write;
use std::process::{Command, Stdio};
use syncd::jobs::{Job, JobKind, Trigger};

/// The value of the sample `series` (name and labels exactly as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `promtool check metrics` on `text`: `None` when promtool is not installed outside CI
/// (the test then says it skipped that part), its verdict otherwise.
fn promtool_check(text: &str) -> Option<(bool, String)> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is missing in CI: .ci/run installs Debian's `prometheus` package"
            );
            eprintln!(
                "SKIPPED promtool check: promtool not found (apt-get install prometheus provides it)"
            );
            return None;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), said))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_through_the_engine_are_counted_and_promtool_accepts_the_rendered_metrics() {
    let handle = syncd::metrics::install().unwrap();
    // Idempotent: the admin server (or a second test in this process) gets the same handle.
    let again = syncd::metrics::install().unwrap();

    let down = FakeDistributor::start(Reply::status(503)).await;
    let env = TestEnv::sqlite();
    std::fs::write(env.dir.path().join("jobs/acme/p.csv"), GOOD).unwrap();
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n\
             [[feed]]\nname = \"prices\"\nurl = \"file:p.csv\"\nschedule = \"every 24h\"\n\
             [feed.columns]\nsku = \"sku\"\nprice = \"price\"\nstock = \"stock\"\n\
             [[feed]]\nname = \"gone\"\nurl = \"file:missing.csv\"\nschedule = \"every 24h\"\n\
             [feed.columns]\nsku = \"sku\"\nprice = \"price\"\n\
             [[feed]]\nname = \"down\"\nurl = \"{}\"\nschedule = \"every 24h\"\n\
             [feed.columns]\nsku = \"sku\"\nprice = \"price\"\n",
            down.url("/p.csv")
        ),
    );
    let ctx = job_context(&env).await;
    for name in ["prices", "gone", "down"] {
        let job = Job::new(JobKind::FeedFetch, "acme", name, Trigger::Refetch);
        syncd::jobs::execute(&ctx, job).await.unwrap();
    }
    let test = Job::new(JobKind::ConnectionTest, "acme", "prices", Trigger::Refetch);
    syncd::jobs::execute(&ctx, test).await.unwrap();
    // What the webhooks branch will report; the endpoint's URL never becomes a label.
    syncd::metrics::webhook_delivery("https://hooks.example/in?token=hook-secret", true, 0.12);
    syncd::metrics::webhook_delivery("https://hooks.example/in?token=hook-secret", false, 3.5);
    syncd::app::sampler::sample(&ctx).await.unwrap();

    let text = syncd::metrics::render(&handle);
    let sorted = |t: &str| {
        let mut lines: Vec<String> = t.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(&again.render()),
        sorted(&text),
        "both handles render the same recorder"
    );
    let value = |series: &str| {
        sample(&text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
    };
    // Other tests in this process may add to the counters: at least ours are there.
    assert!(value("syncd_jobs_started_total{kind=\"feed_fetch\"}") >= 3.0);
    assert!(value("syncd_jobs_started_total{kind=\"connection_test\"}") >= 1.0);
    assert!(value("syncd_jobs_finished_total{kind=\"feed_fetch\",outcome=\"success\"}") >= 1.0);
    assert!(
        value("syncd_jobs_finished_total{kind=\"feed_fetch\",outcome=\"misconfigured\"}") >= 1.0
    );
    assert!(value("syncd_jobs_finished_total{kind=\"feed_fetch\",outcome=\"transient\"}") >= 1.0);
    assert!(value("syncd_jobs_finished_total{kind=\"connection_test\",outcome=\"passed\"}") >= 1.0);
    assert!(value("syncd_job_duration_seconds_count{kind=\"feed_fetch\"}") >= 3.0);
    assert!(value("syncd_job_duration_seconds_bucket{kind=\"feed_fetch\",le=\"+Inf\"}") >= 3.0);
    assert!(value("syncd_retries_scheduled_total{kind=\"feed_fetch\"}") >= 1.0);
    // The 503 left its retry queued: this test's own queue holds exactly that one task.
    let queue = format!(
        "syncd_queue_depth{{queue=\"{}-feed_fetch\"}}",
        env.namespace
    );
    assert_eq!(value(&queue), 1.0, "{text}");
    assert_eq!(value("syncd_open_issues{kind=\"misconfigured\"}"), 1.0);
    assert_eq!(
        value("syncd_open_issues{kind=\"credentials_rejected\"}"),
        0.0,
        "known kinds are reported as zero"
    );
    let age = value("syncd_seconds_since_last_success{tenant=\"acme\",integration=\"prices\"}");
    assert!((0.0..60.0).contains(&age), "{age}");
    assert!(
        sample(
            &text,
            "syncd_seconds_since_last_success{tenant=\"acme\",integration=\"gone\"}"
        )
        .is_none(),
        "an integration that never succeeded has no age"
    );
    assert!(value("syncd_webhook_deliveries_total{result=\"failure\"}") >= 1.0);
    assert!(value("syncd_webhook_delivery_seconds_count") >= 2.0);
    assert!(
        !text.contains("hook-secret") && !text.contains("s3cret-feed-password"),
        "no secret in the metrics"
    );
    assert!(
        !text.contains("hooks.example"),
        "no endpoint URL in the metrics"
    );

    // Every metric family is documented.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no # HELP line"
        );
    }
    if let Some((ok, said)) = promtool_check(&text) {
        assert!(ok, "promtool check metrics failed:\n{said}\n---\n{text}");
        assert!(said.trim().is_empty(), "promtool has remarks:\n{said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_issue_brings_its_gauge_back_to_zero() {
    let handle = syncd::metrics::install().unwrap();
    let env = TestEnv::sqlite();
    env.write_catalog(
        "acme",
        "tenant = \"acme\"\n[[feed]]\nname = \"prices\"\nurl = \"file:p.csv\"\nschedule = \"every 24h\"\n\
         [feed.columns]\nsku = \"sku\"\nprice = \"price\"\nstock = \"stock\"\n",
    );
    // A header without rows: `empty_feed`.
    std::fs::write(env.dir.path().join("jobs/acme/p.csv"), "sku,price,stock\n").unwrap();
    let ctx = job_context(&env).await;
    let run = || Job::new(JobKind::FeedFetch, "acme", "prices", Trigger::Refetch);
    syncd::jobs::execute(&ctx, run()).await.unwrap();
    syncd::app::sampler::sample(&ctx).await.unwrap();
    let series = "syncd_open_issues{kind=\"empty_feed\"}";
    assert_eq!(sample(&handle.render(), series), Some(1.0));

    std::fs::write(env.dir.path().join("jobs/acme/p.csv"), GOOD).unwrap();
    syncd::jobs::execute(&ctx, run()).await.unwrap();
    syncd::app::sampler::sample(&ctx).await.unwrap();
    assert_eq!(sample(&handle.render(), series), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_on_redis_counts_due_and_scheduled_tasks() {
    let env = TestEnv::redis(REDIS_URL);
    env.write_catalog("acme", "tenant = \"acme\"\n");
    let ctx = job_context(&env).await;
    let job = |n| {
        Job::new(
            JobKind::FeedFetch,
            "acme",
            &format!("f{n}"),
            Trigger::Refetch,
        )
    };
    ctx.queue.push(&job(1), None, None).await.unwrap();
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    ctx.queue.push(&job(2), Some(later), None).await.unwrap();
    let depths = ctx.queue.depths().await.unwrap();
    let feed = format!("{}-feed_fetch", env.namespace);
    let of = |q: &str| depths.iter().find(|(n, _)| n == q).map(|(_, d)| *d);
    assert_eq!(of(&feed), Some(2), "{depths:?}");
    assert_eq!(of(&format!("{}-crm_enrich", env.namespace)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_call_that_waits_for_quota_is_counted_with_the_seconds_it_waited() {
    let handle = syncd::metrics::install().unwrap();
    let env = TestEnv::sqlite().with_config("[crm]\nhubspot_search_per_second = 4\nheadroom = 0.0");
    env.write_catalog(
        "acme",
        "tenant = \"acme\"\n[[crm]]\nname = \"hubspot\"\nprovider = \"hubspot\"\n\
         schedule = \"every 24h\"\ntoken_env = \"ACME_HUBSPOT_TOKEN\"\n",
    );
    let ctx = job_context(&env).await;
    let spec = ctx.catalog().crm("acme", "hubspot").unwrap();
    let crm = ctx.crm_env("acme", spec);
    // Four search calls a second are paced 250 ms apart: three calls wait twice.
    for _ in 0..3 {
        crm.acquire(syncd::crm::Api::HubspotSearch).await.unwrap();
    }
    let text = handle.render();
    let waits = sample(&text, "syncd_rate_limit_waits_total{provider=\"hubspot\"}");
    assert!(waits.is_some_and(|n| n >= 2.0), "{text}");
    let waited = sample(
        &text,
        "syncd_rate_limit_wait_seconds_sum{provider=\"hubspot\"}",
    );
    assert!(waited.is_some_and(|s| s >= 0.3), "{text}");
}
