//! The encrypted credential store and the one resolver every secret goes through.
//!
//! Secrets named by the catalog come from an environment variable (`password_env`,
//! `token_env`, …) or from a stored credential (`credential = "tenant/name"`). Stored ones are
//! sealed with XChaCha20-Poly1305 under a 32-byte master key that never touches the
//! database: a fresh random 24-byte nonce per write, and `tenant/name/field` bound as
//! associated data, so a ciphertext moved to another row (or another tenant) does not open.
//! The rotated OAuth tokens in `oauth_tokens` are sealed the same way.
//!
//! The master key comes from `[credentials] key_file` (default:
//! `$CREDENTIALS_DIRECTORY/master.key`, systemd's `LoadCredential=`) or the environment
//! variable `[credentials] key_env`. The first key used with a database seals a known value
//! (`credential_key_check`); a different key is recognised before it reads or writes
//! anything, with an error naming where that key came from, so a wrong key never loses or
//! mixes up a stored secret.
//!
//! Plaintext lives only in [`SecretString`]s, exposed at the moment it is sent to the
//! provider; it is never logged, put in an issue or printed (`credentials list` shows a mask).

use crate::catalog::{Catalog, SecretRef};
use crate::config::Config;
use crate::outcome::{IssueKind, Outcome};
use crate::store::Store;
use crate::store::credentials::SealedRow;
use anyhow::{Context, bail};
use base64::Engine;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chrono::{DateTime, Utc};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use std::path::PathBuf;
use std::sync::Arc;
use tracing::{info, warn};

/// The fields a stored credential may hold.
pub const FIELDS: &[&str] = &[
    "password",
    "token",
    "client_secret",
    "refresh_token",
    "api_key",
    "passphrase",
];

const KEY_CHECK_AD: &[u8] = b"syncd/key-check/v1";
const KEY_CHECK_PLAINTEXT: &[u8] = b"syncd credential store";
/// Prefix of a sealed value kept in a text column (`oauth_tokens`).
const SEALED_TEXT: &str = "enc:v1:";

/// The master key, and where it came from (for messages; never the key itself).
pub struct MasterKey {
    key: SecretBox<[u8; 32]>,
    source: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// Loads the key the configuration points at: `None` when none is configured.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<MasterKey>> {
        let k = &config.credentials;
        let file = match &k.key_file {
            Some(f) => Some((config.resolve(f), "[credentials] key_file", true)),
            None => std::env::var_os("CREDENTIALS_DIRECTORY").map(|d| {
                (
                    PathBuf::from(d).join("master.key"),
                    "$CREDENTIALS_DIRECTORY/master.key, the default of [credentials] key_file",
                    false,
                )
            }),
        };
        if let Some((path, how, explicit)) = file {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let text = Zeroizing::new(text);
                    let source = format!("file {} ({how})", path.display());
                    return MasterKey::parse(&text, source).map(Some);
                }
                Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => bail!(
                    "[credentials] key_file: cannot read the master key file {}: {e}",
                    path.display()
                ),
            }
        }
        match std::env::var(&k.key_env) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                let source = format!("environment variable {} ([credentials] key_env)", k.key_env);
                MasterKey::parse(&text, source).map(Some)
            }
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => bail!(
                "environment variable {} ([credentials] key_env): the master key must be 64 hex digits or base64",
                k.key_env
            ),
        }
    }

    /// A key from its text form: 64 hex digits, or base64 of 32 bytes. The message names
    /// the source and never repeats the text.
    pub fn parse(text: &str, source: String) -> anyhow::Result<MasterKey> {
        let t = text.trim();
        let bytes: Zeroizing<Vec<u8>> = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
        {
            Zeroizing::new(
                (0..32)
                    .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap_or(0))
                    .collect(),
            )
        } else {
            match base64::engine::general_purpose::STANDARD.decode(t) {
                Ok(b) => Zeroizing::new(b),
                Err(_) => bail!(
                    "{source}: the master key must be 32 bytes written as 64 hex digits or in base64 (e.g. the output of `openssl rand -hex 32`); found {} characters that are neither",
                    t.chars().count()
                ),
            }
        };
        if bytes.len() != 32 {
            bail!(
                "{source}: the master key must be 32 bytes (64 hex digits or 44 base64 characters); it decodes to {} bytes",
                bytes.len()
            );
        }
        let key = SecretBox::init_with_mut(|k: &mut [u8; 32]| k.copy_from_slice(&bytes));
        Ok(MasterKey { key, source })
    }

    /// Where the key came from, e.g. `file /run/credentials/syncd.service/master.key`.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.key.expose_secret().into())
    }

    /// Seals `plaintext` bound to `ad`: (nonce, ciphertext with tag).
    pub fn seal(&self, ad: &[u8], plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let nonce: [u8; 24] = rand::random();
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: ad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory input");
        (nonce.to_vec(), ciphertext)
    }

    /// Opens what [`MasterKey::seal`] sealed with the same `ad`; `None` for another key,
    /// another `ad` or altered bytes.
    pub fn open(&self, ad: &[u8], nonce: &[u8], ciphertext: &[u8]) -> Option<SecretString> {
        let nonce: [u8; 24] = nonce.try_into().ok()?;
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    &nonce.into(),
                    Payload {
                        msg: ciphertext,
                        aad: ad,
                    },
                )
                .ok()?,
        );
        let text = std::str::from_utf8(&plain).ok()?;
        Some(SecretString::from(text))
    }
}

