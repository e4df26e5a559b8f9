//! Several daemons on one Redis, and Redis going away under a running daemon.

use crate::feed_http::GOOD;
use crate::support::fake_distributor::{FakeDistributor, Reply};
use crate::support::helpers::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_redis_run_each_scheduled_tick_once() {
    let fake = FakeDistributor::start(Reply::csv(GOOD)).await;
    // Two nodes with their own state files: only the queue's idempotency keys stand between
    // them and a double run.
    let a = TestEnv::redis(REDIS_URL);
    let b = TestEnv::redis(REDIS_URL).with_namespace(&a.namespace);
    for env in [&a, &b] {
        let catalog = env
            .http_feed("prices", &fake.url("/p.csv"))
            .replace("every 1h", "every 3s");
        env.write_catalog("acme", &format!("tenant = \"acme\"\n{catalog}"));
    }
    let started = chrono::Utc::now();
    let _na = a.spawn();
    let _nb = b.spawn();
    tokio::time::sleep(Duration::from_secs(11)).await;
    let runs = fake.count();
    let ended = chrono::Utc::now();

    // The ticks in the window, computed the way every node computes them: the one overdue
    // at start-up, then one every 3s.
    let schedule: syncd::catalog::Schedule = "every 3s".parse().unwrap();
    let mut ticks = vec![schedule.prev_tick("acme/prices", started).unwrap()];
    while let Some(next) = schedule
        .next_tick("acme/prices", *ticks.last().unwrap())
        .filter(|t| *t <= ended)
    {
        ticks.push(next);
    }
    assert!(
        runs <= ticks.len(),
        "{runs} runs for {} ticks: a tick ran twice",
        ticks.len()
    );
    assert!(
        runs + 1 >= ticks.len(),
        "{runs} runs for {} ticks: ticks were lost",
        ticks.len()
    );
}

struct PrivateRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let mut r = PrivateRedis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        r.up();
        r
    }

    /// Starts redis-server with AOF persistence, as the deployment notes require.
    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.down();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_rides_out_a_redis_restart_and_the_next_job_succeeds() {
    let fake = FakeDistributor::start(Reply::csv(GOOD)).await;
    let mut redis = PrivateRedis::start();
    let env = TestEnv::redis(&redis.url());
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("prices", &fake.url("/p.csv"))
        ),
    );
    let mut daemon = env.spawn();
    wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "success").await;

    redis.down();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        daemon.alive(),
        "the daemon must not exit while Redis is down\n{}",
        daemon.log()
    );
    redis.up();

    // A job queued after the restart runs on the same, still running daemon.
    assert!(
        env.run(&["refetch", "acme/prices", "--force"])
            .status
            .success()
    );
    eventually(
        Duration::from_secs(30),
        "the re-fetch after the Redis restart",
        || {
            let done = fake.count() >= 2
                && env.status_of("prices")["refetch_requested_at"].is_null()
                && env.status_of("prices")["last_outcome"] == "success";
            async move { done.then_some(()) }
        },
    )
    .await;
    assert!(daemon.alive());
}
