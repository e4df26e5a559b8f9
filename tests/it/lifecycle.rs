//! Crashes and shutdowns: nothing queued is lost, nothing in flight is dropped.

use crate::feed_http::GOOD;
use crate::support::fake_distributor::{FakeDistributor, Reply};
use crate::support::helpers::*;
use std::time::Duration;

/// SIGKILL while the download is in flight; after a restart the job is picked up again
/// (once the orphan timeout has passed) and completes.
async fn killed_mid_job_completes_after_restart(env: TestEnv) {
    let fake = FakeDistributor::start(Reply::csv(GOOD)).await;
    fake.then([Reply::csv(GOOD).trickle(Duration::from_secs(30))]);
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("prices", &fake.url("/p.csv"))
        ),
    );
    let mut daemon = env.spawn();
    eventually(Duration::from_secs(20), "the download to start", || {
        let started = fake.count() == 1;
        async move { started.then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.kill9();
    assert_eq!(
        env.status_of("prices")["last_outcome"],
        serde_json::Value::Null,
        "killed before it finished"
    );

    let _daemon = env.spawn();
    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(30), |o| o == "success").await;
    assert_eq!(status["items"], 3);
    assert_eq!(fake.count(), 2, "the same job ran again, once");
    assert!(env.issues(true).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_mid_run_completes_after_restart_on_sqlite() {
    killed_mid_job_completes_after_restart(TestEnv::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_mid_run_completes_after_restart_on_redis() {
    killed_mid_job_completes_after_restart(TestEnv::redis(REDIS_URL)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_job_finish_exits_zero_and_leaves_queued_jobs_queued() {
    let slow = FakeDistributor::start(Reply::csv(GOOD).trickle(Duration::from_secs(3))).await;
    let other = FakeDistributor::start(Reply::csv(GOOD)).await;
    let env = TestEnv::sqlite().with_config("[queue]\nconcurrency = 1");
    let catalog = format!(
        "tenant = \"acme\"\n{}{}",
        env.http_feed("slow", &slow.url("/slow.csv")),
        env.http_feed("other", &other.url("/other.csv"))
            .replace("every 1h", "0 0 1 1 *")
    );
    env.write_catalog("acme", &catalog);
    let mut daemon = env.spawn();
    eventually(
        Duration::from_secs(20),
        "the slow download to start",
        || {
            let started = slow.count() == 1;
            async move { started.then_some(()) }
        },
    )
    .await;
    // Queued behind the slow job (one worker slot).
    assert!(env.run(&["refetch", "acme/other"]).status.success());
    daemon.signal("TERM");
    let exit = daemon.wait_exit(Duration::from_secs(15));
    assert!(exit.success(), "exit status {exit:?}\n{}", daemon.log());

    let status = env.status_of("slow");
    assert_eq!(
        status["last_outcome"], "success",
        "the in-flight job finished: {status}"
    );
    assert_eq!(other.count(), 0, "the queued job did not start");
    assert!(
        env.status_of("other")["refetch_requested_at"].is_string(),
        "still queued"
    );

    // The next daemon runs it.
    let _daemon = env.spawn();
    // Its tick job imports the file; the re-fetch then finds it unchanged (304).
    wait_for_outcome(&env, "other", Duration::from_secs(20), |o| o == "unchanged").await;
    assert_eq!(other.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_killing_its_worker_ends_in_an_issue_instead_of_looping() {
    // Every download hangs; the daemon is killed each time it starts one.
    let fake = FakeDistributor::start(Reply::csv(GOOD).trickle(Duration::from_secs(60))).await;
    let env = TestEnv::sqlite().with_config("[queue]\nmax_interrupted_runs = 2");
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("prices", &fake.url("/p.csv"))
        ),
    );
    for run in 1..=2 {
        let mut daemon = env.spawn();
        eventually(
            Duration::from_secs(30),
            &format!("download number {run}"),
            || {
                let started = fake.count() == run;
                async move { started.then_some(()) }
            },
        )
        .await;
        daemon.kill9();
    }
    let _daemon = env.spawn();
    let issue = wait_for_issue(&env, "prices", "retries_exhausted", Duration::from_secs(30)).await;
    assert!(
        issue["message"]
            .as_str()
            .unwrap()
            .contains("interrupted 2 times"),
        "{issue}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        fake.count(),
        2,
        "the job was given up, not started a third time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_files_left_by_a_killed_process_are_removed_at_the_next_start() {
    let env = TestEnv::sqlite().with_config("[feeds]\nwork_dir = \"spool\"");
    let spool = env.dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    // A download a SIGKILLed daemon left behind: its pid runs no more (above Linux's
    // largest pid). Beside it, one of a process that still runs (this test) and a file that
    // is not syncd's.
    let dead = spool.join("syncd-feed-4294967-a1b2c3");
    let live = spool.join(format!("syncd-feed-{}-d4e5f6", std::process::id()));
    let other = spool.join("notes.txt");
    for f in [&dead, &live, &other] {
        std::fs::write(f, vec![b'x'; 4096]).unwrap();
    }
    let _daemon = env.spawn();
    eventually(
        Duration::from_secs(20),
        "the dead process's spool file to go",
        || {
            let gone = !dead.exists();
            async move { gone.then_some(()) }
        },
    )
    .await;
    assert!(live.exists(), "a running process's download stays");
    assert!(other.exists(), "only syncd's spool files are touched");
}
