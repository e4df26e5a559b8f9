//! Job kinds, the payload every queued job carries, and the engine that turns a job's
//! [`Outcome`] into sync state, issues and durable retries.
//!
//! Jobs never see apalis: the queue calls [`execute`] with a [`Job`] and a [`JobContext`].
//! `execute` always finishes the queued task itself — a retry is a *new* task with a later
//! `run_at` — so apalis' own retries (immediate on SQLite, linear on Redis) never come into
//! play for job failures.

pub mod connection_test;
mod context;
pub mod crm_enrich;
mod engine;
pub mod feed_fetch;
pub mod webhook_deliver;

pub use context::{JobContext, ftp_timeouts, http_client};
pub use engine::{Ended, apply_outcome, execute, secret_changed};

use crate::catalog::IntegrationKind;
use crate::config::Config;
use crate::outcome::Outcome;
use crate::queue::{Lane, Payload};
use crate::store::prices::ChangeCounts;
use crate::store::sync_state::Validators;
use chrono::Utc;
use serde::{Deserialize, Serialize};

/// Every job kind, one queue each. The registry: add new kinds here.
pub const ALL_KINDS: &[JobKind] = &[
    JobKind::FeedFetch,
    JobKind::CrmEnrich,
    JobKind::ConnectionTest,
    JobKind::WebhookDeliver,
];

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Download and import a distributor feed.
    FeedFetch,
    /// Pull companies from HubSpot or enrich them from Apollo.io.
    CrmEnrich,
    /// Prove credentials and reachability without touching the data.
    ConnectionTest,
    /// One attempt of one webhook delivery.
    WebhookDeliver,
}

impl JobKind {
    /// The job kind that runs an integration of a catalog kind.
    pub fn for_integration(kind: IntegrationKind) -> JobKind {
        match kind {
            IntegrationKind::Feed => JobKind::FeedFetch,
            IntegrationKind::Crm => JobKind::CrmEnrich,
        }
    }

    /// Whether the engine keeps a run counter, sync state and pause for jobs of this kind.
    /// Deliveries keep their own state and schedule in the delivery log instead.
    pub fn tracks_runs(self) -> bool {
        self != JobKind::WebhookDeliver
    }

    /// Stable name (queue suffix, logs, metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::FeedFetch => feed_fetch::JOB_NAME,
            JobKind::CrmEnrich => crm_enrich::JOB_NAME,
            JobKind::ConnectionTest => connection_test::JOB_NAME,
            JobKind::WebhookDeliver => webhook_deliver::JOB_NAME,
        }
    }
}

/// Runs `job` with its kind's handler. The registry's other half: a new kind is a file of
/// its own, a variant above, and an arm here.
async fn run_kind(ctx: &JobContext, job: &Job) -> anyhow::Result<Ended> {
    Ok(match job.kind {
        JobKind::FeedFetch => Ended::Outcome(feed_fetch::run(ctx, job).await),
        JobKind::CrmEnrich => Ended::Outcome(crm_enrich::run(ctx, job).await),
        JobKind::ConnectionTest => {
            let probe = connection_test::run(ctx, &job.tenant, &job.integration).await?;
            let passed = probe.verdict == crate::feeds::probe::Verdict::Ok;
            Ended::Recorded(if passed { "passed" } else { "failed" })
        }
        JobKind::WebhookDeliver => {
            webhook_deliver::run(ctx, job).await?;
            Ended::Recorded("done")
        }
    })
}

/// Why a job was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A schedule tick.
    Schedule,
    /// An operator asked (`syncd refetch`); runs even when the integration is paused.
    Refetch,
    /// A durable retry of an earlier attempt.
    Retry,
    /// The rest of a run that stopped to wait for a provider's quota.
    Continue,
    /// A stored credential was set (`syncd credentials set`): its integrations are tested.
    CredentialChange,
}

