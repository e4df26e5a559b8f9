//! The dispatcher loop started by `syncd run`: outbox rows → events and deliveries, and
//! pending deliveries → queue tasks. See the module overview in [`crate::webhooks`].

use crate::jobs::JobContext;
use crate::jobs::webhook_deliver;
use crate::store::webhooks::OutboxRow;
use crate::webhooks::events;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Deliveries pushed per round.
const PUSH_BATCH: i64 = 1000;
/// How often deliveries whose task is long overdue are pushed again (a queue that lost
/// tasks); a duplicate task is skipped by the attempt-count check.
const LOST_CHECK_EVERY: Duration = Duration::from_secs(600);
/// How overdue a queued delivery must be to count as lost.
const LOST_AFTER: chrono::Duration = chrono::Duration::hours(1);
/// How often old attempts, deliveries and events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Runs until `shutdown` fires. The first pass, at start-up, pushes every delivery that
/// was committed but not queued before the previous process died.
pub async fn run(ctx: Arc<JobContext>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let interval = ctx.config.webhooks.dispatch_interval;
    let mut last_lost_check: Option<Instant> = None;
    let mut last_prune: Option<Instant> = None;
    info!("webhook dispatcher started");
    loop {
        let lost = last_lost_check.is_none_or(|t| t.elapsed() >= LOST_CHECK_EVERY);
        if lost {
            last_lost_check = Some(Instant::now());
        }
        if let Err(e) = pass(&ctx, lost, &shutdown).await {
            warn!(error = %format!("{e:#}"), "webhook dispatch failed; trying again");
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            let keep = chrono::Duration::from_std(ctx.config.webhooks.attempt_retention)
                .unwrap_or(chrono::Duration::days(30));
            match ctx.store.prune_webhooks(keep).await {
                Ok(n) if n > 0 => info!(pruned = n, "old webhook attempts and deliveries pruned"),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "pruning webhook attempts failed"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    info!("webhook dispatcher stopped");
    Ok(())
}

/// One round: drain the outbox, then queue what is waiting.
pub async fn pass(
    ctx: &JobContext,
    lost: bool,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let w = &ctx.config.webhooks;
    let catalog = ctx.catalog.clone();
    let subscribers = move |tenant: &str, event_type: &str| -> Vec<String> {
        catalog
            .webhooks_of(tenant)
            .iter()
            .filter(|h| h.subscribes(event_type))
            .map(|h| h.name.clone())
            .collect()
    };
    let max_items = w.max_items_per_event;
    let compose =
        move |rows: &[OutboxRow], now| events::compose(rows, max_items, now, &subscribers);
    let first_delay = chrono::Duration::from_std(w.retry_schedule[0]).unwrap_or_default();
    // A backlog (a big import) is taken in several transactions, each short.
    let mut committed = 0;
    for _ in 0..20 {
        let (rows, created) = ctx.store.dispatch_outbox(&compose, first_delay).await?;
        if created > 0 {
            debug!(
                rows,
                deliveries = created,
                "change records turned into deliveries"
            );
        }
        committed += created;
        if rows == 0 || shutdown.is_cancelled() {
            break;
        }
    }
    if committed > 0 {
        test_pause(committed, shutdown).await;
    }
    let mut lost_before = lost.then(|| crate::store::now() - LOST_AFTER);
    loop {
        let batch = ctx
            .store
            .unqueued_deliveries(PUSH_BATCH, lost_before)
            .await?;
        // Overdue queued deliveries are looked at once per check, not in every round.
        lost_before = None;
        if batch.is_empty() {
            break;
        }
        let full = batch.len() as i64 == PUSH_BATCH;
        let now = chrono::Utc::now();
        let tasks = batch
            .iter()
            .map(|d| {
                let run_at = d.next_attempt_at.filter(|t| *t > now);
                (
                    webhook_deliver::job_for(d),
                    run_at,
                    Some(webhook_deliver::idempotency_key(d)),
                )
            })
            .collect();
        // One write for the batch; on failure nothing is marked and all are pushed again
        // (the idempotency keys drop the ones that did get in).
        ctx.queue.push_many(tasks).await?;
        ctx.store.mark_queued(&batch).await?;
        if !full || shutdown.is_cancelled() {
            break;
        }
    }
    Ok(())
}

/// Test hook: with `SYNCD_TEST_PAUSE_BEFORE_QUEUEING=30s` in its environment the dispatcher
/// waits between committing new deliveries and queueing them, so that a test can SIGKILL
/// the daemon inside that window — otherwise microseconds wide, too narrow to hit from
/// outside. Nothing is paused when the variable is not set.
async fn test_pause(committed: usize, shutdown: &CancellationToken) {
    let Some(pause) = std::env::var("SYNCD_TEST_PAUSE_BEFORE_QUEUEING")
        .ok()
        .and_then(|v| crate::duration::parse(&v).ok())
    else {
        return;
    };
    info!(
        deliveries = committed,
        "committed; pausing before queueing (SYNCD_TEST_PAUSE_BEFORE_QUEUEING)"
    );
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(pause) => {}
    }
}
