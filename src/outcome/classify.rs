//! The one classifier: HTTP statuses, request, I/O, FTP and SFTP errors become outcomes
//! here, so every client reads the same answer the same way. Clients keep only what is
//! special to their provider (HubSpot's error categories, Apollo's empty match, OAuth's
//! `BAD_REFRESH_TOKEN`, a webhook receiver's 410).

use super::Outcome;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::StatusCode;
use std::io::ErrorKind;
use std::time::Duration;
use suppaftp::FtpError;

/// What an HTTP status says about a request, before any provider's special cases: the one
/// status table. Clients match their special statuses first and hand the rest to
/// [`StatusKind::outcome`] with a message of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    /// 2xx.
    Success,
    /// 401, 403: the credentials were refused.
    Rejected,
    /// 404, 410: what the configuration names is not there.
    NotFound,
    /// 429: slow down.
    RateLimited,
    /// 408 and 5xx: may pass by itself.
    Transient,
    /// 3xx: a redirect that was not (or could not be) followed.
    Redirect,
    /// Any other status: the request itself is wrong.
    Refused,
}

impl StatusKind {
    /// The kind of `status`.
    pub fn of(status: u16) -> StatusKind {
        match status {
            200..=299 => StatusKind::Success,
            401 | 403 => StatusKind::Rejected,
            404 | 410 => StatusKind::NotFound,
            408 | 500..=599 => StatusKind::Transient,
            429 => StatusKind::RateLimited,
            300..=399 => StatusKind::Redirect,
            _ => StatusKind::Refused,
        }
    }

    /// The outcome of a failed request of this kind, with `message`. (A success is not a
    /// failure; callers handle 2xx before.)
    pub fn outcome(self, message: String, retry_after: Option<Duration>) -> Outcome {
        match self {
            StatusKind::Rejected => Outcome::Rejected { message },
            StatusKind::NotFound => Outcome::not_found(message),
            StatusKind::RateLimited => Outcome::RateLimited {
                message,
                retry_after,
            },
            StatusKind::Transient => Outcome::Transient {
                message,
                retry_after,
            },
            StatusKind::Success | StatusKind::Redirect | StatusKind::Refused => {
                Outcome::misconfigured(message)
            }
        }
    }
}

/// Maps an HTTP status (other than 2xx/304) to an outcome. `what` names the request for the
/// message ("GET https://host/path"); `retry_after` is the parsed `Retry-After` header.
pub fn classify_http_status(status: u16, what: &str, retry_after: Option<Duration>) -> Outcome {
    let kind = StatusKind::of(status);
    let mut message = format!("{what} answered HTTP {status}");
    if kind == StatusKind::Redirect {
        message.push_str(" (a redirect that could not be followed)");
    }
    kind.outcome(message, retry_after)
}

/// The longest wait a server can impose: a `Retry-After` beyond it is taken as this, so no
/// job or delivery can be parked for longer, and no time arithmetic on it can overflow.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Reads a `Retry-After` value: delay-seconds or an HTTP date, at most
/// [`MAX_RETRY_AFTER`]. A value too large to be a number of seconds is the maximum too.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// The error and its causes in one line, without the URL (which may carry a query secret).
pub fn describe(e: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        cur = err.source();
    }
    out
}

/// Maps a failed request (no HTTP status) to an outcome.
pub fn classify_reqwest(what: &str, e: reqwest::Error) -> Outcome {
    let e = e.without_url();
    let detail = describe(&e);
    if e.is_timeout() {
        Outcome::transient(format!("{what} timed out ({detail})"))
    } else if e.is_connect() {
        Outcome::transient(format!("{what}: cannot connect ({detail})"))
    } else if e.is_redirect() {
        Outcome::misconfigured(format!("{what}: too many redirects ({detail})"))
    } else if e.is_builder() {
        Outcome::misconfigured(format!("{what}: {detail}"))
    } else {
        Outcome::transient(format!("{what} failed ({detail})"))
    }
}

