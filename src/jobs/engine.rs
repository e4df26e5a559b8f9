//! The engine: runs a queued job to its end and turns its [`Outcome`] into sync state,
//! issues and durable retries. Every kind ends here: connection tests and webhook
//! deliveries too.

use super::{Job, JobContext, JobKind, RunResult, Trigger};
use crate::catalog::Catalog;
use crate::outcome::{IssueKind, Outcome, retry_delay};
use crate::store::issues::hint;
use crate::store::job_runs::RunStart;
use chrono::{DateTime, Utc};
use tracing::{Instrument, error, info, warn};

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
    let result = execute_inner(ctx, job).instrument(span).await;
    timer.finish(result.as_ref().map_or("error", |outcome| outcome));
    result.map(drop)
}

/// Runs the job; `Ok` carries the outcome label for the metrics.
async fn execute_inner(ctx: &JobContext, job: Job) -> anyhow::Result<&'static str> {
    // Deliveries keep their own state and schedule (webhook_deliveries): no run counter, no
    // sync_state, no pause; their results are counted by `metrics::webhook_delivery`.
    let tracked = job.kind.tracks_runs();
    if tracked && let Some(skipped) = begin(ctx, &job).await? {
        return Ok(skipped);
    }
    let started = std::time::Instant::now();
    let label = match super::run_kind(ctx, &job).await? {
        Ended::Outcome(result) => {
            let label = result.outcome.label();
            apply_outcome(ctx, &job, result).await?;
            info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "job finished"
            );
            label
        }
        Ended::Recorded(label) => label,
    };
    if tracked {
        ctx.store.finish_run(&job.id).await?;
    }
    Ok(label)
}

/// How a kind's run ended, as the engine records it.
pub enum Ended {
    /// An outcome the engine turns into sync state, issues and retries.
    Outcome(RunResult),
    /// The kind recorded its own result (a delivery's attempt log, a connection test's
    /// verdict, which only ever clears issues); the label is for the metrics.
    Recorded(&'static str),
}

/// Counts the start of a tracked job and decides whether it runs: `Some(label)` when it is
/// skipped (a duplicate delivery of a finished task, a task interrupted too often, a paused
/// integration), having recorded why.
async fn begin(ctx: &JobContext, job: &Job) -> anyhow::Result<Option<&'static str>> {
    let store = &ctx.store;
    let starts = match store
        .start_run(&job.id, &job.tenant, &job.integration)
        .await?
    {
        RunStart::AlreadyFinished => {
            info!("already finished (delivered twice); skipping");
            return Ok(Some("duplicate"));
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
        raise(ctx, job, IssueKind::RetriesExhausted, &message).await?;
        store.finish_run(&job.id).await?;
        return Ok(Some("given_up"));
    }
    if starts > 1 {
        warn!(starts, "resuming a job whose earlier run was interrupted");
    }
    let kind = catalog_kind(ctx, job);
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
        return Ok(Some("paused"));
    }
    Ok(None)
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
                crate::outcome::retry::after(Utc::now(), delay)
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
            // Paused first: whoever sees the `rejected` outcome sees the pause too.
            let salt = format!("{:016x}", rand::random::<u64>());
            let fp = ctx
                .secrets
                .fingerprint(ctx.catalog(), tenant, integration, &salt)
                .await;
            store
                .pause(tenant, integration, message, fp.as_deref())
                .await?;
            store
                .record_failure(tenant, integration, label, message, false, None)
                .await?;
            raise(ctx, job, IssueKind::CredentialsRejected, message).await?;
            error!(outcome = label, %message, "credentials rejected; scheduled runs paused");
        }
        Outcome::Invalid { kind, message } => {
            store
                .record_failure(tenant, integration, label, message, false, None)
                .await?;
            raise(ctx, job, *kind, message).await?;
            error!(outcome = label, %message, "data rejected; previous data kept");
        }
        Outcome::Misconfigured { message, .. } => {
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
