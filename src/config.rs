//! Daemon settings: `config.toml` first, then `SYNCD__SECTION__KEY` environment overrides.
//!
//! Every field has a default, so an empty file (or none at all) runs the embedded set-up:
//! SQLite for state and queue, the catalog in `jobs/` next to the config file. Everything is
//! checked once by [`Config::load`], and every message names the file and the key at fault.

use crate::duration;

mod webhooks;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
pub use webhooks::WebhooksConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where sync state, issues and prices live.
    pub state: StateConfig,
    /// Which queue carries the jobs and how many run at once.
    pub queue: QueueConfig,
    /// Durable retry schedule for transient failures.
    pub retry: RetryConfig,
    /// When failures become issues.
    pub issues: IssuesConfig,
    /// Where the integration catalog is.
    pub catalog: CatalogConfig,
    /// Log format and filter.
    pub log: LogConfig,
    /// Outbound HTTP client settings.
    pub http: HttpConfig,
    /// How scheduled runs are spread out.
    pub scheduler: SchedulerConfig,
    /// Feed download and validation limits.
    pub feeds: FeedsConfig,
    /// CRM providers: rate limits, OAuth refresh, enrichment age.
    pub crm: CrmConfig,
    /// The encrypted credential store: where the master key comes from.
    pub credentials: CredentialsConfig,
    /// The admin HTTP server (API, page, health, metrics).
    pub admin: AdminConfig,
    /// Webhook delivery: timeout, retry schedule, endpoint health, SSRF allowlist.
    pub webhooks: WebhooksConfig,
    /// `[tenants.NAME]`: what the operator grants one tenant, which its own file cannot.
    pub tenants: std::collections::BTreeMap<String, TenantPolicy>,
    /// How long in-flight jobs may run after SIGTERM/SIGINT before the daemon exits anyway.
    /// Jobs cut off by the grace period stay queued and run again after the orphan timeout.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,

    /// The directory relative paths are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file this configuration was read from, if any (for messages).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state: StateConfig::default(),
            queue: QueueConfig::default(),
            retry: RetryConfig::default(),
            issues: IssuesConfig::default(),
            catalog: CatalogConfig::default(),
            log: LogConfig::default(),
            http: HttpConfig::default(),
            scheduler: SchedulerConfig::default(),
            feeds: FeedsConfig::default(),
            crm: CrmConfig::default(),
            credentials: CredentialsConfig::default(),
            admin: AdminConfig::default(),
            webhooks: WebhooksConfig::default(),
            tenants: Default::default(),
            shutdown_grace: Duration::from_secs(30),
            base_dir: PathBuf::from("."),
            source: None,
        }
    }
}

/// `[state]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Database URL. `sqlite://syncd.db` (relative to the config file's directory),
    /// `sqlite:///var/lib/syncd/syncd.db`, or `postgres://user@host:5432/syncd` for several
    /// nodes. With the SQLite queue and SQLite state one file holds both.
    pub url: String,
    /// Connections this node opens to PostgreSQL at most (SQLite: unused).
    pub max_connections: u32,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://syncd.db".into(),
            max_connections: 10,
        }
    }
}

/// Which queue backend carries jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackend {
    /// Embedded: the queue lives in the state SQLite file (or in `[queue] sqlite_path` when
    /// the state is PostgreSQL). One node.
    Sqlite,
    /// Redis: several nodes share the queue.
    Redis,
}