/// Maps an FTP failure to an outcome: 530 refused login, 550 missing file, 4xx and dropped
/// connections transient.
pub fn classify_ftp(what: &str, e: FtpError) -> Outcome {
    match e {
        FtpError::UnexpectedResponse(resp) => {
            let code = resp.status.code();
            let text = String::from_utf8_lossy(&resp.body).trim().to_string();
            let message = format!("{what}: the server answered {text}");
            match code {
                530 | 331 | 332 => Outcome::Rejected { message },
                550 | 553 => {
                    Outcome::not_found(format!("{message} (the file is missing or not readable)"))
                }
                400..=499 => Outcome::transient(message),
                _ => Outcome::misconfigured(message),
            }
        }
        FtpError::ConnectionError(io) => {
            Outcome::transient(format!("{what}: the connection failed ({io})"))
        }
        FtpError::SecureError(text) if text.to_ascii_lowercase().contains("certificate") => {
            Outcome::misconfigured(format!(
                "{what}: the server's TLS certificate is not trusted ({text}); set the feed's `ca_file`"
            ))
        }
        other => Outcome::transient(format!("{what}: {other}")),
    }
}

/// Maps an SFTP failure on the feed's file to an outcome.
pub fn classify_sftp(what: &str, e: SftpError) -> Outcome {
    match e {
        SftpError::Status(status) => {
            let text = format!("{:?}: {}", status.status_code, status.error_message.trim());
            match status.status_code {
                StatusCode::NoSuchFile | StatusCode::PermissionDenied => {
                    Outcome::not_found(format!(
                        "{what}: the server answered {text} (the file is missing or not readable)"
                    ))
                }
                StatusCode::OpUnsupported | StatusCode::BadMessage => {
                    Outcome::misconfigured(format!("{what}: the server answered {text}"))
                }
                _ => Outcome::transient(format!("{what}: the server answered {text}")),
            }
        }
        SftpError::Timeout => Outcome::transient(format!("{what}: no answer from the server")),
        other => Outcome::transient(format!("{what}: the connection failed ({other})")),
    }
}

/// Maps a failed SSH connection to an outcome: the network may come back. (A refused login
/// and a host key that does not match the pin are decided where they happen, before.)
pub fn classify_ssh(what: &str, e: &russh::Error) -> Outcome {
    Outcome::transient(format!("{what}: the SSH connection failed ({e})"))
}

/// Maps a failure to read a local file (`shown`) to an outcome: a missing file is the
/// configuration's fault, a refused one the service user's rights, anything else may pass.
pub fn classify_io(shown: &str, e: &std::io::Error) -> Outcome {
    match e.kind() {
        ErrorKind::NotFound => Outcome::not_found(format!("file {shown} does not exist")),
        ErrorKind::PermissionDenied => Outcome::misconfigured(format!(
            "file {shown} cannot be read by the syncd user (permission denied)"
        )),
        _ => Outcome::transient(format!("cannot read {shown}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_outcomes() {
        let w = "GET https://h/p";
        assert!(matches!(
            classify_http_status(401, w, None),
            Outcome::Rejected { .. }
        ));
        assert!(matches!(
            classify_http_status(403, w, None),
            Outcome::Rejected { .. }
        ));
        assert!(matches!(
            classify_http_status(404, w, None),
            Outcome::Misconfigured { .. }
        ));
        assert!(matches!(
            classify_http_status(503, w, None),
            Outcome::Transient { .. }
        ));
        assert!(matches!(
            classify_http_status(408, w, None),
            Outcome::Transient { .. }
        ));
        let rl = classify_http_status(429, w, Some(Duration::from_secs(3)));
        assert_eq!(
            rl,
            Outcome::RateLimited {
                message: "GET https://h/p answered HTTP 429".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        // A server cannot park a job for ever, nor overflow the time arithmetic.
        for huge in ["99999999999999", "184467440737095516150", "86401"] {
            assert_eq!(
                parse_retry_after(huge, now),
                Some(MAX_RETRY_AFTER),
                "{huge}"
            );
        }
        let far = httpdate::fmt_http_date(now + Duration::from_secs(400 * 24 * 3600));
        assert_eq!(parse_retry_after(&far, now), Some(MAX_RETRY_AFTER));
    }
}
