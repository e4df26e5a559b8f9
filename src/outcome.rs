//! How a job ended, how a client's answer maps onto that, and when to try again.
//!
//! Every job returns exactly one [`Outcome`]. The engine ([`crate::jobs`]) turns it into
//! sync state, issues and — for `Transient` and `RateLimited` only — a durable retry.
//! These are pure functions so that the policy can be read and tested in one place.

use rand::RngExt;
use std::time::Duration;

/// The single result of one job run.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The work is done; `items` rows/records now current, `unchanged` if nothing was fetched
    /// because the source had not changed.
    Success {
        /// Rows or records now stored for the integration.
        items: Option<i64>,
        /// The source had not changed since the last success (304, same size/mtime).
        unchanged: bool,
        /// A short human note, e.g. "1200 rows" or "not modified".
        detail: String,
    },
    /// A failure that may go away by itself: timeout, reset, 5xx, 408.
    Transient {
        /// What happened, specific (status, host).
        message: String,
        /// A server-given earliest retry time, if any.
        retry_after: Option<Duration>,
    },
    /// The provider asked us to slow down (429). Retried, not counted as a failure.
    RateLimited {
        /// What happened.
        message: String,
        /// The provider's wait, if it gave one.
        retry_after: Option<Duration>,
    },
    /// Our own rate limiter (or the provider's remaining-quota headers) says the budget is
    /// spent for longer than a worker should wait: the run stopped where it was and goes on
    /// at `until`. Not a failure, not an attempt.
    Waiting {
        /// What is being waited for.
        message: String,
        /// When the quota is back.
        until: chrono::DateTime<chrono::Utc>,
    },
    /// Credentials refused (401/403). Never retried: retrying a bad password locks accounts.
    Rejected {
        /// What happened.
        message: String,
    },
    /// The data arrived but cannot be trusted; previous data is kept.
    Invalid {
        /// `empty_feed` or `invalid_feed`.
        kind: IssueKind,
        /// What is wrong with it (file, line).
        message: String,
    },
    /// Our configuration points at something that does not exist (404, missing secret).
    Misconfigured {
        /// What is wrong.
        message: String,
    },
}

/// Stable issue kinds: admins filter on them and other systems match them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueKind {
    /// 401/403 or a login refused: a person must renew the credentials.
    CredentialsRejected,
    /// The source has been unreachable for several attempts in a row.
    ConnectionFailed,
    /// The configured URL/path/secret is wrong.
    Misconfigured,
    /// The feed had no data rows.
    EmptyFeed,
    /// The feed could not be used (HTML, garbage, too many bad rows).
    InvalidFeed,
    /// A job failed `max_attempts` times or was interrupted too often.
    RetriesExhausted,
    /// The last success is older than `stale_after`.
    StaleData,
    /// A stored credential lapses within `[credentials] expiry_warning` (or has lapsed).
    TokenExpiring,
    /// A webhook endpoint failed `[webhooks] failing_after` attempts in a row.
    WebhookFailing,
    /// A webhook endpoint was disabled (410 Gone, or failing for `disable_after`).
    EndpointDisabled,
}

impl IssueKind {
    /// The stable name stored in the issues table and printed in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueKind::CredentialsRejected => "credentials_rejected",
            IssueKind::ConnectionFailed => "connection_failed",
            IssueKind::Misconfigured => "misconfigured",
            IssueKind::EmptyFeed => "empty_feed",
            IssueKind::InvalidFeed => "invalid_feed",
            IssueKind::RetriesExhausted => "retries_exhausted",
            IssueKind::StaleData => "stale_data",
            IssueKind::TokenExpiring => "token_expiring",
            IssueKind::WebhookFailing => "webhook_failing",
            IssueKind::EndpointDisabled => "endpoint_disabled",
        }
    }
}

impl Outcome {
    /// Short label stored as `last_outcome`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Success {
                unchanged: true, ..
            } => "unchanged",
            Outcome::Success { .. } => "success",
            Outcome::Transient { .. } => "transient",
            Outcome::RateLimited { .. } => "rate_limited",
            Outcome::Waiting { .. } => "waiting",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Invalid { .. } => "invalid",
            Outcome::Misconfigured { .. } => "misconfigured",
        }
    }

    /// The message of a failure (None for success).
    pub fn message(&self) -> Option<&str> {
        match self {
            Outcome::Success { .. } => None,
            Outcome::Transient { message, .. }
            | Outcome::RateLimited { message, .. }
            | Outcome::Waiting { message, .. }
            | Outcome::Rejected { message }
            | Outcome::Invalid { message, .. }
            | Outcome::Misconfigured { message } => Some(message),
        }
    }

    /// A transient failure with a message.
    pub fn transient(message: impl Into<String>) -> Self {
        Outcome::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    /// An invalid feed.
    pub fn invalid(message: impl Into<String>) -> Self {
        Outcome::Invalid {
            kind: IssueKind::InvalidFeed,
            message: message.into(),
        }
    }
}

/// Maps an HTTP status (other than 2xx/304) to an outcome. `what` names the request for the
/// message ("GET https://host/path"); `retry_after` is the parsed `Retry-After` header.
pub fn classify_http_status(status: u16, what: &str, retry_after: Option<Duration>) -> Outcome {
    let message = format!("{what} answered HTTP {status}");
    match status {
        401 | 403 => Outcome::Rejected { message },
        404 | 410 => Outcome::Misconfigured { message },
        408 => Outcome::Transient {
            message,
            retry_after,
        },
        429 => Outcome::RateLimited {
            message,
            retry_after,
        },
        500..=599 => Outcome::Transient {
            message,
            retry_after,
        },
        300..=399 => Outcome::Misconfigured {
            message: format!("{message} (a redirect that could not be followed)"),
        },
        _ => Outcome::Misconfigured { message },
    }
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The retry delay after the `attempt`-th failure (0 for the first): uniformly random in
/// `[0, min(cap, base × 2^attempt)]` ("full jitter", so that many clients failing together
/// do not come back together), and never less than what the provider asked for.
pub fn retry_delay(
    attempt: u32,
    base: Duration,
    cap: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let ceiling = backoff_ceiling(attempt, base, cap);
    let jittered = Duration::from_millis(rand::rng().random_range(0..=ceiling.as_millis() as u64));
    jittered.max(retry_after.unwrap_or(Duration::ZERO))
}

/// `min(cap, base × 2^attempt)`, without overflow.
pub fn backoff_ceiling(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(31));
    base.checked_mul(factor).unwrap_or(cap).min(cap)
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
    }

    #[test]
    fn delays_grow_exponentially_up_to_the_cap_and_respect_retry_after() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        assert_eq!(backoff_ceiling(0, base, cap), Duration::from_secs(1));
        assert_eq!(backoff_ceiling(3, base, cap), Duration::from_secs(8));
        assert_eq!(backoff_ceiling(10, base, cap), cap);
        assert_eq!(backoff_ceiling(200, base, cap), cap);
        for attempt in 0..12 {
            let d = retry_delay(attempt, base, cap, None);
            assert!(d <= backoff_ceiling(attempt, base, cap));
            let d = retry_delay(attempt, base, cap, Some(Duration::from_secs(90)));
            assert!(d >= Duration::from_secs(90), "Retry-After beats the cap");
        }
        // Full jitter: over many draws the mean of attempt 4 is far above attempt 0's ceiling.
        let mean = (0..400)
            .map(|_| retry_delay(4, base, cap, None).as_millis())
            .sum::<u128>()
            / 400;
        assert!(mean > 4_000 && mean < 12_000, "mean {mean}ms");
    }
}
