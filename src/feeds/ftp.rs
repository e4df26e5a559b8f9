//! FTP and explicit FTPS downloads with suppaftp (async, rustls).
//!
//! What real distributor servers need (see the third-party notes): binary mode set
//! explicitly (suppaftp never sends `TYPE I` itself, and SIZE/REST fail without it), passive
//! mode with the NAT workaround (servers behind NAT advertise private addresses in their 227
//! reply), timeouts on every step (suppaftp has none), TLS session reuse on the data
//! connection (vsftpd and FileZilla Server require it; the shared rustls config resumes the
//! control connection's session), and a file that is still being written caught by
//! comparing SIZE and MDTM before and after the transfer.

use super::{FetchOptions, Fetched, RemoteStat, Spool, required};
use crate::catalog::{Auth, FeedSpec};
use crate::outcome::Outcome;
use crate::outcome::classify::classify_ftp;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};
use suppaftp::types::FileType;
use suppaftp::{FtpError, Status};

/// Connection settings for one FTP session.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect and TLS handshake.
    pub connect: Duration,
    /// Any single command or read.
    pub read: Duration,
}

/// An open, logged-in session and how to name its file in messages.
struct Session {
    ftp: AsyncRustlsFtpStream,
    path: String,
    what: String,
    timeouts: Timeouts,
}

async fn step<T>(
    what: &str,
    limit: Duration,
    fut: impl Future<Output = Result<T, FtpError>>,
) -> Result<T, Outcome> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(|e| classify_ftp(what, e)),
        Err(_) => Err(Outcome::transient(format!(
            "{what}: no answer within {}",
            crate::duration::format(limit)
        ))),
    }
}

/// rustls with the system's roots plus the feed's own CA, if it names one. Built once per
/// session; the data connection reuses the control connection's TLS session through it.
fn tls_connector(spec: &FeedSpec) -> Result<AsyncRustlsConnector, Outcome> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(ca) = &spec.ca_file {
        let ca = &super::confined(&spec.dir, ca)?;
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| Outcome::misconfigured(format!("ca_file {}: {e}", ca.display())))?;
        for cert in certs {
            let cert =
                cert.map_err(|e| Outcome::misconfigured(format!("ca_file {}: {e}", ca.display())))?;
            roots
                .add(cert)
                .map_err(|e| Outcome::misconfigured(format!("ca_file {}: {e}", ca.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Outcome::misconfigured(format!("TLS set-up failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(AsyncRustlsConnector::from(
        tokio_rustls::TlsConnector::from(Arc::new(config)),
    ))
}

async fn open(
    spec: &FeedSpec,
    url: &url::Url,
    timeouts: Timeouts,
    secret: Option<&SecretString>,
) -> Result<Session, Outcome> {
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port().unwrap_or(21);
    let path = percent_decode(url.path());
    let what = format!("{}://{host}:{port}{path}", url.scheme());
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Outcome::transient(format!("{what}: cannot resolve {host}")))?;
    let mut ftp = step(
        &what,
        timeouts.connect + timeouts.read,
        AsyncRustlsFtpStream::connect_timeout(addr, timeouts.connect),
    )
    .await?;
    ftp.set_passive_nat_workaround(true);
    if url.scheme() == "ftps" {
        let connector = tls_connector(spec)?;
        ftp = step(
            &what,
            timeouts.connect + timeouts.read,
            ftp.into_secure(connector, &host),
        )
        .await?;
    }
    let (user, password): (String, &str) = match &spec.auth {
        Some(Auth::Basic { username, .. }) => (username.clone(), required(secret)?),
        Some(Auth::Bearer { .. } | Auth::SshKey { .. }) => {
            return Err(Outcome::misconfigured(format!(
                "{what}: FTP needs `auth.kind = \"basic\"`"
            )));
        }
        None => ("anonymous".to_string(), "anonymous@"),
    };
    let login_what = format!("{what} (login as {user})");
    step(
        &login_what,
        timeouts.read,
        ftp.login(user.as_str(), password),
    )
    .await?;
    step(&what, timeouts.read, ftp.transfer_type(FileType::Binary)).await?;
    Ok(Session {
        ftp,
        path,
        what,
        timeouts,
    })
}

impl Session {
    async fn stat(&mut self) -> Result<RemoteStat, Outcome> {
        let size = step(&self.what, self.timeouts.read, self.ftp.size(&self.path)).await? as u64;
        // MDTM is optional (RFC 3659); a server without it still has SIZE.
        let mtime = match tokio::time::timeout(self.timeouts.read, self.ftp.mdtm(&self.path)).await
        {
            Ok(Ok(t)) => Some(t.and_utc()),
            Ok(Err(FtpError::UnexpectedResponse(r)))
                if r.status.code() >= 500 && r.status != Status::FileUnavailable =>
            {
                None
            }
            Ok(Err(e)) => return Err(classify_ftp(&self.what, e)),
            Err(_) => {
                return Err(Outcome::transient(format!(
                    "{}: no answer to MDTM",
                    self.what
                )));
            }
        };
        Ok(RemoteStat { size, mtime })
    }

    async fn quit(mut self) {
        let _ = tokio::time::timeout(self.timeouts.read, self.ftp.quit()).await;
    }
}

pub(crate) fn percent_decode(path: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| path.to_string())
}

/// Downloads the file unless SIZE and MDTM say it is unchanged.
pub async fn fetch(
    spec: &FeedSpec,
    url: &url::Url,
    opts: FetchOptions<'_>,
    timeouts: Timeouts,
) -> Result<Fetched, Outcome> {
    let mut s = open(spec, url, timeouts, opts.secret).await?;
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
    let mut transfer = step(&what, timeouts.read, s.ftp.retr_as_stream(&s.path)).await?;
    spool.fill(&mut transfer, timeouts.read).await?;
    let (file, bytes) = spool.finish().await?;
    // 226 ends a complete transfer; 426/451 say it was cut off.
    step(&what, timeouts.read, transfer.finish()).await?;
    super::check_length(&what, bytes, &before)?;
    let after = s.stat().await?;
    s.quit().await;
    super::remote_file(&what, file, bytes, before, after)
}

/// Logs in and asks for SIZE and MDTM: reachability, credentials and the file, no download.
pub async fn probe(
    spec: &FeedSpec,
    url: &url::Url,
    timeouts: Timeouts,
    secret: Option<&SecretString>,
) -> Result<String, Outcome> {
    let mut s = open(spec, url, timeouts, secret).await?;
    let stat = s.stat().await?;
    let what = s.what.clone();
    s.quit().await;
    let mut detail = format!("{what}: logged in, the file is {} bytes", stat.size);
    if let Some(t) = stat.mtime {
        detail.push_str(&format!(
            ", modified {}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    Ok(detail)
}
