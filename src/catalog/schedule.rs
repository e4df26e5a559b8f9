//! Schedules: `every 6h` or a cron expression, and the tick maths the scheduler relies on.

use crate::duration;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer};
use std::str::FromStr;
use std::time::Duration;

/// When an integration runs. Ticks are the same on every node, so an idempotency key built
/// from the tick time lets several daemons share one queue without running a tick twice.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// `every 6h`: ticks every interval, phase-shifted per integration (see [`Schedule::prev_tick`]).
    Every(Duration),
    /// A 5-field (minute first) or 6-field (second first) cron expression, in UTC.
    Cron(Box<cron::Schedule>, String),
}

impl FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("every ") {
            let d = duration::parse(rest)?;
            if d < Duration::from_secs(1) {
                return Err(format!("`{s}`: the interval must be at least 1s"));
            }
            return Ok(Schedule::Every(d));
        }
        let fields = s.split_whitespace().count();
        let expr = match fields {
            5 => format!("0 {s}"),
            6 => s.to_string(),
            _ => {
                return Err(format!(
                    "`{s}` is neither `every <duration>` nor a 5- or 6-field cron expression"
                ));
            }
        };
        cron::Schedule::from_str(&expr)
            .map(|c| Schedule::Cron(Box::new(c), s.to_string()))
            .map_err(|e| format!("`{s}` is not a valid cron expression: {e}"))
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {}", duration::format(*d)),
            Schedule::Cron(_, s) => f.write_str(s),
        }
    }
}

impl Schedule {
    /// The latest tick at or before `now`. `key` (tenant/integration) shifts `every` ticks by
    /// a stable per-integration offset, so integrations sharing an interval are spread over it.
    pub fn prev_tick(&self, key: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => {
                let period = d.as_millis().max(1) as i64;
                let offset = (fnv1a(key) % period as u64) as i64;
                let t = now.timestamp_millis() - offset;
                let tick = t.div_euclid(period) * period + offset;
                Utc.timestamp_millis_opt(tick).single()
            }
            Schedule::Cron(c, _) => {
                // The cron crate iterates forwards only: step back a window wide enough to
                // contain at least one tick and take the last one not after `now`.
                let mut from = now - chrono::Duration::days(1);
                for _ in 0..400 {
                    if let Some(t) = c.after(&from).take_while(|t| *t <= now).last() {
                        return Some(t);
                    }
                    from -= chrono::Duration::days(1);
                }
                None
            }
        }
    }

    /// The first tick strictly after `after`.
    pub fn next_tick(&self, key: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => {
                let prev = self.prev_tick(key, after)?;
                Some(prev + chrono::Duration::from_std(*d).ok()?)
            }
            Schedule::Cron(c, _) => c.after(&after).next(),
        }
    }
}

/// FNV-1a: a hash that is the same on every node and every build (std's hasher is not
/// guaranteed to be).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
