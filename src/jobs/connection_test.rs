//! `connection_test`: prove credentials and reachability without side effects on the data.
//! A passing test resolves `credentials_rejected` and `connection_failed` and lifts a pause;
//! a failing one changes nothing (the verdict is logged and returned).

use super::JobContext;
use crate::catalog::{Catalog, CrmProvider};
use crate::config::Config;
use crate::credentials::Secrets;
use crate::crm::CrmEnv;
use crate::crm::apollo::Apollo;
use crate::crm::hubspot::HubSpot;
use crate::crm::limiter::Limiter;
use crate::feeds::probe::{self, Probe, Verdict};
use crate::outcome::IssueKind;
use crate::store::Store;
use std::time::Duration;
use tracing::{info, warn};

/// The stable name of this job kind.
pub const JOB_NAME: &str = "connection_test";

/// Tests `tenant/integration` and applies a passing verdict.
pub async fn run(ctx: &JobContext, tenant: &str, integration: &str) -> anyhow::Result<Probe> {
    run_with(
        &ctx.store,
        ctx.catalog(),
        &ctx.http,
        &ctx.config,
        &ctx.limiter,
        &ctx.secrets,
        tenant,
        integration,
    )
    .await
}

/// The same, with only what a test needs (the CLI has no queue at hand).
#[allow(clippy::too_many_arguments)]
pub async fn run_with(
    store: &Store,
    catalog: &Catalog,
    http: &reqwest::Client,
    config: &Config,
    limiter: &Limiter,
    secrets: &Secrets,
    tenant: &str,
    integration: &str,
) -> anyhow::Result<Probe> {
    let (result, kind) = if let Some(spec) = catalog.feed(tenant, integration) {
        let timeouts = super::ftp_timeouts(config);
        let probe = match crate::feeds::secret(secrets, tenant, spec).await {
            Ok(secret) => probe::test(http, spec, timeouts, secret.as_ref()).await,
            Err(outcome) => Probe::from_outcome(outcome),
        };
        (probe, "feed")
    } else if let Some(spec) = catalog.crm(tenant, integration) {
        let env = CrmEnv {
            http,
            store,
            limiter,
            config: &config.crm,
            tenant,
            spec,
            // A person is waiting for the answer, and a test spends one call.
            max_wait: Duration::from_secs(30),
            secrets,
        };
        let answer = match spec.provider {
            CrmProvider::Hubspot => HubSpot::new(env).test().await,
            CrmProvider::Apollo => Apollo::new(env).test().await,
        };
        let probe = match answer {
            Ok(detail) => Probe {
                verdict: Verdict::Ok,
                detail,
            },
            Err(outcome) => Probe::from_outcome(outcome),
        };
        (probe, "crm")
    } else {
        return Ok(Probe {
            verdict: Verdict::Misconfigured,
            detail: format!("the catalog has no integration {tenant}/{integration}"),
        });
    };
    if result.verdict == Verdict::Ok {
        store.ensure_state(tenant, integration, kind).await?;
        let resolved = store
            .resolve_issues(
                tenant,
                integration,
                Some(&[IssueKind::CredentialsRejected, IssueKind::ConnectionFailed]),
            )
            .await?;
        store.unpause(tenant, integration).await?;
        secrets.record_use(catalog, tenant, integration).await;
        info!(verdict = result.verdict.as_str(), detail = %result.detail, resolved_issues = resolved, "connection test passed");
    } else {
        warn!(verdict = result.verdict.as_str(), detail = %result.detail, "connection test failed");
    }
    Ok(result)
}
