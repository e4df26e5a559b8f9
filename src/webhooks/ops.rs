//! Operator commands: `syncd deliveries`, `syncd redeliver`, `syncd replay`,
//! `syncd endpoint enable`. They change the state database only; the running daemon's
//! dispatcher queues what they make due (within `[webhooks] dispatch_interval`).

use crate::catalog::Catalog;
use crate::config::Config;
use crate::outcome::IssueKind;
use crate::store::Store;
use crate::store::webhooks::DeliveryFilter;
use anyhow::bail;
use chrono::{DateTime, SecondsFormat, Utc};
use std::process::ExitCode;

fn split(target: &str) -> anyhow::Result<(&str, &str)> {
    match target.split_once('/') {
        Some((t, e)) if !t.is_empty() && !e.is_empty() && !e.contains('/') => Ok((t, e)),
        _ => bail!("`{target}`: expected TENANT/ENDPOINT, e.g. acme/erp"),
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
    Store::open_sqlite(&config.sqlite_path()).await
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
    let list = store.list_deliveries(&filter).await?;
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
    let Some((tenant, endpoint, before)) = store.redeliver(id).await? else {
        bail!("no delivery `{id}` (see `syncd deliveries`)");
    };
    if store.endpoint_disabled(&tenant, &endpoint).await? {
        println!(
            "{tenant}/{endpoint} is disabled: delivery {id} is held until `syncd endpoint enable {tenant}/{endpoint}`"
        );
    } else {
        println!(
            "delivery {id} ({before}) to {tenant}/{endpoint} is due now; the running daemon sends it as a manual attempt"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads `--since`: an RFC 3339 time (`2026-11-29T08:00:00Z`) or a duration ago (`2h`).
pub fn parse_since(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    match crate::duration::parse(text) {
        Ok(d) => Ok(now - chrono::Duration::from_std(d)?),
        Err(_) => bail!(
            "--since `{text}`: give an RFC 3339 time (2026-11-29T08:00:00Z) or a duration ago (90m, 2h)"
        ),
    }
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
    let spec = catalog.webhook(tenant, name).expect("checked above");
    let store = open(config).await?;
    if store.endpoint_disabled(tenant, name).await? {
        bail!(
            "{target} is disabled; run `syncd endpoint enable {target}` first (it also sends the held events)"
        );
    }
    let events: Vec<(String, String)> = store
        .events_since(tenant, since)
        .await?
        .into_iter()
        .filter(|(_, t)| spec.subscribes(t))
        .collect();
    let ids = store.replay(tenant, name, &events).await?;
    println!(
        "{} event{} since {} queued again for {target}; the running daemon sends them",
        ids.len(),
        if ids.len() == 1 { "" } else { "s" },
        time(Some(since))
    );
    Ok(ExitCode::SUCCESS)
}

/// `syncd endpoint enable T/E`
pub async fn enable(config: &Config, catalog: &Catalog, target: &str) -> anyhow::Result<ExitCode> {
    let (tenant, name) = endpoint(config, catalog, target)?;
    let store = open(config).await?;
    let was = store.endpoint_disabled(tenant, name).await?;
    let released = store.enable_endpoint(tenant, name).await?;
    store
        .resolve_issues(
            tenant,
            name,
            Some(&[IssueKind::EndpointDisabled, IssueKind::WebhookFailing]),
        )
        .await?;
    println!(
        "{target} {}; {released} held deliver{} released",
        if was { "enabled" } else { "was not disabled" },
        if released == 1 { "y" } else { "ies" }
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
