//! What a tenant's file may name: its own environment variables and its own files.
//!
//! **Variables.** A tenant names only variables of its own prefix (`ACME_…` for `acme`, or what `[tenants.acme] env_prefix` in config.toml
//! says), never the daemon's own (`SYNCD…`, `CREDENTIALS_DIRECTORY`, the master-key and
//! admin-token variables), and never one under another tenant's longer prefix (`acme` may not
//! name `ACME_EU_…` when `acme-eu` is a tenant too). Otherwise one tenant's file could send
//! another's secret, or the daemon's, to a host of its choosing.
//!
//! **Files.** A `file:` feed, a `key_file` and a `ca_file` resolve inside the tenant's own
//! directory: `<catalog dir>/<tenant>/`, or what `[tenants.acme] dir` says. A relative path
//! is taken from there; `..` or an absolute path that leaves it is refused at load, and the
//! real path (symlinks followed) is checked again each time a file is opened
//! (`feeds::confined`), so a symlink planted in the directory cannot leave it either.

use super::Tenant;
use crate::config::Config;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The rules, from the daemon's configuration.
#[derive(Debug, Clone, Default)]
pub struct TenantRules {
    prefixes: BTreeMap<String, String>,
    reserved: Vec<String>,
    dirs: BTreeMap<String, PathBuf>,
}

/// `ACME_` for `acme`, `ACME_EU_` for `acme-eu`.
pub fn default_prefix(tenant: &str) -> String {
    format!("{}_", tenant.to_ascii_uppercase().replace(['-', '.'], "_"))
}

impl TenantRules {
    /// The prefixes `[tenants.NAME] env_prefix` sets, and the variables the daemon reads
    /// itself (`[credentials] key_env`, `[admin] token_env`).
    pub fn from_config(config: &Config) -> TenantRules {
        TenantRules {
            prefixes: config
                .tenants
                .iter()
                .filter_map(|(t, p)| Some((t.to_ascii_lowercase(), p.env_prefix.clone()?)))
                .collect(),
            dirs: config
                .tenants
                .iter()
                .filter_map(|(t, p)| {
                    Some((t.to_ascii_lowercase(), config.resolve(p.dir.as_ref()?)))
                })
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

    /// The directory of `tenant`'s files: `[tenants.NAME] dir`, else `catalog_dir/NAME`,
    /// absolute and without `.` or `..`.
    pub fn dir(&self, tenant: &str, catalog_dir: &Path) -> PathBuf {
        let dir = self
            .dirs
            .get(&tenant.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| catalog_dir.join(tenant));
        normalize(&std::path::absolute(&dir).unwrap_or(dir))
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

/// `path` without `.` and `..` components (lexically; `..` at the root stays at the root).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `path` (relative: to `dir`) as an absolute path inside `dir`, or why it is not.
pub fn inside(dir: &Path, path: &Path) -> Result<PathBuf, String> {
    let full = normalize(&dir.join(path));
    if full.starts_with(dir) && full != dir {
        Ok(full)
    } else {
        Err(format!(
            "`{}` is outside the tenant's directory {} (files are named relative to it)",
            path.display(),
            dir.display()
        ))
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
        let rules = TenantRules::default();
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
    fn a_file_is_inside_the_tenants_directory_or_refused() {
        let dir = Path::new("/srv/syncd/jobs/acme");
        assert_eq!(inside(dir, Path::new("p.csv")), Ok(dir.join("p.csv")));
        assert_eq!(
            inside(dir, Path::new("in/./x/../p.csv")),
            Ok(dir.join("in/p.csv"))
        );
        assert_eq!(
            inside(dir, Path::new("/srv/syncd/jobs/acme/p.csv")),
            Ok(dir.join("p.csv"))
        );
        for escape in [
            "../bravo/p.csv",
            "../../config.toml",
            "/run/credentials/syncd.service/master.key",
            "/srv/syncd/jobs/acme-eu/p.csv",
            ".",
        ] {
            let err = inside(dir, Path::new(escape)).unwrap_err();
            assert!(
                err.contains("outside the tenant's directory"),
                "{escape}: {err}"
            );
        }
        let rules = TenantRules::default();
        assert_eq!(rules.dir("acme", Path::new("/srv/syncd/jobs/")), dir);
    }

    #[test]
    fn the_operator_sets_prefixes_and_the_daemons_own_variables_stay_off_limits() {
        let mut config = Config::default();
        config.tenants.insert(
            "acme".into(),
            crate::config::TenantPolicy {
                env_prefix: Some("AC1_".into()),
                dir: None,
            },
        );
        config.admin.token_env = Some("AC1_ADMIN_TOKEN".into());
        let rules = TenantRules::from_config(&config);
        assert!(rules.check("acme", &["acme"], "AC1_PASSWORD").is_ok());
        assert!(rules.check("acme", &["acme"], "ACME_PASSWORD").is_err());
        let err = rules
            .check("acme", &["acme"], "AC1_ADMIN_TOKEN")
            .unwrap_err();
        assert!(err.contains("daemon's own"), "{err}");
    }
}
