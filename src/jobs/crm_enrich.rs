//! `crm_enrich`: pull a tenant's companies from HubSpot, or enrich them from Apollo.io.
//! Progress is stored as it goes, so a run that stops for quota (a continuation is queued
//! for when the quota is back) or crashes goes on where it was.

use super::{JobContext, RunResult};
use crate::catalog::CrmProvider;
use crate::crm::apollo::Apollo;
use crate::crm::hubspot::HubSpot;
use crate::outcome::Outcome;

/// The stable name of this job kind.
pub const JOB_NAME: &str = "crm_enrich";

/// Runs one sync of `job`'s CRM source.
pub async fn run(ctx: &JobContext, job: &super::Job) -> RunResult {
    let Some(spec) = ctx.catalog().crm(&job.tenant, &job.integration) else {
        return RunResult::outcome(Outcome::misconfigured(format!(
            "the catalog has no CRM source {}/{}",
            job.tenant, job.integration
        )));
    };
    let env = ctx.crm_env(&job.tenant, spec);
    let detail = match spec.provider {
        CrmProvider::Hubspot => match HubSpot::new(env).sync(&job.run, job.force).await {
            Ok(r) => format!(
                "{} companies read, {} changed, {} without a domain skipped",
                r.fetched, r.changed, r.skipped
            ),
            Err(outcome) => return RunResult::outcome(outcome),
        },
        CrmProvider::Apollo => match Apollo::new(env).enrich(&job.run).await {
            Ok(r) => format!(
                "{} companies enriched, {} without data at Apollo.io",
                r.enriched, r.no_data
            ),
            Err(outcome) => return RunResult::outcome(outcome),
        },
    };
    let items = match ctx.store.company_counts(&job.tenant).await {
        Ok(c) => c.total,
        Err(e) => return RunResult::infrastructure(e.into()),
    };
    RunResult::outcome(Outcome::Success {
        items: Some(items),
        unchanged: false,
        detail,
    })
}
