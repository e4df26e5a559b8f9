//! Webhook benchmark: a release `syncd run` delivering to a loopback receiver that answers
//! 200 at once, signing and the attempt log included, on the SQLite or the Redis queue.
//!
//! ```text
//! cargo build --release
//! cargo run --release --example webhook_bench -- sqlite       # or: redis (needs 127.0.0.1:6379)
//! cargo run --release --example webhook_bench -- redis 20000 1000
//! ```
//!
//! Two phases, each bounded in count and time:
//! 1. throughput: N change records committed at once (N events, one endpoint, so N
//!    deliveries); deliveries/s from that commit to the last receipt;
//! 2. latency: R events/s for 10 s (a commit every 10 ms); p50/p99 from each commit to its
//!    receipt.
//!
//! Events enter the way imports write them (rows in `price_changes`), so the figures include
//! the dispatcher, the queue, signing, the POST and the attempt log. Nothing here is a
//! pass/fail test; loopback only.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let backend = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("sqlite")
        .to_string();
    anyhow::ensure!(
        backend == "sqlite" || backend == "redis",
        "backend: sqlite or redis"
    );
    let n: usize = args
        .get(2)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let rate: usize = args.get(3).map(|a| a.parse()).transpose()?.unwrap_or(1_000);
    anyhow::ensure!(n <= 200_000 && rate <= 20_000, "keep it bounded");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let seen: Seen = Arc::new(Mutex::new(HashMap::new()));
    let addr = rt.block_on(receiver(seen.clone()))?;

    let dir = tempfile::tempdir()?;
    // BENCH_LOG=info,syncd=debug keeps the daemon's log (path printed) for a closer look.
    let log = std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into());
    // An idle apalis worker notices new tasks at its heartbeat (half the orphan timeout);
    // BENCH_ORPHAN_TIMEOUT sets it (default 2s).
    let orphan = std::env::var("BENCH_ORPHAN_TIMEOUT").unwrap_or_else(|_| "2s".into());
    let namespace = format!("bench{:08x}", rand::random::<u32>());
    std::fs::create_dir_all(dir.path().join("jobs"))?;
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[queue]\nbackend = \"{backend}\"\nnamespace = \"{namespace}\"\npoll_interval = \"20ms\"\norphan_timeout = \"{orphan}\"\n\
             [log]\nfilter = \"{log}\"\n\
             [webhooks]\nallow_cidrs = [\"127.0.0.0/8\"]\nconcurrency = 64\ndispatch_interval = \"20ms\"\n"
        ),
    )?;
    std::fs::write(
        dir.path().join("jobs/bench.toml"),
        format!(
            "tenant = \"bench\"\n[[webhook]]\nname = \"hook\"\nurl = \"http://{addr}/hook\"\n\
             events = [\"*\"]\nsecret_env = \"BENCH_WEBHOOK_SECRET\"\n"
        ),
    )?;
    let bin = std::env::var("SYNCD_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/syncd"));
    anyhow::ensure!(
        bin.exists(),
        "build the daemon first: cargo build --release"
    );
    let mut child = Command::new(&bin)
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .arg("run")
        .env_remove("RUST_LOG")
        .env(
            "BENCH_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .stderr(Stdio::from(std::fs::File::create(
            dir.path().join("daemon.log"),
        )?))
        .spawn()?;

    let result = rt.block_on(async {
        let db = dir.path().join("syncd.db");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !db.exists() {
            anyhow::ensure!(Instant::now() < deadline, "the daemon did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let store = syncd::store::Store::open_sqlite(&db).await?;

        // 1. Throughput.
        let runs: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        let committed = insert(&store, &runs).await?;
        wait_for(&seen, n, Duration::from_secs(300)).await?;
        let last = seen.lock().unwrap().values().max().copied().unwrap();
        let secs = (last - committed).as_secs_f64();
        println!(
            "{backend}: {n} deliveries in {secs:.2} s from commit to last receipt: {:.0} deliveries/s",
            n as f64 / secs
        );

        // 2. Latency at a steady rate: a commit every 10 ms for 10 s.
        let per_tick = (rate / 100).max(1);
        let mut sent: Vec<(String, Instant)> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for t in 0..1000 {
            tick.tick().await;
            let runs: Vec<String> = (0..per_tick).map(|i| format!("l{t}-{i}")).collect();
            let at = insert(&store, &runs).await?;
            sent.extend(runs.into_iter().map(|r| (r, at)));
        }
        wait_for(&seen, n + sent.len(), Duration::from_secs(120)).await?;
        let mut lat: Vec<Duration> = {
            let seen = seen.lock().unwrap();
            sent.iter()
                .map(|(run, at)| seen[run].saturating_duration_since(*at))
                .collect()
        };
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!(
            "{backend}: {} events/s for 10 s: commit to receipt p50 {} ms, p99 {} ms, max {} ms",
            per_tick * 100,
            pct(0.50).as_millis(),
            pct(0.99).as_millis(),
            lat.last().unwrap().as_millis()
        );
        store.close().await;
        anyhow::Ok(())
    });
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    if std::env::var_os("BENCH_LOG").is_some() {
        println!("daemon log: {}", dir.keep().join("daemon.log").display());
    }
    result
}

/// One committed transaction of price changes, one run (so one event) per entry.
async fn insert(store: &syncd::store::Store, runs: &[String]) -> anyhow::Result<Instant> {
    let now = chrono::Utc::now();
    let mut tx = store.db().begin().await?;
    for run in runs {
        syncd::store::db::query(
            "INSERT INTO price_changes (tenant, feed, run, sku, change, old_price, new_price,
                 old_stock, new_stock, recorded_at)
             VALUES ('bench', 'prices', ?, 'SKU-1', 'changed', '1.00', '1.10', 5, 5, ?)",
        )
        .bind(run)
        .bind(now)
        .execute(&mut tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Instant::now())
}

async fn wait_for(seen: &Seen, count: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = seen.lock().unwrap().len();
        if got >= count {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {got} of {count} deliveries arrived within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn receiver(seen: Seen) -> anyhow::Result<std::net::SocketAddr> {
    async fn hook(State(seen): State<Seen>, body: Bytes) -> &'static str {
        let at = Instant::now();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
            && let Some(run) = v["data"]["run"].as_str()
        {
            seen.lock().unwrap().entry(run.to_string()).or_insert(at);
        }
        "ok"
    }
    let app = Router::new().route("/hook", post(hook)).with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