/// `[queue]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// `sqlite` (default) or `redis`.
    pub backend: QueueBackend,
    /// Redis URL, used when `backend = "redis"`. Give Redis AOF persistence so that a restart
    /// loses no queued job.
    pub redis_url: String,
    /// Queue names are `{namespace}-{job kind}`; distinct namespaces keep several
    /// deployments (or test runs) on one Redis apart.
    pub namespace: String,
    /// Jobs run at once per job kind on this node.
    pub concurrency: usize,
    /// How often an idle worker looks for due jobs (at most 1s: pickup and acknowledgement
    /// both wait for it).
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// How long a node may stay silent before other workers take over its in-flight jobs.
    /// Shorter recovers sooner after a crash; longer tolerates long pauses (GC, I/O stalls)
    /// without running a job twice.
    #[serde(with = "duration")]
    pub orphan_timeout: Duration,
    /// A job whose worker died this many times without finishing is given up with a
    /// `retries_exhausted` issue instead of looping forever.
    pub max_interrupted_runs: u32,
    /// The SQLite queue's file when the state is on PostgreSQL (relative to the config
    /// file's directory). Unused otherwise: with SQLite state the queue shares its file.
    pub sqlite_path: PathBuf,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            backend: QueueBackend::Sqlite,
            redis_url: "redis://127.0.0.1:6379".into(),
            namespace: "syncd".into(),
            concurrency: 4,
            poll_interval: Duration::from_millis(500),
            orphan_timeout: Duration::from_secs(60),
            max_interrupted_runs: 3,
            sqlite_path: PathBuf::from("syncd-queue.db"),
        }
    }
}

/// `[retry]`: delay = min(cap, base × 2^attempt) with full jitter, never below Retry-After.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Delay scale for the first retry.
    #[serde(with = "duration")]
    pub base: Duration,
    /// Longest delay between two attempts (a provider's Retry-After may exceed it).
    #[serde(with = "duration")]
    pub cap: Duration,
    /// Attempts in all (the first run included) before `retries_exhausted`.
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            cap: Duration::from_secs(3600),
            max_attempts: 8,
        }
    }
}

/// `[issues]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IssuesConfig {
    /// Consecutive transient failures before a `connection_failed` issue opens.
    pub transient_threshold: u32,
}

impl Default for IssuesConfig {
    fn default() -> Self {
        Self {
            transient_threshold: 3,
        }
    }
}

/// `[catalog]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Directory of `*.toml` tenant files, relative to the config file.
    pub dir: PathBuf,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("jobs"),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for journald/Loki).
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `syncd=debug,info`; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Time allowed to establish a connection (TCP + TLS).
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Longest silence allowed while reading a response.
    #[serde(with = "duration")]
    pub read_timeout: Duration,
    /// User-Agent sent to distributors and providers.
    pub user_agent: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            user_agent: concat!("syncd/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// `[scheduler]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Integrations due at the same moment are spread at random over this window so that
    /// a hundred feeds on `every 1h` do not fire in one burst.
    #[serde(with = "duration")]
    pub spread: Duration,
    /// How often feeds are checked against their `stale_after`.
    #[serde(with = "duration")]
    pub stale_check_every: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            spread: Duration::from_secs(30),
            stale_check_every: Duration::from_secs(60),
        }
    }
}

/// `[feeds]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedsConfig {
    /// Where downloads are spooled before parsing (default: the system temp directory).
    pub work_dir: Option<PathBuf>,
    /// Largest download accepted, in bytes.
    pub max_download_bytes: u64,
    /// Largest unpacked size of a zip member or gzip stream, in bytes (zip bombs).
    pub max_decompressed_bytes: u64,
    /// Longest line, or record (a quoted field may span lines), a feed may have, in bytes:
    /// memory stays bounded whatever the file's shape. A longer one is `invalid_feed`.
    pub max_line_bytes: u64,
    /// Most rows a feed may have; more is `invalid_feed`.
    pub max_rows: u64,
    /// Fraction of rows that may fail to parse before the whole file is rejected.
    pub max_error_rate: f64,
    /// Largest tolerated drop in a full file's row count against the last good import
    /// (0.5 = half the rows gone is still accepted, more is `invalid_feed`).
    pub max_shrink: f64,
    /// How long change records are kept.
    #[serde(with = "duration")]
    pub keep_changes: Duration,
}

