//! SFTP downloads with russh (SSH, aws-lc-rs crypto, no OpenSSL) and russh-sftp.
//!
//! Behaves like the FTP transport: timeouts on the connection and on every request and read,
//! an unchanged file skipped by size and modification time, a file still being written caught
//! by stat before and after the transfer, and the download streamed into the spool under the
//! same size cap.
//!
//! The server's host key is always checked against the feed's `host_key` pin (a
//! `known_hosts`-style `ssh-ed25519 AAAA…` line or a `SHA256:…` fingerprint). A feed without a
//! pin is refused before any credentials are sent, and the message carries the key the
//! server offered, so the operator can confirm it with the distributor and pin it. Trusting
//! the first key seen would hand the password to whoever answers first, unnoticed.

use super::ftp::Timeouts;
use super::{FetchOptions, Fetched, RemoteStat, Spool, required};
use crate::catalog::{Auth, FeedSpec, HostKeyPin};
use crate::outcome::Outcome;
use crate::outcome::classify::classify_sftp;
use chrono::{DateTime, Utc};
use russh::client::{AuthResult, Handle};
use russh::keys::ssh_key::PublicKey;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::Duration;

fn openssh_line(key: &KeyData) -> String {
    PublicKey::new(key.clone(), "")
        .to_openssh()
        .unwrap_or_else(|_| key.algorithm().to_string())
}

/// Why the SSH layer gave up: its own error, or our host-key check.
#[derive(Debug)]
enum SshError {
    Ssh(russh::Error),
    HostKey(Outcome),
}

impl From<russh::Error> for SshError {
    fn from(e: russh::Error) -> Self {
        SshError::Ssh(e)
    }
}

/// Checks the server's key during the handshake, before any credentials are sent.
struct Client {
    pin: Option<HostKeyPin>,
    what: String,
}

impl Client {
    fn check(&self, key: &KeyData) -> Result<(), Outcome> {
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        match &self.pin {
            Some(pin) if pin.matches(key) => Ok(()),
            // A mismatch is a configuration problem, not refused credentials: nothing was
            // sent yet, retrying cannot help, and only an operator can tell a rotated key from
            // an interception — after confirming the new key with the distributor, they change
            // `host_key`. `Rejected` would raise a misleading `credentials_rejected`.
            Some(pin) => Err(Outcome::misconfigured(format!(
                "{}: the server's host key {fingerprint} does not match the pinned `host_key` {}; \
                     the server's key changed or something is in between: confirm the new key \
                     with the distributor before changing `host_key` (the server offers `{}`)",
                self.what,
                pin.shown(),
                openssh_line(key)
            ))),
            None => Err(Outcome::misconfigured(format!(
                "{}: the server's host key is not pinned; confirm its fingerprint {fingerprint} \
                     with the distributor, then add `host_key = \"{}\"` to the feed",
                self.what,
                openssh_line(key)
            ))),
        }
    }
}

impl russh::client::Handler for Client {
    type Error = SshError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.key_data().clone(),
            PublicKeyOrCertificate::Certificate(cert) => cert.public_key().clone(),
        };
        self.check(&key).map(|()| true).map_err(SshError::HostKey)
    }
}

/// A logged-in SSH connection with its SFTP session.
struct Session {
    ssh: Handle<Client>,
    sftp: SftpSession,
    path: String,
    what: String,
    user: String,
    timeouts: Timeouts,
}

fn no_answer(what: &str, limit: Duration) -> Outcome {
    Outcome::transient(format!(
        "{what}: no answer within {}",
        crate::duration::format(limit)
    ))
}

fn classify_ssh(what: &str, e: SshError) -> Outcome {
    match e {
        SshError::HostKey(outcome) => outcome,
        SshError::Ssh(e) => crate::outcome::classify::classify_ssh(what, &e),
    }
}

async fn step<T, E>(
    what: &str,
    limit: Duration,
    fut: impl Future<Output = Result<T, E>>,
    classify: impl FnOnce(&str, E) -> Outcome,
) -> Result<T, Outcome> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(|e| classify(what, e)),
        Err(_) => Err(no_answer(what, limit)),
    }
}

/// The URL's path as the server sees it: `sftp://host/~/file` is relative to the login
/// directory (as curl reads it), anything else is absolute.
fn remote_path(url: &url::Url) -> String {
    let path = super::ftp::percent_decode(url.path());
    match path.strip_prefix("/~/") {
        Some(rest) => rest.to_string(),
        None => path,
    }
}

fn ssh_config(timeouts: Timeouts) -> russh::client::Config {
    russh::client::Config {
        // A connection silent for longer than the read timeout is dead; the per-step timeouts
        // below catch it first, this ends the background task too.
        inactivity_timeout: Some(timeouts.read * 2),
        nodelay: true,
        ..Default::default()
    }
}

