//! `syncd credentials set|list|delete`: the admin's side of the credential store.
//!
//! A secret is read from standard input or typed at a prompt that does not echo, never taken
//! from the command line (where `ps` and shell history would keep it). Setting one queues a
//! connection test of every integration that uses it, which resolves a
//! `credentials_rejected` issue and lifts the pause when it passes.

use super::{FIELDS, Secrets, mask};
use crate::catalog::Catalog;
use crate::cli::{open_store, split_target};
use crate::config::Config;
use crate::jobs::{Job, JobKind, Trigger};
use crate::outcome::IssueKind;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;
use std::process::ExitCode;
use std::sync::Arc;

/// Longest secret accepted on standard input.
const MAX_SECRET: u64 = 64 * 1024;

/// `syncd credentials …`
#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Store a secret for TENANT/NAME, encrypted. The secret is read from standard input
    /// (`syncd credentials set acme/ingram < file`), or typed at a prompt that does not echo
    /// when standard input is a terminal; never from the command line. Then a connection
    /// test of every integration using it is queued.
    Set {
        /// `tenant/name`, as in the catalog's `credential = "tenant/name"`.
        target: String,
        /// `password`, `token`, `client_secret`, `refresh_token`, `api_key` or `passphrase`;
        /// default: the one field the integrations using the credential need.
        #[arg(long, value_name = "NAME")]
        field: Option<String>,
        /// When the secret lapses (RFC 3339, e.g. 2027-03-01T00:00:00Z): a `token_expiring`
        /// issue is raised `[credentials] expiry_warning` before.
        #[arg(long, value_name = "RFC3339")]
        expires_at: Option<String>,
    },
    /// List stored credentials, masked, with expiry and last successful use.
    List {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a stored credential (every field, or one).
    Delete {
        /// `tenant/name`
        target: String,
        /// Only this field.
        #[arg(long, value_name = "NAME")]
        field: Option<String>,
        /// Delete even what the configured master key cannot decrypt (the secret is lost).
        #[arg(long)]
        force: bool,
    },
}

/// Runs a `credentials` command.
pub async fn run(
    config: &Config,
    catalog: &Catalog,
    cmd: CredentialsCommand,
) -> anyhow::Result<ExitCode> {
    match cmd {
        CredentialsCommand::Set {
            target,
            field,
            expires_at,
        } => set(config, catalog, &target, field, expires_at.as_deref()).await,
        CredentialsCommand::List { tenant, json } => {
            list(config, catalog, tenant.as_deref(), json).await
        }
        CredentialsCommand::Delete {
            target,
            field,
            force,
        } => delete(config, catalog, &target, field.as_deref(), force).await,
    }
}

fn check_target<'a>(
    config: &Config,
    catalog: &Catalog,
    target: &'a str,
) -> anyhow::Result<(&'a str, &'a str)> {
    let (tenant, name) = split_target(target)?;
    if !catalog.tenants.iter().any(|t| t.name == tenant) {
        bail!(
            "{target}: unknown tenant `{tenant}` in {}",
            config.catalog_dir().display()
        );
    }
    if name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        bail!("{target}: the name must be 1-64 letters, digits, '-', '_' or '.'");
    }
    Ok((tenant, name))
}

fn check_field(target: &str, field: &str) -> anyhow::Result<()> {
    if !FIELDS.contains(&field) {
        bail!(
            "{target}: --field must be one of {} (got `{field}`)",
            FIELDS.join(", ")
        );
    }
    Ok(())
}