/// The payload of every queued job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique per queued task; retries get `{run}.{attempt}`.
    pub id: String,
    /// Shared by a first attempt and all its retries.
    pub run: String,
    /// What to do.
    pub kind: JobKind,
    /// Tenant id.
    pub tenant: String,
    /// Integration name.
    pub integration: String,
    /// 0 for the first attempt.
    pub attempt: u32,
    /// Why it was queued.
    pub trigger: Trigger,
    /// Skip the unchanged check.
    #[serde(default)]
    pub force: bool,
    /// Accept a full file with far fewer rows than the last import (operator's decision).
    #[serde(default)]
    pub accept_shrink: bool,
    /// Whether the operator asked for this run (kept across its retries).
    #[serde(default)]
    pub manual: bool,
    /// How many times this attempt stopped to wait for quota (continuations do not count
    /// as attempts: waiting for a provider's budget is not a failure).
    #[serde(default)]
    pub waits: u32,
    /// `webhook_deliver`: the delivery to attempt (`integration` is the endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
}

impl Job {
    /// A fresh first attempt.
    pub fn new(kind: JobKind, tenant: &str, integration: &str, trigger: Trigger) -> Job {
        let run = new_id();
        Job {
            id: format!("{run}.0"),
            run,
            kind,
            tenant: tenant.to_string(),
            integration: integration.to_string(),
            attempt: 0,
            trigger,
            force: false,
            accept_shrink: false,
            manual: trigger == Trigger::Refetch,
            waits: 0,
            delivery: None,
        }
    }

    /// The follow-up attempt.
    pub fn retry(&self) -> Job {
        let attempt = self.attempt + 1;
        Job {
            id: format!("{}.{attempt}", self.run),
            attempt,
            trigger: Trigger::Retry,
            waits: 0,
            ..self.clone()
        }
    }

    /// The continuation of this attempt after a wait for quota.
    pub fn continuation(&self) -> Job {
        let waits = self.waits + 1;
        Job {
            id: format!("{}.{}w{waits}", self.run, self.attempt),
            waits,
            trigger: Trigger::Continue,
            ..self.clone()
        }
    }

    /// `tenant/integration`.
    pub fn target(&self) -> String {
        format!("{}/{}", self.tenant, self.integration)
    }
}

impl Payload for Job {
    fn lane(&self) -> &'static str {
        self.kind.as_str()
    }

    fn describe(&self) -> String {
        format!("{} for {}", self.kind.as_str(), self.target())
    }
}

/// One lane per job kind. Deliveries have their own concurrency setting, since a node sends
/// many more of them than it fetches feeds.
pub fn lanes(config: &Config) -> Vec<Lane> {
    ALL_KINDS
        .iter()
        .map(|&kind| Lane {
            name: kind.as_str(),
            concurrency: match kind {
                JobKind::WebhookDeliver => config.webhooks.concurrency,
                _ => config.queue.concurrency,
            },
        })
        .collect()
}

/// The queue with every job kind's lane (for pushing; the daemon also runs its workers).
pub async fn connect_queue(
    config: std::sync::Arc<Config>,
    store: &crate::store::Store,
) -> anyhow::Result<crate::queue::Queue> {
    crate::queue::Queue::connect(config.clone(), store, lanes(&config)).await
}

/// A sortable unique id: milliseconds since the epoch, then 32 random bits, in hex.
pub fn new_id() -> String {
    format!(
        "{:011x}{:08x}",
        Utc::now().timestamp_millis(),
        rand::random::<u32>()
    )
}

/// What one run of a job produced.
pub struct RunResult {
    /// How it ended.
    pub outcome: Outcome,
    /// What identifies the imported version of the source, on success.
    pub validators: Option<Validators>,
    /// What an import changed, on success.
    pub changes: Option<ChangeCounts>,
}

impl RunResult {
    /// A result with no new validators.
    pub fn outcome(outcome: Outcome) -> Self {
        RunResult {
            outcome,
            validators: None,
            changes: None,
        }
    }

    /// A failure of our own state database during the job: transient, retried durably.
    pub fn infrastructure(e: anyhow::Error) -> Self {
        RunResult::outcome(Outcome::transient(format!(
            "syncd's state database failed: {e:#}"
        )))
    }
}
