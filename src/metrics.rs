//! Prometheus metrics: what the daemon did and how its queues and integrations stand.
//!
//! Call sites use the one-line helpers below ([`JobTimer`], [`retry_scheduled`],
//! [`rate_limit_wait`], [`webhook_delivery`]); they go through the `metrics` facade, so they
//! cost nothing where no recorder is installed (CLI commands, most tests). [`install`] puts
//! the Prometheus recorder in place (`syncd run` does it first thing) and returns a
//! [`Handle`] that renders the text format; the admin server keeps a clone of it to answer
//! `GET /metrics`. The exporter's own HTTP listener is not built in: one server, one auth.
//!
//! Gauges that describe stored state (queue depth, open issues, time since the last success)
//! are not updated by the code that changes that state — a CLI command or another node may
//! change it too — but sampled from the database and the queue every [`SAMPLE_EVERY`] by
//! the daemon's sampler (`app::sampler`), next to the scheduler.
//!
//! Label values are job kinds, outcomes, queue names, issue kinds, provider names, tenants
//! and integration names: never a URL, a message or anything else that could carry a secret.

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Queued tasks handed to the engine, by job kind.
pub const JOBS_STARTED: &str = "syncd_jobs_started_total";
/// Finished tasks, by job kind and outcome.
pub const JOBS_FINISHED: &str = "syncd_jobs_finished_total";
/// How long a task took, start to finish, by job kind.
pub const JOB_DURATION: &str = "syncd_job_duration_seconds";
/// Durable retries queued, by job kind.
pub const RETRIES_SCHEDULED: &str = "syncd_retries_scheduled_total";
/// Calls that found a provider's quota spent, by provider.
pub const RATE_LIMIT_WAITS: &str = "syncd_rate_limit_waits_total";
/// Seconds a call waited in place for quota, by provider.
pub const RATE_LIMIT_WAIT_SECONDS: &str = "syncd_rate_limit_wait_seconds";
/// Tasks waiting in each queue.
pub const QUEUE_DEPTH: &str = "syncd_queue_depth";
/// Open issues, by kind.
pub const OPEN_ISSUES: &str = "syncd_open_issues";
/// Seconds since an integration's last success.
pub const SECONDS_SINCE_LAST_SUCCESS: &str = "syncd_seconds_since_last_success";
/// Unix time of an integration's last success.
pub const LAST_SUCCESS_TIMESTAMP: &str = "syncd_last_success_timestamp_seconds";
/// Webhook delivery attempts, by result.
pub const WEBHOOK_DELIVERIES: &str = "syncd_webhook_deliveries_total";
/// How long a webhook delivery attempt took.
pub const WEBHOOK_DELIVERY_SECONDS: &str = "syncd_webhook_delivery_seconds";
/// Always 1, labelled with the version: tells which build a node runs.
pub const BUILD_INFO: &str = "syncd_build_info";

/// How often [`run_sampler`] refreshes the gauges (Prometheus' default scrape interval).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// Job durations range from a few milliseconds (a connection test, an unchanged feed) to
/// many minutes (a five-million-row import, a full CRM pass).
const JOB_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// A webhook receiver should answer within seconds; delivery times out well before a minute.
const WEBHOOK_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// In-place quota waits are capped by `[crm] max_inline_wait` (seconds by default).
const WAIT_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Renders the installed recorder's metrics in the Prometheus text format; cheap to clone,
/// meant to be kept in the admin server's state.
#[derive(Clone, Debug)]
pub struct Handle(PrometheusHandle);

impl Handle {
    /// The current metrics in the Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        self.0.render()
    }

    /// Drains recorded histogram samples into their buckets; the daemon's sampler calls it,
    /// so memory stays bounded between scrapes.
    pub fn upkeep(&self) {
        self.0.run_upkeep();
    }
}

/// The `Content-Type` of [`Handle::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

static INSTALLED: Mutex<Option<Handle>> = Mutex::new(None);

/// Installs the Prometheus recorder as the process' global `metrics` recorder and describes
/// every metric. Idempotent: a second call (tests, or the admin server asking for the handle)
/// returns the handle of the first. Fails only when another recorder was installed first.
pub fn install() -> anyhow::Result<Handle> {
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(JOB_DURATION.into()), JOB_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(WEBHOOK_DELIVERY_SECONDS.into()),
            WEBHOOK_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(RATE_LIMIT_WAIT_SECONDS.into()), WAIT_BUCKETS)?
        .build_recorder();
    let handle = Handle(recorder.handle());
    ::metrics::set_global_recorder(recorder)
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    describe();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // Known label values start at zero, so `rate()` and alerts see them before the first
    // event rather than a series that appears out of nowhere (job kinds: [`declare_kinds`]).
    for result in ["success", "failure"] {
        counter!(WEBHOOK_DELIVERIES, "result" => result).increment(0);
    }
    *installed = Some(handle.clone());
    Ok(handle)
}