impl Default for FeedsConfig {
    fn default() -> Self {
        Self {
            work_dir: None,
            max_download_bytes: 2 * 1024 * 1024 * 1024,
            max_decompressed_bytes: 8 * 1024 * 1024 * 1024,
            max_line_bytes: 1024 * 1024,
            max_rows: 100_000_000,
            max_error_rate: 0.01,
            max_shrink: 0.5,
            keep_changes: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// `[crm]`: the providers' documented limits as defaults; lower them for a smaller plan,
/// raise them for a bigger one.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrmConfig {
    /// HubSpot API calls per rolling 10 seconds, per tenant (100 for Free/Starter private
    /// apps, 190 for Professional/Enterprise, 110 for public OAuth apps).
    pub hubspot_per_10s: u32,
    /// HubSpot search calls per second, per tenant (HubSpot documents "about 5").
    pub hubspot_search_per_second: u32,
    /// Apollo.io calls per fixed minute window, per tenant (free plan: 50).
    pub apollo_per_minute: u32,
    /// Apollo.io calls per fixed hour window (free plan: 200).
    pub apollo_per_hour: u32,
    /// Apollo.io calls per fixed 24-hour window (free plan: 600).
    pub apollo_per_day: u32,
    /// Fraction of each budget kept back, for clock skew between us and the provider.
    pub headroom: f64,
    /// A job waits in place for quota this long at most; a longer wait ends the run and
    /// queues its continuation for when the quota is back, freeing the worker.
    #[serde(with = "duration")]
    pub max_inline_wait: Duration,
    /// OAuth access tokens are refreshed this long before they expire.
    #[serde(with = "duration")]
    pub oauth_refresh_margin: Duration,
    /// Companies enriched longer ago than this are enriched again.
    #[serde(with = "duration")]
    pub enrich_max_age: Duration,
}

impl Default for CrmConfig {
    fn default() -> Self {
        Self {
            hubspot_per_10s: 100,
            hubspot_search_per_second: 4,
            apollo_per_minute: 50,
            apollo_per_hour: 200,
            apollo_per_day: 600,
            headroom: 0.01,
            max_inline_wait: Duration::from_secs(5),
            oauth_refresh_margin: Duration::from_secs(300),
            enrich_max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// `[credentials]`: the master key of the encrypted credential store.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialsConfig {
    /// A file holding the 32-byte master key as 64 hex digits or base64 (relative to the
    /// config file). Default: `$CREDENTIALS_DIRECTORY/master.key` when systemd's
    /// `LoadCredential=` sets that variable and the file exists.
    pub key_file: Option<PathBuf>,
    /// The environment variable holding the master key when no key file is used.
    pub key_env: String,
    /// How long before a stored credential's `expires_at` a `token_expiring` issue is raised.
    #[serde(with = "duration")]
    pub expiry_warning: Duration,
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        Self {
            key_file: None,
            key_env: "SYNCD_MASTER_KEY".into(),
            expiry_warning: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Whether `syncd run` serves the admin API and page.
    pub enabled: bool,
    /// Address and port to listen on (`127.0.0.1:0` picks a free port and logs it).
    pub bind: String,
    /// A file holding the operator token (all tenants). Default: `admin.token` in
    /// `$CREDENTIALS_DIRECTORY` when systemd provides one.
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the operator token.
    pub token_env: Option<String>,
    /// Requests per tenant (and per operator) in any rolling `rate_window`.
    pub rate_limit: u32,
    /// The rolling window of `rate_limit`.
    #[serde(with = "duration")]
    pub rate_window: Duration,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// A request taking longer is answered 503.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Most events one `POST /api/replay` sends again; a longer window is refused (replay
    /// it in parts, or from the CLI, which has no cap).
    pub replay_max_events: usize,
    /// How long a page session lasts after its login.
    #[serde(with = "duration")]
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure` (sent over HTTPS only). Set it when the page is
    /// reached through an HTTPS proxy, which is how it should be reached from anywhere but
    /// this host.
    pub cookie_secure: bool,
    /// Failed logins and refused bearer tokens one client address may make per
    /// `rate_window`; beyond it every request from that address is answered 429.
    pub auth_failures: u32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: "127.0.0.1:8090".into(),
            token_file: None,
            token_env: None,
            rate_limit: 500,
            rate_window: Duration::from_secs(600),
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(60),
            replay_max_events: 10_000,
            session_ttl: Duration::from_secs(12 * 3600),
            cookie_secure: false,
            auth_failures: 20,
        }
    }
}

/// `[tenants.NAME]`: settings for one tenant that only the operator may make.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantPolicy {
    /// The prefix of the environment variables the tenant's file may name (default: the
    /// tenant's name upper-cased, `-` and `.` as `_`, then `_`: `ACME_` for `acme`).
    pub env_prefix: Option<String>,
    /// The directory of the tenant's files (`file:` feeds, `key_file`, `ca_file`), e.g. a
    /// drop directory a distributor uploads into (default: `<catalog dir>/<tenant>`).
    pub dir: Option<PathBuf>,
}

impl Config {
    /// Reads `path` (optional when `explicit` is false and the file is absent), applies
    /// `SYNCD__…` environment overrides and validates the result.
    pub fn load(path: &Path, explicit: bool) -> anyhow::Result<Config> {
        let exists = path.exists();
        if explicit && !exists {
            bail!("{}: config file not found", path.display());
        }
        let shown = path.display().to_string();
        let mut builder = config::Config::builder();
        if exists {
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SYNCD")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let raw = builder
            .build()
            .with_context(|| format!("{shown}: cannot read configuration"))?;
        let mut cfg: Config = raw
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("{shown}: {}", describe_config_error(&e)))?;
        cfg.base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        cfg.source = exists.then(|| path.to_path_buf());
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
        Ok(cfg)
    }

    /// Checks values that parse but make no sense; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        for (tenant, policy) in &self.tenants {
            if let Some(prefix) = &policy.env_prefix
                && (prefix.len() < 2
                    || !prefix
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    || prefix.to_ascii_uppercase().starts_with("SYNCD"))
            {
                return Err(format!(
                    "[tenants.{tenant}] env_prefix must be 2 or more upper-case letters, digits or '_', not starting with SYNCD (got `{prefix}`)"
                ));
            }
        }
        let q = &self.queue;
        if q.concurrency == 0 {
            return Err("[queue] concurrency must be at least 1".into());
        }
        if q.poll_interval.is_zero() || q.poll_interval > Duration::from_secs(1) {
            return Err(format!(
                "[queue] poll_interval must be between 1ms and 1s (got {})",
                duration::format(q.poll_interval)
            ));
        }
        if q.orphan_timeout < Duration::from_secs(2) {
            return Err("[queue] orphan_timeout must be at least 2s".into());
        }
        if q.namespace.is_empty()
            || !q
                .namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "[queue] namespace must be letters, digits, '-' or '_' (got `{}`)",
                q.namespace
            ));
        }
        if q.backend == QueueBackend::Redis && !q.redis_url.starts_with("redis") {
            return Err("[queue] redis_url must start with redis:// or rediss://".into());
        }
        if q.max_interrupted_runs == 0 {
            return Err("[queue] max_interrupted_runs must be at least 1".into());
        }
        let r = &self.retry;
        if r.base.is_zero() {
            return Err("[retry] base must be greater than 0".into());
        }
        if r.cap < r.base {
            return Err("[retry] cap must not be shorter than [retry] base".into());
        }
        if r.max_attempts == 0 {
            return Err("[retry] max_attempts must be at least 1".into());
        }
        if self.issues.transient_threshold == 0 {
            return Err("[issues] transient_threshold must be at least 1".into());
        }
        if self.feeds.max_line_bytes < 1024 {
            return Err("[feeds] max_line_bytes must be at least 1024".into());
        }
        if self.feeds.max_rows == 0 {
            return Err("[feeds] max_rows must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.feeds.max_error_rate) {
            return Err("[feeds] max_error_rate must be between 0 and 1".into());
        }
        if !(0.0..=1.0).contains(&self.feeds.max_shrink) {
            return Err("[feeds] max_shrink must be between 0 and 1".into());
        }
        if self.admin.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "[admin] bind must be an address and port such as 127.0.0.1:8090 (got `{}`)",
                self.admin.bind
            ));
        }
        if self.admin.rate_limit == 0 || self.admin.rate_window.is_zero() {
            return Err("[admin] rate_limit and rate_window must be greater than 0".into());
        }
        if self.admin.auth_failures == 0 {
            return Err("[admin] auth_failures must be at least 1".into());
        }
        if self.admin.session_ttl < Duration::from_secs(1)
            || self.admin.session_ttl > Duration::from_secs(30 * 24 * 3600)
        {
            return Err("[admin] session_ttl must be between 1s and 30d".into());
        }
        let c = &self.crm;
        for (key, v) in [
            ("hubspot_per_10s", c.hubspot_per_10s),
            ("hubspot_search_per_second", c.hubspot_search_per_second),
            ("apollo_per_minute", c.apollo_per_minute),
            ("apollo_per_hour", c.apollo_per_hour),
            ("apollo_per_day", c.apollo_per_day),
        ] {
            if v == 0 {
                return Err(format!("[crm] {key} must be at least 1"));
            }
        }
        if !(0.0..0.5).contains(&c.headroom) {
            return Err("[crm] headroom must be at least 0 and below 0.5".into());
        }
        let k = &self.credentials;
        if k.key_env.is_empty()
            || !k
                .key_env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!(
                "[credentials] key_env must be an environment variable name: letters, digits and '_' (got `{}`)",
                k.key_env
            ));
        }
        if k.key_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            return Err("[credentials] key_file must not be empty".into());
        }
        if k.expiry_warning.is_zero() {
            return Err("[credentials] expiry_warning must be greater than 0".into());
        }
        self.webhooks.validate()?;
        if !self.state.url.starts_with("sqlite:") && !self.state_is_postgres() {
            return Err(format!(
                "[state] url must be a sqlite: or postgres:// URL (got `{}`)",
                crate::redact_url(&self.state.url)
            ));
        }
        if self.state.max_connections == 0 {
            return Err("[state] max_connections must be at least 1".into());
        }
        Ok(())
    }

    /// The catalog directory, resolved against the config file's directory.
    pub fn catalog_dir(&self) -> PathBuf {
        self.resolve(&self.catalog.dir)
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Whether `[state] url` names PostgreSQL.
    pub fn state_is_postgres(&self) -> bool {
        self.state.url.starts_with("postgres://") || self.state.url.starts_with("postgresql://")
    }

    /// Where the SQLite queue lives: the state file, or `[queue] sqlite_path` beside a
    /// PostgreSQL state.
    pub fn queue_sqlite_path(&self) -> PathBuf {
        if self.state_is_postgres() {
            self.resolve(&self.queue.sqlite_path)
        } else {
            self.sqlite_path()
        }
    }

    /// A description of the state database for logs and `check-config` (no password).
    pub fn state_display(&self) -> String {
        if self.state_is_postgres() {
            crate::redact_url(&self.state.url)
        } else {
            self.sqlite_path().display().to_string()
        }
    }

    /// The SQLite file named by `[state] url`, resolved like every other relative path.
    pub fn sqlite_path(&self) -> PathBuf {
        let rest = self
            .state
            .url
            .trim_start_matches("sqlite:")
            .trim_start_matches("//");
        let path = rest.split('?').next().unwrap_or(rest);
        self.resolve(Path::new(path))
    }
}

/// The config crate reports unknown keys without the section; keep its words, they name the
/// key, and add the hint that keys are documented in the README.
fn describe_config_error(e: &config::ConfigError) -> String {
    let text = e.to_string();
    if text.contains("unknown field") {
        format!("{text} (see the configuration reference in README.md)")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("config.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn an_empty_file_gives_the_embedded_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::load(&write(dir.path(), ""), true).unwrap();
        assert_eq!(cfg.queue.backend, QueueBackend::Sqlite);
        assert_eq!(cfg.catalog_dir(), dir.path().join("jobs"));
        assert_eq!(cfg.sqlite_path(), dir.path().join("syncd.db"));
    }

    #[test]
    fn a_bad_value_names_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "[queue]\nconcurrency = 0\n");
        let err = Config::load(&p, true).unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
        assert!(err.contains("[queue] concurrency"), "{err}");

        let p = write(dir.path(), "[credentials]\nkey_env = \"MY KEY\"\n");
        let err = Config::load(&p, true).unwrap_err().to_string();
        assert!(err.contains("[credentials] key_env"), "{err}");

        let p = write(dir.path(), "[credentials]\nexpiry_warning = \"0s\"\n");
        let err = Config::load(&p, true).unwrap_err().to_string();
        assert!(err.contains("[credentials] expiry_warning"), "{err}");

        let p = write(dir.path(), "[retry]\nbase = \"soon\"\n");
        let err = Config::load(&p, true).unwrap_err().to_string();
        assert!(err.contains("retry.base"), "{err}");
    }
}
