//! Cluster benchmark: one, two and three release `syncd run` processes sharing a PostgreSQL
//! state database and a Redis queue, fetching small price feeds from a loopback server and
//! delivering the `price.changed` webhooks the imports cause; then the failover time after a
//! node is killed in the middle of a job.
//!
//! ```text
//! cargo build --release
//! cargo run --release --example cluster_bench              # 2,000 feed jobs per round
//! cargo run --release --example cluster_bench -- 5000
//! ```
//!
//! Needs PostgreSQL at 127.0.0.1:5432 with trust auth for `postgres` (`BENCH_POSTGRES`
//! overrides the server URL) and Redis at 127.0.0.1:6379 (`BENCH_REDIS`). It creates a
//! database `syncd_bench_<random>` and a Redis namespace of its own and removes both at the
//! end.
//!
//! 1. Throughput, for P = 1, 2, 3 nodes: the catalog holds JOBS feeds of 20 rows each and a
//!    webhook endpoint subscribed to `price.changed`. The first start imports every feed once
//!    (a first import records no change rows, so no events). Then, per P, the server changes
//!    two prices in every file and JOBS forced re-fetches are queued through the code
//!    `syncd refetch` and `POST /api/refetch` run; each import records its changes and the
//!    dispatcher turns them into one event and one delivery. The clock runs from the first
//!    re-fetch queued to the last import and the last delivery done, as the database records
//!    them. CPU seconds used by the nodes, PostgreSQL and Redis over that window are read from
//!    /proc.
//! 2. Failover: two nodes and a feed whose server trickles the body over several seconds.
//!    When the download is under way on node A, A is SIGKILLed; the figure is the time from
//!    the kill to the same feed's request arriving again from node B. `BENCH_ORPHAN_TIMEOUT`
//!    (default 10s) is the `[queue] orphan_timeout` used throughout.
//!
//! The table also counts imports whose change records never became an event: the webhook
//! dispatcher reads `price_changes` past an id cursor, and on PostgreSQL imports running side
//! by side can commit out of id order, so a record committed after the cursor moved past its
//! id is never read. The bench waits for the dispatcher to catch up instead of for JOBS
//! deliveries, and reports what is missing.
//!
//! `BENCH_KEEP=1` keeps the database, the Redis keys and the nodes' logs (their place is
//! printed; the logs are kept after a failure too). Every wait is bounded; loopback only;
//! nothing here is a pass/fail test.

use anyhow::Context;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use sqlx::{Connection, PgPool};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TENANT: &str = "bench";
const ROWS: usize = 20;
/// How long the slow feed's server takes to send its body.
const TRICKLE: Duration = Duration::from_secs(8);

/// The loopback distributor and webhook receiver.
struct Server {
    /// Bumped between rounds: every file then carries two changed prices.
    round: AtomicU64,
    /// While set, `slow.csv` is sent over [`TRICKLE`].
    slow: AtomicBool,
    /// Requests for `slow.csv`: arrival and the requesting node's User-Agent.
    slow_hits: Mutex<Vec<(Instant, String)>>,
    feed_requests: AtomicU64,
    deliveries: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let jobs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("JOBS must be a number")?
        .unwrap_or(2_000);
    anyhow::ensure!((1..=20_000).contains(&jobs), "JOBS: 1 to 20000");
    let orphan = std::env::var("BENCH_ORPHAN_TIMEOUT").unwrap_or_else(|_| "10s".into());
    let orphan_secs = humantime::parse_duration(&orphan)
        .context("BENCH_ORPHAN_TIMEOUT")?
        .as_secs();
    let pg_server = std::env::var("BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_string();
    let redis_url =
        std::env::var("BENCH_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let bin = match std::env::var_os("SYNCD_BENCH_BIN") {
        Some(b) => PathBuf::from(b),
        // target/release/examples/cluster_bench → target/release/syncd
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("syncd"))
            .context("cannot locate the syncd binary")?,
    };
    anyhow::ensure!(
        bin.exists(),
        "build the daemon first: cargo build --release ({} is missing)",
        bin.display()
    );

