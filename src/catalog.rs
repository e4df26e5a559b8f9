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

use crate::duration;
use anyhow::{Context, bail};
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Every tenant file, loaded and checked.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Tenants in file-name order.
    pub tenants: Vec<Tenant>,
}

/// One tenant file.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The tenant's id (`tenant = "…"`).
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Distributor feeds.
    pub feeds: Vec<FeedSpec>,
    /// CRM sources (HubSpot, Apollo.io).
    pub crms: Vec<CrmSpec>,
    /// Webhook endpoints (`[[webhook]]`).
    pub webhooks: Vec<crate::webhooks::WebhookSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFile {
    tenant: String,
    #[serde(default)]
    feed: Vec<FeedSpec>,
    #[serde(default)]
    webhook: Vec<crate::webhooks::WebhookSpec>,
    #[serde(default)]
    crm: Vec<CrmSpec>,
}

/// A CRM source (`[[crm]]`): HubSpot companies and contacts, or Apollo.io enrichment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmSpec {
    /// Unique within the tenant (across feeds too).
    pub name: String,
    /// Which service.
    pub provider: CrmProvider,
    /// When it runs.
    pub schedule: Schedule,
    /// A `stale_data` issue is raised when the last success is older than this.
    #[serde(default, with = "duration::option")]
    pub stale_after: Option<Duration>,
    /// The API's base URL (default: the provider's public one).
    #[serde(default)]
    pub base_url: Option<String>,
    /// HubSpot private app: environment variable holding the access token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// HubSpot OAuth: the app's client id (not a secret).
    #[serde(default)]
    pub client_id: Option<String>,
    /// HubSpot OAuth: environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// HubSpot OAuth: environment variable holding the refresh token granted at install.
    #[serde(default)]
    pub refresh_token_env: Option<String>,
    /// Apollo.io: environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// A stored credential (`"tenant/name"`, see `syncd credentials set`) instead of the
    /// `…_env` keys; its fields are `token` (HubSpot private app), `client_secret` and
    /// `refresh_token` (HubSpot OAuth, with `client_id` in the catalog) or `api_key` (Apollo).
    #[serde(default)]
    pub credential: Option<String>,
}

/// CRM providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrmProvider {
    /// HubSpot CRM (private app token or OAuth).
    Hubspot,
    /// Apollo.io organization enrichment (API key).
    Apollo,
}

impl CrmProvider {
    /// The name used in the catalog and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            CrmProvider::Hubspot => "hubspot",
            CrmProvider::Apollo => "apollo",
        }
    }

    /// The public API base URL.
    pub fn default_base_url(self) -> &'static str {
        match self {
            CrmProvider::Hubspot => "https://api.hubapi.com",
            CrmProvider::Apollo => "https://api.apollo.io",
        }
    }
}