/// The associated data of a stored field: the row it belongs to.
pub fn field_ad(tenant: &str, name: &str, field: &str) -> Vec<u8> {
    format!("syncd/credential/v1\0{tenant}\0{name}\0{field}").into_bytes()
}

/// A secret shown to people: `••••` and, for secrets long enough that it gives little away,
/// the last four characters.
pub fn mask(secret: &SecretString) -> String {
    let s = secret.expose_secret();
    let n = s.chars().count();
    if n >= 12 {
        let tail: String = s.chars().skip(n - 4).collect();
        format!("••••{tail}")
    } else {
        "••••".into()
    }
}

/// Splits `tenant/name`.
pub fn split_name(credential: &str) -> Option<(&str, &str)> {
    credential
        .split_once('/')
        .filter(|(t, n)| !t.is_empty() && !n.is_empty() && !n.contains('/'))
}

/// The resolver: every secret of every integration is read through it. Cheap to clone.
#[derive(Clone)]
pub struct Secrets {
    store: Store,
    key: Option<Arc<MasterKey>>,
    key_env: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// Loads the master key and checks it against the database: a key that is not the one
    /// the stored secrets were sealed with is an error naming where it came from.
    pub async fn open(config: &Config, store: &Store) -> anyhow::Result<Secrets> {
        let secrets = Secrets::open_unchecked(config, store)?;
        secrets.verify(config).await?;
        Ok(secrets)
    }

    /// Loads the master key without comparing it with the database (`credentials list`
    /// shows what it can, `credentials delete --force` works without the right key).
    pub fn open_unchecked(config: &Config, store: &Store) -> anyhow::Result<Secrets> {
        Ok(Secrets {
            store: store.clone(),
            key: MasterKey::from_config(config)?.map(Arc::new),
            key_env: config.credentials.key_env.clone(),
        })
    }

    /// The master key, if one is configured.
    pub fn key(&self) -> Option<&MasterKey> {
        self.key.as_deref()
    }

    /// The state database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What to say when a key is needed and none is configured.
    pub fn no_key_message(&self) -> String {
        format!(
            "no master key is configured: put a 32-byte key (64 hex digits, e.g. from `openssl rand -hex 32`) in the file named by [credentials] key_file (default $CREDENTIALS_DIRECTORY/master.key) or in the environment variable {} ([credentials] key_env)",
            self.key_env
        )
    }

    /// Checks the configured key against the one the database's secrets were sealed with.
    pub async fn verify(&self, config: &Config) -> anyhow::Result<()> {
        let Some(key) = self.key() else {
            return Ok(());
        };
        let Some((nonce, ciphertext)) = self.store.key_check().await? else {
            return Ok(());
        };
        match key.open(KEY_CHECK_AD, &nonce, &ciphertext) {
            Some(v) if v.expose_secret().as_bytes() == KEY_CHECK_PLAINTEXT => Ok(()),
            _ => bail!(
                "the master key from {} is not the key the credentials in {} were encrypted with; nothing was read, changed or deleted. Put the original key back (a changed or mistyped key file or variable?) and start again",
                key.source(),
                config.state_display()
            ),
        }
    }

    /// The key for writing: the key check is recorded with the first write, so every
    /// secret in one database is sealed under one key.
    async fn write_key(&self) -> anyhow::Result<&MasterKey> {
        let Some(key) = self.key() else {
            bail!("{}", self.no_key_message());
        };
        if self.store.key_check().await?.is_none() {
            let (nonce, ct) = key.seal(KEY_CHECK_AD, KEY_CHECK_PLAINTEXT);
            self.store.init_key_check(&nonce, &ct).await?;
            // A concurrent first writer with another key may have won: check again.
            let (nonce, ct) = self
                .store
                .key_check()
                .await?
                .context("the key check row vanished")?;
            if key.open(KEY_CHECK_AD, &nonce, &ct).is_none() {
                bail!(
                    "the master key from {} is not the key this database's credentials were encrypted with; nothing was written",
                    key.source()
                );
            }
        }
        Ok(key)
    }

