//! Every operator action, returning data: the CLI prints it, the admin API answers it as
//! JSON, so both do and say the same. Nothing here prints or parses a command line.
//!
//! - [`integrations`]: status, re-fetch, connection tests.
//! - [`webhooks`]: deliveries, redeliver, replay, enable an endpoint.
//! - [`credentials`]: the encrypted credential store (set, list, delete).
//! - [`tokens`]: admin API tokens (create, list, revoke).
//! - [`companies`]: the companies CRM enrichment works on (import, list).
//! - [`issues`]: the issues log.
//!
//! Actions change the state database or the queue only; the running daemon picks up what
//! they make due.

pub mod companies;
pub mod credentials;
pub mod integrations;
pub mod issues;
pub mod tokens;
pub mod webhooks;

pub use integrations::{Refetch, probe_json, refetch, status};

use chrono::{DateTime, Utc};

/// Why an action was refused, by kind, so that the API can answer with the matching status;
/// its message is the one the CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Unknown delivery, endpoint or integration (also: another tenant's).
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

/// `tenant/name` split in two; an error shows the expected form, e.g. `TENANT/ENDPOINT,
/// e.g. acme/erp` for `what = "ENDPOINT"`, `example = "acme/erp"`.
pub fn split_target<'a>(
    target: &'a str,
    what: &str,
    example: &str,
) -> Result<(&'a str, &'a str), Refused> {
    match target.split_once('/') {
        Some((t, n)) if !t.is_empty() && !n.is_empty() && !n.contains('/') => Ok((t, n)),
        _ => Err(Refused::BadRequest(format!(
            "`{target}`: expected TENANT/{what}, e.g. {example}"
        ))),
    }
}

/// `tenant/integration` split in two.
pub fn split_integration(target: &str) -> Result<(&str, &str), Refused> {
    split_target(target, "INTEGRATION", "acme/ingram-prices")
}

/// `tenant/endpoint` split in two.
pub fn split_endpoint(target: &str) -> Result<(&str, &str), Refused> {
    split_target(target, "ENDPOINT", "acme/erp")
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

/// The tenant an action is about: the one named (which must be in the catalog), or the
/// catalog's only one; `None` when none is named and there are several.
pub fn pick_tenant<'a>(
    catalog: &'a crate::catalog::Catalog,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_times_and_durations_ago() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(since("2h", now).unwrap(), now - chrono::Duration::hours(2));
        assert_eq!(
            since("2026-11-29T08:00:00Z", now).unwrap(),
            now - chrono::Duration::hours(4)
        );
        assert!(since("yesterday", now).is_err());
    }

    #[test]
    fn targets_name_the_expected_form() {
        assert_eq!(split_endpoint("acme/erp").unwrap(), ("acme", "erp"));
        let e = split_integration("acme").unwrap_err().to_string();
        assert_eq!(
            e,
            "`acme`: expected TENANT/INTEGRATION, e.g. acme/ingram-prices"
        );
        assert!(split_endpoint("a/b/c").is_err());
    }
}
