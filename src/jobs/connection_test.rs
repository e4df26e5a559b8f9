//! `connection_test`: prove credentials and reachability without side effects on the data.
//! A passing test resolves `credentials_rejected` and `connection_failed` and lifts a pause;
//! a failing one changes nothing (the verdict is logged and returned).

use super::JobContext;
use crate::catalog::CrmProvider;
use crate::crm::apollo::Apollo;
use crate::crm::hubspot::HubSpot;
use crate::feeds::probe::{self, Probe, Verdict};
use crate::outcome::IssueKind;
use std::time::Duration;
use tracing::{info, warn};

/// The stable name of this job kind.
pub const JOB_NAME: &str = "connection_test";

/// Tests `tenant/integration` and applies a passing verdict. The CLI's `test-connection`,
/// the admin API and the queued job all come here.
pub async fn run(ctx: &JobContext, tenant: &str, integration: &str) -> anyhow::Result<Probe> {
    let (store, catalog, secrets) = (&ctx.store, ctx.catalog(), &ctx.secrets);
    let (result, kind) = if let Some(spec) = catalog.feed(tenant, integration) {
        let timeouts = super::ftp_timeouts(&ctx.config);
        let probe = match crate::feeds::secret(secrets, tenant, spec).await {
            Ok(secret) => probe::test(&ctx.http, spec, timeouts, secret.as_ref()).await,
            Err(outcome) => Probe::from_outcome(outcome),
        };
        (probe, "feed")
    } else if let Some(spec) = catalog.crm(tenant, integration) {
        let mut env = ctx.crm_env(tenant, spec);
        // A person is waiting for the answer, and a test spends one call.
        env.max_wait = Duration::from_secs(30);
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
