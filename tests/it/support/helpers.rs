//! Test harness: a private directory with config, catalog and state database per test, the
//! real `syncd` binary run as a child process, and polling helpers that wait for an
//! observable state instead of sleeping for a guessed time.

use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use syncd::store::Store;

/// The shared Redis of the test machine (`.ci/run` starts it when it is not running).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The PostgreSQL server the tests create their databases on (trust auth on loopback;
/// `.ci/run` starts it when it is not running). `SYNCD_TEST_POSTGRES` overrides it.
pub fn postgres_server() -> String {
    std::env::var("SYNCD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_string()
}

/// Which state database the suite runs on: `SYNCD_TEST_STATE=postgres` runs every test that
/// uses [`TestEnv`] on PostgreSQL (each test gets a database of its own), anything else on
/// SQLite.
pub fn state_on_postgres() -> bool {
    std::env::var("SYNCD_TEST_STATE").is_ok_and(|v| v.eq_ignore_ascii_case("postgres"))
}

/// Fails the test with how to start Redis when nothing answers at `url`.
fn assert_redis(url: &str) {
    let addr = url.trim_start_matches("redis://");
    assert!(
        std::net::TcpStream::connect(addr).is_ok(),
        "these tests need Redis at {url}; start one with: \
         redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no"
    );
}

/// A fresh PostgreSQL database for one test, dropped with it.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let name = format!("syncd_t_{:016x}", rand::random::<u64>());
        let server = postgres_server();
        let sql = format!("CREATE DATABASE {name}");
        on_postgres_server(&server, sql).unwrap_or_else(|e| {
            panic!(
                "these tests need PostgreSQL at {server} with trust auth \
                 (`.ci/run` starts it): {e}"
            )
        });
        PgDatabase {
            url: format!("{server}/{name}"),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = on_postgres_server(&postgres_server(), sql);
    }
}

/// Runs one statement on the server's `postgres` database, from a thread of its own (callers
/// may be inside a runtime, or in `Drop`).
fn on_postgres_server(server: &str, sql: String) -> Result<(), String> {
    let url = format!("{server}/postgres");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            conn.close().await.map_err(|e| e.to_string())
        })
    })
    .join()
    .map_err(|_| "the PostgreSQL helper thread panicked".to_string())?
}

/// One test's world: config, catalog and state database in a temporary directory.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub namespace: String,
    backend: &'static str,
    redis_url: String,
    extra: String,
    /// The test's own PostgreSQL database when the suite runs on PostgreSQL.
    pub pg: Option<std::sync::Arc<PgDatabase>>,
}

impl TestEnv {
    /// The embedded default: SQLite state and queue.
    pub fn sqlite() -> Self {
        Self::new("sqlite", REDIS_URL)
    }

    /// Redis queue at `url`, with a namespace of its own so tests sharing a Redis never meet.
    pub fn redis(url: &str) -> Self {
        assert_redis(url);
        Self::new("redis", url)
    }

    /// `n` nodes of one deployment: one PostgreSQL database, one Redis queue namespace, one
    /// master key, each node with a directory (config, catalog, log) of its own.
    pub fn cluster(n: usize) -> Vec<TestEnv> {
        assert_redis(REDIS_URL);
        let pg = std::sync::Arc::new(PgDatabase::create());
        let first = Self::with_state("redis", REDIS_URL, Some(pg.clone()));
        let key = std::fs::read(first.dir.path().join("master.key")).unwrap();
        let mut nodes = vec![first];
        for _ in 1..n {
            let node = Self::with_state("redis", REDIS_URL, Some(pg.clone()))
                .with_namespace(&nodes[0].namespace);
            std::fs::write(node.dir.path().join("master.key"), &key).unwrap();
            nodes.push(node);
        }
        nodes
    }

    fn new(backend: &'static str, redis_url: &str) -> Self {
        let pg = state_on_postgres().then(|| std::sync::Arc::new(PgDatabase::create()));
        Self::with_state(backend, redis_url, pg)
    }

    /// A test world on `pg` (PostgreSQL state) or, with `None`, on SQLite state.
    fn with_state(
        backend: &'static str,
        redis_url: &str,
        pg: Option<std::sync::Arc<PgDatabase>>,
    ) -> Self {
        let env = TestEnv {
            dir: tempfile::tempdir().expect("temp dir"),
            namespace: format!("t{:08x}", rand::random::<u32>()),
            backend,
            redis_url: redis_url.to_string(),
            extra: String::new(),
            pg,
        };
        // The catalog, and tenant acme's own directory for the files its feeds name.
        std::fs::create_dir_all(env.dir.path().join("jobs/acme")).unwrap();
        // The credential store's master key (OAuth tokens and stored credentials need one).
        let key: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        std::fs::write(env.dir.path().join("master.key"), key).unwrap();
        env.write_config();
        env
    }

