//! Webhook operations: `syncd deliveries`, `syncd redeliver`, `syncd replay`, `syncd
//! endpoint enable`, and the admin API routes doing the same. They change the state
//! database only; the running daemon's dispatcher queues what they make due (within
//! `[webhooks] dispatch_interval`).

use super::Refused;
use crate::catalog::Catalog;
use crate::outcome::IssueKind;
use crate::store::Store;
use crate::store::webhooks::{DeliveryFilter, DeliveryRow};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What a redelivery did.
#[derive(Debug, Clone, Serialize)]
pub struct Redelivered {
    /// The delivery's id.
    pub delivery: String,
    /// Its tenant.
    pub tenant: String,
    /// Its endpoint.
    pub endpoint: String,
    /// Its status before (`delivered`, `failed`, …).
    pub previous_status: String,
    /// `pending` (due now, sent as a manual attempt) or `held` (the endpoint is disabled;
    /// sent once it is enabled).
    pub status: String,
}

/// What a replay did.
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    /// `tenant/endpoint`.
    pub target: String,
    /// The start of the window.
    pub since: DateTime<Utc>,
    /// Events queued again.
    pub events: usize,
    /// The new deliveries' ids.
    pub deliveries: Vec<String>,
}

/// What enabling an endpoint did.
#[derive(Debug, Clone, Serialize)]
pub struct Enabled {
    /// `tenant/endpoint`.
    pub target: String,
    /// Whether it was disabled before.
    pub was_disabled: bool,
    /// Held deliveries released (due now).
    pub released: u64,
}

/// Deliveries, newest first, with their attempts (`syncd deliveries --json`).
pub async fn list(store: &Store, filter: &DeliveryFilter) -> anyhow::Result<Vec<DeliveryRow>> {
    Ok(store.list_deliveries(filter).await?)
}

/// Makes delivery `id` due again now, as a manual attempt. With `tenant`, a delivery of
/// another tenant is refused exactly like an unknown one, before anything changes.
pub async fn redeliver_delivery(
    store: &Store,
    id: &str,
    tenant: Option<&str>,
) -> Result<Redelivered, Refused> {
    let unknown = || Refused::NotFound(format!("no delivery `{id}` (see `syncd deliveries`)"));
    if let Some(own) = tenant {
        match store.delivery_work(id).await? {
            Some(d) if d.tenant == own => {}
            _ => return Err(unknown()),
        }
    }
    let Some((tenant, endpoint, before)) = store.redeliver(id).await? else {
        return Err(unknown());
    };
    let held = store.endpoint_disabled(&tenant, &endpoint).await?;
    Ok(Redelivered {
        delivery: id.to_string(),
        tenant,
        endpoint,
        previous_status: before,
        status: if held { "held" } else { "pending" }.into(),
    })
}

/// Sends every event of `tenant`'s since `since` to endpoint `name` again, as new manual
/// deliveries (only the types it subscribes to). Refused while the endpoint is disabled,
/// and when the window holds more than `max_events` (if given).
pub async fn replay_endpoint(
    store: &Store,
    catalog: &Catalog,
    tenant: &str,
    name: &str,
    since: DateTime<Utc>,
    max_events: Option<usize>,
) -> Result<Replayed, Refused> {
    let target = format!("{tenant}/{name}");
    let Some(spec) = catalog.webhook(tenant, name) else {
        return Err(Refused::NotFound(format!("unknown endpoint `{target}`")));
    };
    if store.endpoint_disabled(tenant, name).await? {
        return Err(Refused::Disabled(format!(
            "{target} is disabled; run `syncd endpoint enable {target}` first (it also sends the held events)"
        )));
    }
    let events: Vec<(String, String)> = store
        .events_since(tenant, since)
        .await?
        .into_iter()
        .filter(|(_, t)| spec.subscribes(t))
        .collect();
    if let Some(max) = max_events
        && events.len() > max
    {
        return Err(Refused::BadRequest(format!(
            "the window since {} holds {} events for {target}, more than {max} a call ([admin] replay_max_events): replay a shorter window, or use `syncd replay`",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            events.len()
        )));
    }
    let ids = store.replay(tenant, name, &events).await?;
    Ok(Replayed {
        target,
        since,
        events: ids.len(),
        deliveries: ids,
    })
}

/// Enables endpoint `name` with a clean slate, releases its held deliveries and resolves
/// its `endpoint_disabled` and `webhook_failing` issues.
pub async fn enable_endpoint(store: &Store, tenant: &str, name: &str) -> anyhow::Result<Enabled> {
    let was = store.endpoint_disabled(tenant, name).await?;
    let released = store.enable_endpoint(tenant, name).await?;
    store
        .resolve_issues(
            tenant,
            name,
            Some(&[IssueKind::EndpointDisabled, IssueKind::WebhookFailing]),
        )
        .await?;
    Ok(Enabled {
        target: format!("{tenant}/{name}"),
        was_disabled: was,
        released,
    })
}
