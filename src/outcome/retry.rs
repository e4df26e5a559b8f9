//! When to try again: the pure delay maths of jobs (exponential backoff with full jitter)
//! and of webhook deliveries (a fixed schedule with ± jitter), side by side.

use crate::config::WebhooksConfig;
use chrono::{DateTime, Utc};
use rand::RngExt;
use std::time::Duration;

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

/// `at + delay`, saturating: a delay too long for the calendar gives the latest time there is
/// instead of a panic.
pub fn after(at: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The delay before a webhook delivery's attempt after `attempts_made` (≥ 1) attempts, or
/// `None` when the schedule is used up: the schedule's entry spread by ±jitter, never below
/// `retry_after`.
pub fn webhook_delay(
    w: &WebhooksConfig,
    attempts_made: usize,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let base = *w.retry_schedule.get(attempts_made)?;
    let spread = base.as_secs_f64() * w.jitter;
    let jittered = if spread > 0.0 {
        base.as_secs_f64() + rand::rng().random_range(-spread..=spread)
    } else {
        base.as_secs_f64()
    };
    Some(Duration::from_secs_f64(jittered.max(0.0)).max(retry_after.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn time_arithmetic_saturates_instead_of_panicking() {
        let now = Utc::now();
        assert_eq!(
            after(now, Duration::from_secs(60)),
            now + chrono::Duration::seconds(60)
        );
        assert_eq!(after(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            after(now, Duration::from_secs(i64::MAX as u64 / 1000 + 1)),
            DateTime::<Utc>::MAX_UTC
        );
    }

    #[test]
    fn the_webhook_schedule_is_followed_with_jitter_and_retry_after() {
        let w = WebhooksConfig::default();
        assert_eq!(webhook_delay(&w, 8, None), None, "8 attempts in all");
        for _ in 0..200 {
            let d = webhook_delay(&w, 1, None).unwrap().as_secs_f64();
            assert!((4.0..=6.0).contains(&d), "5s ± 20%: {d}");
            let d = webhook_delay(&w, 2, None).unwrap().as_secs_f64();
            assert!((240.0..=360.0).contains(&d), "5m ± 20%: {d}");
        }
        let d = webhook_delay(&w, 1, Some(Duration::from_secs(60))).unwrap();
        assert!(d >= Duration::from_secs(60), "never before Retry-After");
    }
}