    // One runtime thread: the server and the bench's own polling must leave the CPU to the
    // nodes, PostgreSQL and Redis.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let db_name = format!("syncd_bench_{:08x}", rand::random::<u32>());
    let namespace = format!("bench{:08x}", rand::random::<u32>());
    rt.block_on(on_server(&pg_server, &format!("CREATE DATABASE {db_name}")))
        .with_context(|| format!("this bench needs PostgreSQL at {pg_server} with trust auth"))?;
    let bench = Bench {
        jobs,
        orphan,
        orphan_secs,
        bin,
        db_url: format!("{pg_server}/{db_name}"),
        redis_url: redis_url.clone(),
        namespace: namespace.clone(),
        dir: tempfile::tempdir()?,
    };
    let result = rt.block_on(bench.run());
    // BENCH_KEEP=1 keeps the database, the Redis keys and the nodes' logs for a closer look;
    // the logs are kept after a failure too.
    let keep = std::env::var_os("BENCH_KEEP").is_some();
    if keep {
        println!("database {}, Redis namespace {namespace}", bench.db_url);
    } else {
        let _ = rt.block_on(on_server(
            &pg_server,
            &format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"),
        ));
        let _ = rt.block_on(drop_namespace(&redis_url, &namespace));
    }
    if result.is_err() || keep {
        println!("node logs: {}", bench.dir.keep().display());
    }
    result
}

struct Bench {
    jobs: usize,
    orphan: String,
    orphan_secs: u64,
    bin: PathBuf,
    db_url: String,
    redis_url: String,
    namespace: String,
    dir: tempfile::TempDir,
}

/// One `syncd run` process.
struct Node {
    name: String,
    child: Child,
    log: PathBuf,
}

/// One throughput round's figures.
struct Round {
    nodes: usize,
    enqueue: f64,
    feeds_secs: f64,
    deliveries_secs: f64,
    total_secs: f64,
    /// Deliveries made and sent.
    delivered: usize,
    /// Imports with change records the dispatcher never turned into an event: on
    /// PostgreSQL, imports committing out of id order can leave records behind its cursor.
    missing: usize,
    split: Vec<usize>,
    cpu: Cpu,
}

impl Bench {
    async fn run(&self) -> anyhow::Result<()> {
        let server = Arc::new(Server {
            round: AtomicU64::new(0),
            slow: AtomicBool::new(false),
            slow_hits: Mutex::new(Vec::new()),
            feed_requests: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
        });
        let addr = serve(server.clone()).await?;
        self.write_files(addr)?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.db_url)
            .await?;

        println!(
            "{} feeds of {ROWS} rows, one webhook endpoint; PostgreSQL state, Redis queue; \
             per node: [queue] concurrency 4, [webhooks] concurrency 16, poll_interval 100ms, \
             orphan_timeout {}",
            self.jobs, self.orphan
        );
        let mut rounds = Vec::new();
        for p in 1..=3 {
            let mut nodes = self.start_nodes(p, &format!("throughput-{p}")).await?;
            let outcome = async {
                if p == 1 {
                    let started = Instant::now();
                    self.wait_first_imports(&pool).await?;
                    println!(
                        "first imports (scheduled, one node): {} feeds in {:.1} s",
                        self.jobs,
                        started.elapsed().as_secs_f64()
                    );
                }
                server.round.fetch_add(1, Ordering::SeqCst);
                let round = self.round(&pool, &nodes).await?;
                println!(
                    "{p} node(s): {} feed jobs + {} deliveries in {:.2} s (re-fetches queued in \
                     {:.2} s); {} imports' change records never became an event",
                    self.jobs, round.delivered, round.total_secs, round.enqueue, round.missing
                );
                anyhow::Ok(round)
            }
            .await;
            stop(&mut nodes);
            rounds.push(outcome?);
        }
        let failover = self.failover(&server).await?;

