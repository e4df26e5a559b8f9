//! Turns schedules into queued jobs.
//!
//! Every second it compares each integration's latest schedule tick with the latest tick
//! already enqueued (kept in `sync_state.last_tick_at`, so a restart knows what it missed).
//! A new tick is pushed with the idempotency key `tick:{tenant}/{integration}:{unix time}`:
//! ticks are computed the same way on every node, so when several daemons share a queue the
//! backend keeps the first push and drops the others. An integration overdue at start-up
//! (its latest tick never enqueued) therefore runs once, promptly. Each push runs after a
//! random delay within `[scheduler] spread`, so integrations due together do not fire
//! together.

use crate::jobs::{Job, JobContext, JobKind, Trigger};
use crate::outcome::IssueKind;
use crate::store::issues::hint;
use chrono::{DateTime, Utc};
use rand::RngExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Runs until `shutdown` fires.
pub async fn run(ctx: Arc<JobContext>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = &ctx.store;
    let mut enqueued: HashMap<String, Option<DateTime<Utc>>> = HashMap::new();
    for i in ctx.catalog.integrations() {
        store
            .ensure_state(i.tenant, i.name, i.kind.as_str())
            .await?;
        let last = store
            .state(i.tenant, i.name)
            .await?
            .and_then(|s| s.last_tick_at);
        let key = format!("{}/{}", i.tenant, i.name);
        enqueued.insert(key.clone(), last);
        resume_if_credentials_changed(
            &ctx,
            i.tenant,
            i.name,
            JobKind::for_integration(i.kind),
            &key,
        )
        .await?;
    }
    info!(integrations = enqueued.len(), "scheduler started");
    let mut last_maintenance: Option<std::time::Instant> = None;
    let mut last_stale_check: Option<std::time::Instant> = None;
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    every_second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = every_second.tick() => {}
        }
        crate::systemd::watchdog_ping();
        if last_maintenance.is_none_or(|t| t.elapsed() >= MAINTENANCE_EVERY) {
            last_maintenance = Some(std::time::Instant::now());
            maintenance(&ctx).await;
        }
        if last_stale_check.is_none_or(|t| t.elapsed() >= ctx.config.scheduler.stale_check_every) {
            last_stale_check = Some(std::time::Instant::now());
            if let Err(e) = check_staleness(&ctx).await {
                warn!(error = %format!("{e:#}"), "the staleness check failed");
            }
            if let Err(e) = ctx
                .secrets
                .check_expiry(&ctx.catalog, ctx.config.credentials.expiry_warning)
                .await
            {
                warn!(error = %format!("{e:#}"), "the credential expiry check failed");
            }
        }
        let now = Utc::now();
        for i in ctx.catalog.integrations() {
            let key = format!("{}/{}", i.tenant, i.name);
            let Some(tick) = i.schedule.prev_tick(&key, now) else {
                continue;
            };
            let last = enqueued.get(&key).copied().flatten();
            if last.is_some_and(|l| l >= tick) {
                continue;
            }
            match enqueue_tick(
                &ctx,
                i.tenant,
                i.name,
                JobKind::for_integration(i.kind),
                &key,
                tick,
            )
            .await
            {
                Ok(()) => {
                    enqueued.insert(key, Some(tick));
                }
                // Left unrecorded: the next pass tries again.
                Err(e) => {
                    warn!(integration = %key, error = %format!("{e:#}"), "cannot enqueue a scheduled run")
                }
            }
        }
    }
    info!("scheduler stopped");
    Ok(())
}

/// Raises `stale_data` for each integration whose last success is older than its
/// `stale_after`, once (a repeat would only count minutes), and resolves it when the data is
/// fresh again (a success also resolves it). Integrations that never succeeded are left to
/// the issues that say why.
async fn check_staleness(ctx: &JobContext) -> anyhow::Result<()> {
    let now = Utc::now();
    for i in ctx.catalog.integrations() {
        let Some(stale_after) = i.stale_after else {
            continue;
        };
        let Some(last) = ctx
            .store
            .state(i.tenant, i.name)
            .await?
            .and_then(|s| s.last_success_at)
        else {
            continue;
        };
        let age = (now - last).to_std().unwrap_or_default();
        let open = ctx
            .store
            .has_open_issue(i.tenant, i.name, IssueKind::StaleData)
            .await?;
        if age > stale_after && !open {
            let message = format!(
                "the last successful sync was at {} ({} ago), longer ago than stale_after ({})",
                last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                crate::duration::format(
                    Duration::from_secs(age.as_secs() / 60 * 60).max(Duration::from_secs(60))
                ),
                crate::duration::format(stale_after)
            );
            warn!(integration = %format!("{}/{}", i.tenant, i.name), %message, "data is stale");
            ctx.store
                .raise_issue(
                    i.tenant,
                    i.name,
                    IssueKind::StaleData,
                    &message,
                    &hint(IssueKind::StaleData, i.tenant, i.name),
                )
                .await?;
        } else if age <= stale_after && open {
            ctx.store
                .resolve_issues(i.tenant, i.name, Some(&[IssueKind::StaleData]))
                .await?;
        }
    }
    Ok(())
}

