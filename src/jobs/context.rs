//! [`JobContext`]: what a job needs from the daemon, built in one place
//! ([`JobContext::build`]) for the daemon, the CLI and the tests alike.

use super::Job;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::queue::{Handler, Queue};
use crate::store::Store;
use std::path::PathBuf;
use std::sync::Arc;

/// What a job needs from the daemon.
#[derive(Clone)]
pub struct JobContext {
    /// State database.
    pub store: Store,
    /// Daemon settings.
    pub config: Arc<Config>,
    /// The integration catalog.
    pub catalog: Arc<Catalog>,
    /// Shared HTTP client (connection pools, TLS sessions).
    pub http: reqwest::Client,
    /// Where retries are pushed.
    pub queue: Queue,
    /// Rate limits of the CRM providers (shared by all nodes on the Redis queue).
    pub limiter: crate::crm::limiter::Limiter,
    /// The secret resolver (environment variables and the encrypted credential store).
    pub secrets: crate::credentials::Secrets,
    /// What webhook deliveries share: their guarded HTTP client and in-flight limits.
    pub webhooks: Arc<crate::webhooks::Runtime>,
}

impl JobContext {
    /// Everything a job needs, around an opened `store`: the queue with every job kind's
    /// lane, the secret resolver (the master key checked), the CRM rate limiter, and the
    /// HTTP clients.
    pub async fn build(
        config: Arc<Config>,
        catalog: Arc<Catalog>,
        store: Store,
    ) -> anyhow::Result<JobContext> {
        let queue = super::connect_queue(config.clone(), &store).await?;
        let secrets = crate::credentials::Secrets::open(&config, &store).await?;
        Ok(JobContext {
            http: http_client(&config)?,
            limiter: crate::crm::limiter::Limiter::for_config(&config).await?,
            webhooks: Arc::new(crate::webhooks::Runtime::new(&config)?),
            store,
            catalog,
            queue,
            secrets,
            config,
        })
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// What a CRM client needs for `tenant`'s `spec`.
    pub fn crm_env<'a>(
        &'a self,
        tenant: &'a str,
        spec: &'a crate::catalog::CrmSpec,
    ) -> crate::crm::CrmEnv<'a> {
        crate::crm::CrmEnv {
            http: &self.http,
            store: &self.store,
            limiter: &self.limiter,
            config: &self.config.crm,
            tenant,
            spec,
            max_wait: self.config.crm.max_inline_wait,
            secrets: &self.secrets,
        }
    }

    /// Where downloads are spooled.
    pub fn work_dir(&self) -> PathBuf {
        self.config
            .feeds
            .work_dir
            .as_ref()
            .map(|d| self.config.resolve(d))
            .unwrap_or_else(std::env::temp_dir)
    }
}

/// The workers hand every queued job to the engine.
impl Handler<Job> for JobContext {
    async fn handle(&self, job: Job) -> anyhow::Result<()> {
        super::execute(self, job).await
    }
}

/// Builds the HTTP client with the configured timeouts (rustls, no cookies, at most 5 redirects).
pub fn http_client(config: &Config) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(config.http.connect_timeout)
        .read_timeout(config.http.read_timeout)
        .user_agent(config.http.user_agent.clone())
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()?)
}

/// FTP timeouts from the `[http]` settings (one set of network timeouts for all transports).
pub fn ftp_timeouts(config: &Config) -> crate::feeds::ftp::Timeouts {
    crate::feeds::ftp::Timeouts {
        connect: config.http.connect_timeout,
        read: config.http.read_timeout,
    }
}
