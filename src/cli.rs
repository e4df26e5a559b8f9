//! Command-line interface. Every command except `run` is safe to use while the daemon runs:
//! they share the state database (SQLite WAL lets readers and one writer work together) and
//! the queue.

use crate::catalog::Catalog;
use crate::config::Config;
use crate::jobs;
use crate::store::Store;
use crate::store::issues::IssueFilter;
use crate::{telemetry, webhooks};
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

mod help;

/// syncd keeps the quoting platform in sync with distributor feeds, CRMs and webhooks.
#[derive(Debug, Parser)]
#[command(name = "syncd", version, about)]
pub struct Cli {
    /// Configuration file; `SYNCD__SECTION__KEY` environment variables override it.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: scheduler and workers, until SIGTERM or SIGINT.
    Run,
    /// Validate the configuration and the catalog, print a summary, exit non-zero on errors.
    CheckConfig,
    /// Queue a re-fetch of TENANT/INTEGRATION now (runs even when paused).
    Refetch {
        /// `tenant/integration`
        target: String,
        /// Download even if the source looks unchanged.
        #[arg(long)]
        force: bool,
        /// Accept a full file with far fewer rows than the last import (beyond
        /// `max_shrink`), e.g. after the distributor really dropped part of its range.
        #[arg(long)]
        accept_shrink: bool,
    },
    /// Prove reachability and credentials of TENANT/INTEGRATION without downloading the
    /// file; prints one verdict line and exits 0 only when the test passes.
    TestConnection {
        /// `tenant/integration`
        target: String,
        /// A JSON object instead of the line.
        #[arg(long)]
        json: bool,
    },
    /// Show the sync state of every integration.
    Status {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Admin API tokens: create (shown once), list, revoke.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Companies for CRM enrichment: import a list, or show what is stored.
    #[command(subcommand)]
    Companies(CompaniesCommand),
    /// The encrypted credential store: set, list and delete stored secrets.
    #[command(subcommand)]
    Credentials(crate::credentials::cli::CredentialsCommand),
    /// List webhook deliveries, newest first, with every attempt.
    Deliveries {
        /// Only this endpoint: `tenant/endpoint`.
        #[arg(long, value_name = "T/E")]
        endpoint: Option<String>,
        /// Only deliveries that failed, or are retrying after a failed attempt.
        #[arg(long)]
        failed: bool,
        /// JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Send a webhook delivery again now (logged as a manual attempt, same webhook-id).
    Redeliver {
        /// The delivery's id (`msg_…`, see `syncd deliveries`).
        delivery_id: String,
    },
    /// Send every event since TIME to a webhook endpoint again, as new deliveries (e.g. after
    /// the receiver lost data in an outage).
    Replay {
        /// `tenant/endpoint`
        target: String,
        /// RFC 3339 time (`2026-11-29T08:00:00Z`) or a duration ago (`2h`).
        #[arg(long, value_name = "TIME")]
        since: String,
    },
    /// Webhook endpoint administration.
    Endpoint {
        #[command(subcommand)]
        action: EndpointAction,
    },
    /// Show open issues (all with --all).
    Issues {
        /// Include resolved issues.
        #[arg(long)]
        all: bool,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Create a token for the admin API and page; it is printed once and only its SHA-256
    /// is kept. Without --tenant it is an operator token (every tenant).
    Create {
        /// What the token is for (shown by `tokens list`).
        #[arg(long)]
        name: String,
        /// Limit the token to one tenant: it sees and acts on that tenant only.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List tokens (never the tokens themselves).
    List {
        /// JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id; it stops working at once.
    Revoke {
        /// The id `tokens create` and `tokens list` show.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum CompaniesCommand {
    /// Add companies from a CSV file with a `domain` column (and optional `name` and
    /// `tenant` columns); existing companies keep their data.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// The tenant for rows without a `tenant` column (optional when the catalog has
        /// one tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Show a tenant's companies with their enrichment status.
    List {
        /// The tenant (optional when the catalog has one tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EndpointAction {
    /// Enable a disabled endpoint, clear its failure streak and send its held events.
    Enable {
        /// `tenant/endpoint`
        target: String,
    },
}

/// Parses arguments, runs the command, prints errors; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The command line's definition, with the long help and examples of every command.
pub fn command() -> clap::Command {
    help::document(Cli::command())
}

/// Parses the arguments. `--help` and `--version` print and end with 0; a command line that
/// cannot be parsed prints why and ends with 1, so that 2 only ever means a connection test
/// that did not pass.
fn parse() -> Result<Cli, ExitCode> {
    let fail = |e: clap::Error| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    };
    let matches = command().try_get_matches().map_err(fail)?;
    Cli::from_arg_matches(&matches).map_err(fail)
}

/// Prints the completion script for `shell`.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    clap_complete::generate(shell, &mut command(), "syncd", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

fn load(cli: &Cli) -> anyhow::Result<(Config, Catalog)> {
    let (path, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("config.toml"), false),
    };
    let config = Config::load(&path, explicit)?;
    let catalog = Catalog::load(&config.catalog_dir())?;
    Ok((config, catalog))
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // Needs no configuration: it works anywhere, e.g. while packaging.
    if let Command::Completions { shell } = cli.command {
        return completions(shell);
    }
    let (config, catalog) = load(&cli)?;
    let daemon = matches!(cli.command, Command::Run);
    telemetry::init(&config.log, daemon);
    match cli.command {
        Command::Run => crate::app::run(config, catalog)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::CheckConfig => check_config(&config, &catalog),
        Command::Refetch {
            target,
            force,
            accept_shrink,
        } => refetch(&config, &catalog, &target, force, accept_shrink).await,
        Command::TestConnection { target, json } => {
            test_connection(&config, &catalog, &target, json).await
        }
        Command::Status { tenant, json } => {
            status(&config, &catalog, tenant.as_deref(), json).await
        }
        Command::Issues { all, tenant, json } => issues(&config, all, tenant, json).await,
        Command::Tokens(cmd) => tokens(&config, &catalog, cmd).await,
        Command::Companies(CompaniesCommand::Import { file, tenant }) => {
            import_companies(&config, &catalog, &file, tenant.as_deref()).await
        }
        Command::Credentials(cmd) => crate::credentials::cli::run(&config, &catalog, cmd).await,
        Command::Companies(CompaniesCommand::List { tenant, json }) => {
            list_companies(&config, &catalog, tenant.as_deref(), json).await
        }
        Command::Deliveries {
            endpoint,
            failed,
            json,
            limit,
        } => webhooks::ops::deliveries(&config, endpoint.as_deref(), failed, json, limit).await,
        Command::Redeliver { delivery_id } => webhooks::ops::redeliver(&config, &delivery_id).await,
        Command::Replay { target, since } => {
            webhooks::ops::replay(&config, &catalog, &target, &since).await
        }
        Command::Endpoint {
            action: EndpointAction::Enable { target },
        } => webhooks::ops::enable(&config, &catalog, &target).await,
        Command::Completions { shell } => completions(shell),
    }
}

pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(config).await
}

fn check_config(config: &Config, catalog: &Catalog) -> anyhow::Result<ExitCode> {
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

pub(crate) fn split_target(target: &str) -> anyhow::Result<(&str, &str)> {
    match target.split_once('/') {
        Some((t, i)) if !t.is_empty() && !i.is_empty() && !i.contains('/') => Ok((t, i)),
        _ => bail!("`{target}`: expected TENANT/INTEGRATION, e.g. acme/ingram-prices"),
    }
}

async fn refetch(
    config: &Config,
    catalog: &Catalog,
    target: &str,
    force: bool,
    accept_shrink: bool,
) -> anyhow::Result<ExitCode> {
    let (tenant, name) = split_target(target)?;
    catalog
        .integration(tenant, name)
        .map_err(|e| anyhow::anyhow!("{target}: {e} in {}", config.catalog_dir().display()))?;
    let store = open_store(config).await?;
    let queue = crate::jobs::connect_queue(Arc::new(config.clone()), &store).await?;
    match crate::ops::refetch(&store, &queue, catalog, tenant, name, force, accept_shrink).await? {
        crate::ops::Refetch::AlreadyQueued { requested_at } => println!(
            "a re-fetch of {target} is already queued (requested {}); not queuing another",
            requested_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        crate::ops::Refetch::Queued { job_id } => println!(
            "queued a {}re-fetch of {target} (job {job_id})",
            if force { "forced " } else { "" },
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn test_connection(
    config: &Config,
    catalog: &Catalog,
    target: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (tenant, name) = split_target(target)?;
    catalog
        .integration(tenant, name)
        .map_err(|e| anyhow::anyhow!("{target}: {e} in {}", config.catalog_dir().display()))?;
    let store = open_store(config).await?;
    let http = jobs::http_client(config)?;
    let limiter = crate::crm::limiter::Limiter::for_config(config).await?;
    let secrets = crate::credentials::Secrets::open(config, &store).await?;
    let probe = jobs::connection_test::run_with(
        &store, catalog, &http, config, &limiter, &secrets, tenant, name,
    )
    .await?;
    if json {
        println!("{}", crate::ops::probe_json(tenant, name, &probe));
    } else {
        println!("{target}: {}: {}", probe.verdict.as_str(), probe.detail);
    }
    Ok(if probe.verdict == crate::feeds::probe::Verdict::Ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "never".into())
}

async fn status(
    config: &Config,
    catalog: &Catalog,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let states = crate::ops::status(&store, catalog, tenant).await?;
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

async fn tokens(
    config: &Config,
    catalog: &Catalog,
    cmd: TokensCommand,
) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    match cmd {
        TokensCommand::Create { name, tenant } => {
            if let Some(t) = &tenant
                && !catalog.tenants.iter().any(|x| &x.name == t)
            {
                bail!("unknown tenant `{t}` in {}", config.catalog_dir().display());
            }
            let (id, token) =
                crate::admin::tokens::create(&store, &name, tenant.as_deref()).await?;
            let scope = tenant
                .map(|t| format!("tenant {t}"))
                .unwrap_or_else(|| "operator (all tenants)".into());
            eprintln!("created token {id} for {scope}; it is shown only now:");
            println!("{token}");
        }
        TokensCommand::List { json } => {
            let list = store.list_admin_tokens().await?;
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
                        t.tenant.as_deref().unwrap_or("operator"),
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
            if !store.revoke_admin_token(&id).await? {
                bail!("no active token with id `{id}` (see `syncd tokens list`)");
            }
            println!("revoked token {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The tenant a companies command is about: the one named, or the catalog's only one.
fn pick_tenant<'a>(
    catalog: &'a Catalog,
    tenant: Option<&'a str>,
) -> anyhow::Result<Option<&'a str>> {
    match tenant {
        Some(t) => {
            if !catalog.tenants.iter().any(|x| x.name == t) {
                anyhow::bail!("unknown tenant `{t}`");
            }
            Ok(Some(t))
        }
        None if catalog.tenants.len() == 1 => Ok(Some(&catalog.tenants[0].name)),
        None => Ok(None),
    }
}

async fn import_companies(
    config: &Config,
    catalog: &Catalog,
    file: &std::path::Path,
    tenant: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let shown = file.display();
    let default_tenant = pick_tenant(catalog, tenant)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(file)
        .with_context(|| format!("{shown}: cannot open"))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{shown}: cannot read the header row"))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
    };
    let Some(domain_col) = col("domain") else {
        anyhow::bail!(
            "{shown}: the header row has no `domain` column (found: {})",
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let (name_col, tenant_col) = (col("name"), col("tenant"));
    if tenant_col.is_none() && default_tenant.is_none() {
        anyhow::bail!(
            "{shown}: no `tenant` column and the catalog has {} tenants: name one with --tenant",
            catalog.tenants.len()
        );
    }
    let mut by_tenant: std::collections::BTreeMap<String, Vec<(String, Option<String>)>> =
        Default::default();
    let mut errors = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.with_context(|| format!("{shown}: line {line}"))?;
        let raw = record.get(domain_col).unwrap_or("");
        let Some(domain) = crate::store::companies::normalize_domain(raw) else {
            errors.push(format!("line {line}: `{raw}` is not a domain"));
            continue;
        };
        let t = match tenant_col
            .and_then(|c| record.get(c))
            .filter(|t| !t.is_empty())
        {
            Some(t) => {
                if !catalog.tenants.iter().any(|x| x.name == t) {
                    errors.push(format!("line {line}: unknown tenant `{t}`"));
                    continue;
                }
                t.to_string()
            }
            None => match default_tenant {
                Some(t) => t.to_string(),
                None => {
                    errors.push(format!("line {line}: no tenant"));
                    continue;
                }
            },
        };
        let name = name_col
            .and_then(|c| record.get(c))
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        by_tenant.entry(t).or_default().push((domain, name));
    }
    if !errors.is_empty() {
        let shown_errors: Vec<&String> = errors.iter().take(10).collect();
        anyhow::bail!(
            "{shown}: {} row(s) cannot be imported, nothing was imported:\n  {}",
            errors.len(),
            shown_errors
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    let store = open_store(config).await?;
    for (t, rows) in &by_tenant {
        let added = store.import_companies(t, rows).await?;
        println!(
            "{t}: {} companies in {shown}, {added} new, {} already known",
            rows.len(),
            rows.len() as u64 - added
        );
    }
    if by_tenant.is_empty() {
        println!("{shown}: no companies");
    }
    Ok(ExitCode::SUCCESS)
}

async fn list_companies(
    config: &Config,
    catalog: &Catalog,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(tenant) = pick_tenant(catalog, tenant)? else {
        anyhow::bail!(
            "the catalog has {} tenants: name one with --tenant",
            catalog.tenants.len()
        );
    };
    let store = open_store(config).await?;
    let list = store.companies(tenant).await?;
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

async fn issues(
    config: &Config,
    all: bool,
    tenant: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let list = store.list_issues(&IssueFilter { all, tenant }).await?;
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
