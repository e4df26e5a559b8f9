//! Client-side rate limiting: spend a provider's budget before the provider has to say no.
//!
//! Two shapes of budget, after the providers' own rules:
//! - [`Budget::Paced`] for rolling windows (HubSpot: 100 calls per rolling 10 s). Calls are
//!   spaced evenly (GCRA, the "generic cell rate algorithm") with a tolerance of half an
//!   interval, so no rolling window of that length ever holds more than the limit and a
//!   sequential client still runs at the full rate.
//! - [`Budget::Fixed`] for fixed windows aligned to the clock (Apollo.io: per minute, hour and
//!   day): a counter per window; a call is allowed when every window has room.
//!
//! Besides, a key can be *held* until a moment the provider told us about (remaining-quota
//! headers at zero, a 429): nobody spends that budget before then.
//!
//! On the SQLite queue (one process) the state is in memory. On the Redis queue it lives in
//! Redis and every decision is one Lua script, so all workers of all nodes share one budget
//! per (tenant, provider) atomically, on Redis' clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a budget is spent.
#[derive(Debug, Clone, PartialEq)]
pub enum Budget {
    /// At most `limit` calls in any rolling `window`, spaced evenly.
    Paced {
        /// Calls per window.
        limit: u32,
        /// The window.
        window: Duration,
    },
    /// At most `limit` calls per clock-aligned window, for each (limit, window).
    Fixed(Vec<(u32, Duration)>),
}

impl Budget {
    /// The budget minus a fraction kept back (at least one call stays allowed).
    pub fn with_headroom(self, fraction: f64) -> Budget {
        let shrink = |limit: u32| ((f64::from(limit) * (1.0 - fraction)).floor() as u32).max(1);
        match self {
            Budget::Paced { limit, window } => Budget::Paced {
                limit: shrink(limit),
                window,
            },
            Budget::Fixed(windows) => {
                Budget::Fixed(windows.into_iter().map(|(l, w)| (shrink(l), w)).collect())
            }
        }
    }
}

/// A shared limiter; cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    backend: Arc<Backend>,
}

enum Backend {
    Local(Mutex<HashMap<String, LocalState>>),
    Redis {
        conn: redis::aio::ConnectionManager,
        prefix: String,
    },
}

#[derive(Default)]
struct LocalState {
    tat_ms: i64,
    hold_ms: i64,
    windows: HashMap<(i64, i64), u32>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

const PACED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = tonumber(redis.call('GET', KEYS[2]) or '0')
if hold > now then return hold - now end
local interval = tonumber(ARGV[1])
local tolerance = math.floor(interval / 2)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - now > tolerance then return tat - now - tolerance end
redis.call('SET', KEYS[1], tat + interval, 'PX', tat + interval - now + 1000)
return 0
";

const FIXED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = tonumber(redis.call('GET', KEYS[2]) or '0')
if hold > now then return hold - now end
local n = #ARGV / 2
for i = 0, n - 1 do
  local limit = tonumber(ARGV[2 * i + 1])
  local len = tonumber(ARGV[2 * i + 2])
  local idx = math.floor(now / len)
  local used = tonumber(redis.call('GET', KEYS[1] .. ':' .. len .. ':' .. idx) or '0')
  if used >= limit then return (idx + 1) * len - now end
end
for i = 0, n - 1 do
  local len = tonumber(ARGV[2 * i + 2])
  local k = KEYS[1] .. ':' .. len .. ':' .. math.floor(now / len)
  redis.call('INCR', k)
  redis.call('PEXPIRE', k, len + 60000)
end
return 0
";

const HOLD: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local till = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if till > cur then redis.call('SET', KEYS[1], till, 'PX', tonumber(ARGV[1]) + 1000) end
return 0
";

impl Limiter {
    /// In-process state: for one daemon on the embedded SQLite queue.
    pub fn local() -> Limiter {
        Limiter {
            backend: Arc::new(Backend::Local(Mutex::new(HashMap::new()))),
        }
    }

    /// State in Redis under `{prefix}:rl:…`, shared by every process using the same Redis.
    pub async fn redis(url: &str, prefix: &str) -> anyhow::Result<Limiter> {
        let client = redis::Client::open(url)?;
        let conn = redis::aio::ConnectionManager::new(client).await?;
        Ok(Limiter {
            backend: Arc::new(Backend::Redis {
                conn,
                prefix: format!("{prefix}:rl"),
            }),
        })
    }

    /// The limiter for a daemon or CLI with this configuration: in Redis when the queue is
    /// (all nodes share budgets), in memory otherwise.
    pub async fn for_config(config: &crate::config::Config) -> anyhow::Result<Limiter> {
        match config.queue.backend {
            crate::config::QueueBackend::Redis => {
                Limiter::redis(&config.queue.redis_url, &config.queue.namespace).await
            }
            crate::config::QueueBackend::Sqlite => Ok(Limiter::local()),
        }
    }