    /// Seals and stores one field of the credential `tenant/name`.
    pub async fn set(
        &self,
        tenant: &str,
        name: &str,
        field: &str,
        secret: &SecretString,
        expires_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        let key = self.write_key().await?;
        let (nonce, ct) = key.seal(
            &field_ad(tenant, name, field),
            secret.expose_secret().as_bytes(),
        );
        self.store
            .put_credential(tenant, name, field, &nonce, &ct, expires_at)
            .await?;
        Ok(())
    }

    /// Opens a stored row; `None` without a key or when the key does not open it.
    pub fn open_row(&self, row: &SealedRow) -> Option<SecretString> {
        self.key()?.open(
            &field_ad(&row.tenant, &row.integration, &row.field),
            &row.nonce,
            &row.ciphertext,
        )
    }

    /// The secret `r` names, for the integration `target` (`tenant/name`, for messages).
    /// Every failure is `misconfigured`, with a message that says what to do and no secret.
    pub async fn resolve(&self, target: &str, r: &SecretRef) -> Result<SecretString, Outcome> {
        match r {
            SecretRef::Env(var) => std::env::var(var).map(SecretString::from).map_err(|_| {
                Outcome::misconfigured(format!("{target}: environment variable {var} is not set"))
            }),
            SecretRef::Stored { credential, field } => {
                let Some((tenant, name)) = split_name(credential) else {
                    return Err(Outcome::misconfigured(format!(
                        "{target}: `{credential}` is not a credential name"
                    )));
                };
                let Some(key) = self.key() else {
                    return Err(Outcome::misconfigured(format!(
                        "{target} uses the stored credential {credential}, but {}",
                        self.no_key_message()
                    )));
                };
                let row = self
                    .store
                    .credential(tenant, name, field)
                    .await
                    .map_err(|e| {
                        Outcome::transient(format!("syncd's state database failed: {e}"))
                    })?;
                let Some(row) = row else {
                    return Err(Outcome::misconfigured(format!(
                        "{target} uses the stored credential {credential}, which has no `{field}`: set it with `syncd credentials set {credential} --field {field}`"
                    )));
                };
                key.open(&field_ad(tenant, name, field), &row.nonce, &row.ciphertext)
                    .ok_or_else(|| Outcome::misconfigured(format!(
                            "{target}: the stored credential {credential} (`{field}`) does not decrypt with the master key from {}; it was kept as it is. Set it again with `syncd credentials set {credential} --field {field}`",
                            key.source()
                        )))
            }
        }
    }

    /// Records that `tenant/integration` just succeeded with its stored credential.
    pub async fn record_use(&self, catalog: &Catalog, tenant: &str, integration: &str) {
        let Some((t, n)) = catalog
            .credential_of(tenant, integration)
            .and_then(split_name)
        else {
            return;
        };
        if let Err(e) = self.store.touch_credential(t, n).await {
            warn!(error = %e, "cannot record the credential's last use");
        }
    }

    /// A salted SHA-256 over every secret `tenant/integration` uses now, as `salt$hex`;
    /// `None` when it has no secret or one cannot be read. Kept when credentials are
    /// refused, so that a changed secret — a renewed environment file, or a new stored
    /// credential — lifts the pause; the secret itself is never stored in clear.
    pub async fn fingerprint(
        &self,
        catalog: &Catalog,
        tenant: &str,
        integration: &str,
        salt: &str,
    ) -> Option<String> {
        use sha2::{Digest, Sha256};
        let refs = catalog.secret_refs(tenant, integration);
        if refs.is_empty() {
            return None;
        }
        let target = format!("{tenant}/{integration}");
        let mut hasher = Sha256::new().chain_update(salt.as_bytes());
        for r in refs {
            let secret = self.resolve(&target, &r).await.ok()?;
            hasher.update([0u8]);
            hasher.update(secret.expose_secret().as_bytes());
        }
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(format!("{salt}${hex}"))
    }

    /// Seals a token for a text column (`oauth_tokens`), bound to `ad`.
    pub fn seal_text(&self, ad: &str, plaintext: &str) -> Result<String, String> {
        let key = self.key().ok_or_else(|| self.no_key_message())?;
        let (nonce, ct) = key.seal(ad.as_bytes(), plaintext.as_bytes());
        let mut bytes = nonce;
        bytes.extend_from_slice(&ct);
        Ok(format!(
            "{SEALED_TEXT}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
        ))
    }

