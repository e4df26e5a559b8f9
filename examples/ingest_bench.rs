//! Ingest benchmark: a generated price file served on loopback, imported by a real
//! `syncd run` (release build) through the real `feed_fetch` job into SQLite (or into an empty
//! PostgreSQL database named by `SYNCD_BENCH_STATE`).
//!
//! ```text
//! cargo build --release
//! cargo run --release --example ingest_bench -- 1000000          # CSV with header over HTTP
//! cargo run --release --example ingest_bench -- 1000000 ftp      # zipped positional CSV over FTP
//! createdb -h 127.0.0.1 -U postgres bench && \
//!   SYNCD_BENCH_STATE=postgres://postgres@127.0.0.1/bench \
//!   cargo run --release --example ingest_bench -- 1000000         # into PostgreSQL
//! ```
//!
//! Prints rows/s (from the job's own start/finish, download + parse + write + commit) and
//! the daemon's peak RSS (VmHWM from /proc). Nothing here is a pass/fail test.

use axum::Router;
use axum::body::Body;
use axum::http::header;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let rows: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let ftp = std::env::args().nth(2).is_some_and(|a| a == "ftp");
    let dir = tempfile::tempdir()?;
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served)?;
    let csv = served.join("price.csv");
    let zip = served.join("PRICE.ZIP");
    let publish = |next_day: bool| -> anyhow::Result<u64> {
        generate(&csv, rows, next_day, !ftp)?;
        if ftp {
            zip_file(&csv, &zip)?;
            return Ok(std::fs::metadata(&zip)?.len());
        }
        Ok(std::fs::metadata(&csv)?.len())
    };
    let size = publish(false)?;

    let rt = tokio::runtime::Runtime::new()?;
    let url = if ftp {
        let port = rt.block_on(serve_ftp(served.clone()))?;
        format!("ftp://127.0.0.1:{port}/PRICE.ZIP")
    } else {
        format!("http://{}/price.csv", rt.block_on(serve(csv.clone()))?)
    };
    let columns = if ftp {
        "auth = { kind = \"basic\", username = \"bench\", password_env = \"BENCH_FTP_PASSWORD\" }\n\
         [feed.format]\nheader = false\n[feed.columns]\nsku = 1\nprice = 2\nstock = 3\n"
    } else {
        "[feed.columns]\nsku = \"sku\"\nprice = \"price\"\nstock = \"stock\"\n"
    };
    std::fs::create_dir_all(dir.path().join("jobs"))?;
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[scheduler]\nspread = \"0s\"\n[queue]\npoll_interval = \"100ms\"\n{}",
            // SYNCD_BENCH_STATE=postgres://…/empty_db imports into PostgreSQL instead.
            std::env::var("SYNCD_BENCH_STATE")
                .map(|url| format!("[state]\nurl = \"{url}\"\n"))
                .unwrap_or_default()
        ),
    )?;
    std::fs::write(
        dir.path().join("jobs/bench.toml"),
        format!(
            "tenant = \"bench\"\n[[feed]]\nname = \"prices\"\nurl = \"{url}\"\n\
             schedule = \"every 24h\"\n{columns}"
        ),
    )?;
    let bin = std::env::var("SYNCD_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/syncd"));
    anyhow::ensure!(
        bin.exists(),
        "build the daemon first: cargo build --release"
    );
    let log = dir.path().join("daemon.log");
    let mut child = Command::new(&bin)
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .arg("run")
        .env("RUST_LOG", "syncd=info")
        .env("BENCH_FTP_PASSWORD", "bench")
        .stderr(Stdio::from(std::fs::File::create(&log)?))
        .spawn()?;
    let pid = child.id();
    // First import into an empty table, then a forced re-fetch that replaces every row:
    // the daily case.
    let first = wait_for_job(&log, 1)?;
    let first_peak_kb = peak_rss_kb(pid)?;
    // The next day's file: 10% of prices and 5% of stock levels changed, 1% of the parts
    // gone and as many new ones, so the replace also writes change records.
    publish(true)?;
    let refetch = Command::new(&bin)
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .args(["refetch", "bench/prices", "--force"])
        .output()?;
    anyhow::ensure!(refetch.status.success(), "refetch failed: {refetch:?}");
    let second = wait_for_job(&log, 2)?;
    let peak_kb = peak_rss_kb(pid)?;
    let _ = Command::new("kill").arg(pid.to_string()).status();
    child.wait()?;
    let text = std::fs::read_to_string(&log)?;
    let successes = text
        .lines()
        .filter(|l| l.contains(&format!("detail={rows} rows")))
        .count();
    anyhow::ensure!(
        successes == 2,
        "expected two imports of {rows} rows:\n{text}"
    );
    for (what, ms) in [("first import", first), ("replace", second)] {
        let secs = ms as f64 / 1000.0;
        println!(
            "{what:>12}: rows={rows} file={:.1} MB job={secs:.2}s rate={:.0} rows/s",
            size as f64 / 1e6,
            rows as f64 / secs
        );
    }
    println!(
        "peak RSS of the daemon: {:.1} MB after the first import, {:.1} MB after the next day's",
        first_peak_kb as f64 / 1024.0,
        peak_kb as f64 / 1024.0
    );
    Ok(())
}

