//! One attempt: sign, POST, read at most 16 KiB of the answer, classify.

use super::sign::{Secret, signature_header};
use crate::config::{Config, WebhooksConfig};
use crate::egress::{self as ssrf, GuardedResolver};
use crate::outcome::classify::StatusKind;
use crate::outcome::retry::webhook_delay;
use futures::StreamExt;
use std::time::{Duration, Instant};

/// How much of a response body is kept in the attempt log.
pub const MAX_LOGGED_BODY: usize = 16 * 1024;

/// The webhook HTTP client: no redirects, no proxies (a proxy would connect where the guard
/// cannot see), names resolved through the SSRF guard, one overall timeout per attempt.
pub fn client(config: &Config) -> anyhow::Result<reqwest::Client> {
    let w = &config.webhooks;
    let allow = w.cidrs().map_err(|e| anyhow::anyhow!(e))?;
    Ok(reqwest::Client::builder()
        .connect_timeout(config.http.connect_timeout.min(w.timeout))
        .timeout(w.timeout)
        .user_agent(config.http.user_agent.clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(GuardedResolver::new(allow))
        .pool_max_idle_per_host(64)
        .build()?)
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// 2xx.
    Delivered,
    /// 408, 5xx, timeout, connection error: try again on the schedule.
    Retry {
        /// The receiver's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// 429: try again, no earlier than `Retry-After`; not a failure of the endpoint.
    Throttled {
        /// The receiver's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// 3xx and other 4xx: the receiver will not take it; no retry.
    Rejected,
    /// 410: the endpoint is gone; disable it.
    Gone,
    /// Our configuration prevents sending (SSRF guard, secret): no retry, `misconfigured`.
    Misconfigured,
}

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// `delivered`, `pending` (another attempt is due), `failed` or `held` (kept until the
    /// endpoint is enabled again).
    pub status: &'static str,
    /// When the next attempt is due, counted from the end of this one.
    pub next_in: Option<Duration>,
    /// Whether the attempt adds to the endpoint's failure streak (`None` for a success,
    /// which ends it).
    pub counts: Option<bool>,
}

impl Verdict {
    /// The delivery's state machine: what this verdict makes of a delivery after
    /// `attempts_made` attempts, on the `[webhooks] retry_schedule`.
    pub fn transition(&self, w: &WebhooksConfig, attempts_made: usize) -> Transition {
        let step = |status, next_in, counts| Transition {
            status,
            next_in,
            counts,
        };
        let again = |retry_after: &Option<Duration>, counts: bool| match webhook_delay(
            w,
            attempts_made,
            *retry_after,
        ) {
            Some(delay) => step("pending", Some(delay), Some(counts)),
            None => step("failed", None, Some(counts)),
        };
        match self {
            Verdict::Delivered => step("delivered", None, None),
            Verdict::Retry { retry_after } => again(retry_after, true),
            // The receiver asked us to slow down: not a failure of the endpoint.
            Verdict::Throttled { retry_after } => again(retry_after, false),
            Verdict::Rejected => step("failed", None, Some(true)),
            // Kept for when the endpoint is enabled again.
            Verdict::Gone => step("held", None, Some(true)),
            // Our side is wrong, not the endpoint: no failure streak, an issue instead.
            Verdict::Misconfigured => step("failed", None, Some(false)),
        }
    }
}

/// What one attempt produced.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The classification.
    pub verdict: Verdict,
    /// HTTP status, if a response came.
    pub status: Option<u16>,
    /// What went wrong, in words (no secrets).
    pub error: Option<String>,
    /// The first 16 KiB of the body.
    pub body: Option<String>,
    /// How long it took.
    pub duration: Duration,
}

/// Sends `body` to `url` signed with `secrets` as message `id`.
pub async fn attempt(
    client: &reqwest::Client,
    allow: &[ssrf::Cidr],
    url: &str,
    id: &str,
    secrets: &[Secret],
    body: &str,
) -> Attempt {
    let started = Instant::now();
    let done = |verdict, status, error: Option<String>, body| Attempt {
        verdict,
        status,
        error,
        body,
        duration: started.elapsed(),
    };
    let parsed = match url::Url::parse(url) {
        Ok(u) => u,
        Err(e) => {
            return done(
                Verdict::Misconfigured,
                None,
                Some(format!("bad URL: {e}")),
                None,
            );
        }
    };
    if let Err(refused) = ssrf::check_host(&parsed, allow) {
        return done(
            Verdict::Misconfigured,
            None,
            Some(refused.to_string()),
            None,
        );
    }
    let timestamp = chrono::Utc::now().timestamp();
    let signature = signature_header(secrets, id, timestamp, body.as_bytes());
    let sent = client
        .post(parsed)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_string())
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            if let Some(refused) = ssrf::refusal(&e) {
                return done(
                    Verdict::Misconfigured,
                    None,
                    Some(refused.to_string()),
                    None,
                );
            }
            let what = if e.is_timeout() {
                format!(
                    "timed out after {}",
                    crate::duration::format(started.elapsed())
                )
            } else if e.is_connect() {
                format!("cannot connect: {}", root_cause(&e))
            } else {
                format!("request failed: {}", root_cause(&e))
            };
            return done(Verdict::Retry { retry_after: None }, None, Some(what), None);
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::outcome::parse_retry_after(v, std::time::SystemTime::now()));
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (text, read_error) = read_prefix(response).await;
    // A receiver's special case: 410 Gone disables the endpoint.
    let verdict = match (status, StatusKind::of(status)) {
        (410, _) => Verdict::Gone,
        (_, StatusKind::Success) => Verdict::Delivered,
        (_, StatusKind::RateLimited) => Verdict::Throttled { retry_after },
        (_, StatusKind::Transient) => Verdict::Retry { retry_after },
        _ => Verdict::Rejected,
    };
    let error = match status {
        200..=299 => None,
        300..=399 => Some(format!(
            "HTTP {status}: redirects are not followed{}",
            location
                .map(|l| format!(" (Location: {l})"))
                .unwrap_or_default()
        )),
        410 => Some("HTTP 410 Gone: the endpoint says it no longer exists".into()),
        _ => Some(format!("HTTP {status}")),
    };
    // A 2xx whose body broke off is still a success: the receiver has taken the event.
    let error = error.or(read_error.filter(|_| verdict != Verdict::Delivered));
    done(verdict, Some(status), error, Some(text))
}

