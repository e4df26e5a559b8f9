//! Distributor feeds: transports (HTTP(S), local files), then parsing and validation.
//!
//! A transport delivers the file into a private temporary file (never into memory), or says
//! the source is unchanged, or returns the failing [`Outcome`]. The parser then streams the
//! temporary file into the database; see [`crate::jobs::feed_fetch`].

pub mod decode;
pub mod file;
pub mod ftp;
pub mod http;
pub mod parse;
pub mod probe;
pub mod sftp;

use crate::catalog::{FeedSource, FeedSpec};
use crate::outcome::Outcome;
use crate::store::sync_state::Validators;
use secrecy::SecretString;
use std::path::Path;
use tempfile::NamedTempFile;

/// What a transport brought back.
#[derive(Debug)]
pub enum Fetched {
    /// The source has not changed since the last import.
    Unchanged,
    /// A new copy, spooled to disk, with what identifies this version.
    File {
        /// The downloaded bytes (deleted when dropped).
        file: NamedTempFile,
        /// Bytes received.
        bytes: u64,
        /// What identifies this version next time.
        validators: Validators,
    },
}

/// Inputs a transport needs beyond the feed itself.
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions<'a> {
    /// Ignore the unchanged check.
    pub force: bool,
    /// The validators of the last successful import.
    pub previous: &'a Validators,
    /// Where temporary files go.
    pub work_dir: &'a Path,
    /// Largest file accepted.
    pub max_bytes: u64,
    /// The feed's secret (password or token), resolved by [`secret`].
    pub secret: Option<&'a SecretString>,
}

/// What identifies a remote (FTP, SFTP) file: size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RemoteStat {
    /// Bytes.
    pub(crate) size: u64,
    /// Last modified, when the server says.
    pub(crate) mtime: Option<chrono::DateTime<chrono::Utc>>,
}

/// A remote transfer that delivered fewer bytes than the file had is cut short.
pub(crate) fn check_length(what: &str, bytes: u64, before: &RemoteStat) -> Result<(), Outcome> {
    if bytes != before.size {
        return Err(Outcome::transient(format!(
            "{what}: received {bytes} of {} bytes",
            before.size
        )));
    }
    Ok(())
}

/// The end of a remote transfer of `bytes` into `file`: a file whose size or time changed
/// between `before` and `after` was still being written, and is tried again later.
pub(crate) fn remote_file(
    what: &str,
    file: NamedTempFile,
    bytes: u64,
    before: RemoteStat,
    after: RemoteStat,
) -> Result<Fetched, Outcome> {
    if after != before {
        return Err(Outcome::transient(format!(
            "{what}: the file changed during the download (still being written?); trying again later"
        )));
    }
    Ok(Fetched::File {
        file,
        bytes,
        validators: Validators {
            etag: None,
            last_modified: None,
            size: Some(bytes as i64),
            mtime: before.mtime,
        },
    })
}

/// What a remote file's stat says before its transfer: `Some(Fetched::Unchanged)` when it
/// has the size and modification time of the last import (and the run is not forced), an
/// `invalid_feed` when it is over `[feeds] max_download_bytes`, `None` to download it. FTP
/// and SFTP decide the same way.
pub(crate) fn before_transfer(
    what: &str,
    size: u64,
    mtime: Option<chrono::DateTime<chrono::Utc>>,
    opts: &FetchOptions<'_>,
) -> Result<Option<Fetched>, Outcome> {
    if !opts.force
        && opts.previous.size == Some(size as i64)
        && mtime.is_some()
        && opts.previous.mtime == mtime
    {
        return Ok(Some(Fetched::Unchanged));
    }
    if size > opts.max_bytes {
        return Err(Outcome::invalid(format!(
            "{what}: the file is {size} bytes, more than [feeds] max_download_bytes ({})",
            opts.max_bytes
        )));
    }
    Ok(None)
}

