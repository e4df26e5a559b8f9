//! The integration catalog: one `*.toml` per tenant in the catalog directory.
//!
//! ```toml
//! tenant = "acme"
//!
//! [[feed]]
//! name = "ingram-prices"
//! url = "https://feeds.example.com/acme/price.csv"
//! schedule = "every 6h"
//! stale_after = "26h"
//! auth = { kind = "basic", username = "acme", password_env = "ACME_INGRAM_PASSWORD" }
//! [feed.format]
//! delimiter = ";"
//! [feed.columns]
//! sku = "Artikel"
//! price = "Prijs"
//! ```
//!
//! The whole catalog is validated at load: unknown keys, duplicate names, bad schedules and
//! impossible column mappings are errors that name the file and the key.

mod crm;
mod feed;
mod rules;
mod schedule;
mod webhook;

pub use crm::{CrmProvider, CrmSpec};
pub use feed::{
    Archive, Auth, ColumnRef, Columns, FeedFormat, FeedSource, FeedSpec, HostKeyPin, Layout,
    shown_url,
};
pub use rules::{TenantRules, default_prefix, inside};
pub use schedule::Schedule;
pub use webhook::{EVENT_TYPES, WebhookSpec};

use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every tenant file, loaded and checked.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Tenants in file-name order.
    pub tenants: Vec<Tenant>,
}

/// A tenant file that could not be loaded: its tenant is left out, the others run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The tenant the file declares, or (when that cannot be read) the file's name.
    pub tenant: String,
    /// The file.
    pub file: PathBuf,
    /// What is wrong, naming the file and the key.
    pub error: String,
}

impl Broken {
    fn of(file: &Path, error: String) -> Broken {
        let declared = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .and_then(|t| t.get("tenant")?.as_str().map(str::to_string))
            .filter(|t| valid_name(t));
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Broken {
            tenant: declared.unwrap_or(stem),
            file: file.to_path_buf(),
            error,
        }
    }
}

/// One tenant file.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The tenant's id (`tenant = "…"`).
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The directory its files are in (`file:` feeds, `key_file`, `ca_file`).
    pub dir: PathBuf,
    /// Distributor feeds.
    pub feeds: Vec<FeedSpec>,
    /// CRM sources (HubSpot, Apollo.io).
    pub crms: Vec<CrmSpec>,
    /// Webhook endpoints (`[[webhook]]`).
    pub webhooks: Vec<WebhookSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFile {
    tenant: String,
    #[serde(default)]
    feed: Vec<FeedSpec>,
    #[serde(default)]
    webhook: Vec<WebhookSpec>,
    #[serde(default)]
    crm: Vec<CrmSpec>,
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// An environment variable, read at each use.
    Env(String),
    /// A field of a credential in the encrypted store.
    Stored {
        /// `tenant/name`.
        credential: String,
        /// `password`, `token`, `client_secret`, `refresh_token`, `api_key` or `passphrase`.
        field: String,
    },
}

/// Checks a `credential = "tenant/name"` reference: the form, and that a tenant's catalog
/// only refers to its own credentials.
fn check_credential_ref(key: &str, value: &str, tenant: &str) -> Result<(), String> {
    match value.split_once('/') {
        Some((t, n)) if valid_name(t) && valid_name(n) => {
            if t != tenant {
                return Err(format!(
                    "key `{key}`: `{value}` belongs to tenant `{t}`; tenant `{tenant}` may only use its own credentials (`{tenant}/…`)"
                ));
            }
            Ok(())
        }
        _ => Err(format!(
            "key `{key}`: `{value}` must be `tenant/name`, e.g. `{tenant}/ingram`"
        )),
    }
}

/// What kind of integration an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrationKind {
    /// `[[feed]]`
    Feed,
    /// `[[crm]]`
    Crm,
}

impl IntegrationKind {
    /// The name used in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationKind::Feed => "feed",
            IntegrationKind::Crm => "crm",
        }
    }
}

