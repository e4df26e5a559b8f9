//! `syncd credentials set|list|delete`: the admin's side of the credential store
//! ([`crate::ops::credentials`] does the work; this reads the secret and prints).
//!
//! A secret is read from standard input or typed at a prompt that does not echo, never taken
//! from the command line (where `ps` and shell history would keep it). Setting one queues a
//! connection test of every integration that uses it, which resolves a
//! `credentials_rejected` issue and lifts the pause when it passes.

use super::time_or;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::ops::credentials as ops;
use crate::store::Store;
use anyhow::{Context, bail};
use clap::Subcommand;
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;
use std::process::ExitCode;

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
        } => {
            let store = Store::open(config).await?;
            let d = ops::delete(config, catalog, &store, &target, field.as_deref(), force).await?;
            println!(
                "{target}: deleted {} field{}",
                d.fields,
                if d.fields == 1 { "" } else { "s" }
            );
            if !d.used_by.is_empty() {
                println!(
                    "integrations using it will fail as `misconfigured` until it is set again: {}",
                    d.used_by.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn set(
    config: &Config,
    catalog: &Catalog,
    target: &str,
    field: Option<String>,
    expires_at: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let plan = ops::plan_set(config, catalog, target, field, expires_at)?;
    if let Some(w) = &plan.warning {
        eprintln!("warning: {w}");
    }
    let store = Store::open(config).await?;
    // Check the key before asking for the secret: a wrong key writes nothing.
    let secrets = ops::writable(config, &store).await?;
    let secret = read_secret(target, &plan.field)?;
    let done = ops::set(config, catalog, &store, &secrets, &plan, &secret).await?;
    drop(secret);
    let until = plan
        .expires_at
        .map(|t| format!(", expires {}", time_or(Some(t), "-")))
        .unwrap_or_default();
    println!(
        "{target}: `{}` stored encrypted ({}{until})",
        plan.field, done.masked
    );
    if done.tests.is_empty() {
        println!(
            "no integration uses {target} yet: refer to it with `credential = \"{target}\"` in the catalog; no connection test queued"
        );
    }
    for (integration, job) in &done.tests {
        println!(
            "queued a connection test of {integration} (job {job}); a pass resolves its credentials_rejected issue and ends a pause (`syncd issues`, `syncd status`)"
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

async fn list(
    config: &Config,
    catalog: &Catalog,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = Store::open(config).await?;
    let (out, key_problem) = ops::list(config, catalog, &store, tenant).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if out.is_empty() {
        println!("no stored credentials");
    } else {
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
                time_or(c.expires_at, "-"),
                time_or(c.last_used_at, "-"),
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
