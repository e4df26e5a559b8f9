//! Job kinds, the payload every queued job carries, and the engine that turns a job's
//! [`Outcome`] into sync state, issues and durable retries.
//!
//! Jobs never see apalis: the queue calls [`execute`] with a [`Job`] and a [`JobContext`].
//! `execute` always finishes the queued task itself — a retry is a *new* task with a later
//! `run_at` — so apalis' own retries (immediate on SQLite, linear on Redis) never come into
//! play for job failures.

pub mod connection_test;
pub mod crm_enrich;
pub mod feed_fetch;
pub mod webhook_deliver;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::outcome::{IssueKind, Outcome, retry_delay};
use crate::queue::Queue;
use crate::store::Store;
use crate::store::issues::hint;
use crate::store::job_runs::RunStart;
use crate::store::prices::ChangeCounts;
use crate::store::sync_state::Validators;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use tracing::{Instrument, error, info, warn};

/// Every job kind, one queue each. The registry: add new kinds here.
pub const ALL_KINDS: &[JobKind] = &[
    JobKind::FeedFetch,
    JobKind::CrmEnrich,
    JobKind::ConnectionTest,
    JobKind::WebhookDeliver,
];

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Download and import a distributor feed.
    FeedFetch,
    /// Pull companies from HubSpot or enrich them from Apollo.io.
    CrmEnrich,
    /// Prove credentials and reachability without touching the data.
    ConnectionTest,
    /// One attempt of one webhook delivery.
    WebhookDeliver,
}

impl JobKind {
    /// Stable name (queue suffix, logs, metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::FeedFetch => feed_fetch::JOB_NAME,
            JobKind::CrmEnrich => crm_enrich::JOB_NAME,
            JobKind::ConnectionTest => connection_test::JOB_NAME,
            JobKind::WebhookDeliver => webhook_deliver::JOB_NAME,
        }
    }
}

/// Why a job was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A schedule tick.
    Schedule,
    /// An operator asked (`syncd refetch`); runs even when the integration is paused.
    Refetch,
    /// A durable retry of an earlier attempt.
    Retry,
    /// The rest of a run that stopped to wait for a provider's quota.
    Continue,
    /// A stored credential was set (`syncd credentials set`): its integrations are tested.
    CredentialChange,
}

/// The payload of every queued job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique per queued task; retries get `{run}.{attempt}`.
    pub id: String,
    /// Shared by a first attempt and all its retries.
    pub run: String,
    /// What to do.
    pub kind: JobKind,
    /// Tenant id.
    pub tenant: String,
    /// Integration name.
    pub integration: String,
    /// 0 for the first attempt.
    pub attempt: u32,
    /// Why it was queued.
    pub trigger: Trigger,
    /// Skip the unchanged check.
    #[serde(default)]
    pub force: bool,
    /// Accept a full file with far fewer rows than the last import (operator's decision).
    #[serde(default)]
    pub accept_shrink: bool,
    /// Whether the operator asked for this run (kept across its retries).
    #[serde(default)]
    pub manual: bool,
    /// How many times this attempt stopped to wait for quota (continuations do not count
    /// as attempts: waiting for a provider's budget is not a failure).
    #[serde(default)]
    pub waits: u32,
    /// `webhook_deliver`: the delivery to attempt (`integration` is the endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
}

impl Job {
    /// A fresh first attempt.
    pub fn new(kind: JobKind, tenant: &str, integration: &str, trigger: Trigger) -> Job {
        let run = new_id();
        Job {
            id: format!("{run}.0"),
            run,
            kind,
            tenant: tenant.to_string(),
            integration: integration.to_string(),
            attempt: 0,
            trigger,
            force: false,
            accept_shrink: false,
            manual: trigger == Trigger::Refetch,
            waits: 0,
            delivery: None,
        }
    }

    /// The follow-up attempt.
    pub fn retry(&self) -> Job {
        let attempt = self.attempt + 1;
        Job {
            id: format!("{}.{attempt}", self.run),
            attempt,
            trigger: Trigger::Retry,
            waits: 0,
            ..self.clone()
        }
    }

    /// The continuation of this attempt after a wait for quota.
    pub fn continuation(&self) -> Job {
        let waits = self.waits + 1;
        Job {
            id: format!("{}.{}w{waits}", self.run, self.attempt),
            waits,
            trigger: Trigger::Continue,
            ..self.clone()
        }
    }

    /// `tenant/integration`.
    pub fn target(&self) -> String {
        format!("{}/{}", self.tenant, self.integration)
    }
}

/// A sortable unique id: milliseconds since the epoch, then 32 random bits, in hex.
pub fn new_id() -> String {
    format!(
        "{:011x}{:08x}",
        Utc::now().timestamp_millis(),
        rand::random::<u32>()
    )
}

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
}