    /// Merges TOML into the test config (each call replaces the previous extra).
    pub fn with_config(mut self, extra: &str) -> Self {
        self.extra = extra.to_string();
        self.write_config();
        self
    }

    fn write_config(&self) {
        // Fast settings for tests; every one of them is also a documented config key.
        let base = format!(
            r#"shutdown_grace = "10s"
[queue]
backend = "{backend}"
redis_url = "{redis}"
namespace = "{ns}"
concurrency = 2
poll_interval = "200ms"
orphan_timeout = "2s"
[retry]
base = "1s"
cap = "2s"
max_attempts = 8
[scheduler]
spread = "0s"
[credentials]
key_file = "master.key"
[admin]
bind = "127.0.0.1:0"
[log]
filter = "info,syncd=debug"
[state]
url = "{state}"
max_connections = 4
"#,
            backend = self.backend,
            redis = self.redis_url,
            ns = self.namespace,
            state = self.state_url(),
        );
        let mut table: toml::Table = base.parse().unwrap();
        let extra: toml::Table = self.extra.parse().expect("test config is TOML");
        merge(&mut table, extra);
        std::fs::write(self.config_path(), toml::to_string(&table).unwrap()).unwrap();
    }

    /// `[state] url`: the test's PostgreSQL database, or `syncd.db` in its directory.
    pub fn state_url(&self) -> String {
        match &self.pg {
            Some(pg) => pg.url.clone(),
            None => "sqlite://syncd.db".into(),
        }
    }

    /// The SQLite file holding the embedded queue (the state file, or its own file beside a
    /// PostgreSQL state).
    pub fn queue_db_path(&self) -> PathBuf {
        self.dir.path().join(if self.pg.is_some() {
            "syncd-queue.db"
        } else {
            "syncd.db"
        })
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Shares another env's queue namespace (another node of the same deployment).
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_string();
        self.write_config();
        self
    }

    /// Writes `jobs/{tenant}.toml`, and makes the tenant's directory `jobs/{tenant}/` for
    /// the files it names.
    pub fn write_catalog(&self, tenant: &str, text: &str) {
        std::fs::create_dir_all(self.dir.path().join("jobs").join(tenant)).unwrap();
        std::fs::write(
            self.dir.path().join("jobs").join(format!("{tenant}.toml")),
            text,
        )
        .unwrap();
    }

    /// A catalog with one HTTP feed `acme/{name}` at `url` with a `sku,price,stock` header
    /// (another tenant's file swaps the `ACME_` of its variable for its own prefix).
    pub fn http_feed(&self, name: &str, url: &str) -> String {
        format!(
            r#"
[[feed]]
name = "{name}"
url = "{url}"
schedule = "every 1h"
stale_after = "26h"
auth = {{ kind = "basic", username = "acme", password_env = "ACME_FEED_PASSWORD" }}
[feed.columns]
sku = "sku"
price = "price"
stock = "stock"
"#
        )
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(syncd_bin());
        cmd.arg("--config")
            .arg(self.config_path())
            .args(args)
            .current_dir(self.dir.path())
            .env("ACME_FEED_PASSWORD", "s3cret-feed-password")
            .env("BRAVO_FEED_PASSWORD", "s3cret-feed-password")
            .env_remove("RUST_LOG")
            // A test daemon never talks to the service manager running the tests.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID");
        cmd
    }

