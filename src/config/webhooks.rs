//! `[webhooks]`: delivery timeouts, the retry schedule, endpoint health thresholds and the
//! SSRF allowlist.

use crate::duration;
use crate::egress::Cidr;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[webhooks]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Longest a delivery attempt may take, connection and response included.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// When attempts are made, counted from the previous failure (the first entry from the
    /// event): `["0s", "5s", "5m", …]`. One entry per attempt; after the last a delivery
    /// has failed.
    #[serde(with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// Each delay is spread by ±this fraction (0.2 = ±20%), so that many deliveries failing
    /// together do not come back together.
    pub jitter: f64,
    /// Consecutive failed attempts to an endpoint before a `webhook_failing` issue opens.
    pub failing_after: u32,
    /// An endpoint that has failed without a single success for this long is disabled.
    #[serde(with = "duration")]
    pub disable_after: Duration,
    /// How long attempts, finished deliveries and their events are kept.
    #[serde(with = "duration")]
    pub attempt_retention: Duration,
    /// Largest number of changed items in one event; bigger imports become several events.
    pub max_items_per_event: usize,
    /// CIDRs that deliveries may reach although they are loopback, private, link-local or
    /// otherwise internal (e.g. `["10.20.0.0/16"]`). Empty: only public addresses.
    pub allow_cidrs: Vec<String>,
    /// Deliveries in flight at once on this node (over all endpoints).
    pub concurrency: usize,
    /// How often new change records are turned into events and waiting deliveries are
    /// queued.
    #[serde(with = "duration")]
    pub dispatch_interval: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        let s = |secs: u64| Duration::from_secs(secs);
        Self {
            timeout: s(15),
            retry_schedule: vec![
                s(0),
                s(5),
                s(5 * 60),
                s(30 * 60),
                s(2 * 3600),
                s(5 * 3600),
                s(10 * 3600),
                s(10 * 3600),
            ],
            jitter: 0.2,
            failing_after: 5,
            disable_after: s(5 * 24 * 3600),
            attempt_retention: s(30 * 24 * 3600),
            max_items_per_event: 500,
            allow_cidrs: Vec::new(),
            concurrency: 16,
            dispatch_interval: Duration::from_millis(200),
        }
    }
}

impl WebhooksConfig {
    /// Checks the values; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout.is_zero() {
            return Err("[webhooks] timeout must be greater than 0".into());
        }
        if self.retry_schedule.is_empty() || self.retry_schedule.len() > 50 {
            return Err("[webhooks] retry_schedule must have 1 to 50 entries".into());
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err("[webhooks] jitter must be at least 0 and below 1".into());
        }
        if self.failing_after == 0 {
            return Err("[webhooks] failing_after must be at least 1".into());
        }
        if self.disable_after.is_zero() {
            return Err("[webhooks] disable_after must be greater than 0".into());
        }
        if self.attempt_retention < Duration::from_secs(3600) {
            return Err("[webhooks] attempt_retention must be at least 1h".into());
        }
        if !(1..=10_000).contains(&self.max_items_per_event) {
            return Err("[webhooks] max_items_per_event must be between 1 and 10000".into());
        }
        if self.concurrency == 0 {
            return Err("[webhooks] concurrency must be at least 1".into());
        }
        if self.dispatch_interval.is_zero() || self.dispatch_interval > Duration::from_secs(10) {
            return Err("[webhooks] dispatch_interval must be between 1ms and 10s".into());
        }
        self.cidrs()?;
        Ok(())
    }

    /// The parsed allowlist.
    pub fn cidrs(&self) -> Result<Vec<Cidr>, String> {
        self.allow_cidrs
            .iter()
            .map(|c| {
                c.parse()
                    .map_err(|e| format!("[webhooks] allow_cidrs: {e}"))
            })
            .collect()
    }
}

/// A list of duration strings.
mod duration_list {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| crate::duration::parse(t).map_err(serde::de::Error::custom))
            .collect()
    }

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| crate::duration::format(*d)))
    }
}
