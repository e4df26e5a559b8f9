//! Which environment variables a tenant's file may name. A tenant names only variables of
//! its own prefix (`ACME_…` for `acme`, or what `[tenants.acme] env_prefix` in config.toml
//! says), never the daemon's own (`SYNCD…`, `CREDENTIALS_DIRECTORY`, the master-key and
//! admin-token variables), and never one under another tenant's longer prefix (`acme` may not
//! name `ACME_EU_…` when `acme-eu` is a tenant too). Otherwise one tenant's file could send
//! another's secret, or the daemon's, to a host of its choosing.

use super::Tenant;
use crate::config::Config;
use std::collections::BTreeMap;

/// The rules, from the daemon's configuration.
#[derive(Debug, Clone, Default)]
pub struct EnvRules {
    prefixes: BTreeMap<String, String>,
    reserved: Vec<String>,
}

/// `ACME_` for `acme`, `ACME_EU_` for `acme-eu`.
pub fn default_prefix(tenant: &str) -> String {
    format!("{}_", tenant.to_ascii_uppercase().replace(['-', '.'], "_"))
}

impl EnvRules {
    /// The prefixes `[tenants.NAME] env_prefix` sets, and the variables the daemon reads
    /// itself (`[credentials] key_env`, `[admin] token_env`).
    pub fn from_config(config: &Config) -> EnvRules {
        EnvRules {
            prefixes: config
                .tenants
                .iter()
                .filter_map(|(t, p)| Some((t.to_ascii_lowercase(), p.env_prefix.clone()?)))
                .collect(),
            reserved: [
                Some(config.credentials.key_env.clone()),
                config.admin.token_env.clone(),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    }

    /// The prefix of `tenant`'s variables.
    pub fn prefix(&self, tenant: &str) -> String {
        self.prefixes
            .get(&tenant.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| default_prefix(tenant))
    }

    /// Whether `tenant` (one of `tenants`) may name `var`; the error says why not.
    pub fn check(&self, tenant: &str, tenants: &[&str], var: &str) -> Result<(), String> {
        if var.to_ascii_uppercase().starts_with("SYNCD")
            || var == "CREDENTIALS_DIRECTORY"
            || self.reserved.iter().any(|r| r == var)
        {
            return Err(format!(
                "`{var}` is one of the daemon's own variables; a tenant file may not name it"
            ));
        }
        let own = self.prefix(tenant);
        if !var.starts_with(&own) {
            return Err(format!(
                "`{var}` is not tenant `{tenant}`'s variable: its variables start with `{own}`"
            ));
        }
        for other in tenants.iter().filter(|o| **o != tenant) {
            let theirs = self.prefix(other);
            if theirs.len() > own.len() && var.starts_with(&theirs) {
                return Err(format!(
                    "`{var}` belongs to tenant `{other}` (its variables start with `{theirs}`)"
                ));
            }
        }
        Ok(())
    }
}

impl Tenant {
    /// Every environment variable the file names: `(where, key, variable)`, where `where`
    /// is the entry (`[[feed]] #1 (`prices`)`) and `key` its key (`auth.password_env`).
    pub fn env_refs(&self) -> Vec<(String, &'static str, &str)> {
        let mut out = Vec::new();
        for (i, f) in self.feeds.iter().enumerate() {
            if let Some(auth) = &f.auth
                && let Some(var) = auth.secret_env()
            {
                let at = format!("[[feed]] #{} (`{}`)", i + 1, f.name);
                out.push((at, auth.env_key(), var));
            }
        }
        for (i, c) in self.crms.iter().enumerate() {
            let at = format!("[[crm]] #{} (`{}`)", i + 1, c.name);
            for (key, var) in [
                ("token_env", &c.token_env),
                ("client_secret_env", &c.client_secret_env),
                ("refresh_token_env", &c.refresh_token_env),
                ("api_key_env", &c.api_key_env),
            ] {
                if let Some(var) = var {
                    out.push((at.clone(), key, var.as_str()));
                }
            }
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            let at = format!("[[webhook]] #{} (`{}`)", i + 1, w.name);
            out.push((at.clone(), "secret_env", w.secret_env.as_str()));
            if let Some(prev) = &w.previous_secret_env {
                out.push((at, "previous_secret_env", prev.as_str()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_names_only_its_own_variables() {
        let rules = EnvRules::default();
        let tenants = ["acme", "acme-eu", "bravo"];
        assert_eq!(default_prefix("acme-eu"), "ACME_EU_");
        assert!(
            rules
                .check("acme", &tenants, "ACME_INGRAM_PASSWORD")
                .is_ok()
        );
        for (var, why) in [
            ("BRAVO_TOKEN", "not tenant `acme`'s"),
            ("ACME_EU_TOKEN", "belongs to tenant `acme-eu`"),
            ("SYNCD__STATE__URL", "daemon's own"),
            ("SYNCD_MASTER_KEY", "daemon's own"),
            ("CREDENTIALS_DIRECTORY", "daemon's own"),
            ("PATH", "not tenant `acme`'s"),
        ] {
            let err = rules.check("acme", &tenants, var).unwrap_err();
            assert!(err.contains(why), "{var}: {err}");
        }
        assert!(rules.check("acme-eu", &tenants, "ACME_EU_TOKEN").is_ok());
    }

    #[test]
    fn the_operator_sets_prefixes_and_the_daemons_own_variables_stay_off_limits() {
        let mut config = Config::default();
        config.tenants.insert(
            "acme".into(),
            crate::config::TenantPolicy {
                env_prefix: Some("AC1_".into()),
            },
        );
        config.admin.token_env = Some("AC1_ADMIN_TOKEN".into());
        let rules = EnvRules::from_config(&config);
        assert!(rules.check("acme", &["acme"], "AC1_PASSWORD").is_ok());
        assert!(rules.check("acme", &["acme"], "ACME_PASSWORD").is_err());
        let err = rules
            .check("acme", &["acme"], "AC1_ADMIN_TOKEN")
            .unwrap_err();
        assert!(err.contains("daemon's own"), "{err}");
    }
}