    /// Runs a CLI command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run syncd")
    }

    /// Runs a CLI command with extra environment variables (secrets).
    pub fn run_with_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        self.command(args)
            .envs(vars.iter().copied())
            .output()
            .expect("run syncd")
    }

    /// Runs a CLI command with `input` on its standard input (a secret, as an admin pipes it).
    pub fn run_with_stdin(&self, args: &[&str], input: &str, vars: &[(&str, &str)]) -> Output {
        use std::io::Write;
        let mut child = self
            .command(args)
            .envs(vars.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run syncd");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().expect("run syncd")
    }

    /// Runs a CLI command that prints JSON and must succeed.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "syncd {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// `syncd status --json`, the row of `acme/{name}`.
    pub fn status_of(&self, name: &str) -> Value {
        let all = self.json(&["status", "--json"]);
        all.as_array()
            .unwrap()
            .iter()
            .find(|s| s["integration"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// `syncd issues --json [--all]`.
    pub fn issues(&self, all: bool) -> Vec<Value> {
        let args: &[&str] = if all {
            &["issues", "--all", "--json"]
        } else {
            &["issues", "--json"]
        };
        self.json(args).as_array().unwrap().clone()
    }

    /// Starts `syncd run` in the background; its log goes to `daemon-N.log`.
    pub fn spawn(&self) -> Daemon {
        self.spawn_with_env(&[])
    }

    /// Starts `syncd run` with extra environment variables (e.g. a renewed secret).
    pub fn spawn_with_env(&self, vars: &[(&str, &str)]) -> Daemon {
        let n = std::fs::read_dir(self.dir.path()).unwrap().count();
        let log = self.dir.path().join(format!("daemon-{n}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .command(&["run"])
            .envs(vars.iter().copied())
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn syncd run");
        Daemon {
            child: Some(child),
            log,
        }
    }

    /// The state database, opened directly (as a second reader next to the daemon).
    pub async fn store(&self) -> Store {
        match &self.pg {
            Some(pg) => Store::open_postgres(&pg.url, 4).await.unwrap(),
            None => Store::open_sqlite(&self.dir.path().join("syncd.db"))
                .await
                .unwrap(),
        }
    }

    /// Everything stored in the state database, as bytes: the SQLite file and its WAL, or
    /// every PostgreSQL row as JSON with its byte strings decoded (for "the secret is not
    /// stored anywhere" checks).
    pub async fn raw_state(&self) -> Vec<u8> {
        let Some(pg) = &self.pg else {
            let mut bytes = Vec::new();
            for name in ["syncd.db", "syncd.db-wal"] {
                if let Ok(b) = std::fs::read(self.dir.path().join(name)) {
                    bytes.extend(b);
                }
            }
            assert!(!bytes.is_empty(), "the state database exists");
            return bytes;
        };
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let mut bytes = Vec::new();
        for (table,) in tables {
            let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT row_to_json(t)::text FROM \"{table}\" t"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            for (row,) in rows {
                bytes.extend(row.as_bytes());
                let value: Value = serde_json::from_str(&row).unwrap();
                for field in value.as_object().into_iter().flat_map(|o| o.values()) {
                    // bytea arrives as "\\x0a1b…": decode it, so ciphertext is checked as bytes.
                    if let Some(hex) = field.as_str().and_then(|s| s.strip_prefix("\\x")) {
                        bytes.extend(
                            (0..hex.len() / 2).filter_map(|i| {
                                u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()
                            }),
                        );
                    }
                }
            }
        }
        bytes
    }
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// A running `syncd run`; killed when dropped. Its log is printed if the test fails.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "syncd did not exit within {timeout:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- daemon log {} ----\n{}",
                self.log.display(),
                self.log()
            );
        }
    }
}

/// Polls `f` until it returns `Some`, or fails the test after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn wait_for_outcome(
    env: &TestEnv,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> Value {
    eventually(timeout, &format!("an outcome for acme/{name}"), || {
        let s = env.status_of(name);
        let ok = s["last_outcome"].as_str().is_some_and(&pred);
        async move { ok.then_some(s) }
    })
    .await
}

/// The open issues of `acme/{name}` of `kind`.
pub fn open_issues(env: &TestEnv, name: &str, kind: &str) -> Vec<Value> {
    env.issues(false)
        .into_iter()
        .filter(|i| i["integration"] == name && i["kind"] == kind)
        .collect()
}

/// Waits for an open issue of `kind` on `acme/{name}` and returns it.
pub async fn wait_for_issue(env: &TestEnv, name: &str, kind: &str, timeout: Duration) -> Value {
    eventually(timeout, &format!("a {kind} issue on acme/{name}"), || {
        let found = open_issues(env, name, kind).pop();
        async move { found }
    })
    .await
}

/// The binary under test: the one cargo built with this test binary, unless
/// `SYNCD_TEST_BIN` names another (several checkouts sharing one target directory overwrite
/// each other's `target/debug/syncd`).
pub fn syncd_bin() -> String {
    std::env::var("SYNCD_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_syncd").to_string())
}

/// A free loopback TCP port (for servers that must come back on the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs one `feed_fetch` of `acme/{name}` in this process, through the real engine (queue,
/// state, issues), with the catalog as it is on disk now. For format and guard tests that
/// need no daemon.
pub async fn import_once(env: &TestEnv, name: &str, force: bool, accept_shrink: bool) {
    use syncd::jobs::{Job, JobKind, Trigger};
    let ctx = job_context(env).await;
    ctx.store.ensure_state("acme", name, "feed").await.unwrap();
    let mut job = Job::new(JobKind::FeedFetch, "acme", name, Trigger::Refetch);
    job.force = force;
    job.accept_shrink = accept_shrink;
    syncd::jobs::execute(&ctx, job).await.unwrap();
}

/// What the daemon gives its jobs, built from the test's config and catalog as they are on
/// disk now, for running jobs in this process.
pub async fn job_context(env: &TestEnv) -> syncd::jobs::JobContext {
    use std::sync::Arc;
    let config = Arc::new(syncd::config::Config::load(&env.config_path(), true).unwrap());
    let catalog = syncd::catalog::Catalog::load_for(&config).unwrap();
    syncd::jobs::JobContext::build(config, Arc::new(catalog), env.store().await)
        .await
        .unwrap()
}
