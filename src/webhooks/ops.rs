//! Operator commands: `syncd deliveries`, `syncd redeliver`, `syncd replay`,
//! `syncd endpoint enable`, and the admin API routes doing the same. They change the state
//! database only; the running daemon's dispatcher queues what they make due (within
//! `[webhooks] dispatch_interval`).
//!
//! The functions taking a [`Store`] return data and are shared by the CLI (which prints
//! it) and the admin API (which answers it as JSON), so that both do and say the same.

use crate::catalog::Catalog;
use crate::config::Config;
use crate::outcome::IssueKind;
use crate::store::Store;
use crate::store::webhooks::{DeliveryFilter, DeliveryRow};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::process::ExitCode;

/// Why a webhook operation was refused, by kind, so that the API can answer with the
/// matching status; its message is the one the CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Unknown delivery or endpoint (also: another tenant's).
    #[error("{0}")]
    NotFound(String),
    /// A malformed argument (`since`, `T/E`).
    #[error("{0}")]
    BadRequest(String),
    /// The endpoint is disabled; enable it first.
    #[error("{0}")]
    Disabled(String),
    /// Anything else (the database).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for Refused {
    fn from(e: sqlx::Error) -> Self {
        Refused::Other(e.into())
    }
}

/// `tenant/endpoint` split in two; an error shows the expected form.
pub fn split(target: &str) -> Result<(&str, &str), Refused> {
    match target.split_once('/') {
        Some((t, e)) if !t.is_empty() && !e.is_empty() && !e.contains('/') => Ok((t, e)),
        _ => Err(Refused::BadRequest(format!(
            "`{target}`: expected TENANT/ENDPOINT, e.g. acme/erp"
        ))),
    }
}

fn endpoint<'a>(
    config: &Config,
    catalog: &'a Catalog,
    target: &'a str,
) -> anyhow::Result<(&'a str, &'a str)> {
    let (tenant, name) = split(target)?;
    catalog
        .webhook_or_err(tenant, name)
        .map_err(|e| anyhow::anyhow!("{target}: {e} in {}", config.catalog_dir().display()))?;
    Ok((tenant, name))
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

async fn open(config: &Config) -> anyhow::Result<Store> {
    Store::open(config).await
}

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
/// deliveries (only the types it subscribes to). Refused while the endpoint is disabled.
pub async fn replay_endpoint(
    store: &Store,
    catalog: &Catalog,
    tenant: &str,
    name: &str,
    since: DateTime<Utc>,
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

/// `syncd deliveries [--endpoint T/E] [--failed] [--json]`
pub async fn deliveries(
    config: &Config,
    target: Option<&str>,
    failed: bool,
    json: bool,
    limit: i64,
) -> anyhow::Result<ExitCode> {
    let filter = DeliveryFilter {
        endpoint: match target {
            // The history of an endpoint since removed from the catalog is still shown.
            Some(t) => {
                let (tenant, name) = split(t)?;
                Some((tenant.to_string(), name.to_string()))
            }
            None => None,
        },
        tenant: None,
        failed,
        limit: limit.max(1),
    };
    let store = open(config).await?;
    let list = list(&store, &filter).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("no deliveries");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<34} {:<24} {:<17} {:<10} {:>8}  {:<10} CREATED",
        "DELIVERY", "ENDPOINT", "EVENT", "STATUS", "ATTEMPTS", "LAST"
    );
    for d in &list {
        let last = match (d.last_status, &d.last_error) {
            (Some(s), _) => format!("HTTP {s}"),
            (None, Some(_)) => "error".into(),
            (None, None) => "-".into(),
        };
        println!(
            "{:<34} {:<24} {:<17} {:<10} {:>8}  {:<10} {}",
            d.id,
            format!("{}/{}", d.tenant, d.endpoint),
            d.event_type,
            d.status,
            d.attempts,
            last,
            time(Some(d.created_at)),
        );
        if let Some(err) = &d.last_error {
            println!("    last error: {err}");
        }
        if d.status == "pending" && d.attempts > 0 {
            println!("    next attempt: {}", time(d.next_attempt_at));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `syncd redeliver DELIVERY_ID`
pub async fn redeliver(config: &Config, id: &str) -> anyhow::Result<ExitCode> {
    let store = open(config).await?;
    let r = redeliver_delivery(&store, id, None).await?;
    let (tenant, endpoint) = (&r.tenant, &r.endpoint);
    if r.status == "held" {
        println!(
            "{tenant}/{endpoint} is disabled: delivery {id} is held until `syncd endpoint enable {tenant}/{endpoint}`"
        );
    } else {
        println!(
            "delivery {id} ({}) to {tenant}/{endpoint} is due now; the running daemon sends it as a manual attempt",
            r.previous_status
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads `--since`: an RFC 3339 time (`2026-11-29T08:00:00Z`) or a duration ago (`2h`).
pub fn parse_since(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    since(text, now).map_err(|e| anyhow::anyhow!("--since {e}"))
}

/// Reads a `since`: an RFC 3339 time or a duration ago; the error names both forms.
pub fn since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Refused> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    crate::duration::parse(text)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| {
            Refused::BadRequest(format!(
                "`{text}`: give an RFC 3339 time (2026-11-29T08:00:00Z) or a duration ago (90m, 2h)"
            ))
        })
}

/// `syncd replay T/E --since TIME`
pub async fn replay(
    config: &Config,
    catalog: &Catalog,
    target: &str,
    since: &str,
) -> anyhow::Result<ExitCode> {
    let (tenant, name) = endpoint(config, catalog, target)?;
    let since = parse_since(since, Utc::now())?;
    let store = open(config).await?;
    let r = replay_endpoint(&store, catalog, tenant, name, since).await?;
    println!(
        "{} event{} since {} queued again for {target}; the running daemon sends them",
        r.events,
        if r.events == 1 { "" } else { "s" },
        time(Some(r.since))
    );
    Ok(ExitCode::SUCCESS)
}

/// `syncd endpoint enable T/E`
pub async fn enable(config: &Config, catalog: &Catalog, target: &str) -> anyhow::Result<ExitCode> {
    let (tenant, name) = endpoint(config, catalog, target)?;
    let store = open(config).await?;
    let r = enable_endpoint(&store, tenant, name).await?;
    println!(
        "{target} {}; {} held deliver{} released",
        if r.was_disabled {
            "enabled"
        } else {
            "was not disabled"
        },
        r.released,
        if r.released == 1 { "y" } else { "ies" }
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_times_and_durations_ago() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("2h", now).unwrap(),
            now - chrono::Duration::hours(2)
        );
        assert_eq!(
            parse_since("2026-11-29T08:00:00Z", now).unwrap(),
            now - chrono::Duration::hours(4)
        );
        assert!(parse_since("yesterday", now).is_err());
    }
}
