//! `webhook_deliver`: one attempt of one delivery — POST the signed event to the endpoint,
//! log the attempt, schedule the next one or finish, and keep the endpoint's health.
//!
//! Deliveries follow their own schedule (`[webhooks] retry_schedule`) instead of the feed
//! engine's backoff: the next attempt is written to the delivery row in the same
//! transaction as the attempt log, and the dispatcher queues it (see [`crate::webhooks`]).

use super::{Job, JobContext, JobKind, Trigger};
use crate::catalog::WebhookSpec;
use crate::outcome::IssueKind;
use crate::store::issues::hint;
use crate::store::webhooks::{AttemptRecord, DeliveryWork, Unqueued};
use crate::webhooks::deliver::{self, Attempt, Verdict};
use chrono::Utc;
use std::time::Duration;
use tracing::{debug, error, info, warn};

/// Stable name of this job kind.
pub const JOB_NAME: &str = "webhook_deliver";

/// How long a delivery waits when its endpoint is at `max_in_flight`.
const BUSY_WAIT: Duration = Duration::from_secs(1);

/// The queue task for the next attempt of a delivery.
pub fn job_for(d: &Unqueued) -> Job {
    let attempts = u32::try_from(d.attempts).unwrap_or(u32::MAX);
    let trigger = if attempts == 0 {
        Trigger::Schedule
    } else {
        Trigger::Retry
    };
    // Built from `Job::new` so that payload fields added later keep their defaults.
    let mut job = Job::new(JobKind::WebhookDeliver, &d.tenant, &d.endpoint, trigger);
    job.id = format!("{}.{attempts}", d.id);
    job.run = d.id.clone();
    job.attempt = attempts;
    job.delivery = Some(d.id.clone());
    job
}

/// The same attempt scheduled for the same time always gets the same key, so a push
/// repeated after a crash is dropped by the queue; a reschedule (redeliver) gets a new one.
pub fn idempotency_key(d: &Unqueued) -> String {
    format!(
        "whd:{}.{}.{}",
        d.id,
        d.attempts,
        d.next_attempt_at.map(|t| t.timestamp_millis()).unwrap_or(0)
    )
}

/// Runs one attempt. An `Err` means syncd's own state database failed.
pub async fn run(ctx: &JobContext, job: &Job) -> anyhow::Result<()> {
    let Some(id) = job.delivery.as_deref() else {
        warn!("a webhook task without a delivery id; dropped");
        return Ok(());
    };
    let store = &ctx.store;
    let Some(d) = store.delivery_work(id).await? else {
        info!(
            delivery = id,
            "the delivery no longer exists (pruned); skipping"
        );
        return Ok(());
    };
    // Only the task for the current attempt runs: a duplicate push, or the task of an
    // attempt an operator has already brought forward, finds the count moved on.
    if d.status != "pending" || d.attempts != i64::from(job.attempt) {
        debug!(delivery = id, status = %d.status, "attempt already made or delivery finished; skipping");
        return Ok(());
    }
    let Some(spec) = ctx.catalog.webhook(&d.tenant, &d.endpoint) else {
        let reason = format!(
            "the endpoint {}/{} is no longer in the catalog",
            d.tenant, d.endpoint
        );
        warn!(delivery = id, %reason, "delivery abandoned");
        store.abandon_delivery(id, &reason).await?;
        return Ok(());
    };
    if d.disabled {
        info!(delivery = id, "endpoint disabled; delivery held");
        store.hold_delivery(id).await?;
        return Ok(());
    }
    let rt = &ctx.webhooks;
    let key = format!("{}/{}", d.tenant, d.endpoint);
    let _slot = match spec.max_in_flight {
        Some(limit) => match rt.try_slot(&key, limit) {
            Some(permit) => Some(permit),
            None => {
                // Waiting here would hold a worker slot that other endpoints need.
                let at = crate::outcome::retry::after(Utc::now(), BUSY_WAIT);
                debug!(delivery = id, limit, "endpoint at max_in_flight; deferred");
                store.defer_delivery(id, d.attempts, at).await?;
                return Ok(());
            }
        },
        None => None,
    };
    let started_at = crate::store::now();
    let attempt = match crate::webhooks::sign::secrets_of(spec) {
        Ok(secrets) => {
            deliver::attempt(
                &rt.client, &rt.allow, &spec.url, &d.id, &secrets, &d.payload,
            )
            .await
        }
        Err(message) => Attempt {
            verdict: Verdict::Misconfigured,
            status: None,
            error: Some(message),
            body: None,
            duration: Duration::ZERO,
        },
    };
    finish(ctx, spec, &d, started_at, attempt).await
}

