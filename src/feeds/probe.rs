//! Connection tests: prove reachability and credentials without downloading the file and
//! without side effects on the data (HTTP: a HEAD, or a one-byte ranged GET where HEAD is
//! refused; FTP and SFTP: login, then the file's size and time; files: stat).

use super::http::shown_url;
use super::required;
use crate::catalog::{Auth, FeedSource, FeedSpec};
use crate::outcome::classify::classify_reqwest;
use crate::outcome::{Misconfig, Outcome, classify_http_status};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LAST_MODIFIED, RANGE};
use secrecy::SecretString;
use serde::Serialize;

/// The verdict of a connection test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Reachable, credentials accepted, the file is there.
    Ok,
    /// The server refused the credentials.
    CredentialsRejected,
    /// The server could not be reached or failed (timeout, refused, 5xx).
    Unreachable,
    /// Reachable and logged in, but the file is not there.
    FileMissing,
    /// Something else is wrong with the configuration (missing secret, odd answer).
    Misconfigured,
}

impl Verdict {
    /// The words printed in front of the detail.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::CredentialsRejected => "credentials rejected",
            Verdict::Unreachable => "unreachable",
            Verdict::FileMissing => "file missing",
            Verdict::Misconfigured => "misconfigured",
        }
    }
}

/// A verdict with the server's reply in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// What the test concluded.
    pub verdict: Verdict,
    /// The specifics: request, status, size, modification time.
    pub detail: String,
}

impl Probe {
    /// The verdict a failed (or passed) call's outcome amounts to.
    pub fn from_outcome(outcome: Outcome) -> Probe {
        let verdict = match &outcome {
            Outcome::Success { .. } => Verdict::Ok,
            Outcome::Rejected { .. } => Verdict::CredentialsRejected,
            Outcome::Transient { .. } | Outcome::RateLimited { .. } | Outcome::Waiting { .. } => {
                Verdict::Unreachable
            }
            Outcome::Misconfigured {
                cause: Misconfig::NotFound,
                ..
            } => Verdict::FileMissing,
            Outcome::Misconfigured { .. } | Outcome::Invalid { .. } => Verdict::Misconfigured,
        };
        Probe {
            verdict,
            detail: outcome.message().unwrap_or_default().to_string(),
        }
    }
}

/// Tests the feed's source.
pub async fn test(
    http: &reqwest::Client,
    spec: &FeedSpec,
    timeouts: super::ftp::Timeouts,
    secret: Option<&SecretString>,
) -> Probe {
    match &spec.source {
        FeedSource::Http(url) => test_http(http, url, spec.auth.as_ref(), secret).await,
        FeedSource::File(path) => match super::confined(&spec.dir, path) {
            Ok(real) => test_file(&real),
            Err(outcome) => Probe::from_outcome(outcome),
        },
        FeedSource::Ftp(url) => match super::ftp::probe(spec, url, timeouts, secret).await {
            Ok(detail) => Probe {
                verdict: Verdict::Ok,
                detail,
            },
            Err(outcome) => Probe::from_outcome(outcome),
        },
        FeedSource::Sftp(url) => match super::sftp::probe(spec, url, timeouts, secret).await {
            Ok(detail) => Probe {
                verdict: Verdict::Ok,
                detail,
            },
            Err(outcome) => Probe::from_outcome(outcome),
        },
    }
}

async fn test_http(
    http: &reqwest::Client,
    url: &url::Url,
    auth: Option<&Auth>,
    secret: Option<&SecretString>,
) -> Probe {
    let request = |method: reqwest::Method| -> Result<reqwest::RequestBuilder, Outcome> {
        let req = http.request(method, url.clone());
        Ok(match auth {
            Some(Auth::Basic { username, .. }) => req.basic_auth(username, Some(required(secret)?)),
            Some(Auth::Bearer { .. }) => req.bearer_auth(required(secret)?),
            Some(Auth::SshKey { .. }) => return Err(super::ssh_key_outside_sftp()),
            None => req,
        })
    };
    let mut what = format!("HEAD {}", shown_url(url));
    let head = match request(reqwest::Method::HEAD) {
        Ok(r) => r.send().await,
        Err(o) => return Probe::from_outcome(o),
    };
    let mut resp = match head {
        Ok(r) => r,
        Err(e) => return Probe::from_outcome(classify_reqwest(&what, e)),
    };
    // Some download portals refuse HEAD: ask for the first byte instead.
    if matches!(resp.status().as_u16(), 405 | 501) {
        what = format!("GET {} (first byte)", shown_url(url));
        let get = match request(reqwest::Method::GET) {
            Ok(r) => r.header(RANGE, "bytes=0-0").send().await,
            Err(o) => return Probe::from_outcome(o),
        };
        resp = match get {
            Ok(r) => r,
            Err(e) => return Probe::from_outcome(classify_reqwest(&what, e)),
        };
    }
    let status = resp.status();
    if !status.is_success() {
        return Probe::from_outcome(classify_http_status(status.as_u16(), &what, None));
    }
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    if header(CONTENT_TYPE).is_some_and(|t| t.starts_with("text/html")) {
        return Probe {
            verdict: Verdict::CredentialsRejected,
            detail: format!(
                "{what} answered HTTP {status} with an HTML page instead of the file (a portal's login page?)"
            ),
        };
    }
    let mut detail = format!("{what} answered HTTP {}", status.as_u16());
    if let Some(len) = header(CONTENT_LENGTH).filter(|_| status.as_u16() == 200) {
        detail.push_str(&format!(", {len} bytes"));
    }
    if let Some(lm) = header(LAST_MODIFIED) {
        detail.push_str(&format!(", last modified {lm}"));
    }
    Probe {
        verdict: Verdict::Ok,
        detail,
    }
}

fn test_file(path: &std::path::Path) -> Probe {
    match std::fs::File::open(path).and_then(|f| f.metadata()) {
        Ok(meta) if meta.is_file() => Probe {
            verdict: Verdict::Ok,
            detail: format!("{} is readable, {} bytes", path.display(), meta.len()),
        },
        Ok(_) => Probe {
            verdict: Verdict::Misconfigured,
            detail: format!("{} is not a regular file", path.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Probe {
            verdict: Verdict::FileMissing,
            detail: format!("file {} does not exist", path.display()),
        },
        Err(e) => Probe {
            verdict: Verdict::Misconfigured,
            detail: format!("cannot read {}: {e}", path.display()),
        },
    }
}