async fn set(
    config: &Config,
    catalog: &Catalog,
    target: &str,
    field: Option<String>,
    expires_at: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (tenant, name) = check_target(config, catalog, target)?;
    let expires_at = expires_at
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .with_context(|| {
                    format!(
                        "--expires-at: `{t}` is not an RFC 3339 time such as 2027-03-01T00:00:00Z"
                    )
                })
        })
        .transpose()?;
    let users = catalog.users_of(target);
    let mut needed: Vec<String> = users.iter().flat_map(|(_, f)| f.clone()).collect();
    needed.sort();
    needed.dedup();
    let field = match field {
        Some(f) => {
            check_field(target, &f)?;
            if !users.is_empty() && !needed.contains(&f) {
                eprintln!(
                    "warning: the integrations using {target} read {}, not `{f}`",
                    needed.join(", ")
                );
            }
            f
        }
        None => match needed.as_slice() {
            [one] => one.clone(),
            [] => bail!(
                "{target}: no integration in the catalog uses this credential yet, so which secret it is cannot be told: give --field ({})",
                FIELDS.join(", ")
            ),
            many => bail!(
                "{target} holds several secrets ({}): give --field with the one to set",
                many.join(", ")
            ),
        },
    };
    let store = open_store(config).await?;
    // Check the key before asking for the secret: a wrong key writes nothing.
    let secrets = Secrets::open(config, &store).await?;
    if secrets.key().is_none() {
        bail!("{}", secrets.no_key_message());
    }
    let secret = read_secret(target, &field)?;
    secrets
        .set(tenant, name, &field, &secret, expires_at)
        .await?;
    let until = expires_at
        .map(|t| {
            format!(
                ", expires {}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
        .unwrap_or_default();
    println!(
        "{target}: `{field}` stored encrypted ({}{until})",
        mask(&secret)
    );
    drop(secret);
    // Raises or resolves `token_expiring` for the new expiry at once.
    secrets
        .check_expiry(catalog, config.credentials.expiry_warning)
        .await?;
    if users.is_empty() {
        println!(
            "no integration uses {target} yet: refer to it with `credential = \"{target}\"` in the catalog; no connection test queued"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let queue = crate::jobs::connect_queue(Arc::new(config.clone()), &store).await?;
    for (i, _) in &users {
        let job = Job::new(
            JobKind::ConnectionTest,
            i.tenant,
            i.name,
            Trigger::CredentialChange,
        );
        queue.push(&job, None, None).await?;
        println!(
            "queued a connection test of {}/{} (job {}); a pass resolves its credentials_rejected issue and ends a pause (`syncd issues`, `syncd status`)",
            i.tenant, i.name, job.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The secret from standard input, or from a prompt that does not echo on a terminal. One
/// trailing newline is dropped; the text is wiped from memory when dropped.
fn read_secret(target: &str, field: &str) -> anyhow::Result<SecretString> {
    use std::io::{IsTerminal, Read};
    let text = Zeroizing::new(if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("{field} for {target} (not shown): "))
            .context("cannot read the secret from the terminal")?
    } else {
        let mut s = String::new();
        std::io::stdin()
            .take(MAX_SECRET + 1)
            .read_to_string(&mut s)
            .context("cannot read the secret from standard input (it must be UTF-8 text)")?;
        s
    });
    if text.len() as u64 > MAX_SECRET {
        bail!("{target}: the secret on standard input is longer than {MAX_SECRET} bytes");
    }
    let t = text.strip_suffix('\n').unwrap_or(&text);
    let t = t.strip_suffix('\r').unwrap_or(t);
    if t.is_empty() {
        bail!(
            "{target}: no secret given: pipe it into standard input, or run on a terminal to be asked for it"
        );
    }
    if t.contains('\n') {
        bail!("{target}: the secret on standard input has more than one line");
    }
    Ok(SecretString::from(t))
}

#[derive(serde::Serialize)]
struct Listed {
    credential: String,
    tenant: String,
    name: String,
    field: String,
    masked: String,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    used_by: Vec<String>,
}

async fn list(
    config: &Config,
    catalog: &Catalog,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let secrets = Secrets::open_unchecked(config, &store)?;
    let key_problem = match secrets.verify(config).await {
        Ok(()) if secrets.key().is_none() => Some(secrets.no_key_message()),
        Ok(()) => None,
        Err(e) => Some(format!("{e:#}")),
    };
    let mut out = Vec::new();
    for row in store.credentials().await? {
        if tenant.is_some_and(|t| t != row.tenant) {
            continue;
        }
        let credential = format!("{}/{}", row.tenant, row.integration);
        let masked = match secrets.open_row(&row) {
            Some(s) => mask(&s),
            None => "(cannot decrypt)".into(),
        };
        let used_by = catalog
            .users_of(&credential)
            .iter()
            .map(|(i, _)| format!("{}/{}", i.tenant, i.name))
            .collect();
        out.push(Listed {
            credential,
            tenant: row.tenant.clone(),
            name: row.integration.clone(),
            field: row.field.clone(),
            masked,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            updated_at: row.updated_at,
            used_by,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if out.is_empty() {
        println!("no stored credentials");
    } else {
        let time = |t: Option<DateTime<Utc>>| {
            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{:<32} {:<14} {:<18} {:<21} {:<21} USED BY",
            "CREDENTIAL", "FIELD", "SECRET", "EXPIRES AT", "LAST USED"
        );
        for c in &out {
            println!(
                "{:<32} {:<14} {:<18} {:<21} {:<21} {}",
                c.credential,
                c.field,
                c.masked,
                time(c.expires_at),
                time(c.last_used_at),
                if c.used_by.is_empty() {
                    "-".to_string()
                } else {
                    c.used_by.join(", ")
                }
            );
        }
    }
    match key_problem {
        Some(p) if out.iter().any(|c| c.masked.starts_with('(')) => {
            eprintln!("error: {p}");
            Ok(ExitCode::FAILURE)
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

async fn delete(
    config: &Config,
    catalog: &Catalog,
    target: &str,
    field: Option<&str>,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let (tenant, name) = check_target(config, catalog, target)?;
    if let Some(f) = field {
        check_field(target, f)?;
    }
    let store = open_store(config).await?;
    let rows: Vec<_> = store
        .credentials()
        .await?
        .into_iter()
        .filter(|r| r.tenant == tenant && r.integration == name)
        .filter(|r| field.is_none_or(|f| r.field == f))
        .collect();
    if rows.is_empty() {
        bail!("{target}: no such stored credential (see `syncd credentials list`)");
    }
    if !force {
        let secrets = Secrets::open_unchecked(config, &store)?;
        let problem = match secrets.verify(config).await {
            Err(e) => Some(format!("{e:#}")),
            Ok(()) if secrets.key().is_none() => Some(secrets.no_key_message()),
            Ok(()) => rows
                .iter()
                .find(|r| secrets.open_row(r).is_none())
                .map(|r| {
                    format!(
                        "`{}` does not decrypt with the configured master key",
                        r.field
                    )
                }),
        };
        if let Some(p) = problem {
            bail!(
                "{target}: not deleted: {p}. A secret that cannot be decrypted is only deleted with --force (it is then lost)"
            );
        }
    }
    let n = store.delete_credential(tenant, name, field).await?;
    let users = catalog.users_of(target);
    for (i, _) in &users {
        store
            .resolve_issues(i.tenant, i.name, Some(&[IssueKind::TokenExpiring]))
            .await?;
    }
    store
        .resolve_issues(tenant, name, Some(&[IssueKind::TokenExpiring]))
        .await?;
    println!(
        "{target}: deleted {n} field{}",
        if n == 1 { "" } else { "s" }
    );
    if !users.is_empty() {
        println!(
            "integrations using it will fail as `misconfigured` until it is set again: {}",
            users
                .iter()
                .map(|(i, _)| format!("{}/{}", i.tenant, i.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