async fn finish(
    ctx: &JobContext,
    spec: &WebhookSpec,
    d: &DeliveryWork,
    started_at: chrono::DateTime<Utc>,
    a: Attempt,
) -> anyhow::Result<()> {
    crate::metrics::webhook_delivery(
        &d.endpoint,
        matches!(a.verdict, Verdict::Delivered),
        a.duration.as_secs_f64(),
    );
    let w = &ctx.config.webhooks;
    let store = &ctx.store;
    let made = usize::try_from(d.attempts + 1).unwrap_or(usize::MAX);
    let step = a.verdict.transition(w, made);
    let next_at = step
        .next_in
        .map(|delay| crate::outcome::retry::after(started_at, a.duration.saturating_add(delay)));
    let (status, counts) = (step.status, step.counts);
    let health = store
        .record_attempt(&AttemptRecord {
            delivery_id: &d.id,
            tenant: &d.tenant,
            endpoint: &d.endpoint,
            event_type: &d.event_type,
            manual: d.manual,
            started_at,
            duration_ms: a.duration.as_millis() as i64,
            status_code: a.status,
            error: a.error.clone(),
            response_body: a.body.clone(),
            new_status: status,
            next_attempt_at: next_at,
            failure_counts: counts,
        })
        .await?;
    let (tenant, endpoint) = (d.tenant.as_str(), d.endpoint.as_str());
    let host = url::Url::parse(&spec.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let error = a.error.as_deref().unwrap_or("");
    let ms = a.duration.as_millis() as u64;
    match &a.verdict {
        Verdict::Delivered => {
            info!(delivery = %d.id, attempt = made, status = a.status, elapsed_ms = ms, "webhook delivered");
            if health.was_failing || d.open_issues {
                store
                    .resolve_issues(
                        tenant,
                        endpoint,
                        Some(&[IssueKind::WebhookFailing, IssueKind::Misconfigured]),
                    )
                    .await?;
            }
        }
        Verdict::Misconfigured => {
            error!(delivery = %d.id, %error, "webhook not sent: misconfigured");
            let message = format!(
                "delivery {} to {tenant}/{endpoint} was not sent: {error}",
                d.id
            );
            raise(ctx, tenant, endpoint, IssueKind::Misconfigured, &message).await?;
        }
        Verdict::Gone => {
            error!(delivery = %d.id, "endpoint answered 410 Gone; disabling it");
            let message = format!(
                "{host} answered HTTP 410 Gone to delivery {}; the endpoint is disabled and its events are kept",
                d.id
            );
            disable(ctx, tenant, endpoint, &message).await?;
        }
        other => {
            match next_at {
                Some(at) => warn!(delivery = %d.id, attempt = made, %error, elapsed_ms = ms,
                    next_attempt_at = %at.to_rfc3339(), throttled = matches!(other, Verdict::Throttled { .. }),
                    "webhook attempt failed; will retry"),
                None => {
                    warn!(delivery = %d.id, attempt = made, %error, "webhook delivery failed; no more attempts")
                }
            }
            if counts == Some(true) {
                let n = health.consecutive_failures;
                if n >= i64::from(w.failing_after) {
                    let message = format!(
                        "{n} attempts in a row to {host} failed; the latest ({} attempt {made}): {error}",
                        d.id
                    );
                    raise(ctx, tenant, endpoint, IssueKind::WebhookFailing, &message).await?;
                }
                if let Some(since) = health.failing_since
                    && (Utc::now() - since).to_std().unwrap_or_default() >= w.disable_after
                {
                    let message = format!(
                        "every attempt to {host} has failed since {} (longer than disable_after, {}); the endpoint is disabled and its events are kept. Latest: {error}",
                        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        crate::duration::format(w.disable_after)
                    );
                    disable(ctx, tenant, endpoint, &message).await?;
                }
            }
        }
    }
    Ok(())
}

async fn disable(
    ctx: &JobContext,
    tenant: &str,
    endpoint: &str,
    message: &str,
) -> anyhow::Result<()> {
    if ctx
        .store
        .disable_endpoint(tenant, endpoint, message)
        .await?
    {
        error!(endpoint = %format!("{tenant}/{endpoint}"), %message, "webhook endpoint disabled");
    }
    raise(ctx, tenant, endpoint, IssueKind::EndpointDisabled, message).await
}

async fn raise(
    ctx: &JobContext,
    tenant: &str,
    endpoint: &str,
    kind: IssueKind,
    message: &str,
) -> anyhow::Result<()> {
    let hint = match kind {
        IssueKind::Misconfigured => format!(
            "Check the [[webhook]] `{endpoint}` in the tenant's catalog file: its URL must reach \
             a public address (or one that [webhooks] allow_cidrs permits) and its secret \
             variables must hold `whsec_` secrets. Restart syncd, then re-send with `syncd \
             redeliver DELIVERY_ID` or `syncd replay {tenant}/{endpoint} --since TIME`."
        ),
        _ => hint(kind, tenant, endpoint),
    };
    ctx.store
        .raise_issue(tenant, endpoint, kind, message, &hint)
        .await?;
    Ok(())
}