async fn login(
    spec: &FeedSpec,
    ssh: &mut Handle<Client>,
    what: &str,
    timeouts: Timeouts,
    secret: Option<&SecretString>,
) -> Result<String, Outcome> {
    let (user, result, method) = match &spec.auth {
        Some(Auth::Basic { username, .. }) => {
            let password = required(secret)?;
            let what = format!("{what} (login as {username})");
            let r = step(
                &what,
                timeouts.read,
                ssh.authenticate_password(username.as_str(), password),
                |w, e| classify_ssh(w, SshError::Ssh(e)),
            )
            .await?;
            (username.clone(), r, "password")
        }
        Some(Auth::SshKey {
            username, key_file, ..
        }) => {
            // The passphrase, if the catalog names one (`passphrase_env` or `credential`).
            let passphrase = secret.map(|s| s.expose_secret());
            let real_key = super::confined(&spec.dir, key_file)?;
            let key =
                russh::keys::load_secret_key(&real_key, passphrase).map_err(|e| {
                    Outcome::misconfigured(format!(
                            "{what}: cannot use the private key {} ({e}){}",
                            key_file.display(),
                            if passphrase.is_none() {
                                "; if it is encrypted, name its passphrase in `passphrase_env` or `credential`"
                            } else {
                                ""
                            }
                        ))
                })?;
            let hash = if key.algorithm().is_rsa() {
                ssh.best_supported_rsa_hash().await.ok().flatten().flatten()
            } else {
                None
            };
            let what = format!(
                "{what} (login as {username} with key {})",
                key_file.display()
            );
            let r = step(
                &what,
                timeouts.read,
                ssh.authenticate_publickey(
                    username.as_str(),
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                ),
                |w, e| classify_ssh(w, SshError::Ssh(e)),
            )
            .await?;
            (username.clone(), r, "key")
        }
        Some(Auth::Bearer { .. }) => {
            return Err(Outcome::misconfigured(format!(
                "{what}: SFTP needs `auth.kind = \"basic\"` (password) or `\"ssh_key\"`"
            )));
        }
        None => {
            return Err(Outcome::misconfigured(format!(
                "{what}: SFTP needs `auth` (`kind = \"basic\"` or `kind = \"ssh_key\"`)"
            )));
        }
    };
    match result {
        AuthResult::Success => Ok(user),
        AuthResult::Failure {
            remaining_methods, ..
        } => {
            let accepted: Vec<&str> = remaining_methods.iter().map(<&str>::from).collect();
            Err(Outcome::Rejected {
                message: format!(
                    "{what} (login as {user}): the server refused the {method} (it accepts: {})",
                    if accepted.is_empty() {
                        "nothing more".to_string()
                    } else {
                        accepted.join(", ")
                    }
                ),
            })
        }
    }
}

async fn open(
    spec: &FeedSpec,
    url: &url::Url,
    timeouts: Timeouts,
    secret: Option<&SecretString>,
) -> Result<Session, Outcome> {
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port().unwrap_or(22);
    let path = remote_path(url);
    let what = format!("sftp://{host}:{port}{}", url.path());
    let pin = spec.host_key.clone();
    let tcp = match tokio::time::timeout(
        timeouts.connect,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(Outcome::transient(format!(
                "{what}: the connection failed ({e})"
            )));
        }
        Err(_) => return Err(no_answer(&what, timeouts.connect)),
    };
    let client = Client {
        pin,
        what: what.clone(),
    };
    let mut ssh = step(
        &what,
        timeouts.connect + timeouts.read,
        russh::client::connect_stream(Arc::new(ssh_config(timeouts)), tcp, client),
        classify_ssh,
    )
    .await?;
    let user = login(spec, &mut ssh, &what, timeouts, secret).await?;
    let channel = step(&what, timeouts.read, ssh.channel_open_session(), |w, e| {
        classify_ssh(w, SshError::Ssh(e))
    })
    .await?;
    step(
        &what,
        timeouts.read,
        channel.request_subsystem(true, "sftp"),
        |w, e| classify_ssh(w, SshError::Ssh(e)),
    )
    .await?;
    let sftp = step(
        &what,
        timeouts.read,
        SftpSession::new(channel.into_stream()),
        |w, e| match e {
            SftpError::Timeout | SftpError::IO(_) => {
                Outcome::transient(format!("{w}: the SFTP session did not start ({e})"))
            }
            other => {
                Outcome::misconfigured(format!("{w}: the server offers no usable SFTP ({other})"))
            }
        },
    )
    .await?;
    sftp.set_timeout(timeouts.read.as_secs().max(1));
    Ok(Session {
        ssh,
        sftp,
        path,
        what,
        user,
        timeouts,
    })
}

