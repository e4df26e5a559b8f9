//! The admin API's own rate limit: a rolling window per tenant (and one for operators), like
//! the platform's Public API. In memory for one node; in Redis (a sorted set per key, one Lua
//! script per request, on Redis' clock) when the queue is Redis, so every node counts the
//! same window.

use crate::config::{Config, QueueBackend};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The verdict for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed (it was counted).
    pub allowed: bool,
    /// The window's size.
    pub limit: u32,
    /// Requests left in the window after this one.
    pub remaining: u32,
    /// Until the oldest counted request leaves the window (one more request fits then).
    pub reset: Duration,
}

/// A shared rolling-window limiter; cheap to clone.
#[derive(Clone)]
pub struct ApiLimiter {
    limit: u32,
    window: Duration,
    backend: Arc<Backend>,
}

enum Backend {
    Local(Mutex<HashMap<String, VecDeque<Instant>>>),
    Redis {
        conn: redis::aio::ConnectionManager,
        prefix: String,
    },
}

const SLIDING: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  count = count + 1
  allowed = 1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset = 0
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
return {allowed, limit - count, reset}
";

const COUNT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
return redis.call('ZCARD', KEYS[1])
";

impl ApiLimiter {
    /// `limit` requests per `[admin] rate_window`: in Redis (under the queue's namespace and
    /// `name`, shared by every node) with the Redis queue, in memory otherwise.
    pub async fn for_config(config: &Config, name: &str, limit: u32) -> anyhow::Result<ApiLimiter> {
        let window = config.admin.rate_window;
        match config.queue.backend {
            QueueBackend::Redis => {
                let ns = &config.queue.namespace;
                let prefix = if name.is_empty() {
                    ns.clone()
                } else {
                    format!("{ns}:{name}")
                };
                ApiLimiter::redis(&config.queue.redis_url, &prefix, limit, window).await
            }
            QueueBackend::Sqlite => Ok(ApiLimiter::local(limit, window)),
        }
    }

    /// In memory.
    pub fn local(limit: u32, window: Duration) -> ApiLimiter {
        ApiLimiter {
            limit,
            window,
            backend: Arc::new(Backend::Local(Mutex::new(HashMap::new()))),
        }
    }

    /// In Redis under `{prefix}:api:…`.
    pub async fn redis(
        url: &str,
        prefix: &str,
        limit: u32,
        window: Duration,
    ) -> anyhow::Result<ApiLimiter> {
        let conn = redis::aio::ConnectionManager::new(redis::Client::open(url)?).await?;
        Ok(ApiLimiter {
            limit,
            window,
            backend: Arc::new(Backend::Redis {
                conn,
                prefix: format!("{prefix}:api"),
            }),
        })
    }

    /// Whether `key`'s window is full, without counting anything.
    pub async fn is_full(&self, key: &str) -> anyhow::Result<bool> {
        match &*self.backend {
            Backend::Local(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                let Some(log) = map.get_mut(key) else {
                    return Ok(false);
                };
                let now = Instant::now();
                while log
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    log.pop_front();
                }
                Ok(log.len() >= self.limit as usize)
            }
            Backend::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let count: i64 = redis::Script::new(COUNT)
                    .key(format!("{prefix}:{key}"))
                    .arg(self.window.as_millis() as i64)
                    .invoke_async(&mut conn)
                    .await?;
                Ok(count >= i64::from(self.limit))
            }
        }
    }

    /// Counts one request of `key` if the window has room.
    pub async fn check(&self, key: &str) -> anyhow::Result<Decision> {
        match &*self.backend {
            Backend::Local(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                let log = map.entry(key.to_string()).or_default();
                Ok(local_check(log, self.limit, self.window, Instant::now()))
            }
            Backend::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let (allowed, remaining, reset): (i64, i64, i64) = redis::Script::new(SLIDING)
                    .key(format!("{prefix}:{key}"))
                    .arg(self.window.as_millis() as i64)
                    .arg(i64::from(self.limit))
                    .arg(rand::random::<u64>())
                    .invoke_async(&mut conn)
                    .await?;
                Ok(Decision {
                    allowed: allowed == 1,
                    limit: self.limit,
                    remaining: remaining.max(0) as u32,
                    reset: Duration::from_millis(reset.max(0) as u64),
                })
            }
        }
    }
}

fn local_check(
    log: &mut VecDeque<Instant>,
    limit: u32,
    window: Duration,
    now: Instant,
) -> Decision {
    while log
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        log.pop_front();
    }
    let allowed = (log.len() as u32) < limit;
    if allowed {
        log.push_back(now);
    }
    let reset = log
        .front()
        .map(|t| window.saturating_sub(now.duration_since(*t)))
        .unwrap_or_default();
    Decision {
        allowed,
        limit,
        remaining: limit - log.len() as u32,
        reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_fills_refuses_and_frees_one_slot_as_the_oldest_request_ages_out() {
        let mut log = VecDeque::new();
        let window = Duration::from_secs(10);
        let t0 = Instant::now();
        for i in 0..3 {
            let d = local_check(&mut log, 3, window, t0 + Duration::from_secs(i));
            assert!(d.allowed);
            assert_eq!(d.remaining, 2 - i as u32);
        }
        let refused = local_check(&mut log, 3, window, t0 + Duration::from_secs(4));
        assert!(!refused.allowed);
        assert_eq!(refused.reset, Duration::from_secs(6));
        let later = local_check(&mut log, 3, window, t0 + Duration::from_secs(10));
        assert!(later.allowed, "the first request left the window");
        assert_eq!(later.remaining, 0);
    }
}