async fn read_prefix(response: reqwest::Response) -> (String, Option<String>) {
    let mut buf = Vec::new();
    let mut stream = response.bytes_stream();
    while buf.len() < MAX_LOGGED_BODY {
        match stream.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(e)) => {
                return (
                    lossy(buf),
                    Some(format!("reading the response failed: {}", root_cause(&e))),
                );
            }
            None => break,
        }
    }
    buf.truncate(MAX_LOGGED_BODY);
    (lossy(buf), None)
}

fn lossy(mut buf: Vec<u8>) -> String {
    // Cut at a character boundary.
    while std::str::from_utf8(&buf).is_err_and(|e| e.error_len().is_none()) {
        buf.pop();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verdict_moves_a_delivery_as_documented() {
        let w = WebhooksConfig::default();
        let t = |v: Verdict, made| v.transition(&w, made);
        assert_eq!(
            t(Verdict::Delivered, 1),
            Transition {
                status: "delivered",
                next_in: None,
                counts: None
            }
        );
        let retry = t(Verdict::Retry { retry_after: None }, 1);
        assert_eq!((retry.status, retry.counts), ("pending", Some(true)));
        let d = retry.next_in.unwrap().as_secs_f64();
        assert!(
            (4.0..=6.0).contains(&d),
            "the schedule's second entry, 5s ± 20%: {d}"
        );
        let throttled = t(
            Verdict::Throttled {
                retry_after: Some(Duration::from_secs(90)),
            },
            1,
        );
        assert_eq!(
            (throttled.status, throttled.counts),
            ("pending", Some(false))
        );
        assert!(throttled.next_in.unwrap() >= Duration::from_secs(90));
        let last = w.retry_schedule.len();
        assert_eq!(
            t(Verdict::Retry { retry_after: None }, last).status,
            "failed"
        );
        assert_eq!(
            t(Verdict::Rejected, 1),
            Transition {
                status: "failed",
                next_in: None,
                counts: Some(true)
            }
        );
        assert_eq!(t(Verdict::Gone, 1).status, "held");
        assert_eq!(t(Verdict::Misconfigured, 1).counts, Some(false));
    }
}
