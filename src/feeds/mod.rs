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

use crate::catalog::{Auth, FeedSpec};
use crate::outcome::Outcome;
use crate::store::sync_state::Validators;
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
}

/// Fetches `spec` with the transport its URL names.
pub async fn fetch(
    http: &reqwest::Client,
    spec: &FeedSpec,
    opts: FetchOptions<'_>,
    timeouts: ftp::Timeouts,
) -> Result<Fetched, Outcome> {
    let url = url::Url::parse(&spec.url).map_err(|e| Outcome::Misconfigured {
        message: format!("`{}` is not a URL: {e}", spec.url),
    })?;
    match url.scheme() {
        "http" | "https" => http::fetch(http, &url, spec.auth.as_ref(), opts).await,
        "file" => file::fetch(&url, opts).await,
        "ftp" | "ftps" => ftp::fetch(spec, &url, opts, timeouts).await,
        other => Err(Outcome::Misconfigured {
            message: format!("unsupported URL scheme `{other}` in {}", spec.url),
        }),
    }
}

/// A secret named by the catalog, read from the environment now (so a rotated secret is
/// picked up without a restart).
pub fn secret(auth: &Auth) -> Result<String, Outcome> {
    let var = auth.secret_env();
    std::env::var(var).map_err(|_| Outcome::Misconfigured {
        message: format!("environment variable {var} (named in the feed's `auth`) is not set"),
    })
}

/// Creates the spool file in `work_dir`.
pub(crate) fn spool_file(work_dir: &Path) -> Result<NamedTempFile, Outcome> {
    let _ = std::fs::create_dir_all(work_dir);
    tempfile::Builder::new()
        .prefix("syncd-feed-")
        .tempfile_in(work_dir)
        .map_err(|e| {
            Outcome::transient(format!(
                "cannot create a temporary file in {}: {e}",
                work_dir.display()
            ))
        })
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