/// A borrowed view of one integration, whatever its kind.
#[derive(Debug, Clone, Copy)]
pub struct IntegrationRef<'a> {
    /// Tenant id.
    pub tenant: &'a str,
    /// Integration name.
    pub name: &'a str,
    /// Its kind.
    pub kind: IntegrationKind,
    /// When it runs.
    pub schedule: &'a Schedule,
    /// Staleness threshold, if any.
    pub stale_after: Option<Duration>,
}

impl Catalog {
    /// Loads the catalog directory `config` names, with its rules for tenants
    /// (`[tenants.NAME]`, the daemon's own variables); any broken file is an error.
    pub fn load_for(config: &crate::config::Config) -> anyhow::Result<Catalog> {
        Catalog::load_with(&config.catalog_dir(), &TenantRules::from_config(config))
    }

    /// Loads every `*.toml` in `dir` with the default rules for tenants; any broken file is
    /// an error.
    pub fn load(dir: &Path) -> anyhow::Result<Catalog> {
        Catalog::load_with(dir, &TenantRules::default())
    }

    /// Loads every `*.toml` in `dir`; any broken file is an error (`syncd check-config`).
    pub fn load_with(dir: &Path, rules: &TenantRules) -> anyhow::Result<Catalog> {
        let (catalog, broken) = Catalog::load_each(dir, rules)?;
        match broken.into_iter().next() {
            Some(b) => Err(anyhow::anyhow!(b.error)),
            None => Ok(catalog),
        }
    }

    /// Loads the catalog directory `config` names file by file: the tenants whose file is
    /// good, and the files that are not. One tenant's broken file takes out that tenant only.
    pub fn load_each_for(config: &crate::config::Config) -> anyhow::Result<(Catalog, Vec<Broken>)> {
        Catalog::load_each(&config.catalog_dir(), &TenantRules::from_config(config))
    }

    /// Loads every `*.toml` in `dir`, in file-name order, each on its own: a file that cannot
    /// be read, parsed or checked (its keys, its environment variables under `rules`, a
    /// tenant declared twice) is returned as [`Broken`] and its tenant left out. Only an
    /// unreadable directory is an error.
    pub fn load_each(dir: &Path, rules: &TenantRules) -> anyhow::Result<(Catalog, Vec<Broken>)> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot read the catalog directory", dir.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut tenants: Vec<Tenant> = Vec::new();
        let mut broken = Vec::new();
        for file in files {
            let tenant = match load_file(&file, dir, rules) {
                Ok(t) => t,
                Err(e) => {
                    broken.push(Broken::of(&file, format!("{e:#}")));
                    continue;
                }
            };
            if let Some(other) = tenants.iter().find(|t| t.name == tenant.name) {
                let error = format!(
                    "{}: key `tenant`: tenant `{}` is already declared in {}",
                    file.display(),
                    tenant.name,
                    other.file.display()
                );
                broken.push(Broken::of(&file, error));
                continue;
            }
            tenants.push(tenant);
        }
        let names: Vec<String> = tenants.iter().map(|t| t.name.clone()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        tenants.retain(|t| {
            let refused = t.env_refs().into_iter().find_map(|(at, key, var)| {
                let e = rules.check(&t.name, &names, var).err()?;
                Some(format!("{}: {at}: key `{key}`: {e}", t.file.display()))
            });
            match refused {
                Some(error) => {
                    broken.push(Broken {
                        tenant: t.name.clone(),
                        file: t.file.clone(),
                        error,
                    });
                    false
                }
                None => true,
            }
        });
        broken.sort_by(|a, b| a.file.cmp(&b.file));
        Ok((Catalog { tenants }, broken))
    }

