//! `[[webhook]]` entries of a tenant file: where a tenant wants its events.
//!
//! ```toml
//! [[webhook]]
//! name = "erp"
//! url = "https://erp.acme.example/hooks/syncd"
//! events = ["price.changed", "stock.changed"]   # or ["*"]
//! secret_env = "ACME_ERP_WEBHOOK_SECRET"         # whsec_…
//! previous_secret_env = "ACME_ERP_WEBHOOK_SECRET_OLD"  # optional, during a rotation
//! max_in_flight = 4                              # optional
//! ```

use super::{Catalog, valid_name};
use serde::Deserialize;
use std::collections::BTreeSet;

/// Every event type syncd emits.
pub const EVENT_TYPES: &[&str] = &["price.changed", "stock.changed", "company.enriched"];

/// One webhook endpoint (`[[webhook]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Unique within the tenant; `TENANT/NAME` on the command line.
    pub name: String,
    /// `https://…` (or `http://…`) on a public address.
    pub url: String,
    /// Event types to receive; `*` for all.
    pub events: Vec<String>,
    /// Environment variable holding the `whsec_…` signing secret.
    pub secret_env: String,
    /// During a rotation: the variable holding the previous secret; both sign every message.
    #[serde(default)]
    pub previous_secret_env: Option<String>,
    /// At most this many deliveries to this endpoint at once (per node).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

impl WebhookSpec {
    /// Whether the endpoint receives events of `event_type`.
    pub fn subscribes(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e == "*" || e == event_type)
    }
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks the `[[webhook]]` entries of one tenant file (`shown`). `taken` holds the names
/// of the tenant's other integrations: issues are filed per name, so they must not clash.
pub(super) fn validate(
    shown: &str,
    hooks: &[WebhookSpec],
    taken: &BTreeSet<String>,
) -> anyhow::Result<()> {
    let mut seen = BTreeSet::new();
    for (i, hook) in hooks.iter().enumerate() {
        let at = format!("{shown}: [[webhook]] #{} (`{}`)", i + 1, hook.name);
        let fail = |msg: String| anyhow::anyhow!("{at}: {msg}");
        if !valid_name(&hook.name) {
            return Err(fail(
                "key `name` must be 1-64 letters, digits, '-', '_' or '.'".into(),
            ));
        }
        if !seen.insert(hook.name.clone()) || taken.contains(&hook.name) {
            return Err(fail(format!(
                "key `name`: `{}` is used twice in this tenant",
                hook.name
            )));
        }
        check_url(&hook.url).map_err(|e| fail(format!("key `url`: {e}")))?;
        if hook.events.is_empty() {
            return Err(fail(format!(
                "key `events` must list at least one of {} (or \"*\")",
                EVENT_TYPES.join(", ")
            )));
        }
        for e in &hook.events {
            if e != "*" && !EVENT_TYPES.contains(&e.as_str()) {
                return Err(fail(format!(
                    "key `events`: `{e}` is not an event type (use {} or \"*\")",
                    EVENT_TYPES.join(", ")
                )));
            }
        }
        if !valid_env_name(&hook.secret_env) {
            return Err(fail(
                "key `secret_env` must name an environment variable (letters, digits, '_')".into(),
            ));
        }
        if let Some(prev) = &hook.previous_secret_env
            && (!valid_env_name(prev) || *prev == hook.secret_env)
        {
            return Err(fail(
                "key `previous_secret_env` must name another environment variable than `secret_env`"
                    .into(),
            ));
        }
        if hook.max_in_flight == Some(0) {
            return Err(fail("key `max_in_flight` must be at least 1".into()));
        }
    }
    Ok(())
}

fn check_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme `{}` is not supported (use https or http)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{raw}` has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "credentials do not belong in a webhook URL; receivers verify the signature".into(),
        );
    }
    Ok(())
}

/// Environment variables of `[[webhook]]` secrets that are not set now, as
/// `tenant/name: VAR is not set`.
pub(super) fn missing_secrets(tenant: &str, hooks: &[WebhookSpec], out: &mut BTreeSet<String>) {
    for h in hooks {
        for var in std::iter::once(&h.secret_env).chain(h.previous_secret_env.iter()) {
            if std::env::var_os(var).is_none() {
                out.insert(format!("{tenant}/{}: {var} is not set", h.name));
            }
        }
    }
}

impl Catalog {
    /// The webhook endpoint `tenant/name`, if the catalog has it.
    pub fn webhook(&self, tenant: &str, name: &str) -> Option<&WebhookSpec> {
        self.tenants
            .iter()
            .find(|t| t.name == tenant)?
            .webhooks
            .iter()
            .find(|w| w.name == name)
    }

    /// Every endpoint of `tenant`.
    pub fn webhooks_of(&self, tenant: &str) -> &[WebhookSpec] {
        self.tenants
            .iter()
            .find(|t| t.name == tenant)
            .map(|t| t.webhooks.as_slice())
            .unwrap_or(&[])
    }

    /// Looks up `tenant/name` and says which part is unknown.
    pub fn webhook_or_err(&self, tenant: &str, name: &str) -> Result<&WebhookSpec, String> {
        if !self.tenants.iter().any(|t| t.name == tenant) {
            return Err(format!("unknown tenant `{tenant}`"));
        }
        self.webhook(tenant, name)
            .ok_or_else(|| format!("tenant `{tenant}` has no [[webhook]] named `{name}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> anyhow::Result<Catalog> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("acme.toml"), text).unwrap();
        Catalog::load(dir.path())
    }

    const HOOK: &str = r#"tenant = "acme"
[[webhook]]
name = "erp"
url = "https://erp.acme.example/hooks"
events = ["price.changed", "stock.changed"]
secret_env = "ACME_ERP_SECRET"
max_in_flight = 4
"#;

    #[test]
    fn an_endpoint_loads_with_its_subscriptions() {
        let catalog = load(HOOK).unwrap();
        let hook = catalog.webhook("acme", "erp").unwrap();
        assert!(hook.subscribes("price.changed"));
        assert!(!hook.subscribes("company.enriched"));
        assert_eq!(hook.max_in_flight, Some(4));
    }

    #[test]
    fn mistakes_name_the_file_and_the_key() {
        for (bad, key) in [
            (
                HOOK.replace("price.changed\", ", "price.change\", "),
                "key `events`",
            ),
            (HOOK.replace("https://erp", "ftp://erp"), "key `url`"),
            (
                HOOK.replace("https://erp", "https://user:pw@erp"),
                "key `url`",
            ),
            (
                HOOK.replace("ACME_ERP_SECRET", "whsec_abc+="),
                "key `secret_env`",
            ),
            (
                HOOK.replace("max_in_flight = 4", "max_in_flight = 0"),
                "key `max_in_flight`",
            ),
            (HOOK.replace("max_in_flight = 4", "retries = 4"), "retries"),
            (
                format!("{HOOK}{}", &HOOK[HOOK.find("[[webhook]]").unwrap()..]),
                "key `name`",
            ),
        ] {
            let err = format!("{:#}", load(&bad).unwrap_err());
            assert!(err.contains("acme.toml"), "{err}");
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