/// Fetches `spec` with the transport its URL names.
pub async fn fetch(
    http: &reqwest::Client,
    spec: &FeedSpec,
    opts: FetchOptions<'_>,
    timeouts: ftp::Timeouts,
) -> Result<Fetched, Outcome> {
    match &spec.source {
        FeedSource::Http(url) => http::fetch(http, url, spec.auth.as_ref(), opts).await,
        FeedSource::File(path) => file::fetch(&spec.dir, path, opts).await,
        FeedSource::Ftp(url) => ftp::fetch(spec, url, opts, timeouts).await,
        FeedSource::Sftp(url) => sftp::fetch(spec, url, opts, timeouts).await,
    }
}

/// The feed's secret, read now through the resolver (environment variable or stored
/// credential), so a rotated secret is picked up without a restart; `None` without `auth`
/// or for an `ssh_key` whose key file has no passphrase.
pub async fn secret(
    secrets: &crate::credentials::Secrets,
    tenant: &str,
    spec: &FeedSpec,
) -> Result<Option<SecretString>, Outcome> {
    match spec.auth.as_ref().and_then(|a| a.secret_ref()) {
        Some(r) => secrets
            .resolve(&format!("{tenant}/{}", spec.name), &r)
            .await
            .map(Some),
        None => Ok(None),
    }
}

/// `path`, a file the tenant's catalog names, as it really is (symlinks followed), when that
/// is inside the tenant's directory `dir`. The catalog checked the path as written; this
/// checks what it leads to, at each open, so a symbolic link planted in the directory cannot
/// reach another tenant's files or the daemon's. Where it leads is not said.
pub(crate) fn confined(dir: &Path, path: &Path) -> Result<std::path::PathBuf, Outcome> {
    let shown = path.display().to_string();
    let real = std::fs::canonicalize(path)
        .map_err(|e| crate::outcome::classify::classify_io(&shown, &e))?;
    let real_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if real.starts_with(&real_dir) {
        Ok(real)
    } else {
        Err(Outcome::misconfigured(format!(
            "file {shown} leads outside the tenant's directory {} (a symbolic link?); it was not opened",
            dir.display()
        )))
    }
}

/// The resolved secret of an `auth` that needs one.
pub(crate) fn required(secret: Option<&SecretString>) -> Result<&str, Outcome> {
    use secrecy::ExposeSecret;
    secret
        .map(|s| s.expose_secret())
        .ok_or_else(|| Outcome::misconfigured("the feed's `auth` secret was not resolved"))
}

/// `auth.kind = "ssh_key"` on a feed that is not SFTP (the catalog check refuses it first).
pub(crate) fn ssh_key_outside_sftp() -> Outcome {
    Outcome::misconfigured("`auth.kind = \"ssh_key\"` is for sftp:// feeds")
}

/// Spool files are named `syncd-feed-<pid>-…`: the process that wrote one can be told.
const SPOOL_PREFIX: &str = "syncd-feed-";

/// Removes the spool files of processes that no longer run (a daemon or CLI killed
/// mid-download leaves its download behind), and unnamed ones older than a day. Files of
/// running processes (another node or test sharing the directory) stay. Returns how many
/// were removed.
pub fn remove_stale_spools(work_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return 0;
    };
    let day = std::time::Duration::from_secs(24 * 3600);
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(SPOOL_PREFIX) else {
            continue;
        };
        let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let stale = match owner {
            Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > day),
        };
        if stale && entry.file_type().is_ok_and(|t| t.is_file()) {
            removed += usize::from(std::fs::remove_file(entry.path()).is_ok());
        }
    }
    removed
}

/// Creates the spool file in `work_dir`.
pub(crate) fn spool_file(work_dir: &Path) -> Result<NamedTempFile, Outcome> {
    let _ = std::fs::create_dir_all(work_dir);
    tempfile::Builder::new()
        .prefix(&format!("{SPOOL_PREFIX}{}-", std::process::id()))
        .tempfile_in(work_dir)
        .map_err(|e| {
            Outcome::transient(format!(
                "cannot create a temporary file in {}: {e}",
                work_dir.display()
            ))
        })
}