impl CrmSpec {
    /// The API base URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.base_url
            .as_deref()
            .unwrap_or(self.provider.default_base_url())
            .trim_end_matches('/')
    }

    /// Every environment variable this source reads a secret from.
    pub fn secret_envs(&self) -> Vec<&str> {
        [
            &self.token_env,
            &self.client_secret_env,
            &self.refresh_token_env,
            &self.api_key_env,
        ]
        .into_iter()
        .filter_map(|e| e.as_deref())
        .collect()
    }

    /// Whether HubSpot is reached with OAuth (a `client_id`) rather than a private app token.
    pub fn is_oauth(&self) -> bool {
        self.client_id.is_some()
    }

    /// The secret fields this source needs, by their stored-credential names.
    pub fn secret_fields(&self) -> &'static [&'static str] {
        match self.provider {
            CrmProvider::Hubspot if self.is_oauth() => &["client_secret", "refresh_token"],
            CrmProvider::Hubspot => &["token"],
            CrmProvider::Apollo => &["api_key"],
        }
    }

    /// Where the secret `field` (`token`, `client_secret`, `refresh_token`, `api_key`) comes
    /// from: the stored credential, or the environment variable its `…_env` key names.
    pub fn secret_ref(&self, field: &str) -> Option<SecretRef> {
        if let Some(credential) = &self.credential {
            return Some(SecretRef::Stored {
                credential: credential.clone(),
                field: field.to_string(),
            });
        }
        let env = match field {
            "token" => &self.token_env,
            "client_secret" => &self.client_secret_env,
            "refresh_token" => &self.refresh_token_env,
            "api_key" => &self.api_key_env,
            _ => &None,
        };
        env.clone().map(SecretRef::Env)
    }

    fn check(&self) -> Result<(), String> {
        if self.credential.is_some() {
            if let Some(env) = [
                ("token_env", &self.token_env),
                ("client_secret_env", &self.client_secret_env),
                ("refresh_token_env", &self.refresh_token_env),
                ("api_key_env", &self.api_key_env),
            ]
            .iter()
            .find_map(|(k, v)| v.is_some().then_some(*k))
            {
                return Err(format!(
                    "key `credential` replaces the `…_env` keys: give either `credential` or `{env}`, not both"
                ));
            }
            if self.provider == CrmProvider::Apollo && self.client_id.is_some() {
                return Err(
                    "Apollo takes only `credential` (field `api_key`), no `client_id`".into(),
                );
            }
            return self.check_base_url();
        }
        let oauth = [
            ("client_id", self.client_id.is_some()),
            ("client_secret_env", self.client_secret_env.is_some()),
            ("refresh_token_env", self.refresh_token_env.is_some()),
        ];
        let oauth_count = oauth.iter().filter(|(_, set)| *set).count();
        match self.provider {
            CrmProvider::Hubspot => {
                if self.api_key_env.is_some() {
                    return Err(
                        "key `api_key_env` is for Apollo; HubSpot takes `token_env` (private app) or `client_id`, `client_secret_env` and `refresh_token_env` (OAuth)".into(),
                    );
                }
                match (self.token_env.is_some(), oauth_count) {
                    (true, 0) | (false, 3) => {}
                    (true, _) => {
                        return Err("give either `token_env` (private app) or the OAuth keys `client_id`, `client_secret_env`, `refresh_token_env`, not both".into());
                    }
                    (false, 0) => {
                        return Err("HubSpot needs `token_env` (private app) or `client_id`, `client_secret_env` and `refresh_token_env` (OAuth)".into());
                    }
                    (false, _) => {
                        let missing: Vec<&str> = oauth
                            .iter()
                            .filter(|(_, set)| !set)
                            .map(|(k, _)| *k)
                            .collect();
                        return Err(format!(
                            "OAuth also needs key(s) {}",
                            missing
                                .iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
            }
            CrmProvider::Apollo => {
                if self.api_key_env.is_none() {
                    return Err("Apollo needs `api_key_env`".into());
                }
                if self.token_env.is_some() || oauth_count > 0 {
                    return Err("Apollo takes only `api_key_env` (no token or OAuth keys)".into());
                }
            }
        }
        self.check_base_url()?;
        for env in self.secret_envs() {
            if env.is_empty() {
                return Err("an `…_env` key names an empty environment variable".into());
            }
        }
        Ok(())
    }

    fn check_base_url(&self) -> Result<(), String> {
        if let Some(base) = &self.base_url {
            let url = url::Url::parse(base)
                .map_err(|e| format!("key `base_url`: `{base}` is not a URL ({e})"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!(
                    "key `base_url`: `{base}` must be an http(s) URL with a host"
                ));
            }
        }
        Ok(())
    }
}

/// A distributor price/stock feed (`[[feed]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSpec {
    /// Unique within the tenant; used as `TENANT/NAME` on the command line.
    pub name: String,
    /// `https://…`, `http://…`, `ftp://…`, `ftps://…`, `sftp://…` or `file:///…` (a directory a
    /// distributor pushes files into).
    pub url: String,
    /// `every 6h` or a 5/6-field cron expression (UTC).
    pub schedule: Schedule,
    /// A `stale_data` issue is raised when the last success is older than this.
    #[serde(default, with = "duration::option")]
    pub stale_after: Option<Duration>,
    /// Credentials, read from the environment at run time (never stored in the catalog).
    #[serde(default)]
    pub auth: Option<Auth>,
    /// How the file is laid out.
    #[serde(default)]
    pub format: FeedFormat,
    /// Which columns hold what.
    pub columns: Columns,
    /// FTPS: a PEM file of CA certificates to trust besides the system's (relative to the
    /// catalog file), for distributors with a private CA or a self-signed certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SFTP: the server's public key as in `known_hosts` (`ssh-ed25519 AAAA…`) or its
    /// fingerprint (`SHA256:…`). Without it an SFTP feed refuses to connect and names the
    /// key the server offered.
    #[serde(default)]
    pub host_key: Option<String>,
    /// Fraction of unreadable rows tolerated (default: `[feeds] max_error_rate`).
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// Largest tolerated drop in row count against the last good import, as a fraction
    /// (default: `[feeds] max_shrink`); a bigger drop is `invalid_feed` unless forced.
    #[serde(default)]
    pub max_shrink: Option<f64>,
}

impl FeedSpec {
    /// Whether the file carries action codes (a delta) instead of the whole list.
    pub fn is_delta(&self) -> bool {
        self.columns.action.is_some()
    }

    /// The archive format, with `auto` resolved from the URL.
    pub fn archive(&self) -> Archive {
        match self.format.archive {
            Archive::Auto => {
                let path = self
                    .url
                    .split(['?', '#'])
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if path.ends_with(".zip") {
                    Archive::Zip
                } else if path.ends_with(".gz") {
                    Archive::Gzip
                } else {
                    Archive::None
                }
            }
            other => other,
        }
    }
}

/// Feed credentials; the secret itself comes from the named environment variable or from
/// the encrypted credential store (`credential = "tenant/name"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    /// HTTP Basic (and FTP login).
    Basic {
        /// The login name.
        username: String,
        /// Environment variable holding the password.
        #[serde(default)]
        password_env: Option<String>,
        /// Stored credential holding the password (field `password`).
        #[serde(default)]
        credential: Option<String>,
    },
    /// `Authorization: Bearer …`.
    Bearer {
        /// Environment variable holding the token.
        #[serde(default)]
        token_env: Option<String>,
        /// Stored credential holding the token (field `token`).
        #[serde(default)]
        credential: Option<String>,
    },
    /// SFTP with a private key (OpenSSH or PuTTY format).
    #[serde(rename = "ssh_key")]
    SshKey {
        /// The login name.
        username: String,
        /// The private key file (relative to the catalog file).
        key_file: PathBuf,
        /// Environment variable holding the key's passphrase, if it is encrypted.
        #[serde(default)]
        passphrase_env: Option<String>,
        /// Stored credential holding the key's passphrase (field `passphrase`), if it is
        /// encrypted.
        #[serde(default)]
        credential: Option<String>,
    },
}

impl Auth {
    /// The environment variable the secret is read from, if it comes from the environment.
    pub fn secret_env(&self) -> Option<&str> {
        match self {
            Auth::Basic { password_env, .. } => password_env.as_deref(),
            Auth::Bearer { token_env, .. } => token_env.as_deref(),
            Auth::SshKey { passphrase_env, .. } => passphrase_env.as_deref(),
        }
    }

    /// The stored credential's field that holds this secret.
    pub fn field(&self) -> &'static str {
        match self {
            Auth::Basic { .. } => "password",
            Auth::Bearer { .. } => "token",
            Auth::SshKey { .. } => "passphrase",
        }
    }

    /// The stored credential this `auth` reads its secret from, if any.
    pub fn credential(&self) -> Option<&str> {
        match self {
            Auth::Basic { credential, .. }
            | Auth::Bearer { credential, .. }
            | Auth::SshKey { credential, .. } => credential.as_deref(),
        }
    }

    /// Where the secret comes from; `None` for an `ssh_key` without a passphrase.
    pub fn secret_ref(&self) -> Option<SecretRef> {
        match (self.credential(), self.secret_env()) {
            (Some(c), _) => Some(SecretRef::Stored {
                credential: c.to_string(),
                field: self.field().to_string(),
            }),
            (None, Some(env)) => Some(SecretRef::Env(env.to_string())),
            // A key file without a passphrase has no secret besides the file itself.
            (None, None) if matches!(self, Auth::SshKey { .. }) => None,
            (None, None) => Some(SecretRef::Env(String::new())),
        }
    }

    fn check(&self) -> Result<(), String> {
        let (env_key, env, credential) = match self {
            Auth::Basic {
                password_env,
                credential,
                ..
            } => ("password_env", password_env, credential),
            Auth::Bearer {
                token_env,
                credential,
            } => ("token_env", token_env, credential),
            Auth::SshKey {
                passphrase_env,
                credential,
                ..
            } => ("passphrase_env", passphrase_env, credential),
        };
        match (env, credential) {
            (Some(_), Some(_)) => Err(format!(
                "key `auth`: give either `auth.{env_key}` or `auth.credential`, not both"
            )),
            // An unencrypted private key needs no passphrase.
            (None, None) if matches!(self, Auth::SshKey { .. }) => Ok(()),
            (None, None) => Err(format!(
                "key `auth` needs `{env_key}` (an environment variable) or `credential` (a stored credential, \"tenant/name\")"
            )),
            (Some(e), None) if e.is_empty() => Err(format!(
                "key `auth.{env_key}` names an empty environment variable"
            )),
            _ => Ok(()),
        }
    }
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

/// `[feed.format]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedFormat {
    /// Field separator, one byte: `,` `;` `|` `~` `\t`.
    #[serde(deserialize_with = "single_byte")]
    pub delimiter: u8,
    /// Whether the first row names the columns.
    pub header: bool,
    /// Decimal separator in numbers: `.` or `,`.
    #[serde(deserialize_with = "single_byte")]
    pub decimal: u8,
    /// Quote character (default `"`).
    #[serde(deserialize_with = "single_byte")]
    pub quote: u8,
    /// `delimited` (default) or `fixed` (columns are `{ start, length }` in characters).
    pub layout: Layout,
    /// Character encoding: `utf-8` (default; a BOM is removed), `latin1`, `windows-1252`, or
    /// any WHATWG label.
    #[serde(deserialize_with = "encoding")]
    pub encoding: &'static encoding_rs::Encoding,
    /// `auto` (default: from the URL's `.zip`/`.gz` ending), `none`, `zip` or `gzip`.
    pub archive: Archive,
    /// For zip archives: the member to read, a name or a glob (`PRICE*.TXT`); default: the
    /// archive's only file.
    pub member: Option<String>,
}