    /// Every integration of every tenant.
    pub fn integrations(&self) -> impl Iterator<Item = IntegrationRef<'_>> {
        self.tenants.iter().flat_map(|t| {
            let feeds = t.feeds.iter().map(move |f| IntegrationRef {
                tenant: &t.name,
                name: &f.name,
                kind: IntegrationKind::Feed,
                schedule: &f.schedule,
                stale_after: f.stale_after,
            });
            let crms = t.crms.iter().map(move |c| IntegrationRef {
                tenant: &t.name,
                name: &c.name,
                kind: IntegrationKind::Crm,
                schedule: &c.schedule,
                stale_after: c.stale_after,
            });
            feeds.chain(crms)
        })
    }

    /// The feed `tenant/name`, if the catalog has it.
    pub fn feed(&self, tenant: &str, name: &str) -> Option<&FeedSpec> {
        self.tenants
            .iter()
            .find(|t| t.name == tenant)?
            .feeds
            .iter()
            .find(|f| f.name == name)
    }

    /// The CRM source `tenant/name`, if the catalog has it.
    pub fn crm(&self, tenant: &str, name: &str) -> Option<&CrmSpec> {
        self.tenants
            .iter()
            .find(|t| t.name == tenant)?
            .crms
            .iter()
            .find(|c| c.name == name)
    }

    /// The environment variables `tenant/name` reads its secrets from.
    pub fn secret_envs(&self, tenant: &str, name: &str) -> Vec<&str> {
        if let Some(feed) = self.feed(tenant, name) {
            return feed.auth.iter().filter_map(|a| a.secret_env()).collect();
        }
        self.crm(tenant, name)
            .map(CrmSpec::secret_envs)
            .unwrap_or_default()
    }

    /// Every secret `tenant/name` uses, wherever it comes from.
    pub fn secret_refs(&self, tenant: &str, name: &str) -> Vec<SecretRef> {
        if let Some(feed) = self.feed(tenant, name) {
            return feed.auth.iter().filter_map(Auth::secret_ref).collect();
        }
        self.crm(tenant, name)
            .map(|c| {
                c.secret_fields()
                    .iter()
                    .filter_map(|f| c.secret_ref(f))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The stored credential `tenant/name` uses, if any.
    pub fn credential_of(&self, tenant: &str, name: &str) -> Option<&str> {
        if let Some(feed) = self.feed(tenant, name) {
            return feed.auth.as_ref().and_then(Auth::credential);
        }
        self.crm(tenant, name)?.credential.as_deref()
    }

    /// The integrations that use the stored credential `credential` (`tenant/name`), with
    /// the fields each one reads.
    pub fn users_of(&self, credential: &str) -> Vec<(IntegrationRef<'_>, Vec<String>)> {
        self.integrations()
            .filter(|i| self.credential_of(i.tenant, i.name) == Some(credential))
            .map(|i| {
                let fields = self
                    .secret_refs(i.tenant, i.name)
                    .into_iter()
                    .filter_map(|r| match r {
                        SecretRef::Stored { field, .. } => Some(field),
                        SecretRef::Env(_) => None,
                    })
                    .collect();
                (i, fields)
            })
            .collect()
    }

    /// Looks up `tenant/name` and says which part is unknown.
    pub fn integration(&self, tenant: &str, name: &str) -> Result<IntegrationRef<'_>, String> {
        if !self.tenants.iter().any(|t| t.name == tenant) {
            return Err(format!("unknown tenant `{tenant}`"));
        }
        self.integrations()
            .find(|i| i.tenant == tenant && i.name == name)
            .ok_or_else(|| format!("tenant `{tenant}` has no integration named `{name}`"))
    }

    /// Environment variables the catalog reads secrets from that are not set now, key files
    /// that cannot be read and SFTP feeds without a pinned host key.
    pub fn missing_secrets(&self) -> Vec<String> {
        let mut missing = BTreeSet::new();
        for i in self.integrations() {
            for env in self.secret_envs(i.tenant, i.name) {
                if std::env::var_os(env).is_none() {
                    missing.insert(format!("{}/{}: {env} is not set", i.tenant, i.name));
                }
            }
            if let Some(feed) = self.feed(i.tenant, i.name) {
                if let Some(Auth::SshKey { key_file, .. }) = &feed.auth
                    && std::fs::File::open(key_file).is_err()
                {
                    missing.insert(format!(
                        "{}/{}: key file {} is not readable",
                        i.tenant,
                        i.name,
                        key_file.display()
                    ));
                }
                if feed.source.is_sftp() && feed.host_key.is_none() {
                    missing.insert(format!(
                        "{}/{}: no `host_key` is pinned (`syncd test-connection` shows the server's)",
                        i.tenant, i.name
                    ));
                }
            }
        }
        for t in &self.tenants {
            webhook::missing_secrets(&t.name, &t.webhooks, &mut missing);
        }
        missing.into_iter().collect()
    }
}

/// Whether `s` is a valid tenant or integration name: 1-64 letters, digits, `-`, `_`, `.`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn load_file(file: &Path, catalog_dir: &Path, rules: &TenantRules) -> anyhow::Result<Tenant> {
    let shown = file.display();
    let text = std::fs::read_to_string(file).with_context(|| format!("{shown}: cannot read"))?;
    let parsed: TenantFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{shown}: {}", e.to_string().trim()))?;
    if !valid_name(&parsed.tenant) {
        bail!(
            "{shown}: key `tenant`: `{}` must be 1-64 letters, digits, '-', '_' or '.'",
            parsed.tenant
        );
    }
    let mut parsed = parsed;
    // Every file a tenant names is inside its own directory.
    let dir = rules.dir(&parsed.tenant, catalog_dir);
    let mut seen = BTreeSet::new();
    for (i, feed) in parsed.feed.iter_mut().enumerate() {
        let at = format!("{shown}: [[feed]] #{} (`{}`)", i + 1, feed.name);
        feed.dir = dir.clone();
        feed.url = feed::resolve_relative_file_url(&feed.url, &dir);
        if let Some(ca) = &feed.ca_file {
            let ca = inside(&dir, ca).map_err(|e| anyhow::anyhow!("{at}: key `ca_file`: {e}"))?;
            feed.ca_file = Some(ca);
        }
        if let Some(Auth::SshKey { key_file, .. }) = &mut feed.auth {
            *key_file = inside(&dir, key_file)
                .map_err(|e| anyhow::anyhow!("{at}: key `auth.key_file`: {e}"))?;
        }
        if !valid_name(&feed.name) {
            bail!("{at}: key `name` must be 1-64 letters, digits, '-', '_' or '.'");
        }
        if !seen.insert(feed.name.clone()) {
            bail!(
                "{at}: key `name`: `{}` is used twice in this tenant",
                feed.name
            );
        }
        feed.source =
            FeedSource::parse(&feed.url).map_err(|e| anyhow::anyhow!("{at}: key `url`: {e}"))?;
        if let FeedSource::File(path) = &feed.source {
            inside(&dir, path).map_err(|e| anyhow::anyhow!("{at}: key `url`: {e}"))?;
        }
        if let Some(auth) = &feed.auth {
            auth.check().map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            if let Some(c) = auth.credential() {
                check_credential_ref("auth.credential", c, &parsed.tenant)
                    .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            }
        }
        feed::check_columns(feed).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        feed::check_ssh(feed).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        if feed.format.decimal != b'.' && feed.format.decimal != b',' {
            bail!("{at}: key `format.decimal` must be \".\" or \",\"");
        }
        if feed.format.decimal == feed.format.delimiter {
            bail!("{at}: key `format.decimal` must differ from `format.delimiter`");
        }
    }
    for (i, crm) in parsed.crm.iter().enumerate() {
        let at = format!("{shown}: [[crm]] #{} (`{}`)", i + 1, crm.name);
        if !valid_name(&crm.name) {
            bail!("{at}: key `name` must be 1-64 letters, digits, '-', '_' or '.'");
        }
        if !seen.insert(crm.name.clone()) {
            bail!(
                "{at}: key `name`: `{}` is used twice in this tenant",
                crm.name
            );
        }
        crm.check().map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        if let Some(c) = &crm.credential {
            check_credential_ref("credential", c, &parsed.tenant)
                .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        }
    }
    webhook::validate(&shown.to_string(), &parsed.webhook, &seen)?;
    Ok(Tenant {
        name: parsed.tenant,
        file: file.to_path_buf(),
        dir,
        feeds: parsed.feed,
        crms: parsed.crm,
        webhooks: parsed.webhook,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn the_documented_example_loads_as_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("acme.toml"),
            r#"tenant = "acme"

[[feed]]
name = "ingram-prices"
url = "https://feeds.example.com/acme/price.csv"
schedule = "every 6h"            # or a 5/6-field cron expression
stale_after = "26h"
auth = { kind = "basic", username = "acme", password_env = "ACME_INGRAM_PASSWORD" }
[feed.format]
delimiter = ";"                  # default ","
header = true                    # false: columns are 1-based positions
decimal = ","                    # default "."
[feed.columns]
sku = "Artikel"                  # or sku = 1 when header = false
price = "Prijs"
stock = "Voorraad"               # optional
"#,
        )
        .unwrap();
        let catalog = Catalog::load(dir.path()).unwrap();
        let feed = catalog.feed("acme", "ingram-prices").unwrap();
        assert_eq!(feed.format.delimiter, b';');
        assert_eq!(feed.format.decimal, b',');
        assert_eq!(feed.columns.stock, Some(ColumnRef::Name("Voorraad".into())));
        assert_eq!(feed.stale_after, Some(Duration::from_secs(26 * 3600)));
        assert!(matches!(&feed.auth, Some(Auth::Basic { username, .. }) if username == "acme"));
    }

    #[test]
    fn a_broken_file_leaves_out_its_tenant_only() {
        let dir = tempfile::tempdir().unwrap();
        let feed = "[[feed]]\nname = \"p\"\nurl = \"https://h/p.csv\"\nschedule = \"every 1h\"\n[feed.columns]\nsku = 1\nprice = 2\n";
        std::fs::write(
            dir.path().join("acme.toml"),
            format!("tenant = \"acme\"\n{feed}"),
        )
        .unwrap();
        std::fs::write(dir.path().join("b.toml"), "tenant = \"bravo\"\nfeeed = 1\n").unwrap();
        std::fs::write(
            dir.path().join("c.toml"),
            format!("tenant = \"acme\"\n{feed}"),
        )
        .unwrap();
        std::fs::write(dir.path().join("d.toml"), "not toml at all [").unwrap();
        let (catalog, broken) = Catalog::load_each(dir.path(), &TenantRules::default()).unwrap();
        let names: Vec<&str> = catalog.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["acme"]);
        let who: Vec<&str> = broken.iter().map(|b| b.tenant.as_str()).collect();
        assert_eq!(
            who,
            ["bravo", "acme", "d"],
            "declared name, else the file's"
        );
        assert!(broken[0].error.contains("b.toml") && broken[0].error.contains("feeed"));
        assert!(broken[1].error.contains("already declared"));
        let strict = Catalog::load(dir.path()).unwrap_err().to_string();
        assert!(strict.contains("b.toml"), "{strict}");
    }

    #[test]
    fn every_ticks_are_stable_and_spread_per_integration() {
        let s: Schedule = "every 6h".parse().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
        let a = s.prev_tick("acme/a", now).unwrap();
        assert!(a <= now && now - a < chrono::Duration::hours(6));
        assert_eq!(
            s.prev_tick("acme/a", now),
            Some(a),
            "same tick on every call"
        );
        assert_eq!(
            s.next_tick("acme/a", a).unwrap() - a,
            chrono::Duration::hours(6)
        );
        assert_ne!(
            s.prev_tick("acme/b", now),
            Some(a),
            "another integration, another phase"
        );
    }

    #[test]
    fn cron_accepts_five_and_six_fields() {
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 12, 7, 0).unwrap();
        let s: Schedule = "*/15 * * * *".parse().unwrap();
        assert_eq!(
            s.prev_tick("k", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap()
        );
        let s: Schedule = "30 0 3 * * *".parse().unwrap();
        assert_eq!(
            s.next_tick("k", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 30, 3, 0, 30).unwrap()
        );
        assert!("every soon".parse::<Schedule>().is_err());
        assert!("* * *".parse::<Schedule>().is_err());
    }
}