    /// Takes one call from `key`'s budget. `None`: go now (the call is counted); `Some(wait)`:
    /// nothing was taken, ask again after `wait`.
    pub async fn try_acquire(
        &self,
        key: &str,
        budget: &Budget,
    ) -> anyhow::Result<Option<Duration>> {
        let wait_ms = match &*self.backend {
            Backend::Local(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                let st = map.entry(key.to_string()).or_default();
                local_acquire(st, budget, now_ms())
            }
            Backend::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let (script, args): (&str, Vec<i64>) = match budget {
                    Budget::Paced { limit, window } => {
                        (PACED, vec![(ms(*window) / i64::from(*limit)).max(1)])
                    }
                    Budget::Fixed(windows) => (
                        FIXED,
                        windows
                            .iter()
                            .flat_map(|(l, w)| [i64::from(*l), ms(*w).max(1)])
                            .collect(),
                    ),
                };
                let wait: i64 = redis::Script::new(script)
                    .key(format!("{prefix}:{key}"))
                    .key(format!("{prefix}:{key}:hold"))
                    .arg(args)
                    .invoke_async(&mut conn)
                    .await?;
                wait
            }
        };
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms as u64)))
    }

    /// Nobody spends `key`'s budget for `duration` (a provider said the quota is gone).
    pub async fn hold(&self, key: &str, duration: Duration) -> anyhow::Result<()> {
        match &*self.backend {
            Backend::Local(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                let st = map.entry(key.to_string()).or_default();
                st.hold_ms = st.hold_ms.max(now_ms() + ms(duration));
            }
            Backend::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let _: i64 = redis::Script::new(HOLD)
                    .key(format!("{prefix}:{key}:hold"))
                    .arg(ms(duration).max(1))
                    .invoke_async(&mut conn)
                    .await?;
            }
        }
        Ok(())
    }
}

fn local_acquire(st: &mut LocalState, budget: &Budget, now: i64) -> i64 {
    if st.hold_ms > now {
        return st.hold_ms - now;
    }
    match budget {
        Budget::Paced { limit, window } => {
            let interval = (ms(*window) / i64::from(*limit)).max(1);
            let tolerance = interval / 2;
            let tat = st.tat_ms.max(now);
            if tat - now > tolerance {
                return tat - now - tolerance;
            }
            st.tat_ms = tat + interval;
            0
        }
        Budget::Fixed(windows) => {
            for (limit, len) in windows {
                let len = ms(*len).max(1);
                let idx = now / len;
                if st.windows.get(&(len, idx)).copied().unwrap_or(0) >= *limit {
                    return (idx + 1) * len - now;
                }
            }
            st.windows.retain(|(len, idx), _| (idx + 1) * len > now);
            for (_, len) in windows {
                let len = ms(*len).max(1);
                *st.windows.entry((len, now / len)).or_default() += 1;
            }
            0
        }
    }
}

/// Time until the next clock-aligned boundary of `window` (e.g. the next full minute).
pub fn until_window_end(window: Duration) -> Duration {
    let len = ms(window).max(1);
    let now = now_ms();
    Duration::from_millis(((now / len + 1) * len - now) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the local limiter with a simulated clock: every call asks, waits as told, asks
    /// again. Returns the times calls were allowed.
    fn simulate(budget: &Budget, calls: usize, start: i64) -> Vec<i64> {
        let mut st = LocalState::default();
        let mut now = start;
        let mut allowed = Vec::new();
        while allowed.len() < calls {
            match local_acquire(&mut st, budget, now) {
                0 => {
                    allowed.push(now);
                    now += 3; // the call itself takes a little while
                }
                wait => now += wait,
            }
        }
        allowed
    }

    #[test]
    fn paced_budget_never_puts_more_than_the_limit_in_any_rolling_window() {
        let budget = Budget::Paced {
            limit: 100,
            window: Duration::from_secs(10),
        }
        .with_headroom(0.01);
        let times = simulate(&budget, 1000, 1_000_000);
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..].iter().take_while(|u| **u < t + 10_000).count();
            assert!(in_window <= 100, "{in_window} calls in the 10 s from {t}");
        }
        // ...and still uses the budget: 1000 calls at 99 per 10 s take about 101 s.
        let took = times.last().unwrap() - times[0];
        assert!(took < 102_000, "1000 calls took {took} ms");
    }

    #[test]
    fn fixed_windows_allow_the_limit_then_wait_for_the_next_window() {
        let budget = Budget::Fixed(vec![
            (3, Duration::from_secs(60)),
            (5, Duration::from_secs(3600)),
        ]);
        let start = 7_200_000 + 10_000; // 10 s into a minute (and an hour)
        let times = simulate(&budget, 6, start);
        assert_eq!(&times[..3], &[start, start + 3, start + 6]);
        // The fourth call waits for the next minute, the sixth for the next hour.
        assert_eq!(times[3], 7_260_000);
        assert_eq!(times[5], 7_200_000 + 3_600_000);
    }

    #[test]
    fn a_hold_stops_every_call_until_it_ends() {
        let budget = Budget::Paced {
            limit: 10,
            window: Duration::from_secs(1),
        };
        let mut st = LocalState {
            hold_ms: 5_000,
            ..Default::default()
        };
        assert_eq!(local_acquire(&mut st, &budget, 1_000), 4_000);
        assert_eq!(local_acquire(&mut st, &budget, 5_000), 0);
    }
}