impl Session {
    async fn stat(&self) -> Result<RemoteStat, Outcome> {
        let meta = step(
            &self.what,
            self.timeouts.read,
            self.sftp.metadata(self.path.as_str()),
            classify_sftp,
        )
        .await?;
        if meta.is_dir() {
            return Err(Outcome::misconfigured(format!(
                "{}: is a directory, not a file",
                self.what
            )));
        }
        let size = meta.size.ok_or_else(|| {
            Outcome::misconfigured(format!(
                "{}: the server does not tell the file's size",
                self.what
            ))
        })?;
        let mtime = meta
            .mtime
            .and_then(|t| DateTime::<Utc>::from_timestamp(i64::from(t), 0));
        Ok(RemoteStat { size, mtime })
    }

    async fn quit(self) {
        let limit = self.timeouts.read;
        let _ = tokio::time::timeout(limit, self.sftp.close()).await;
        let _ = tokio::time::timeout(
            limit,
            self.ssh
                .disconnect(russh::Disconnect::ByApplication, "", "en"),
        )
        .await;
    }
}

/// Downloads the file unless its size and modification time say it is unchanged.
pub async fn fetch(
    spec: &FeedSpec,
    url: &url::Url,
    opts: FetchOptions<'_>,
    timeouts: Timeouts,
) -> Result<Fetched, Outcome> {
    let s = open(spec, url, timeouts, opts.secret).await?;
    let before = s.stat().await?;
    match super::before_transfer(&s.what, before.size, before.mtime, &opts) {
        Ok(None) => {}
        Ok(Some(done)) => {
            s.quit().await;
            return Ok(done);
        }
        Err(e) => {
            s.quit().await;
            return Err(e);
        }
    }
    let what = s.what.clone();
    let mut spool = Spool::create(&what, opts)?;
    let mut file = step(
        &what,
        timeouts.read,
        s.sftp.open(s.path.as_str()),
        classify_sftp,
    )
    .await?;
    spool.fill(&mut file, timeouts.read).await?;
    drop(file);
    let (spooled, bytes) = spool.finish().await?;
    super::check_length(&what, bytes, &before)?;
    let after = s.stat().await?;
    s.quit().await;
    super::remote_file(&what, spooled, bytes, before, after)
}

/// Logs in and stats the file: reachability, host key, credentials and the file, no download.
pub async fn probe(
    spec: &FeedSpec,
    url: &url::Url,
    timeouts: Timeouts,
    secret: Option<&SecretString>,
) -> Result<String, Outcome> {
    let s = open(spec, url, timeouts, secret).await?;
    let stat = s.stat().await?;
    let mut detail = format!(
        "{}: logged in as {}, the file is {} bytes",
        s.what, s.user, stat.size
    );
    if let Some(t) = stat.mtime {
        detail.push_str(&format!(
            ", modified {}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    s.quit().await;
    Ok(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";

    fn load(feed: &str) -> anyhow::Result<crate::catalog::Catalog> {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "tenant = \"acme\"\n[[feed]]\nname = \"prices\"\nschedule = \"every 6h\"\n{feed}\n[feed.columns]\nsku = 1\nprice = 2\n"
        );
        std::fs::write(dir.path().join("acme.toml"), text).unwrap();
        crate::catalog::Catalog::load(dir.path())
    }

    #[test]
    fn the_catalog_checks_sftp_keys_where_they_are_written() {
        let key_auth = r#"auth = { kind = "ssh_key", username = "acme", key_file = "k" }"#;
        let ok = load(&format!(
            "url = \"sftp://h/p.csv\"\n{key_auth}\nhost_key = \"ssh-ed25519 {KEY}\""
        ))
        .unwrap();
        let feed = ok.feed("acme", "prices").unwrap();
        let Some(Auth::SshKey { key_file, .. }) = &feed.auth else {
            panic!("ssh_key auth expected");
        };
        assert!(key_file.is_absolute() && key_file.ends_with("k"));

        let err = load(&format!("url = \"ftp://h/p.csv\"\n{key_auth}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is for sftp:// feeds"), "{err}");
        let err = load("url = \"https://h/p.csv\"\nhost_key = \"SHA256:x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`host_key` is for sftp://"), "{err}");
        let err = load("url = \"sftp://h/p.csv\"\nhost_key = \"ssh-ed25519 AAAAnotakey\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("key `host_key`"), "{err}");
        let err = load("url = \"sftp://h/\"").unwrap_err().to_string();
        assert!(err.contains("needs a host and a file path"), "{err}");
    }

    #[test]
    fn a_tilde_path_is_relative_to_the_login_directory() {
        let url = url::Url::parse("sftp://h/~/out/PRICE%20LIST.zip").unwrap();
        assert_eq!(remote_path(&url), "out/PRICE LIST.zip");
        let url = url::Url::parse("sftp://h/data/PRICE.zip").unwrap();
        assert_eq!(remote_path(&url), "/data/PRICE.zip");
    }
}