    /// Opens what [`Secrets::seal_text`] sealed. A value stored before encryption (no
    /// prefix) is returned as it is; it is sealed when next written.
    pub fn open_text(&self, ad: &str, text: &str) -> Result<SecretString, String> {
        let Some(b64) = text.strip_prefix(SEALED_TEXT) else {
            return Ok(SecretString::from(text));
        };
        let key = self.key().ok_or_else(|| self.no_key_message())?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64)
            .map_err(|_| "a sealed token is damaged".to_string())?;
        if bytes.len() < 24 {
            return Err("a sealed token is damaged".into());
        }
        key.open(ad.as_bytes(), &bytes[..24], &bytes[24..])
            .ok_or_else(|| {
                format!(
                    "a stored token does not decrypt with the master key from {}",
                    key.source()
                )
            })
    }

    /// Raises `token_expiring` on the integrations using a stored credential that lapses
    /// within `warning` (or has lapsed), once; resolves it when the credential was replaced
    /// by one that does not.
    pub async fn check_expiry(
        &self,
        catalog: &Catalog,
        warning: std::time::Duration,
    ) -> anyhow::Result<()> {
        let now = Utc::now();
        let warning = chrono::Duration::from_std(warning).unwrap_or(chrono::Duration::days(7));
        for row in self.store.credentials().await? {
            let name = format!("{}/{}", row.tenant, row.integration);
            let users = catalog.users_of(&name);
            let targets: Vec<String> = users
                .iter()
                .filter(|(_, fields)| fields.contains(&row.field))
                .map(|(i, _)| i.name.to_string())
                .collect();
            let targets = if targets.is_empty() {
                vec![row.integration.clone()]
            } else {
                targets
            };
            let expiring = row.expires_at.filter(|at| *at - warning <= now);
            for integration in &targets {
                let open = self
                    .store
                    .has_open_issue(&row.tenant, integration, IssueKind::TokenExpiring)
                    .await?;
                match expiring {
                    Some(at) if !open => {
                        let message = expiry_message(&name, &row.field, at, now);
                        warn!(integration = %format!("{}/{integration}", row.tenant), %message, "credential expiring");
                        self.store
                            .raise_issue(
                                &row.tenant,
                                integration,
                                IssueKind::TokenExpiring,
                                &message,
                                &crate::store::issues::hint(
                                    IssueKind::TokenExpiring,
                                    &row.tenant,
                                    &row.integration,
                                ),
                            )
                            .await?;
                    }
                    None if open => {
                        let n = self
                            .store
                            .resolve_issues(
                                &row.tenant,
                                integration,
                                Some(&[IssueKind::TokenExpiring]),
                            )
                            .await?;
                        info!(resolved_issues = n, credential = %name, "credential renewed");
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn expiry_message(name: &str, field: &str, at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let when = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let left = (at - now).to_std();
    match left {
        Ok(d) => format!(
            "the stored credential {name} (`{field}`) expires at {when}, in {}",
            crate::duration::format(std::time::Duration::from_secs(
                (d.as_secs() / 60 * 60).max(60)
            ))
        ),
        Err(_) => format!(
            "the stored credential {name} (`{field}`) expired at {when}; the provider will refuse it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::parse(&format!("{byte:02x}").repeat(32), "test".into()).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_its_row() {
        let k = key(7);
        let ad = field_ad("acme", "ingram", "password");
        let (nonce, ct) = k.seal(&ad, b"hunter2-but-longer");
        assert_eq!(
            k.open(&ad, &nonce, &ct).unwrap().expose_secret(),
            "hunter2-but-longer"
        );
        assert!(key(8).open(&ad, &nonce, &ct).is_none(), "another key");
        let other_tenant = field_ad("globex", "ingram", "password");
        assert!(k.open(&other_tenant, &nonce, &ct).is_none(), "another row");
        let (nonce2, _) = k.seal(&ad, b"hunter2-but-longer");
        assert_ne!(nonce, nonce2, "a fresh nonce per write");
    }

    #[test]
    fn keys_are_read_as_hex_or_base64_and_bad_ones_are_named_without_echo() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert!(MasterKey::parse(&b64, "x".into()).is_ok());
        assert!(MasterKey::parse(&format!("{}\n", "ab".repeat(32)), "x".into()).is_ok());
        let err = MasterKey::parse("not-a-key-at-all", "file /k (key_file)".into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("file /k (key_file)"), "{err}");
        assert!(!err.contains("not-a-key-at-all"), "{err}");
    }

    #[test]
    fn masks_show_at_most_the_last_four_characters_of_long_secrets() {
        assert_eq!(mask(&SecretString::from("pat-na1-abcdef1234")), "••••1234");
        assert_eq!(mask(&SecretString::from("short")), "••••");
    }
}
