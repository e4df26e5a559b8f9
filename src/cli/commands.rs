//! The body of each command: call [`crate::ops`], print what it returns.

use super::{TokensCommand, time, time_or};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::jobs::JobContext;
use crate::ops;
use crate::store::Store;
use crate::store::issues::IssueFilter;
use crate::store::webhooks::DeliveryFilter;
use anyhow::bail;
use chrono::Utc;
use std::process::ExitCode;
use std::sync::Arc;

pub(super) fn check_config(config: &Config, catalog: &Catalog) -> anyhow::Result<ExitCode> {
    let source = config
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(no file: built-in defaults)".into());
    println!("config:          {source}");
    if config.state_is_postgres() {
        println!("state database:  {} (PostgreSQL)", config.state_display());
    } else {
        println!(
            "state database:  {} ({})",
            crate::redact_url(&config.state.url),
            config.sqlite_path().display()
        );
    }
    match config.queue.backend {
        crate::config::QueueBackend::Sqlite if config.state_is_postgres() => {
            println!(
                "queue backend:   sqlite ({}; one node only: use Redis to share work)",
                config.queue_sqlite_path().display()
            )
        }
        crate::config::QueueBackend::Sqlite => {
            println!("queue backend:   sqlite (in the state database)")
        }
        crate::config::QueueBackend::Redis => {
            println!(
                "queue backend:   redis ({})",
                crate::redact_url(&config.queue.redis_url)
            )
        }
    }
    let count = catalog.integrations().count();
    println!(
        "catalog:         {} ({} tenant{}, {} integration{})",
        config.catalog_dir().display(),
        catalog.tenants.len(),
        plural(catalog.tenants.len()),
        count,
        plural(count)
    );
    for i in catalog.integrations() {
        let stale = i
            .stale_after
            .map(|d| format!(", stale after {}", crate::duration::format(d)))
            .unwrap_or_default();
        println!(
            "  {}/{}: {}, {}{stale}",
            i.tenant,
            i.name,
            i.kind.as_str(),
            i.schedule
        );
    }
    for t in &catalog.tenants {
        for w in &t.webhooks {
            println!(
                "  {}/{}: webhook, {}{}",
                t.name,
                w.name,
                w.events.join(", "),
                w.max_in_flight
                    .map(|n| format!(", at most {n} in flight"))
                    .unwrap_or_default()
            );
        }
    }
    for warning in catalog.missing_secrets() {
        println!("warning: {warning} (the integration will fail until it is)");
    }
    let stored = catalog
        .integrations()
        .any(|i| catalog.credential_of(i.tenant, i.name).is_some());
    match crate::credentials::MasterKey::from_config(config)? {
        Some(key) => println!("master key:      {}", key.source()),
        None if stored => println!(
            "warning: the catalog uses stored credentials but no master key is configured ([credentials] key_file, or the environment variable {})",
            config.credentials.key_env
        ),
        None => {}
    }
    println!("ok");
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub(super) async fn refetch(
    config: &Config,
    catalog: &Catalog,
    target: &str,
    force: bool,
    accept_shrink: bool,
) -> anyhow::Result<ExitCode> {
    let (tenant, name) = ops::integrations::check_target(config, catalog, target)?;
    let store = Store::open(config).await?;
    let queue = crate::jobs::connect_queue(Arc::new(config.clone()), &store).await?;
    match ops::refetch(&store, &queue, catalog, tenant, name, force, accept_shrink).await? {
        ops::Refetch::AlreadyQueued { requested_at } => println!(
            "a re-fetch of {target} is already queued (requested {}); not queuing another",
            requested_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        ops::Refetch::Queued { job_id } => println!(
            "queued a {}re-fetch of {target} (job {job_id})",
            if force { "forced " } else { "" },
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn test_connection(
    config: &Config,
    catalog: &Catalog,
    target: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (tenant, name) = ops::integrations::check_target(config, catalog, target)?;
    let store = Store::open(config).await?;
    let ctx = JobContext::build(Arc::new(config.clone()), Arc::new(catalog.clone()), store).await?;
    let probe = ops::integrations::test_connection(&ctx, tenant, name).await?;
    if json {
        println!("{}", ops::probe_json(tenant, name, &probe));
    } else {
        println!("{target}: {}: {}", probe.verdict.as_str(), probe.detail);
    }
    Ok(if probe.verdict == crate::feeds::probe::Verdict::Ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

pub(super) async fn status(
    config: &Config,
    catalog: &Catalog,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = Store::open(config).await?;
    let states = ops::status(&store, catalog, tenant).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&states)?);
        return Ok(ExitCode::SUCCESS);
    }
    if states.is_empty() {
        println!("no integrations");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<32} {:<6} {:<21} {:<13} {:>9}  STATE",
        "INTEGRATION", "KIND", "LAST SUCCESS", "LAST OUTCOME", "ITEMS"
    );
    for s in &states {
        let mut state = if s.paused {
            "paused".to_string()
        } else {
            "active".to_string()
        };
        if let Some(at) = s.next_retry_at {
            state.push_str(&format!(", retry at {}", time(Some(at))));
        }
        if s.refetch_requested_at.is_some() {
            state.push_str(", re-fetch queued");
        }
        println!(
            "{:<32} {:<6} {:<21} {:<13} {:>9}  {state}",
            format!("{}/{}", s.tenant, s.integration),
            s.kind,
            time(s.last_success_at),
            s.last_outcome.as_deref().unwrap_or("-"),
            s.items.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
        );
        if let Some(c) = &s.companies {
            println!(
                "    companies: {} enriched, {} without data (expected for small or new companies), {} pending",
                c.enriched, c.no_data, c.pending
            );
        }
        if let Some(err) = &s.last_error {
            println!("    last error: {err}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn tokens(
    config: &Config,
    catalog: &Catalog,
    cmd: TokensCommand,
) -> anyhow::Result<ExitCode> {
    let store = Store::open(config).await?;
    match cmd {
        TokensCommand::Create {
            name,
            tenant,
            scope,
        } => {
            if let Some(t) = &tenant
                && !catalog.tenants.iter().any(|x| &x.name == t)
            {
                bail!("unknown tenant `{t}` in {}", config.catalog_dir().display());
            }
            let created = ops::tokens::create(&store, &name, tenant.as_deref(), scope).await?;
            let scope = match (tenant, scope) {
                (Some(t), _) => format!("tenant {t}"),
                (None, Some(_)) => "metrics (GET /metrics only)".into(),
                (None, None) => "operator (all tenants)".into(),
            };
            eprintln!(
                "created token {} for {scope}; it is shown only now:",
                created.id
            );
            println!("{}", created.token);
        }
        TokensCommand::List { json } => {
            let list = ops::tokens::list(&store).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no tokens");
            } else {
                println!(
                    "{:<10} {:<24} {:<16} {:<21} {:<21} STATE",
                    "ID", "NAME", "SCOPE", "CREATED", "LAST USED"
                );
                for t in &list {
                    println!(
                        "{:<10} {:<24} {:<16} {:<21} {:<21} {}",
                        t.id,
                        t.name,
                        t.scope
                            .as_deref()
                            .or(t.tenant.as_deref())
                            .unwrap_or("operator"),
                        time(Some(t.created_at)),
                        time(t.last_used_at),
                        if t.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                    );
                }
            }
        }
        TokensCommand::Revoke { id } => {
            ops::tokens::revoke(&store, &id).await?;
            println!("revoked token {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn import_companies(
    config: &Config,
    catalog: &Catalog,
    file: &std::path::Path,
    tenant: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let shown = file.display();
    let rows = ops::companies::read_csv(catalog, file, tenant)?;
    let store = Store::open(config).await?;
    for i in ops::companies::import(&store, &rows).await? {
        println!(
            "{}: {} companies in {shown}, {} new, {} already known",
            i.tenant,
            i.rows,
            i.added,
            i.rows as u64 - i.added
        );
    }
    if rows.is_empty() {
        println!("{shown}: no companies");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn list_companies(
    config: &Config,
    catalog: &Catalog,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    // The tenant is checked before the database is opened.
    ops::pick_tenant(catalog, tenant)?;
    let store = Store::open(config).await?;
    let (tenant, list) = ops::companies::list(&store, catalog, tenant).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("{tenant}: no companies");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<32} {:<28} {:<24} {:>9}  {:<9} ENRICHED AT",
        "DOMAIN", "NAME", "INDUSTRY", "EMPLOYEES", "STATUS"
    );
    for c in &list {
        println!(
            "{:<32} {:<28} {:<24} {:>9}  {:<9} {}",
            c.domain,
            c.name.as_deref().unwrap_or("-"),
            c.industry.as_deref().unwrap_or("-"),
            c.employee_count
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            c.enrichment_status,
            time(c.enriched_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn issues(
    config: &Config,
    all: bool,
    tenant: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = Store::open(config).await?;
    let list = ops::issues::list(&store, &IssueFilter { all, tenant }).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("{}", if all { "no issues" } else { "no open issues" });
        return Ok(ExitCode::SUCCESS);
    }
    for i in &list {
        let state = match i.resolved_at {
            Some(at) => format!("resolved {}", time(Some(at))),
            None => "OPEN".into(),
        };
        println!(
            "#{} [{}] {}/{} {} — seen {}×, first {}, last {}",
            i.id,
            state,
            i.tenant,
            i.integration,
            i.kind,
            i.occurrences,
            time(Some(i.first_seen)),
            time(Some(i.last_seen))
        );
        println!("    {}", i.message);
        println!("    what to do: {}", i.hint);
    }
    Ok(ExitCode::SUCCESS)
}

/// `tenant/endpoint` of a catalog webhook; the error names the catalog directory.
fn endpoint<'a>(
    config: &Config,
    catalog: &'a Catalog,
    target: &'a str,
) -> anyhow::Result<(&'a str, &'a str)> {
    let (tenant, name) = ops::split_endpoint(target)?;
    catalog
        .webhook_or_err(tenant, name)
        .map_err(|e| anyhow::anyhow!("{target}: {e} in {}", config.catalog_dir().display()))?;
    Ok((tenant, name))
}

/// `syncd deliveries [--endpoint T/E] [--failed] [--json]`
pub(super) async fn deliveries(
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
                let (tenant, name) = ops::split_endpoint(t)?;
                Some((tenant.to_string(), name.to_string()))
            }
            None => None,
        },
        tenant: None,
        failed,
        limit: limit.max(1),
    };
    let store = Store::open(config).await?;
    let list = ops::webhooks::list(&store, &filter).await?;
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
            time_or(Some(d.created_at), "-"),
        );
        if let Some(err) = &d.last_error {
            println!("    last error: {err}");
        }
        if d.status == "pending" && d.attempts > 0 {
            println!("    next attempt: {}", time_or(d.next_attempt_at, "-"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `syncd redeliver DELIVERY_ID`
pub(super) async fn redeliver(config: &Config, id: &str) -> anyhow::Result<ExitCode> {
    let store = Store::open(config).await?;
    let r = ops::webhooks::redeliver_delivery(&store, id, None).await?;
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

/// `syncd replay T/E --since TIME`
pub(super) async fn replay(
    config: &Config,
    catalog: &Catalog,
    target: &str,
    since: &str,
) -> anyhow::Result<ExitCode> {
    let (tenant, name) = endpoint(config, catalog, target)?;
    let since = ops::since(since, Utc::now()).map_err(|e| anyhow::anyhow!("--since {e}"))?;
    let store = Store::open(config).await?;
    let r = ops::webhooks::replay_endpoint(&store, catalog, tenant, name, since, None).await?;
    println!(
        "{} event{} since {} queued again for {target}; the running daemon sends them",
        r.events,
        if r.events == 1 { "" } else { "s" },
        time_or(Some(r.since), "-")
    );
    Ok(ExitCode::SUCCESS)
}

/// `syncd endpoint enable T/E`
pub(super) async fn enable(
    config: &Config,
    catalog: &Catalog,
    target: &str,
) -> anyhow::Result<ExitCode> {
    let (tenant, name) = endpoint(config, catalog, target)?;
    let store = Store::open(config).await?;
    let r = ops::webhooks::enable_endpoint(&store, tenant, name).await?;
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