/// How fields are separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Separated by `delimiter`, optionally quoted.
    Delimited,
    /// Fixed character positions per column.
    Fixed,
}

/// Whether the download is an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Archive {
    /// From the URL: `.zip` → zip, `.gz` → gzip, otherwise none.
    Auto,
    /// A plain file.
    None,
    /// A zip archive; `member` picks the file.
    Zip,
    /// A gzip stream.
    Gzip,
}

fn encoding<'de, D: Deserializer<'de>>(d: D) -> Result<&'static encoding_rs::Encoding, D::Error> {
    let label = String::deserialize(d)?;
    let wanted = match label.to_ascii_lowercase().as_str() {
        "latin1" | "latin-1" => "iso-8859-1",
        other => other,
    }
    .to_string();
    encoding_rs::Encoding::for_label(wanted.as_bytes()).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "`{label}` is not a known encoding (use utf-8, latin1 or windows-1252)"
        ))
    })
}

impl Default for FeedFormat {
    fn default() -> Self {
        Self {
            delimiter: b',',
            header: true,
            decimal: b'.',
            quote: b'"',
            layout: Layout::Delimited,
            encoding: encoding_rs::UTF_8,
            archive: Archive::Auto,
            member: None,
        }
    }
}

/// `[feed.columns]`: a header name (`sku = "Artikel"`) or a 1-based position (`sku = 1`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// The distributor's part number.
    pub sku: ColumnRef,
    /// The price.
    pub price: ColumnRef,
    /// Units in stock (optional).
    #[serde(default)]
    pub stock: Option<ColumnRef>,
    /// Manufacturer part number (optional).
    #[serde(default)]
    pub mpn: Option<ColumnRef>,
    /// EAN/GTIN barcode (optional).
    #[serde(default)]
    pub ean: Option<ColumnRef>,
    /// Description (optional).
    #[serde(default)]
    pub description: Option<ColumnRef>,
    /// Currency code (optional).
    #[serde(default)]
    pub currency: Option<ColumnRef>,
    /// Action code for delta files (optional): `A` add, `C` change, `D` delete. With an
    /// action column the file changes the stored list instead of replacing it.
    #[serde(default)]
    pub action: Option<ColumnRef>,
}

