//! HubSpot rate-limit benchmark: a real `syncd run` (release build) pulls N companies with
//! their contacts from the fake HubSpot of the test suite, which enforces HubSpot's rolling
//! 100 calls per 10 s and answers beyond it with HubSpot's 429.
//!
//! ```text
//! cargo build --release
//! cargo run --release --example crm_bench -- 5000
//! ```
//!
//! Prints the achieved call rate over the sync as a fraction of the allowed rate, and the
//! number of 429s. Nothing here is a pass/fail test.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use syncd_testkit::fake_hubspot::{FakeHubSpot, HubSpotOptions};

const TOKEN: &str = "pat-bench-token";

fn main() -> anyhow::Result<()> {
    let companies: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5000);
    let rt = tokio::runtime::Runtime::new()?;
    let fake = rt.block_on(FakeHubSpot::start(HubSpotOptions::default()));
    fake.add_private_app_token(TOKEN);
    fake.add_companies(companies);

    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("jobs"))?;
    std::fs::write(
        dir.path().join("config.toml"),
        "[scheduler]\nspread = \"0s\"\n[queue]\npoll_interval = \"100ms\"\n",
    )?;
    std::fs::write(
        dir.path().join("jobs/bench.toml"),
        format!(
            "tenant = \"bench\"\n[[crm]]\nname = \"hubspot\"\nprovider = \"hubspot\"\n\
             schedule = \"every 24h\"\nbase_url = \"{}\"\ntoken_env = \"BENCH_HUBSPOT_TOKEN\"\n",
            fake.url
        ),
    )?;
    let bin = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("syncd"))
        .ok_or_else(|| anyhow::anyhow!("cannot find the syncd binary"))?;
    let log = std::fs::File::create(dir.path().join("daemon.log"))?;
    let started = Instant::now();
    let mut daemon = Command::new(&bin)
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .arg("run")
        .current_dir(dir.path())
        .env("BENCH_HUBSPOT_TOKEN", TOKEN)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()?;
    // Bounded: the sync needs about companies / 10 seconds; give it twice that and a minute.
    let limit = Duration::from_secs(companies as u64 / 5 + 60);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let text = std::fs::read_to_string(dir.path().join("daemon.log"))?;
        if text.contains("HubSpot pass complete") {
            break;
        }
        if started.elapsed() > limit {
            let _ = daemon.kill();
            anyhow::bail!("the sync did not finish within {limit:?}:\n{text}");
        }
    }
    let _ = daemon.kill();
    let _ = daemon.wait();

    let calls: Vec<Instant> = fake
        .requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/search"))
        .map(|r| r.at)
        .collect();
    let first = *calls.first().unwrap();
    let last = *calls.last().unwrap();
    let span = (last - first).as_secs_f64();
    // n calls at the allowed rate (10/s) need (n - 1) / 10 seconds.
    let ideal = (calls.len() - 1) as f64 / 10.0;
    println!(
        "{companies} companies: {} rate-limited calls (+{} searches) in {span:.1} s = {:.2} calls/s; \
         {:.1}% of HubSpot's allowed 10/s; 429s: {}",
        calls.len(),
        fake.count("/search"),
        (calls.len() - 1) as f64 / span,
        100.0 * ideal / span,
        fake.count_429()
    );
    Ok(())
}
