//! Integrations: their sync state, a re-fetch now, a connection test.

use crate::catalog::Catalog;
use crate::config::Config;
use crate::feeds::probe::{Probe, Verdict};
use crate::jobs::{Job, JobContext, JobKind, Trigger};
use crate::queue::Queue;
use crate::store::Store;
use crate::store::sync_state::SyncState;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What a re-fetch request did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Refetch {
    /// A job was queued.
    Queued {
        /// Its id.
        job_id: String,
    },
    /// One is already queued and has not started; no second one was queued.
    AlreadyQueued {
        /// When the queued one was requested.
        requested_at: DateTime<Utc>,
    },
}

/// Queues a run of `tenant/name` now (it runs even when the integration is paused).
/// `Err` with a message naming what is unknown when the catalog has no such integration.
pub async fn refetch(
    store: &Store,
    queue: &Queue,
    catalog: &Catalog,
    tenant: &str,
    name: &str,
    force: bool,
    accept_shrink: bool,
) -> anyhow::Result<Refetch> {
    let integration = catalog
        .integration(tenant, name)
        .map_err(|e| anyhow::anyhow!("{tenant}/{name}: {e}"))?;
    store
        .ensure_state(tenant, name, integration.kind.as_str())
        .await?;
    // A request older than an hour that never started was lost (e.g. a wiped Redis).
    if let Err(pending) = store
        .request_refetch(tenant, name, chrono::Duration::hours(1))
        .await?
    {
        return Ok(Refetch::AlreadyQueued {
            requested_at: pending,
        });
    }
    let mut job = Job::new(
        JobKind::for_integration(integration.kind),
        tenant,
        name,
        Trigger::Refetch,
    );
    job.force = force;
    job.accept_shrink = accept_shrink;
    match queue.push(&job, None, None).await {
        Ok(()) => Ok(Refetch::Queued { job_id: job.id }),
        Err(e) => {
            store.clear_refetch(tenant, name).await?;
            Err(e)
        }
    }
}

/// A connection test's verdict as `syncd test-connection --json` and the API print it.
pub fn probe_json(tenant: &str, name: &str, probe: &Probe) -> serde_json::Value {
    serde_json::json!({
        "tenant": tenant,
        "integration": name,
        "ok": probe.verdict == Verdict::Ok,
        "verdict": probe.verdict,
        "detail": probe.detail,
    })
}

/// Every integration's sync state (of one tenant, or all), including those that never ran,
/// ordered by tenant and name; CRM sources carry their companies' counts.
pub async fn status(
    store: &Store,
    catalog: &Catalog,
    tenant: Option<&str>,
) -> anyhow::Result<Vec<SyncState>> {
    let mut states = store.list_states(tenant).await?;
    for i in catalog
        .integrations()
        .filter(|i| tenant.is_none_or(|t| t == i.tenant))
    {
        if !states
            .iter()
            .any(|s| s.tenant == i.tenant && s.integration == i.name)
        {
            states.push(SyncState::never_run(i.tenant, i.name, i.kind.as_str()));
        }
    }
    states.sort_by(|a, b| (&a.tenant, &a.integration).cmp(&(&b.tenant, &b.integration)));
    for s in states.iter_mut().filter(|s| s.kind == "crm") {
        s.companies = Some(store.company_counts(&s.tenant).await?);
    }
    Ok(states)
}

/// `tenant/integration` of an integration in the catalog; the error names what is unknown
/// and the catalog directory.
pub fn check_target<'a>(
    config: &Config,
    catalog: &Catalog,
    target: &'a str,
) -> anyhow::Result<(&'a str, &'a str)> {
    let (tenant, name) = super::split_integration(target)?;
    catalog
        .integration(tenant, name)
        .map_err(|e| anyhow::anyhow!("{target}: {e} in {}", config.catalog_dir().display()))?;
    Ok((tenant, name))
}

/// Tests `tenant/name`: reachability and credentials, no data touched. Passing clears
/// `credentials_rejected` and a pause.
pub async fn test_connection(ctx: &JobContext, tenant: &str, name: &str) -> anyhow::Result<Probe> {
    crate::jobs::connection_test::run(ctx, tenant, name).await
}