impl Columns {
    /// Every configured column with its key name.
    pub fn all(&self) -> Vec<(&'static str, &ColumnRef)> {
        let mut out = vec![("sku", &self.sku), ("price", &self.price)];
        for (key, col) in [
            ("stock", &self.stock),
            ("mpn", &self.mpn),
            ("ean", &self.ean),
            ("description", &self.description),
            ("currency", &self.currency),
            ("action", &self.action),
        ] {
            if let Some(c) = col {
                out.push((key, c));
            }
        }
        out
    }
}

/// A column by header name, 1-based position, or (fixed layout) character span.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ColumnRef {
    /// 1-based position.
    Position(usize),
    /// Header text (matched after trimming, case-insensitively).
    Name(String),
    /// Fixed layout: `{ start = 1, length = 10 }`, 1-based, in characters.
    Span {
        /// First character, 1-based.
        start: usize,
        /// Number of characters.
        length: usize,
    },
}

impl std::fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnRef::Position(p) => write!(f, "column {p}"),
            ColumnRef::Name(n) => write!(f, "column \"{n}\""),
            ColumnRef::Span { start, length } => {
                write!(f, "characters {start}..{}", start + length - 1)
            }
        }
    }
}

fn single_byte<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let s = String::deserialize(d)?;
    let s = if s == "\\t" { "\t".to_string() } else { s };
    match s.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(serde::de::Error::custom(format!(
            "`{s}` must be a single ASCII character"
        ))),
    }
}

