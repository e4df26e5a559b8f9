//! The encrypted credential store, as operators use it: set a secret (then a connection
//! test of every integration using it is queued), list them masked, delete them.
//!
//! Reading the secret itself (standard input, a prompt that does not echo) is the CLI's
//! part; nothing here ever takes a secret from a command line.

use super::split_integration;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::credentials::{FIELDS, Secrets, mask};
use crate::jobs::{Job, JobKind, Trigger};
use crate::outcome::IssueKind;
use crate::store::Store;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;
use std::sync::Arc;

/// `tenant/name` of a credential: the tenant in the catalog, the name well-formed.
pub fn check_target<'a>(
    config: &Config,
    catalog: &Catalog,
    target: &'a str,
) -> anyhow::Result<(&'a str, &'a str)> {
    let (tenant, name) = split_integration(target)?;
    if !catalog.tenants.iter().any(|t| t.name == tenant) {
        bail!(
            "{target}: unknown tenant `{tenant}` in {}",
            config.catalog_dir().display()
        );
    }
    if !crate::catalog::valid_name(name) {
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

/// What `set` will store, checked before the secret is asked for.
#[derive(Debug, Clone)]
pub struct SetPlan {
    /// `tenant/name`.
    pub target: String,
    /// The tenant.
    pub tenant: String,
    /// The credential's name.
    pub name: String,
    /// The field to set.
    pub field: String,
    /// When the secret lapses.
    pub expires_at: Option<DateTime<Utc>>,
    /// A field was named that the integrations using the credential do not read.
    pub warning: Option<String>,
}

/// Checks a `set`: the target, the expiry time, and which field (the one the integrations
/// using the credential need, when none is named).
pub fn plan_set(
    config: &Config,
    catalog: &Catalog,
    target: &str,
    field: Option<String>,
    expires_at: Option<&str>,
) -> anyhow::Result<SetPlan> {
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
    let mut warning = None;
    let field = match field {
        Some(f) => {
            check_field(target, &f)?;
            if !users.is_empty() && !needed.contains(&f) {
                warning = Some(format!(
                    "the integrations using {target} read {}, not `{f}`",
                    needed.join(", ")
                ));
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
    Ok(SetPlan {
        target: target.to_string(),
        tenant: tenant.to_string(),
        name: name.to_string(),
        field,
        expires_at,
        warning,
    })
}

/// The resolver, refused when no master key is configured or the key is not the one the
/// store was written with: checked before the secret is asked for, so a wrong key writes
/// nothing.
pub async fn writable(config: &Config, store: &Store) -> anyhow::Result<Secrets> {
    let secrets = Secrets::open(config, store).await?;
    if secrets.key().is_none() {
        bail!("{}", secrets.no_key_message());
    }
    Ok(secrets)
}

/// What `set` did.
#[derive(Debug, Clone, Serialize)]
pub struct SetDone {
    /// The secret, masked.
    pub masked: String,
    /// Connection tests queued: `(tenant/integration, job id)`.
    pub tests: Vec<(String, String)>,
}

/// Stores `secret` as `plan` says, refreshes `token_expiring` for the new expiry, and
/// queues a connection test of every integration using the credential.
pub async fn set(
    config: &Config,
    catalog: &Catalog,
    store: &Store,
    secrets: &Secrets,
    plan: &SetPlan,
    secret: &SecretString,
) -> anyhow::Result<SetDone> {
    secrets
        .set(
            &plan.tenant,
            &plan.name,
            &plan.field,
            secret,
            plan.expires_at,
        )
        .await?;
    let masked = mask(secret);
    // Raises or resolves `token_expiring` for the new expiry at once.
    secrets
        .check_expiry(catalog, config.credentials.expiry_warning)
        .await?;
    let users = catalog.users_of(&plan.target);
    let mut tests = Vec::new();
    if !users.is_empty() {
        let queue = crate::jobs::connect_queue(Arc::new(config.clone()), store).await?;
        for (i, _) in &users {
            let job = Job::new(
                JobKind::ConnectionTest,
                i.tenant,
                i.name,
                Trigger::CredentialChange,
            );
            queue.push(&job, None, None).await?;
            tests.push((format!("{}/{}", i.tenant, i.name), job.id));
        }
    }
    Ok(SetDone { masked, tests })
}

/// One stored field, masked (`syncd credentials list --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// `tenant/name`.
    pub credential: String,
    /// The tenant.
    pub tenant: String,
    /// The credential's name.
    pub name: String,
    /// The field.
    pub field: String,
    /// The secret, masked, or `(cannot decrypt)`.
    pub masked: String,
    /// When it lapses.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its last successful use.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was set.
    pub updated_at: DateTime<Utc>,
    /// The integrations using it.
    pub used_by: Vec<String>,
}

/// Every stored field (of one tenant, or all), masked, and what is wrong with the master
/// key if anything is.
pub async fn list(
    config: &Config,
    catalog: &Catalog,
    store: &Store,
    tenant: Option<&str>,
) -> anyhow::Result<(Vec<Listed>, Option<String>)> {
    let secrets = Secrets::open_unchecked(config, store)?;
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
    Ok((out, key_problem))
}

/// What `delete` did.
#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    /// Fields deleted.
    pub fields: u64,
    /// The integrations that used it (they fail as `misconfigured` until it is set again).
    pub used_by: Vec<String>,
}

/// Deletes a stored credential (every field, or one). Without `force`, what the configured
/// master key cannot decrypt is kept (deleting it would lose the secret unnoticed).
pub async fn delete(
    config: &Config,
    catalog: &Catalog,
    store: &Store,
    target: &str,
    field: Option<&str>,
    force: bool,
) -> anyhow::Result<Deleted> {
    let (tenant, name) = check_target(config, catalog, target)?;
    if let Some(f) = field {
        check_field(target, f)?;
    }
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
        let secrets = Secrets::open_unchecked(config, store)?;
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
    let fields = store.delete_credential(tenant, name, field).await?;
    let users = catalog.users_of(target);
    for (i, _) in &users {
        store
            .resolve_issues(i.tenant, i.name, Some(&[IssueKind::TokenExpiring]))
            .await?;
    }
    store
        .resolve_issues(tenant, name, Some(&[IssueKind::TokenExpiring]))
        .await?;
    Ok(Deleted {
        fields,
        used_by: users
            .iter()
            .map(|(i, _)| format!("{}/{}", i.tenant, i.name))
            .collect(),
    })
}