/// A download being written to its spool file, with the `max_download_bytes` cap enforced
/// as the bytes arrive (a server may send more than it announced). Shared by the streaming
/// transports.
pub(crate) struct Spool<'a> {
    file: NamedTempFile,
    out: tokio::io::BufWriter<tokio::fs::File>,
    bytes: u64,
    what: &'a str,
    opts: FetchOptions<'a>,
}

impl<'a> Spool<'a> {
    /// Creates the spool file for the download named `what`.
    pub(crate) fn create(what: &'a str, opts: FetchOptions<'a>) -> Result<Self, Outcome> {
        let file = spool_file(opts.work_dir)?;
        let std_file = file.reopen().map_err(|e| Self::io_error(opts, e))?;
        let out =
            tokio::io::BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(std_file));
        Ok(Spool {
            file,
            out,
            bytes: 0,
            what,
            opts,
        })
    }

    fn io_error(opts: FetchOptions<'_>, e: std::io::Error) -> Outcome {
        Outcome::transient(format!(
            "cannot write the download to {}: {e}",
            opts.work_dir.display()
        ))
    }

    /// Bytes received so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends a chunk; refuses the download once it exceeds the cap.
    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<(), Outcome> {
        use tokio::io::AsyncWriteExt;
        self.bytes += chunk.len() as u64;
        if self.bytes > self.opts.max_bytes {
            return Err(Outcome::invalid(format!(
                "{}: the file exceeds [feeds] max_download_bytes ({})",
                self.what, self.opts.max_bytes
            )));
        }
        self.out
            .write_all(chunk)
            .await
            .map_err(|e| Self::io_error(self.opts, e))
    }

    /// Copies `reader` into the spool to its end; each read must bring something within
    /// `limit`, so a stalled server is noticed.
    pub(crate) async fn fill(
        &mut self,
        reader: &mut (impl tokio::io::AsyncRead + Unpin),
        limit: std::time::Duration,
    ) -> Result<(), Outcome> {
        use tokio::io::AsyncReadExt;
        let what = self.what;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match tokio::time::timeout(limit, reader.read(&mut buf)).await {
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    return Err(Outcome::transient(format!(
                        "{what}: the transfer broke off after {} bytes ({e})",
                        self.bytes
                    )));
                }
                Err(_) => {
                    return Err(Outcome::transient(format!(
                        "{what}: the transfer stalled after {} bytes",
                        self.bytes
                    )));
                }
            };
            self.write(&buf[..n]).await?;
        }
    }

    /// Flushes and hands over the file with its size.
    pub(crate) async fn finish(mut self) -> Result<(NamedTempFile, u64), Outcome> {
        use tokio::io::AsyncWriteExt;
        self.out
            .flush()
            .await
            .map_err(|e| Self::io_error(self.opts, e))?;
        Ok((self.file, self.bytes))
    }
}

/// Looks at the first bytes of a download for things that are certainly not a CSV feed:
/// an HTML page (a portal's login or error page answered with 200), XML, or JSON.
pub fn sniff_not_csv(head: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(head);
    let t = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase();
    if t.starts_with("<!doctype html")
        || t.starts_with("<html")
        || t.starts_with("<head")
        || t.starts_with("<body")
    {
        Some("an HTML page")
    } else if t.starts_with("<?xml") || (t.starts_with('<') && t.contains("</")) {
        Some("an XML/HTML document")
    } else if t.starts_with('{')
        || (t.starts_with('[') && t[1..].trim_start().starts_with(['{', '"']))
    {
        Some("a JSON document")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_pages_and_json_are_not_feeds() {
        assert_eq!(
            sniff_not_csv(b"\n  <!DOCTYPE html><html>"),
            Some("an HTML page")
        );
        assert_eq!(
            sniff_not_csv(b"<html><body>Login</body></html>"),
            Some("an HTML page")
        );
        assert_eq!(
            sniff_not_csv(b"{\"error\":\"denied\"}"),
            Some("a JSON document")
        );
        assert_eq!(sniff_not_csv(b"sku;price\nA1;1,00\n"), None);
        assert_eq!(sniff_not_csv(b"\xef\xbb\xbfsku,price\n"), None);
    }
}