/// How often finished queue tasks and run counters are pruned.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);
/// How long finished tasks and run counters are kept (for inspection after an incident).
const KEEP_FINISHED: Duration = Duration::from_secs(7 * 24 * 3600);

async fn maintenance(ctx: &JobContext) {
    let keep = chrono::Duration::from_std(KEEP_FINISHED).unwrap_or(chrono::Duration::days(7));
    match ctx.store.prune_runs(keep).await {
        Ok(n) if n > 0 => info!(pruned = n, "old job run counters pruned"),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "pruning job run counters failed"),
    }
    let keep_changes = chrono::Duration::from_std(ctx.config.feeds.keep_changes)
        .unwrap_or(chrono::Duration::days(30));
    match ctx.store.prune_price_changes(keep_changes).await {
        Ok(n) if n > 0 => info!(pruned = n, "old change records pruned"),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "pruning change records failed"),
    }
    match ctx.queue.vacuum(KEEP_FINISHED).await {
        Ok(n) if n > 0 => info!(pruned = n, "old finished tasks removed from the queue"),
        Ok(_) => {}
        Err(e) => warn!(error = %format!("{e:#}"), "cleaning the queue failed"),
    }
}

/// A paused integration whose secret has changed since it was refused (the operator renewed
/// the environment file and restarted) is resumed and run at once. The idempotency key
/// carries the refused fingerprint, so several nodes starting together run it once.
async fn resume_if_credentials_changed(
    ctx: &JobContext,
    tenant: &str,
    name: &str,
    kind: JobKind,
    key: &str,
) -> anyhow::Result<()> {
    let Some(fp) = ctx.store.paused_secret_fp(tenant, name).await? else {
        return Ok(());
    };
    if !crate::jobs::secret_changed(&ctx.secrets, &ctx.catalog, tenant, name, &fp).await {
        return Ok(());
    }
    info!(integration = %key, "credentials changed since they were refused; resuming");
    ctx.store.unpause(tenant, name).await?;
    let job = Job::new(kind, tenant, name, Trigger::Schedule);
    ctx.queue
        .push(&job, None, Some(format!("resume:{key}:{fp}")))
        .await
}

async fn enqueue_tick(
    ctx: &JobContext,
    tenant: &str,
    name: &str,
    kind: JobKind,
    key: &str,
    tick: DateTime<Utc>,
) -> anyhow::Result<()> {
    let mut paused = ctx
        .store
        .state(tenant, name)
        .await?
        .is_some_and(|s| s.paused);
    if paused
        && let Some(fp) = ctx.store.paused_secret_fp(tenant, name).await?
        && crate::jobs::secret_changed(&ctx.secrets, &ctx.catalog, tenant, name, &fp).await
    {
        info!(integration = %key, "credentials changed since they were refused; resuming scheduled runs");
        ctx.store.unpause(tenant, name).await?;
        paused = false;
    }
    if paused {
        debug!(integration = %key, "paused; tick skipped");
    } else {
        let spread = ctx.config.scheduler.spread.as_millis() as i64;
        let jitter = if spread > 0 {
            rand::rng().random_range(0..=spread)
        } else {
            0
        };
        let run_at = Utc::now() + chrono::Duration::milliseconds(jitter);
        let job = Job::new(kind, tenant, name, Trigger::Schedule);
        let idempotency = format!("tick:{key}:{}", tick.timestamp());
        ctx.queue
            .push(&job, Some(run_at), Some(idempotency))
            .await?;
        info!(integration = %key, tick = %tick.to_rfc3339(), run_at = %run_at.to_rfc3339(), "scheduled run queued");
    }
    ctx.store.set_last_tick(tenant, name, tick).await?;
    Ok(())
}