impl JobContext {
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

/// What one run of a job produced.
pub struct RunResult {
    /// How it ended.
    pub outcome: Outcome,
    /// What identifies the imported version of the source, on success.
    pub validators: Option<Validators>,
    /// What an import changed, on success.
    pub changes: Option<ChangeCounts>,
}

impl RunResult {
    /// A result with no new validators.
    pub fn outcome(outcome: Outcome) -> Self {
        RunResult {
            outcome,
            validators: None,
            changes: None,
        }
    }

    /// A failure of our own state database during the job: transient, retried durably.
    pub fn infrastructure(e: anyhow::Error) -> Self {
        RunResult::outcome(Outcome::transient(format!(
            "syncd's state database failed: {e:#}"
        )))
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

/// Runs one queued job to its end: counts the start, skips paused integrations, runs the
/// kind's handler, and applies the outcome. An `Err` means syncd's own state database is
/// unreachable; the queue then keeps the task and tries again.
pub async fn execute(ctx: &JobContext, job: Job) -> anyhow::Result<()> {
    let span = tracing::info_span!(
        "job",
        job_id = %job.id,
        kind = job.kind.as_str(),
        tenant = %job.tenant,
        integration = %job.integration,
        attempt = job.attempt,
        trigger = ?job.trigger,
    );
    let timer = crate::metrics::JobTimer::start(job.kind.as_str());
    // Deliveries keep their own state and schedule (webhook_deliveries), not sync_state; their
    // results are counted by `metrics::webhook_delivery`.
    let result = if job.kind == JobKind::WebhookDeliver {
        webhook_deliver::run(ctx, &job)
            .instrument(span)
            .await
            .map(|()| "done")
    } else {
        execute_inner(ctx, job).instrument(span).await
    };
    timer.finish(result.as_ref().map_or("error", |outcome| outcome));
    result.map(drop)
}

/// Runs the job; `Ok` carries the outcome label for the metrics.
async fn execute_inner(ctx: &JobContext, job: Job) -> anyhow::Result<&'static str> {
    let store = &ctx.store;
    let starts = match store
        .start_run(&job.id, &job.tenant, &job.integration)
        .await?
    {
        RunStart::AlreadyFinished => {
            info!("already finished (delivered twice); skipping");
            return Ok("duplicate");
        }
        RunStart::Start(n) => n,
    };
    let max_runs = i64::from(ctx.config.queue.max_interrupted_runs);
    if starts > max_runs {
        let message = format!(
            "the job was interrupted {} times before it could finish (worker killed or crashed) and was given up",
            starts - 1
        );
        error!(%message);
        store
            .raise_issue(
                &job.tenant,
                &job.integration,
                IssueKind::RetriesExhausted,
                &message,
                &hint(IssueKind::RetriesExhausted, &job.tenant, &job.integration),
            )
            .await?;
        store.finish_run(&job.id).await?;
        return Ok("given_up");
    }
    if starts > 1 {
        warn!(starts, "resuming a job whose earlier run was interrupted");
    }
    let kind = catalog_kind(ctx, &job);
    store
        .ensure_state(&job.tenant, &job.integration, kind)
        .await?;

    if job.trigger == Trigger::Refetch {
        store.clear_refetch(&job.tenant, &job.integration).await?;
    }
    // A connection test runs even while paused: passing one is how a pause ends.
    let paused = job.kind != JobKind::ConnectionTest
        && store
            .state(&job.tenant, &job.integration)
            .await?
            .is_some_and(|s| s.paused);
    if paused && !job.manual {
        info!("integration is paused after rejected credentials; skipping");
        store.finish_run(&job.id).await?;
        return Ok("paused");
    }

    let started = std::time::Instant::now();
    let result = match job.kind {
        JobKind::FeedFetch => feed_fetch::run(ctx, &job).await,
        JobKind::CrmEnrich => crm_enrich::run(ctx, &job).await,
        // `execute` hands deliveries over before this point.
        JobKind::WebhookDeliver => return webhook_deliver::run(ctx, &job).await.map(|()| "done"),
        JobKind::ConnectionTest => {
            // No outcome, no issues: a test only ever clears them when it passes.
            let probe = connection_test::run(ctx, &job.tenant, &job.integration).await?;
            store.finish_run(&job.id).await?;
            let passed = probe.verdict == crate::feeds::probe::Verdict::Ok;
            return Ok(if passed { "passed" } else { "failed" });
        }
    };
    let elapsed = started.elapsed();
    let label = result.outcome.label();
    apply_outcome(ctx, &job, result).await?;
    info!(elapsed_ms = elapsed.as_millis() as u64, "job finished");
    store.finish_run(&job.id).await?;
    Ok(label)
}

fn catalog_kind(ctx: &JobContext, job: &Job) -> &'static str {
    ctx.catalog()
        .integration(&job.tenant, &job.integration)
        .map(|i| i.kind.as_str())
        .unwrap_or("unknown")
}

/// Turns an outcome into state, issues and (for transient failures) a durable retry.
pub async fn apply_outcome(ctx: &JobContext, job: &Job, result: RunResult) -> anyhow::Result<()> {
    let store = &ctx.store;
    let (tenant, integration) = (job.tenant.as_str(), job.integration.as_str());
    let outcome = result.outcome;
    let label = outcome.label();
    match &outcome {
        Outcome::Success { items, detail, .. } => {
            store
                .record_success(
                    tenant,
                    integration,
                    *items,
                    label,
                    result.validators.as_ref(),
                )
                .await?;
            if let Some(changes) = &result.changes {
                store.record_changes(tenant, integration, changes).await?;
            }
            let resolved = store.resolve_issues(tenant, integration, None).await?;
            ctx.secrets
                .record_use(ctx.catalog(), tenant, integration)
                .await;
            info!(outcome = label, %detail, resolved_issues = resolved, "success");
        }
        Outcome::Transient {
            message,
            retry_after,
        }
        | Outcome::RateLimited {
            message,
            retry_after,
        } => {
            let counts = matches!(outcome, Outcome::Transient { .. });
            let retry = &ctx.config.retry;
            let next_attempt = job.attempt + 1;
            let next_at = (next_attempt < retry.max_attempts).then(|| {
                let delay = retry_delay(job.attempt, retry.base, retry.cap, *retry_after);
                Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
            });
            let failures = store
                .record_failure(tenant, integration, label, message, counts, next_at)
                .await?;
            let threshold = i64::from(ctx.config.issues.transient_threshold);
            if counts && failures >= threshold {
                let text = format!("{failures} attempts in a row failed; the latest: {message}");
                raise(ctx, job, IssueKind::ConnectionFailed, &text).await?;
            }
            match next_at {
                Some(at) => {
                    warn!(outcome = label, %message, failures, next_attempt_at = %at.to_rfc3339(), "will retry");
                    push_retry(ctx, job, at).await?;
                }
                None => {
                    let text = format!(
                        "gave up after {} attempts; the last one failed: {message}",
                        next_attempt
                    );
                    error!(outcome = label, %message, "retries exhausted");
                    raise(ctx, job, IssueKind::RetriesExhausted, &text).await?;
                }
            }
        }
        Outcome::Waiting { message, until } => {
            store
                .record_waiting(tenant, integration, message, *until)
                .await?;
            info!(outcome = label, %message, resume_at = %until.to_rfc3339(), "waiting for quota; continuation queued");
            let next = job.continuation();
            let key = format!("continue:{}", next.id);
            ctx.queue.push(&next, Some(*until), Some(key)).await?;
        }
        Outcome::Rejected { message } => {
            store
                .record_failure(tenant, integration, label, message, false, None)
                .await?;
            raise(ctx, job, IssueKind::CredentialsRejected, message).await?;
            let salt = format!("{:016x}", rand::random::<u64>());
            let fp = ctx
                .secrets
                .fingerprint(ctx.catalog(), tenant, integration, &salt)
                .await;
            store
                .pause(tenant, integration, message, fp.as_deref())
                .await?;
            error!(outcome = label, %message, "credentials rejected; scheduled runs paused");
        }
        Outcome::Invalid { kind, message } => {
            store
                .record_failure(tenant, integration, label, message, false, None)
                .await?;
            raise(ctx, job, *kind, message).await?;
            error!(outcome = label, %message, "data rejected; previous data kept");
        }
        Outcome::Misconfigured { message } => {
            store
                .record_failure(tenant, integration, label, message, false, None)
                .await?;
            raise(ctx, job, IssueKind::Misconfigured, message).await?;
            error!(outcome = label, %message, "misconfigured");
        }
    }
    Ok(())
}

/// Whether the secret `tenant/integration` uses now (from the environment or the credential
/// store) differs from the one that was refused, whose fingerprint is `refused_fp`
/// ([`crate::credentials::Secrets::fingerprint`]).
pub async fn secret_changed(
    secrets: &crate::credentials::Secrets,
    catalog: &Catalog,
    tenant: &str,
    integration: &str,
    refused_fp: &str,
) -> bool {
    let Some((salt, _)) = refused_fp.split_once('$') else {
        return false;
    };
    secrets
        .fingerprint(catalog, tenant, integration, salt)
        .await
        .is_some_and(|now| now != refused_fp)
}

async fn raise(ctx: &JobContext, job: &Job, kind: IssueKind, message: &str) -> anyhow::Result<()> {
    ctx.store
        .raise_issue(
            &job.tenant,
            &job.integration,
            kind,
            message,
            &hint(kind, &job.tenant, &job.integration),
        )
        .await?;
    Ok(())
}

async fn push_retry(ctx: &JobContext, job: &Job, at: DateTime<Utc>) -> anyhow::Result<()> {
    let next = job.retry();
    // The key makes a duplicate delivery of this attempt push its retry only once.
    let key = format!("retry:{}", next.id);
    ctx.queue.push(&next, Some(at), Some(key)).await?;
    crate::metrics::retry_scheduled(job.kind.as_str());
    Ok(())
}
