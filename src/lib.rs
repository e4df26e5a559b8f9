#![doc = include_str!("../docs/ARCHITECTURE.md")]

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
pub mod text;
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
