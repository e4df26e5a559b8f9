//! `connection_test`: prove credentials and reachability without side effects on the data.
//! A passing test resolves `credentials_rejected` and `connection_failed` and lifts a pause;
//! a failing one changes nothing (the verdict is logged and returned).

use super::JobContext;
use crate::catalog::Catalog;
use crate::feeds::probe::{self, Probe, Verdict};
use crate::outcome::IssueKind;
use crate::store::Store;
use tracing::{info, warn};

/// The stable name of this job kind.
pub const JOB_NAME: &str = "connection_test";

/// Tests `tenant/integration` and applies a passing verdict.
pub async fn run(ctx: &JobContext, tenant: &str, integration: &str) -> anyhow::Result<Probe> {
    let timeouts = super::ftp_timeouts(&ctx.config);
    run_with(
        &ctx.store,
        ctx.catalog(),
        &ctx.http,
        timeouts,
        tenant,
        integration,
    )
    .await
}

/// The same, with only what a test needs (the CLI has no queue at hand).
pub async fn run_with(
    store: &Store,
    catalog: &Catalog,
    http: &reqwest::Client,
    timeouts: crate::feeds::ftp::Timeouts,
    tenant: &str,
    integration: &str,
) -> anyhow::Result<Probe> {
    let Some(spec) = catalog.feed(tenant, integration) else {
        return Ok(Probe {
            verdict: Verdict::Misconfigured,
            detail: format!("the catalog has no feed {tenant}/{integration}"),
        });
    };
    let result = probe::test(http, spec, timeouts).await;
    if result.verdict == Verdict::Ok {
        store.ensure_state(tenant, integration, "feed").await?;
        let resolved = store
            .resolve_issues(
                tenant,
                integration,
                Some(&[IssueKind::CredentialsRejected, IssueKind::ConnectionFailed]),
            )
            .await?;
        store.unpause(tenant, integration).await?;
        info!(verdict = result.verdict.as_str(), detail = %result.detail, resolved_issues = resolved, "connection test passed");
    } else {
        warn!(verdict = result.verdict.as_str(), detail = %result.detail, "connection test failed");
    }
    Ok(result)
}