/// When an integration runs. Ticks are the same on every node, so an idempotency key built
/// from the tick time lets several daemons share one queue without running a tick twice.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// `every 6h`: ticks every interval, phase-shifted per integration (see [`Schedule::prev_tick`]).
    Every(Duration),
    /// A 5-field (minute first) or 6-field (second first) cron expression, in UTC.
    Cron(Box<cron::Schedule>, String),
}

impl FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("every ") {
            let d = duration::parse(rest)?;
            if d < Duration::from_secs(1) {
                return Err(format!("`{s}`: the interval must be at least 1s"));
            }
            return Ok(Schedule::Every(d));
        }
        let fields = s.split_whitespace().count();
        let expr = match fields {
            5 => format!("0 {s}"),
            6 => s.to_string(),
            _ => {
                return Err(format!(
                    "`{s}` is neither `every <duration>` nor a 5- or 6-field cron expression"
                ));
            }
        };
        cron::Schedule::from_str(&expr)
            .map(|c| Schedule::Cron(Box::new(c), s.to_string()))
            .map_err(|e| format!("`{s}` is not a valid cron expression: {e}"))
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {}", duration::format(*d)),
            Schedule::Cron(_, s) => f.write_str(s),
        }
    }
}

impl Schedule {
    /// The latest tick at or before `now`. `key` (tenant/integration) shifts `every` ticks by
    /// a stable per-integration offset, so integrations sharing an interval are spread over it.
    pub fn prev_tick(&self, key: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => {
                let period = d.as_millis().max(1) as i64;
                let offset = (fnv1a(key) % period as u64) as i64;
                let t = now.timestamp_millis() - offset;
                let tick = t.div_euclid(period) * period + offset;
                Utc.timestamp_millis_opt(tick).single()
            }
            Schedule::Cron(c, _) => {
                // The cron crate iterates forwards only: step back a window wide enough to
                // contain at least one tick and take the last one not after `now`.
                let mut from = now - chrono::Duration::days(1);
                for _ in 0..400 {
                    if let Some(t) = c.after(&from).take_while(|t| *t <= now).last() {
                        return Some(t);
                    }
                    from -= chrono::Duration::days(1);
                }
                None
            }
        }
    }

    /// The first tick strictly after `after`.
    pub fn next_tick(&self, key: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => {
                let prev = self.prev_tick(key, after)?;
                Some(prev + chrono::Duration::from_std(*d).ok()?)
            }
            Schedule::Cron(c, _) => c.after(&after).next(),
        }
    }
}

