//! The metrics sampler: gauges that describe stored state (queue depth, open issues, time
//! since the last success) are read from the queue and the database every
//! [`SAMPLE_EVERY`], since a CLI command or another node may change that state too.

use crate::jobs::JobContext;
use crate::metrics::{
    LAST_SUCCESS_TIMESTAMP, OPEN_ISSUES, QUEUE_DEPTH, SAMPLE_EVERY, SECONDS_SINCE_LAST_SUCCESS,
    handle,
};
use crate::outcome::IssueKind;
use crate::store::issues::IssueFilter;
use ::metrics::gauge;
use chrono::Utc;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Issue kinds that have been reported, so a kind whose last issue was resolved drops to 0
/// instead of keeping its last count.
static ISSUE_KINDS_SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The kinds every deployment can have, reported as 0 until they occur.
const ISSUE_KINDS: &[IssueKind] = &[
    IssueKind::CredentialsRejected,
    IssueKind::ConnectionFailed,
    IssueKind::Misconfigured,
    IssueKind::EmptyFeed,
    IssueKind::InvalidFeed,
    IssueKind::RetriesExhausted,
    IssueKind::StaleData,
    IssueKind::TokenExpiring,
];

/// Refreshes the gauges from the queue and the state database: queue depth per queue, open
/// issues per kind, time since the last success per integration of the catalog. Each part
/// is tried even when another fails; the first error is returned.
pub async fn sample(ctx: &JobContext) -> anyhow::Result<()> {
    let queues = sample_queues(ctx).await;
    let issues = sample_issues(ctx).await;
    let successes = sample_successes(ctx).await;
    queues.and(issues).and(successes)
}

async fn sample_queues(ctx: &JobContext) -> anyhow::Result<()> {
    for (queue, depth) in ctx.queue.depths().await? {
        gauge!(QUEUE_DEPTH, "queue" => queue).set(depth as f64);
    }
    Ok(())
}

async fn sample_issues(ctx: &JobContext) -> anyhow::Result<()> {
    let open = ctx.store.list_issues(&IssueFilter::default()).await?;
    let mut counts: BTreeMap<String, u64> = ISSUE_KINDS
        .iter()
        .map(|k| (k.as_str().to_string(), 0))
        .collect();
    {
        let seen = ISSUE_KINDS_SEEN.lock().unwrap_or_else(|e| e.into_inner());
        for kind in seen.iter() {
            counts.entry(kind.clone()).or_insert(0);
        }
    }
    for issue in &open {
        *counts.entry(issue.kind.clone()).or_insert(0) += 1;
    }
    let mut seen = ISSUE_KINDS_SEEN.lock().unwrap_or_else(|e| e.into_inner());
    for (kind, n) in counts {
        if !seen.contains(&kind) {
            seen.push(kind.clone());
        }
        gauge!(OPEN_ISSUES, "kind" => kind).set(n as f64);
    }
    Ok(())
}

async fn sample_successes(ctx: &JobContext) -> anyhow::Result<()> {
    let now = Utc::now();
    for state in ctx.store.list_states(None).await? {
        // Rows of integrations since removed from the catalog are not reported.
        if ctx
            .catalog()
            .integration(&state.tenant, &state.integration)
            .is_err()
        {
            continue;
        }
        let Some(at) = state.last_success_at else {
            continue;
        };
        let labels = [
            ("tenant", state.tenant.clone()),
            ("integration", state.integration.clone()),
        ];
        let age = (now - at).num_milliseconds().max(0) as f64 / 1000.0;
        gauge!(SECONDS_SINCE_LAST_SUCCESS, &labels).set(age);
        gauge!(LAST_SUCCESS_TIMESTAMP, &labels).set(at.timestamp_millis() as f64 / 1000.0);
    }
    Ok(())
}

/// Refreshes the gauges every [`SAMPLE_EVERY`] until `shutdown` fires. Does nothing but wait
/// when no recorder is installed.
pub async fn run(ctx: Arc<JobContext>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = every.tick() => {}
        }
        let Some(handle) = handle() else { continue };
        if let Err(e) = sample(&ctx).await {
            warn!(error = %format!("{e:#}"), "sampling the metrics failed");
        }
        handle.upkeep();
    }
}
