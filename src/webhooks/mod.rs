//! Outbound webhooks: tenants' endpoints receive signed events when prices, stock or
//! company data change.
//!
//! ```text
//! price_changes / company_changes (same transaction as the data: the outbox)
//!        │  dispatcher: rows not yet dispatched ─► events (≤ max_items_per_event items)
//!        │              + one delivery per subscribed endpoint, rows marked, one commit
//!        ▼
//! webhook_deliveries (pending, not queued) ─► queue task (idempotency key per attempt)
//!        ▼
//! webhook_deliver job: sign (Standard Webhooks), POST through the SSRF guard, log the
//! attempt, schedule the next one or finish; endpoint health and issues
//! ```
//!
//! Every pending delivery without a queue task is pushed by the dispatcher, whoever made it
//! so: a new event, a failed attempt waiting for its retry, an operator's redeliver or
//! replay, or a daemon killed between its commit and its push. So nothing is lost in a
//! crash, and a task pushed twice is harmless: an attempt runs only while the delivery's
//! attempt count still matches the task's.

pub mod deliver;
pub mod events;
pub mod sign;

use crate::config::Config;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What deliveries share in one process: the guarded HTTP client (its connection pools
/// and TLS sessions) and the per-endpoint in-flight limits. Built once from the daemon's
/// configuration (a field of the jobs' context), which does not change while it runs.
pub struct Runtime {
    /// The webhook client (no redirects, SSRF guard, attempt timeout).
    pub client: reqwest::Client,
    /// The parsed `[webhooks] allow_cidrs`.
    pub allow: Vec<crate::egress::Cidr>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Runtime {
    /// The runtime for `config`'s `[webhooks]` and `[http]` settings.
    pub fn new(config: &Config) -> anyhow::Result<Runtime> {
        Ok(Runtime {
            client: deliver::client(config)?,
            allow: config.webhooks.cidrs().map_err(|e| anyhow::anyhow!(e))?,
            limits: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one delivery to `key` (tenant/endpoint), or `None` when `limit` are in
    /// flight already. The slot is given back when the permit is dropped.
    pub fn try_slot(&self, key: &str, limit: usize) -> Option<OwnedSemaphorePermit> {
        let sem = {
            let mut map = self.limits.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(limit)))
                .clone()
        };
        sem.try_acquire_owned().ok()
    }
}
