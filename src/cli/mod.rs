//! Command-line interface. Every command except `run` is safe to use while the daemon runs:
//! they share the state database (SQLite WAL lets readers and one writer work together) and
//! the queue.

use crate::catalog::{Broken, Catalog};
use crate::config::Config;
use crate::telemetry;
use chrono::{DateTime, Utc};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod commands;
mod credentials;
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
    Credentials(credentials::CredentialsCommand),
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
        #[arg(long, conflicts_with = "scope")]
        tenant: Option<String>,
        /// Limit the token to one use: `metrics` is good for `GET /metrics` only (for
        /// Prometheus), and for nothing it could act with.
        #[arg(long, value_enum)]
        scope: Option<crate::ops::tokens::Scope>,
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

/// The configuration, the catalog's good tenants, and its broken files.
fn load(cli: &Cli) -> anyhow::Result<(Config, Catalog, Vec<Broken>)> {
    let (path, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("config.toml"), false),
    };
    let config = Config::load(&path, explicit)?;
    let (catalog, broken) = Catalog::load_each_for(&config)?;
    Ok((config, catalog, broken))
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // Needs no configuration: it works anywhere, e.g. while packaging.
    if let Command::Completions { shell } = cli.command {
        return completions(shell);
    }
    let (config, catalog, broken) = load(&cli)?;
    let daemon = matches!(cli.command, Command::Run);
    telemetry::init(&config.log, daemon);
    // One tenant's broken file takes out that tenant only: the daemon runs the others and
    // files an issue, every other command works on the good tenants and says so. Only
    // check-config fails, so that a deploy can gate on it.
    if !daemon {
        for b in &broken {
            eprintln!(
                "{}: {} (tenant `{}` is left out)",
                if matches!(cli.command, Command::CheckConfig) {
                    "error"
                } else {
                    "warning"
                },
                b.error,
                b.tenant
            );
        }
    }
    match cli.command {
        Command::Run => crate::app::run(config, catalog, broken)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::CheckConfig if !broken.is_empty() => Ok(ExitCode::FAILURE),
        Command::CheckConfig => commands::check_config(&config, &catalog),
        Command::Refetch {
            target,
            force,
            accept_shrink,
        } => commands::refetch(&config, &catalog, &target, force, accept_shrink).await,
        Command::TestConnection { target, json } => {
            commands::test_connection(&config, &catalog, &target, json).await
        }
        Command::Status { tenant, json } => {
            commands::status(&config, &catalog, tenant.as_deref(), json).await
        }
        Command::Issues { all, tenant, json } => commands::issues(&config, all, tenant, json).await,
        Command::Tokens(cmd) => commands::tokens(&config, &catalog, cmd).await,
        Command::Companies(CompaniesCommand::Import { file, tenant }) => {
            commands::import_companies(&config, &catalog, &file, tenant.as_deref()).await
        }
        Command::Credentials(cmd) => credentials::run(&config, &catalog, cmd).await,
        Command::Companies(CompaniesCommand::List { tenant, json }) => {
            commands::list_companies(&config, &catalog, tenant.as_deref(), json).await
        }
        Command::Deliveries {
            endpoint,
            failed,
            json,
            limit,
        } => commands::deliveries(&config, endpoint.as_deref(), failed, json, limit).await,
        Command::Redeliver { delivery_id } => commands::redeliver(&config, &delivery_id).await,
        Command::Replay { target, since } => {
            commands::replay(&config, &catalog, &target, &since).await
        }
        Command::Endpoint {
            action: EndpointAction::Enable { target },
        } => commands::enable(&config, &catalog, &target).await,
        Command::Completions { shell } => completions(shell),
    }
}

/// A time as printed in tables: RFC 3339 to the second, or `never`.
fn time(t: Option<DateTime<Utc>>) -> String {
    time_or(t, "never")
}

/// A time as printed in tables: RFC 3339 to the second, or `none` when there is none.
fn time_or(t: Option<DateTime<Utc>>, none: &str) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| none.into())
}
