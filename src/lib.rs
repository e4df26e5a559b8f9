//! # syncd
//!
//! The background worker that keeps a multi-tenant B2B quoting platform in sync with the
//! outside world: distributor price feeds today; CRM enrichment and webhooks plug into the
//! same engine.
//!
//! ```text
//! jobs/*.toml ─► catalog ─► scheduler ─┐
//! CLI (refetch) ───────────────────────┼─► queue (apalis: SQLite | Redis)
//!                                      │        │
//!                                      │        ▼
//!                                      │   worker ─► jobs::execute ─► handler (feed_fetch …)
//!                                      │                  │
//!                                      │         Outcome ─┼─► sync_state (last attempt/success)
//!                                      │                  ├─► issues (open / bump / resolve)
//!                                      └──────────────────┴─► durable retry (new task, run_at)
//! ```
//!
//! - [`config`]: daemon settings, validated once. [`catalog`]: the tenants' integrations.
//! - [`queue`]: the only module that knows apalis. [`scheduler`]: schedule ticks → jobs.
//! - [`jobs`]: job payloads and the engine; one file per job kind.
//! - [`outcome`]: the outcome type, HTTP classification and the backoff maths (pure).
//! - [`feeds`]: transports and the streaming parser. [`store`]: the state database.
//! - [`metrics`]: Prometheus metrics. [`systemd`]: readiness, stopping and watchdog notices.
//! - [`webhooks`]: outbound events: outbox dispatcher, signing, delivery, SSRF guard.

pub mod admin;
pub mod app;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod crm;
pub mod duration;
pub mod egress;
pub mod feeds;
pub mod jobs;
pub mod metrics;
pub mod ops;
pub mod outcome;
pub mod queue;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod webhooks;

/// A URL as it may be shown: the password (if any) replaced by `***`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparseable URL)".into(),
    }
}
