//! How a job ended, how a client's answer maps onto that, and when to try again.
//!
//! Every job returns exactly one [`Outcome`]. The engine (`jobs`) turns it into sync state,
//! issues and — for `Transient` and `RateLimited` only — a durable retry. The policy is
//! pure code, in one place: [`classify`] maps HTTP statuses, request, I/O, FTP and SFTP
//! errors onto outcomes (clients keep only their provider's special cases), and [`retry`]
//! holds the delay maths of jobs and of webhook deliveries side by side.

pub mod classify;
pub mod retry;

pub use classify::{classify_http_status, parse_retry_after};
pub use retry::{backoff_ceiling, retry_delay};

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
        /// What kind of wrong, for callers that tell a missing file from the rest.
        cause: Misconfig,
    },
}

/// Why a configuration is wrong, as far as the classifier can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misconfig {
    /// The configured file or resource is not there, or not readable by us (HTTP 404/410,
    /// FTP 550/553, SFTP "no such file" or "permission denied", a missing local file).
    NotFound,
    /// Anything else: a bad URL or key, a redirect, a missing secret, a plan without access.
    Other,
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
            | Outcome::Misconfigured { message, .. } => Some(message),
        }
    }

    /// A transient failure with a message.
    pub fn transient(message: impl Into<String>) -> Self {
        Outcome::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A misconfiguration other than a missing file.
    pub fn misconfigured(message: impl Into<String>) -> Self {
        Outcome::Misconfigured {
            message: message.into(),
            cause: Misconfig::Other,
        }
    }

    /// The configured file or resource is not there (or not readable by us).
    pub fn not_found(message: impl Into<String>) -> Self {
        Outcome::Misconfigured {
            message: message.into(),
            cause: Misconfig::NotFound,
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