/// The process's peak resident set so far (VmHWM), in KiB.
fn peak_rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Waits for the `n`-th "job finished" line and returns its elapsed_ms.
fn wait_for_job(log: &Path, n: usize) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .filter(|l| l.contains("job finished"))
            .nth(n - 1)
        {
            let ms = line
                .split("elapsed_ms=")
                .nth(1)
                .and_then(|v| v.split_whitespace().next());
            return Ok(ms.and_then(|v| v.parse().ok()).unwrap_or(0));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "import {n} did not finish:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `sku,price,stock` rows with zero-padded prices, like a distributor export.
fn generate(path: &Path, rows: u64, next_day: bool, header: bool) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    if header {
        writeln!(out, "sku,price,stock")?;
    }
    for i in 0..rows {
        let mut sku = i;
        let mut cents = i % 100;
        let mut stock = i % 500;
        if next_day {
            if i % 100 == 7 {
                sku = rows + i; // gone, replaced by a new part
            }
            if i % 10 == 3 {
                cents = (cents + 1) % 100;
            }
            if i % 20 == 5 {
                stock += 1;
            }
        }
        writeln!(
            out,
            "SKU{sku:09},{:07}.{cents:02},{stock}",
            (i * 7919) % 100_000
        )?;
    }
    out.flush()
}

/// Zips `csv` as `PRICE.TXT` into `zip` (deflate), the way distributors publish.
fn zip_file(csv: &Path, zip: &Path) -> anyhow::Result<()> {
    let mut out = zip::ZipWriter::new(std::fs::File::create(zip)?);
    out.start_file("PRICE.TXT", zip::write::SimpleFileOptions::default())?;
    std::io::copy(&mut std::fs::File::open(csv)?, &mut out)?;
    out.finish()?;
    Ok(())
}

/// A loopback FTP server (libunftp) over `dir`, user `bench` / `bench`.
async fn serve_ftp(dir: std::path::PathBuf) -> anyhow::Result<u16> {
    #[derive(Debug)]
    struct Bench;
    #[async_trait::async_trait]
    impl unftp_core::auth::Authenticator for Bench {
        async fn authenticate(
            &self,
            username: &str,
            creds: &unftp_core::auth::Credentials,
        ) -> Result<unftp_core::auth::Principal, unftp_core::auth::AuthenticationError> {
            match (username, creds.password.as_deref()) {
                ("bench", Some("bench")) => Ok(unftp_core::auth::Principal {
                    username: username.into(),
                }),
                _ => Err(unftp_core::auth::AuthenticationError::BadPassword),
            }
        }
    }
    let server = libunftp::ServerBuilder::with_authenticator(
        Box::new(move || unftp_sbe_fs::Filesystem::new(dir.clone()).unwrap()),
        std::sync::Arc::new(Bench),
    )
    .passive_ports(51000..=51999)
    .build()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    tokio::spawn(server.listen(format!("127.0.0.1:{port}")));
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(port)
}

/// Serves the file as a stream (the server's memory stays flat too).
async fn serve(path: std::path::PathBuf) -> anyhow::Result<std::net::SocketAddr> {
    let app = Router::new().route(
        "/price.csv",
        axum::routing::get(move || {
            let path = path.clone();
            async move {
                let file = tokio::fs::File::open(path).await.unwrap();
                let len = file.metadata().await.unwrap().len();
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
                (
                    [
                        (header::CONTENT_TYPE, "text/csv".to_string()),
                        (header::CONTENT_LENGTH, len.to_string()),
                    ],
                    Body::from_stream(stream),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