/// Reports the job kinds' counters as zero until their first event, so `rate()` and alerts
/// see every kind from the start.
pub fn declare_kinds(kinds: &[&'static str]) {
    for &kind in kinds {
        counter!(JOBS_STARTED, "kind" => kind).increment(0);
        counter!(RETRIES_SCHEDULED, "kind" => kind).increment(0);
    }
}

/// The handle of the installed recorder, if [`install`] ran in this process.
pub fn handle() -> Option<Handle> {
    INSTALLED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// [`Handle::render`], as a function.
pub fn render(handle: &Handle) -> String {
    handle.render()
}

fn describe() {
    describe_counter!(
        JOBS_STARTED,
        "Queued tasks handed to the engine (every delivery, duplicates included), by job kind."
    );
    describe_counter!(
        JOBS_FINISHED,
        "Tasks that finished, by job kind and outcome (success, unchanged, transient, rate_limited, waiting, rejected, invalid, misconfigured; passed or failed for connection tests; paused, duplicate, given_up, error, interrupted)."
    );
    describe_histogram!(
        JOB_DURATION,
        "Seconds from a task's start to its end, by job kind."
    );
    describe_counter!(
        RETRIES_SCHEDULED,
        "Durable retries queued after a transient failure or a rate limit, by job kind."
    );
    describe_counter!(
        RATE_LIMIT_WAITS,
        "CRM calls that found the provider's quota spent and waited in place or ended the run to continue later, by provider."
    );
    describe_histogram!(
        RATE_LIMIT_WAIT_SECONDS,
        "Seconds a CRM call waited in place for the provider's quota (0 when the run was continued later instead), by provider."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Tasks waiting in a queue, due now or scheduled for later (retries, continuations), by queue."
    );
    describe_gauge!(OPEN_ISSUES, "Open issues in the issues log, by kind.");
    describe_gauge!(
        SECONDS_SINCE_LAST_SUCCESS,
        "Seconds since the integration last synced successfully (absent before its first success)."
    );
    describe_gauge!(
        LAST_SUCCESS_TIMESTAMP,
        "Unix time of the integration's last successful sync (absent before its first success)."
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook delivery attempts, by result (success or failure)."
    );
    describe_histogram!(
        WEBHOOK_DELIVERY_SECONDS,
        "Seconds a webhook delivery attempt took, until the receiver answered or the attempt failed."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the label says which syncd version runs."
    );
}

/// Measures one task: counts its start when created, its outcome and duration when
/// [`finish`](JobTimer::finish)ed. A timer dropped unfinished (the task's future was
/// dropped, e.g. cut off at the end of the shutdown grace) counts as `interrupted`.
#[derive(Debug)]
pub struct JobTimer {
    kind: &'static str,
    started: Instant,
    done: bool,
}

impl JobTimer {
    /// Counts the start of a task of `kind`.
    pub fn start(kind: &'static str) -> JobTimer {
        counter!(JOBS_STARTED, "kind" => kind).increment(1);
        JobTimer {
            kind,
            started: Instant::now(),
            done: false,
        }
    }

    /// Counts the end of the task with `outcome` and records its duration.
    pub fn finish(mut self, outcome: &'static str) {
        self.record(outcome);
    }

    fn record(&mut self, outcome: &'static str) {
        self.done = true;
        counter!(JOBS_FINISHED, "kind" => self.kind, "outcome" => outcome).increment(1);
        histogram!(JOB_DURATION, "kind" => self.kind).record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for JobTimer {
    fn drop(&mut self) {
        if !self.done {
            self.record("interrupted");
        }
    }
}

/// Counts a durable retry queued for a job of `kind`.
pub fn retry_scheduled(kind: &'static str) {
    counter!(RETRIES_SCHEDULED, "kind" => kind).increment(1);
}

/// Counts a call that found `provider`'s quota spent and records how long it `waited` in
/// place (zero when the run stops and continues later instead).
pub fn rate_limit_wait(provider: &'static str, waited: Duration) {
    counter!(RATE_LIMIT_WAITS, "provider" => provider).increment(1);
    histogram!(RATE_LIMIT_WAIT_SECONDS, "provider" => provider).record(waited.as_secs_f64());
}

/// Records one webhook delivery attempt to `endpoint`: whether the receiver accepted it and
/// how long it took. The endpoint is deliberately not a label: its URL may carry a token and
/// the number of endpoints is unbounded; failures per endpoint belong in the delivery log.
pub fn webhook_delivery(endpoint: &str, ok: bool, seconds: f64) {
    let _ = endpoint;
    let result = if ok { "success" } else { "failure" };
    counter!(WEBHOOK_DELIVERIES, "result" => result).increment(1);
    histogram!(WEBHOOK_DELIVERY_SECONDS).record(seconds);
}
