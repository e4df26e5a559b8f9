//! `[[feed]]` entries: where a distributor file comes from, how it is laid out, which
//! columns hold what, and the checks that run when a tenant file is loaded.

use super::{Schedule, SecretRef};
use crate::duration;
use russh::keys::HashAlg;
use russh::keys::ssh_key::Fingerprint;
use russh::keys::ssh_key::public::KeyData;
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A distributor price/stock feed (`[[feed]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSpec {
    /// Unique within the tenant; used as `TENANT/NAME` on the command line.
    pub name: String,
    /// `https://…`, `http://…`, `ftp://…`, `ftps://…`, `sftp://…` or `file:///…` (a directory a
    /// distributor pushes files into), as written (a relative `file:` made absolute).
    pub url: String,
    /// `url`, parsed once when the tenant file is loaded: what every transport works from.
    #[serde(skip)]
    pub source: FeedSource,
    /// The tenant's directory: every file the feed names is inside it.
    #[serde(skip)]
    pub dir: PathBuf,
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
    #[serde(default, rename = "host_key")]
    host_key_text: Option<String>,
    /// `host_key`, parsed when the tenant file is loaded.
    #[serde(skip)]
    pub host_key: Option<HostKeyPin>,
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
                let path = self.source.path().to_ascii_lowercase();
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

    /// The key that names the secret's environment variable (`auth.password_env`, …).
    pub fn env_key(&self) -> &'static str {
        match self {
            Auth::Basic { .. } => "auth.password_env",
            Auth::Bearer { .. } => "auth.token_env",
            Auth::SshKey { .. } => "auth.passphrase_env",
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

    pub(super) fn check(&self) -> Result<(), String> {
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

/// `file:relative/path` (no `//`) is read relative to the tenant's directory, so a catalog
/// and its files can move together; it becomes an absolute `file://` URL.
pub(super) fn resolve_relative_file_url(raw: &str, dir: &Path) -> String {
    match raw.strip_prefix("file:") {
        Some(rest) if !rest.starts_with('/') => {
            let abs = super::rules::normalize(&dir.join(rest));
            url::Url::from_file_path(&abs)
                .map(|u| u.to_string())
                .unwrap_or_else(|_| raw.to_string())
        }
        _ => raw.to_string(),
    }
}

pub(super) fn check_url(raw: &str) -> Result<(), String> {
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

/// `host_key` and `ssh_key` auth belong to SFTP feeds; a pin must be readable, and is
/// parsed here once.
pub(super) fn check_ssh(feed: &mut FeedSpec) -> Result<(), String> {
    let sftp = feed.source.is_sftp();
    if let Some(pin) = &feed.host_key_text {
        if !sftp {
            return Err("key `host_key` is for sftp:// feeds".into());
        }
        feed.host_key = Some(HostKeyPin::parse(pin).map_err(|e| format!("key `host_key`: {e}"))?);
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

pub(super) fn check_columns(feed: &FeedSpec) -> Result<(), String> {
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

/// A pinned host key: the whole public key, or its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPin {
    /// `ssh-ed25519 AAAA…` (a `known_hosts` line, host names in front allowed).
    Key(KeyData),
    /// `SHA256:…` as `ssh-keygen -l` prints it.
    Fingerprint(Fingerprint),
}

impl HostKeyPin {
    /// Reads the catalog's `host_key`.
    pub fn parse(text: &str) -> Result<HostKeyPin, String> {
        let text = text.trim();
        if text.starts_with("SHA256:") || text.starts_with("SHA512:") {
            return text
                .parse::<Fingerprint>()
                .map(HostKeyPin::Fingerprint)
                .map_err(|e| format!("`{text}` is not a valid SSH key fingerprint ({e})"));
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0].parse::<russh::keys::Algorithm>().is_ok() {
                return russh::keys::parse_public_key_base64(pair[1])
                    .map(|k| HostKeyPin::Key(k.key_data().clone()))
                    .map_err(|e| format!("the key after `{}` cannot be read ({e})", pair[0]));
            }
        }
        Err(
            "expected a public key as in known_hosts (`ssh-ed25519 AAAA…`) or a fingerprint (`SHA256:…`)"
                .into(),
        )
    }

    /// Whether the server's `key` is the pinned one.
    pub fn matches(&self, key: &KeyData) -> bool {
        match self {
            HostKeyPin::Key(pinned) => pinned == key,
            HostKeyPin::Fingerprint(fp) => key.fingerprint(fp.algorithm()) == *fp,
        }
    }

    /// The pin as shown in messages: a SHA-256 fingerprint.
    pub fn shown(&self) -> String {
        match self {
            HostKeyPin::Key(k) => k.fingerprint(HashAlg::Sha256).to_string(),
            HostKeyPin::Fingerprint(fp) => fp.to_string(),
        }
    }
}

/// Where a feed's file comes from: its `url`, parsed once when the tenant file is loaded, so
/// no later code parses or string-tests a URL again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSource {
    /// `http://…` or `https://…`.
    Http(url::Url),
    /// `ftp://…`, or `ftps://…` for explicit TLS.
    Ftp(url::Url),
    /// `sftp://…`.
    Sftp(url::Url),
    /// `file:…`: a file on this machine, e.g. in a directory a distributor pushes into.
    File(PathBuf),
}

/// Only the loader sees this value, between reading `url` and parsing it.
impl Default for FeedSource {
    fn default() -> Self {
        FeedSource::File(PathBuf::new())
    }
}

impl FeedSource {
    /// Parses a `url` key (already checked by [`check_url`]).
    pub(super) fn parse(raw: &str) -> Result<FeedSource, String> {
        check_url(raw)?;
        let url = url::Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL ({e})"))?;
        Ok(match url.scheme() {
            "http" | "https" => FeedSource::Http(url),
            "ftp" | "ftps" => FeedSource::Ftp(url),
            "sftp" => FeedSource::Sftp(url),
            _ => FeedSource::File(
                url.to_file_path()
                    .map_err(|_| format!("`{raw}` is not a local file path"))?,
            ),
        })
    }

    /// The path part, for telling an archive by its ending.
    pub fn path(&self) -> String {
        match self {
            FeedSource::Http(u) | FeedSource::Ftp(u) | FeedSource::Sftp(u) => u.path().to_string(),
            FeedSource::File(p) => p.display().to_string(),
        }
    }

    /// The source as it may appear in messages: no query string (distributors put keys
    /// there) and never user info.
    pub fn shown(&self) -> String {
        match self {
            FeedSource::Http(u) | FeedSource::Ftp(u) | FeedSource::Sftp(u) => shown_url(u),
            FeedSource::File(p) => format!("file://{}", p.display()),
        }
    }

    /// Whether this is an SFTP source (host keys and SSH keys belong to those only).
    pub fn is_sftp(&self) -> bool {
        matches!(self, FeedSource::Sftp(_))
    }
}

/// A URL as it may appear in messages: no query string (distributors put keys there) and
/// never user info.
pub fn shown_url(url: &url::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        match url.port() {
            Some(p) => format!(":{p}{}", url.path()),
            None => url.path().to_string(),
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";

    #[test]
    fn host_key_pins_read_known_hosts_lines_and_fingerprints() {
        let key = russh::keys::parse_public_key_base64(KEY).unwrap();
        let data = key.key_data().clone();
        let line = HostKeyPin::parse(&format!("ssh-ed25519 {KEY} ops@example")).unwrap();
        assert!(line.matches(&data));
        let known_hosts =
            HostKeyPin::parse(&format!("sftp.example.com,10.0.0.1 ssh-ed25519 {KEY}")).unwrap();
        assert_eq!(known_hosts, line);
        let fp = data.fingerprint(HashAlg::Sha256).to_string();
        assert!(fp.starts_with("SHA256:"));
        assert!(HostKeyPin::parse(&fp).unwrap().matches(&data));
        assert!(HostKeyPin::parse("SHA256:nonsense!").is_err());
        assert!(HostKeyPin::parse("AAAA").is_err());
        assert!(HostKeyPin::parse("ssh-ed25519 AAAAnotakey").is_err());
    }

    #[test]
    fn a_source_is_parsed_once_by_its_scheme() {
        assert!(matches!(
            FeedSource::parse("https://h/p.csv"),
            Ok(FeedSource::Http(_))
        ));
        assert!(matches!(
            FeedSource::parse("ftps://h/p.csv"),
            Ok(FeedSource::Ftp(_))
        ));
        assert!(matches!(
            FeedSource::parse("sftp://h/p.csv"),
            Ok(FeedSource::Sftp(_))
        ));
        assert_eq!(
            FeedSource::parse("file:///srv/drop/p.csv"),
            Ok(FeedSource::File(PathBuf::from("/srv/drop/p.csv")))
        );
        assert!(FeedSource::parse("gopher://h/p").is_err());
        let shown = FeedSource::parse("https://h:8443/p.csv?key=secret")
            .unwrap()
            .shown();
        assert_eq!(shown, "https://h:8443/p.csv");
    }
}