/// FNV-1a: a hash that is the same on every node and every build (std's hasher is not
/// guaranteed to be).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
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
    /// Loads every `*.toml` in `dir`, in file-name order.
    pub fn load(dir: &Path) -> anyhow::Result<Catalog> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot read the catalog directory", dir.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut tenants: Vec<Tenant> = Vec::new();
        for file in files {
            let tenant = load_file(&file)?;
            if let Some(other) = tenants.iter().find(|t| t.name == tenant.name) {
                bail!(
                    "{}: key `tenant`: tenant `{}` is already declared in {}",
                    file.display(),
                    tenant.name,
                    other.file.display()
                );
            }
            tenants.push(tenant);
        }
        Ok(Catalog { tenants })
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
                if feed.url.starts_with("sftp:") && feed.host_key.is_none() {
                    missing.insert(format!(
                        "{}/{}: no `host_key` is pinned (`syncd test-connection` shows the server's)",
                        i.tenant, i.name
                    ));
                }
            }
        }
        for t in &self.tenants {
            crate::webhooks::spec::missing_secrets(&t.name, &t.webhooks, &mut missing);
        }
        missing.into_iter().collect()
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn load_file(file: &Path) -> anyhow::Result<Tenant> {
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
    let dir = file.parent().unwrap_or(Path::new("."));
    for feed in &mut parsed.feed {
        feed.url = resolve_relative_file_url(&feed.url, dir);
        if let Some(ca) = &feed.ca_file
            && ca.is_relative()
        {
            feed.ca_file = Some(dir.join(ca));
        }
        if let Some(Auth::SshKey { key_file, .. }) = &mut feed.auth
            && key_file.is_relative()
        {
            *key_file = dir.join(&key_file);
        }
    }
    let mut seen = BTreeSet::new();
    for (i, feed) in parsed.feed.iter().enumerate() {
        let at = format!("{shown}: [[feed]] #{} (`{}`)", i + 1, feed.name);
        if !valid_name(&feed.name) {
            bail!("{at}: key `name` must be 1-64 letters, digits, '-', '_' or '.'");
        }
        if !seen.insert(feed.name.clone()) {
            bail!(
                "{at}: key `name`: `{}` is used twice in this tenant",
                feed.name
            );
        }
        check_url(&feed.url).map_err(|e| anyhow::anyhow!("{at}: key `url`: {e}"))?;
        if let Some(auth) = &feed.auth {
            auth.check().map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            if let Some(c) = auth.credential() {
                check_credential_ref("auth.credential", c, &parsed.tenant)
                    .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            }
        }
        check_columns(feed).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        check_ssh(feed).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
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
    crate::webhooks::spec::validate(&shown.to_string(), &parsed.webhook, &seen)?;
    Ok(Tenant {
        name: parsed.tenant,
        file: file.to_path_buf(),
        feeds: parsed.feed,
        crms: parsed.crm,
        webhooks: parsed.webhook,
    })
}

/// `file:relative/path` (no `//`) is read relative to the catalog file's directory, so a
/// catalog and its drop directory can move together; it becomes an absolute `file://` URL.
fn resolve_relative_file_url(raw: &str, dir: &Path) -> String {
    match raw.strip_prefix("file:") {
        Some(rest) if !rest.starts_with('/') => {
            let abs = std::path::absolute(dir.join(rest)).unwrap_or_else(|_| dir.join(rest));
            url::Url::from_file_path(&abs)
                .map(|u| u.to_string())
                .unwrap_or_else(|_| raw.to_string())
        }
        _ => raw.to_string(),
    }
}

fn check_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL ({e})"))?;
    match url.scheme() {
        "http" | "https" => {
            if url.host_str().is_none() {
                return Err(format!("`{raw}` has no host"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(
                    "credentials belong in `auth` with an environment variable, not in the URL"
                        .into(),
                );
            }
            Ok(())
        }
        "file" => Ok(()),
        "ftp" | "ftps" | "sftp" => {
            if url.host_str().is_none() || url.path().len() <= 1 {
                return Err(format!("`{raw}` needs a host and a file path"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(
                    "credentials belong in `auth` with an environment variable, not in the URL"
                        .into(),
                );
            }
            Ok(())
        }
        other => Err(format!(
            "scheme `{other}` is not supported (use http, https, ftp, ftps, sftp or file)"
        )),
    }
}

/// `host_key` and `ssh_key` auth belong to SFTP feeds; a pin must be readable.
fn check_ssh(feed: &FeedSpec) -> Result<(), String> {
    let sftp = feed.url.starts_with("sftp:");
    if let Some(pin) = &feed.host_key {
        if !sftp {
            return Err("key `host_key` is for sftp:// feeds".into());
        }
        crate::feeds::sftp::HostKeyPin::parse(pin).map_err(|e| format!("key `host_key`: {e}"))?;
    }
    match &feed.auth {
        Some(Auth::SshKey { .. }) if !sftp => {
            Err("key `auth`: `kind = \"ssh_key\"` is for sftp:// feeds".into())
        }
        Some(Auth::Bearer { .. }) if sftp => Err(
            "key `auth`: SFTP logs in with `kind = \"basic\"` (password) or `kind = \"ssh_key\"`"
                .into(),
        ),
        _ => Ok(()),
    }
}

fn check_columns(feed: &FeedSpec) -> Result<(), String> {
    let fixed = feed.format.layout == Layout::Fixed;
    for (key, col) in feed.columns.all() {
        match col {
            ColumnRef::Position(0) => {
                return Err(format!("key `columns.{key}`: positions start at 1"));
            }
            ColumnRef::Span { start: 0, .. } => {
                return Err(format!("key `columns.{key}`: `start` counts from 1"));
            }
            ColumnRef::Span { length: 0, .. } => {
                return Err(format!("key `columns.{key}`: `length` must be at least 1"));
            }
            ColumnRef::Span { .. } if !fixed => {
                return Err(format!(
                    "key `columns.{key}`: {{ start, length }} needs `format.layout = \"fixed\"`"
                ));
            }
            ColumnRef::Position(_) | ColumnRef::Name(_) if fixed => {
                return Err(format!(
                    "key `columns.{key}`: with `format.layout = \"fixed\"` give {{ start = …, length = … }}"
                ));
            }
            ColumnRef::Name(n) if !feed.format.header => {
                return Err(format!(
                    "key `columns.{key}`: `{n}` is a header name but `format.header = false`; give a 1-based position"
                ));
            }
            _ => {}
        }
    }
    for (key, v) in [
        ("max_error_rate", feed.max_error_rate),
        ("max_shrink", feed.max_shrink),
    ] {
        if v.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
            return Err(format!("key `{key}` must be between 0 and 1"));
        }
    }
    if feed.format.member.is_some() && feed.archive() != Archive::Zip {
        return Err("key `format.member` only applies to zip archives".into());
    }
    if let Some(m) = &feed.format.member {
        glob::Pattern::new(m)
            .map_err(|e| format!("key `format.member`: `{m}` is not a valid glob ({e})"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