        println!();
        println!(
            "| nodes | feed jobs/s | deliveries/s | total jobs/s | imports without an event | \
             feed jobs per node | CPU s: nodes / PostgreSQL / Redis |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for r in &rounds {
            let n = self.jobs as f64;
            println!(
                "| {} | {:.0} | {:.0} | {:.0} ({} jobs in {:.2} s) | {} | {} | {:.1} / {:.1} / {:.1} |",
                r.nodes,
                n / r.feeds_secs,
                r.delivered as f64 / r.deliveries_secs,
                (self.jobs + r.delivered) as f64 / r.total_secs,
                self.jobs + r.delivered,
                r.total_secs,
                r.missing,
                r.split
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(" + "),
                r.cpu.nodes,
                r.cpu.postgres,
                r.cpu.redis,
            );
        }
        println!();
        println!(
            "failover (orphan_timeout {}): node killed during a download; the same feed requested \
             again by the other node {:.1} s later, imported {:.1} s after the kill",
            self.orphan, failover.0, failover.1
        );
        println!(
            "loopback requests served: {} feed files, {} webhook deliveries",
            server.feed_requests.load(Ordering::SeqCst),
            server.deliveries.load(Ordering::SeqCst)
        );
        Ok(())
    }

    fn write_files(&self, addr: std::net::SocketAddr) -> anyhow::Result<()> {
        let jobs_dir = self.dir.path().join("jobs");
        std::fs::create_dir_all(&jobs_dir)?;
        let mut catalog = format!(
            "tenant = \"{TENANT}\"\n\n[[webhook]]\nname = \"hook\"\nurl = \"http://{addr}/hook\"\n\
             events = [\"price.changed\"]\nsecret_env = \"BENCH_WEBHOOK_SECRET\"\n"
        );
        let columns = "[feed.columns]\nsku = \"sku\"\nprice = \"price\"\nstock = \"stock\"\n";
        for name in (0..self.jobs).map(feed_name).chain(["slow".to_string()]) {
            catalog.push_str(&format!(
                "\n[[feed]]\nname = \"{name}\"\nurl = \"http://{addr}/{name}.csv\"\n\
                 schedule = \"every 24h\"\n{columns}"
            ));
        }
        std::fs::write(jobs_dir.join("bench.toml"), catalog)?;
        for i in 0..3 {
            let dir = self.dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&dir)?;
            // Identical but for the spool directory and the User-Agent, which tells the
            // server which node sent a request.
            std::fs::write(
                dir.join("config.toml"),
                format!(
                    "[state]\nurl = \"{db}\"\n\
                     [queue]\nbackend = \"redis\"\nredis_url = \"{redis}\"\nnamespace = \"{ns}\"\n\
                     poll_interval = \"100ms\"\norphan_timeout = \"{orphan}\"\n\
                     [scheduler]\nspread = \"0s\"\n\
                     [catalog]\ndir = \"../jobs\"\n\
                     [feeds]\nwork_dir = \"spool\"\n\
                     [http]\nuser_agent = \"syncd-bench/node{i}\"\n\
                     [admin]\nbind = \"127.0.0.1:0\"\n\
                     [log]\nfilter = \"warn,syncd=info\"\n\
                     [webhooks]\nallow_cidrs = [\"127.0.0.0/8\"]\ndispatch_interval = \"100ms\"\n",
                    db = self.db_url,
                    redis = self.redis_url,
                    ns = self.namespace,
                    orphan = self.orphan,
                ),
            )?;
            std::fs::create_dir_all(dir.join("spool"))?;
        }
        Ok(())
    }

    fn config_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}/config.toml"))
    }

    /// Starts nodes 0..count and waits until each has its workers running.
    async fn start_nodes(&self, count: usize, label: &str) -> anyhow::Result<Vec<Node>> {
        let mut nodes = Vec::new();
        for i in 0..count {
            let log = self.dir.path().join(format!("node{i}/{label}.log"));
            let file = std::fs::File::create(&log)?;
            let child = Command::new(&self.bin)
                .arg("--config")
                .arg(self.config_path(i))
                .arg("run")
                .env_remove("RUST_LOG")
                .env(
                    "BENCH_WEBHOOK_SECRET",
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                )
                .stdout(Stdio::null())
                .stderr(Stdio::from(file))
                .spawn()?;
            nodes.push(Node {
                name: format!("node{i}"),
                child,
                log,
            });
        }
        for node in &mut nodes {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if count_lines(&node.log, "workers started") > 0 {
                    break;
                }
                if let Some(status) = node.child.try_wait()? {
                    anyhow::bail!(
                        "{} exited with {status}:\n{}",
                        node.name,
                        std::fs::read_to_string(&node.log).unwrap_or_default()
                    );
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "{} did not start its workers within 60 s",
                    node.name
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(nodes)
    }

    /// The first start imports every feed once (the scheduler's first tick).
    async fn wait_first_imports(&self, pool: &PgPool) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let done: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sync_state WHERE integration LIKE 'f%'
                 AND last_success_at IS NOT NULL",
            )
            .fetch_one(pool)
            .await?;
            if done as usize >= self.jobs {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {done} of {} first imports done within 900 s",
                self.jobs
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Queues a forced re-fetch of every feed and waits for every import and delivery.
    async fn round(&self, pool: &PgPool, nodes: &[Node]) -> anyhow::Result<Round> {
        let config = Arc::new(syncd::config::Config::load(&self.config_path(0), true)?);
        let catalog = syncd::catalog::Catalog::load_for(&config)?;
        let store = syncd::store::Store::open(&config).await?;
        let queue = syncd::jobs::connect_queue(config.clone(), &store).await?;
        let finished_before: Vec<usize> = nodes
            .iter()
            .map(|n| count_lines(&n.log, "job finished"))
            .collect();
        let cpu_before = Cpu::sample(nodes);

        let t0: DateTime<Utc> = Utc::now();
        let started = Instant::now();
        let (store_ref, queue_ref, catalog_ref) = (&store, &queue, &catalog);
        let queued: Vec<syncd::ops::Refetch> = futures::stream::iter(0..self.jobs)
            .map(|i| async move {
                syncd::ops::refetch(
                    store_ref,
                    queue_ref,
                    catalog_ref,
                    TENANT,
                    &feed_name(i),
                    true,
                    false,
                )
                .await
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        let enqueue = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            queued
                .iter()
                .all(|r| matches!(r, syncd::ops::Refetch::Queued { .. })),
            "a re-fetch was already queued"
        );

        let deadline = Instant::now() + Duration::from_secs(900);
        // (imports, deliveries) done, and when that last changed: a minute without progress
        // ends the round.
        let mut progress = ((0, 0), Instant::now());
        let (feeds_end, deliveries_end, delivered) = loop {
            let (feeds, feeds_end): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
                "SELECT COUNT(*), MAX(last_success_at) FROM sync_state
                 WHERE integration LIKE 'f%' AND last_success_at >= $1",
            )
            .bind(t0)
            .fetch_one(pool)
            .await?;
            let (created, delivered, deliveries_end): (i64, i64, Option<DateTime<Utc>>) =
                sqlx::query_as(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'delivered'),
                        MAX(delivered_at)
                     FROM webhook_deliveries WHERE created_at >= $1",
                )
                .bind(t0)
                .fetch_one(pool)
                .await?;
            // Whether the dispatcher has read every change record there is.
            let (caught_up,): (bool,) = sqlx::query_as(
                "SELECT NOT EXISTS (SELECT 1 FROM price_changes WHERE NOT dispatched)",
            )
            .fetch_one(pool)
            .await?;
            let feeds_done = feeds as usize >= self.jobs;
            if feeds_done && caught_up && delivered == created && delivered > 0 {
                break (
                    feeds_end.unwrap(),
                    deliveries_end.unwrap(),
                    delivered as usize,
                );
            }
            if (feeds, delivered) != progress.0 {
                progress = ((feeds, delivered), Instant::now());
            }
            if Instant::now() >= deadline || progress.1.elapsed() > Duration::from_secs(60) {
                let failed: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT integration, last_error FROM sync_state
                     WHERE last_attempt_at >= $1 AND last_outcome <> 'success' LIMIT 5",
                )
                .bind(t0)
                .fetch_all(pool)
                .await?;
                anyhow::bail!(
                    "after {:.0} s only {feeds} imports and {delivered} of {created} deliveries \
                     were done, the last progress {:.0} s ago; failures: {failed:?}",
                    started.elapsed().as_secs_f64(),
                    progress.1.elapsed().as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Imports whose change records never became an event (see `Round::missing`).
        let (missing,): (i64,) = sqlx::query_as(
            "SELECT COUNT(DISTINCT run) FROM price_changes c WHERE recorded_at >= $1
             AND NOT EXISTS (SELECT 1 FROM webhook_events e
                             WHERE e.source = c.feed AND e.payload LIKE '%\"' || c.run || '\"%')",
        )
        .bind(t0)
        .fetch_one(pool)
        .await?;
        let cpu = Cpu::sample(nodes).since(&cpu_before);
        store.close().await;
        let secs = |end: DateTime<Utc>| (end - t0).num_microseconds().unwrap_or(0) as f64 / 1e6;
        let split = nodes
            .iter()
            .zip(finished_before)
            .map(|(n, before)| count_lines(&n.log, "job finished") - before)
            .collect();
        Ok(Round {
            nodes: nodes.len(),
            enqueue,
            feeds_secs: secs(feeds_end),
            deliveries_secs: secs(deliveries_end),
            total_secs: secs(feeds_end.max(deliveries_end)),
            delivered,
            missing: missing as usize,
            split,
            cpu,
        })
    }

    /// Two nodes; the node downloading the slow feed is killed; returns the seconds from the
    /// kill to the other node's request, and to the feed's import.
    async fn failover(&self, server: &Server) -> anyhow::Result<(f64, f64)> {
        let mut nodes = self.start_nodes(2, "failover").await?;
        let outcome = async {
            let config = Arc::new(syncd::config::Config::load(&self.config_path(0), true)?);
            let catalog = syncd::catalog::Catalog::load_for(&config)?;
            let store = syncd::store::Store::open(&config).await?;
            let queue = syncd::jobs::connect_queue(config.clone(), &store).await?;
            server.slow.store(true, Ordering::SeqCst);
            let queued_at = Utc::now();
            syncd::ops::refetch(&store, &queue, &catalog, TENANT, "slow", true, false).await?;
            let first = wait_slow_hit(server, 0, Duration::from_secs(30)).await?;
            let victim = nodes
                .iter()
                .position(|n| first.1.ends_with(&n.name))
                .with_context(|| format!("unknown User-Agent {}", first.1))?;
            // Well inside the download, then SIGKILL: no shutdown, no acknowledgement.
            tokio::time::sleep(Duration::from_secs(1)).await;
            nodes[victim].child.kill()?;
            let killed = Instant::now();
            nodes[victim].child.wait()?;
            let limit = Duration::from_secs(self.orphan_secs + 60);
            let again = wait_slow_hit(server, 1, limit).await?;
            anyhow::ensure!(
                !again.1.ends_with(&nodes[victim].name),
                "the slow feed came again from the killed node"
            );
            let deadline = Instant::now() + TRICKLE + Duration::from_secs(60);
            loop {
                let done: Option<DateTime<Utc>> = store
                    .state(TENANT, "slow")
                    .await?
                    .and_then(|s| s.last_success_at)
                    .filter(|at| *at > queued_at);
                if done.is_some() {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "the slow feed was not imported after the failover"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let imported = killed.elapsed().as_secs_f64();
            store.close().await;
            anyhow::Ok(((again.0 - killed).as_secs_f64(), imported))
        }
        .await;
        stop(&mut nodes);
        outcome
    }
}

fn feed_name(i: usize) -> String {
    format!("f{i:05}")
}

/// The `n`-th request for `slow.csv` (0-based): its arrival and User-Agent.
async fn wait_slow_hit(
    server: &Server,
    n: usize,
    limit: Duration,
) -> anyhow::Result<(Instant, String)> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(hit) = server.slow_hits.lock().unwrap().get(n) {
            return Ok(hit.clone());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "request {} for the slow feed did not come within {limit:?}",
            n + 1
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGTERM to every node still running, then waits for each (SIGKILL after 60 s).
fn stop(nodes: &mut [Node]) {
    for node in nodes.iter_mut() {
        if let Ok(None) = node.child.try_wait() {
            let _ = Command::new("kill")
                .arg(node.child.id().to_string())
                .status();
        }
    }
    for node in nodes.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(60);
        while matches!(node.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = node.child.kill();
        let _ = node.child.wait();
    }
}

fn count_lines(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// CPU seconds (user + system) used so far by the nodes, PostgreSQL and Redis.
#[derive(Default)]
struct Cpu {
    nodes: f64,
    postgres: f64,
    redis: f64,
}

impl Cpu {
    fn sample(nodes: &[Node]) -> Cpu {
        let mut cpu = Cpu::default();
        for node in nodes {
            cpu.nodes += cpu_secs(node.child.id()).unwrap_or(0.0);
        }
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            match comm.trim() {
                "postgres" => cpu.postgres += cpu_secs(pid).unwrap_or(0.0),
                "redis-server" => cpu.redis += cpu_secs(pid).unwrap_or(0.0),
                _ => {}
            }
        }
        cpu
    }

    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            nodes: self.nodes - before.nodes,
            postgres: self.postgres - before.postgres,
            redis: self.redis - before.redis,
        }
    }
}

/// utime + stime of a process, in seconds (clock ticks of 1/100 s).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Runs one statement on the server's `postgres` database.
async fn on_server(server: &str, sql: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Deletes the bench's keys from Redis (a bounded SCAN over `{namespace}*`).
async fn drop_namespace(url: &str, namespace: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    for _ in 0..10_000 {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{namespace}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(())
}

async fn serve(server: Arc<Server>) -> anyhow::Result<std::net::SocketAddr> {
    let app = Router::new()
        .route("/{file}", get(feed))
        .route("/hook", post(hook))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// `fNNNNN.csv`: 20 rows; two prices move with the round. `slow.csv`: the same, trickled
/// while the failover test runs.
async fn feed(
    State(server): State<Arc<Server>>,
    UrlPath(file): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let Some(name) = file.strip_suffix(".csv") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    server.feed_requests.fetch_add(1, Ordering::Relaxed);
    let round = server.round.load(Ordering::SeqCst);
    let mut body = String::from("sku,price,stock\n");
    for r in 0..ROWS {
        let cents = if r < 2 { round % 100 } else { 0 };
        body.push_str(&format!("{name}-{r:02},{}.{cents:02},{}\n", 10 + r, r * 3));
    }
    let csv = [(header::CONTENT_TYPE, "text/csv")];
    if name == "slow" && server.slow.load(Ordering::SeqCst) {
        let agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        server
            .slow_hits
            .lock()
            .unwrap()
            .push((Instant::now(), agent));
        // One line every TRICKLE / ROWS: the download stays in flight for TRICKLE.
        let lines: Vec<String> = body.lines().map(|l| format!("{l}\n")).collect();
        let pause = TRICKLE / lines.len() as u32;
        let stream = futures::stream::iter(lines).then(move |line| async move {
            tokio::time::sleep(pause).await;
            Ok::<_, std::io::Error>(Bytes::from(line))
        });
        return (csv, Body::from_stream(stream)).into_response();
    }
    (csv, body).into_response()
}

async fn hook(State(server): State<Arc<Server>>, _body: Bytes) -> &'static str {
    server.deliveries.fetch_add(1, Ordering::Relaxed);
    "ok"
}
