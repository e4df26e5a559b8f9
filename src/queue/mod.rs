//! The only module that knows apalis. It offers two things: [`Queue::push`] (with a run-at
//! time and an idempotency key) and [`Queue::run_workers`] (one worker per lane).
//!
//! It knows nothing of what it carries: a payload names its lane ([`Payload::lane`]), the
//! lanes and their concurrency are given at [`Queue::connect`], and the workers hand every
//! payload to a [`Handler`]. The jobs layer above supplies all three.
//!
//! Facts about apalis 1.0 that shape this code (see the apalis notes in the design docs):
//! - its retries are immediate (SQLite) or linear (Redis), so we never hand it a failed
//!   job: the engine pushes a new task with a later `run_at` and finishes the current one;
//! - `run_at` has whole-second resolution, so run-at times are rounded *up*: a retry is
//!   never earlier than a provider's Retry-After;
//! - an idle worker only notices new tasks when polled (`[queue] poll_interval`) *and* on its
//!   heartbeat, so the heartbeat is one second (see `heartbeat`), not half the orphan timeout;
//! - a worker name may not be reused within the heartbeat window, so names carry the host,
//!   the pid, a random boot id and the restart count;
//! - a backend error kills a worker; the monitor restarts it after a growing pause, which is
//!   how the daemon rides out a Redis restart;
//! - `SqliteStorage::setup` turns fsync off: we run its migrations on our own pool instead.

use crate::config::{Config, QueueBackend};
use crate::store::Store;
use anyhow::Context;
use apalis::layers::WorkerBuilderExt;
use apalis_core::backend::TaskSink;
use apalis_core::backend::ext::BackendExt;
use apalis_core::error::BoxDynError;
use apalis_core::monitor::Monitor;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::data::Data;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_redis::{ConnectionManager, RedisStorage};
use apalis_sqlite::{SqlitePool, SqliteStorage};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often apalis may re-run a task whose handler returned an error. Our handler only
/// errs when syncd's own state database is unreachable; job failures never reach apalis.
const INFRA_ATTEMPTS: usize = 5;

/// How long a Redis idempotency key lives: longer than any schedule interval we expect, so
/// that two nodes cannot enqueue the same tick twice.
const REDIS_IDEMPOTENCY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the queue carries: serialisable, and naming the lane it goes to.
pub trait Payload:
    Serialize + DeserializeOwned + Clone + Send + Sync + Unpin + std::fmt::Debug + 'static
{
    /// The lane (one queue, one worker per node): the suffix of the queue's name. Renaming
    /// a lane orphans what is queued in it, so lane names are stable.
    fn lane(&self) -> &'static str;
    /// What the payload is about, for error messages (`feed_fetch for acme/prices`).
    fn describe(&self) -> String;
}

/// What the workers hand every payload to.
pub trait Handler<P>: Send + Sync + 'static {
    /// Runs one payload to its end. An `Err` means the work could not even be recorded
    /// (syncd's own state database is down): the queue keeps the task and tries it again.
    fn handle(&self, payload: P) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// One lane: a queue of its own with its own number of workers per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    /// Stable name: the queue is `{namespace}-{name}`.
    pub name: &'static str,
    /// Tasks of this lane run at once on one node.
    pub concurrency: usize,
}

/// A handle for pushing tasks and running workers; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    backend: Backend,
    config: Arc<Config>,
    lanes: Arc<[Lane]>,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Redis(ConnectionManager),
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("backend", &self.config.queue.backend)
            .finish()
    }
}

impl Queue {
    /// Connects the configured backend with these `lanes`. With SQLite the queue shares the
    /// state database.
    pub async fn connect(
        config: Arc<Config>,
        store: &Store,
        lanes: Vec<Lane>,
    ) -> anyhow::Result<Queue> {
        let backend = match config.queue.backend {
            QueueBackend::Sqlite => {
                let pool = match store.sqlite_pool() {
                    Some(pool) => pool.clone(),
                    // PostgreSQL state: the embedded queue gets a file of its own.
                    None => crate::store::open_sqlite_pool(&config.queue_sqlite_path()).await?,
                };
                let mut migrator = SqliteStorage::migrations();
                migrator.set_ignore_missing(true);
                crate::store::migrate(&migrator, &pool)
                    .await
                    .context("cannot create the queue tables in the SQLite database")?;
                Backend::Sqlite(pool)
            }
            QueueBackend::Redis => Backend::Redis(connect_redis(&config.queue.redis_url).await?),
        };
        Ok(Queue {
            backend,
            config,
            lanes: lanes.into(),
        })
    }

    /// Whether the queue's backend answers (for readiness checks).
    pub async fn ping(&self) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            }
        }
        Ok(())
    }

    /// The queue of a lane: `{namespace}-{lane}`.
    pub fn queue_name(&self, lane: &str) -> String {
        format!("{}-{lane}", self.config.queue.namespace)
    }

    /// Tasks of `lane` run at once on this node.
    fn concurrency(&self, lane: &str) -> usize {
        self.lanes
            .iter()
            .find(|l| l.name == lane)
            .map_or(self.config.queue.concurrency, |l| l.concurrency)
    }

    fn heartbeat(&self) -> (Duration, usize) {
        // orphan timeout = heartbeat × missed beats. The beat is short because an idle apalis
        // worker picks up new tasks on its heartbeat rather than its poll interval: with one
        // beat per half orphan timeout, a re-fetch queued on an idle node waited up to 30 s.
        let hb = Duration::from_secs(1);
        let missed = self.config.queue.orphan_timeout.as_secs().max(2) as usize;
        (hb, missed)
    }

    fn sqlite_storage<P>(&self, pool: &SqlitePool, lane: &str) -> SqliteStorage<P> {
        let (hb, missed) = self.heartbeat();
        let cfg = apalis_sqlite::Config::default()
            .queue(self.queue_name(lane))
            .heartbeat_interval(hb)
            .missed_heartbeats(missed)
            .batch_size(self.concurrency(lane));
        SqliteStorage::new(pool).with_config(cfg)
    }

    fn redis_storage<P>(&self, conn: &ConnectionManager, lane: &str) -> RedisStorage<P> {
        let (hb, missed) = self.heartbeat();
        let cfg = apalis_redis::Config::default()
            .queue(self.queue_name(lane))
            .heartbeat_interval(hb)
            .missed_heartbeats(missed)
            .batch_size(self.concurrency(lane))
            .idempotency_ttl(Some(REDIS_IDEMPOTENCY_TTL));
        RedisStorage::new(conn.clone()).with_config(cfg)
    }

    /// Queues `payload` to run at `run_at` (now if `None`). A push whose `key` was pushed
    /// before is dropped by the backend: that is how a schedule tick runs once across nodes.
    pub async fn push<P: Payload>(
        &self,
        payload: &P,
        run_at: Option<DateTime<Utc>>,
        key: Option<String>,
    ) -> anyhow::Result<()> {
        let task = build_task(payload, run_at, key);
        let lane = payload.lane();
        match &self.backend {
            Backend::Sqlite(pool) => self
                .sqlite_storage(pool, lane)
                .push_task(task)
                .await
                .map_err(|e| e.to_string()),
            Backend::Redis(conn) => self
                .redis_storage(conn, lane)
                .push_task(task)
                .await
                .map_err(|e| e.to_string()),
        }
        .map_err(|e| anyhow::anyhow!("cannot queue {}: {e}", payload.describe()))
    }

    /// Queues several payloads like [`Queue::push`], in one write per lane (one transaction
    /// on SQLite), instead of one write each.
    pub async fn push_many<P: Payload>(
        &self,
        items: Vec<(P, Option<DateTime<Utc>>, Option<String>)>,
    ) -> anyhow::Result<()> {
        for lane in self.lanes.iter().map(|l| l.name) {
            let tasks: Vec<_> = items
                .iter()
                .filter(|(p, _, _)| p.lane() == lane)
                .map(|(p, at, key)| build_task(p, *at, key.clone()))
                .collect();
            if tasks.is_empty() {
                continue;
            }
            let count = tasks.len();
            let tasks = futures::stream::iter(tasks);
            match &self.backend {
                Backend::Sqlite(pool) => self
                    .sqlite_storage(pool, lane)
                    .push_all(tasks)
                    .await
                    .map_err(|e| e.to_string()),
                Backend::Redis(conn) => self
                    .redis_storage::<P>(conn, lane)
                    .push_all(tasks)
                    .await
                    .map_err(|e| e.to_string()),
            }
            .map_err(|e| anyhow::anyhow!("cannot queue {count} {lane} tasks: {e}"))?;
        }
        Ok(())
    }

    /// Deletes finished tasks older than `keep`, so the queue does not grow forever.
    ///
    /// On SQLite this is our own statement: apalis' `vacuum_before` compares its integer
    /// `run_at` with a date string (so it deletes every finished task whatever its age),
    /// ignores the queue name and ends with a full `VACUUM` that rewrites the whole state
    /// database under an exclusive lock. On Redis apalis' script is right.
    pub async fn vacuum(&self, keep: Duration) -> anyhow::Result<usize> {
        let mut total = 0;
        for lane in self.lanes.iter().map(|l| l.name) {
            total += match &self.backend {
                Backend::Sqlite(pool) => {
                    let cutoff = (Utc::now().timestamp() - keep.as_secs() as i64).max(0);
                    sqlx::query(
                        "DELETE FROM Jobs WHERE job_type = ? AND status IN ('Done', 'Killed')
                         AND done_at IS NOT NULL AND done_at < ?",
                    )
                    .bind(self.queue_name(lane))
                    .bind(cutoff)
                    .execute(pool)
                    .await?
                    .rows_affected() as usize
                }
                Backend::Redis(conn) => {
                    use apalis_core::backend::Vacuum;
                    // Vacuuming reads no payloads: any payload type names the same keys.
                    self.redis_storage::<serde_json::Value>(conn, lane)
                        .vacuum_before(keep)
                        .await
                        .map_err(|e| anyhow::anyhow!("vacuuming the Redis queue failed: {e}"))?
                }
            };
        }
        Ok(total)
    }

    /// Tasks waiting per queue, due now or scheduled for later (the queue-depth metric): on
    /// SQLite the `Pending` rows of apalis' `Jobs` table, on Redis the active list plus the
    /// scheduled set.
    pub async fn depths(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let mut depths = Vec::new();
        for lane in self.lanes.iter().map(|l| l.name) {
            let name = self.queue_name(lane);
            let depth = match &self.backend {
                Backend::Sqlite(pool) => sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM Jobs WHERE job_type = ? AND status = 'Pending'",
                )
                .bind(&name)
                .fetch_one(pool)
                .await?
                .max(0) as u64,
                Backend::Redis(conn) => {
                    let cfg = apalis_redis::Config::default().queue(&name);
                    let (active, scheduled): (u64, u64) = redis::pipe()
                        .llen(cfg.active_jobs_list())
                        .zcard(cfg.scheduled_jobs_set())
                        .query_async(&mut conn.clone())
                        .await
                        .context("cannot read the queue lengths from Redis")?;
                    active + scheduled
                }
            };
            depths.push((name, depth));
        }
        Ok(depths)
    }

    /// Runs one worker per lane until `shutdown` fires, handing every task to `handler`,
    /// then lets in-flight tasks finish for at most `[shutdown_grace]`. Tasks not started
    /// stay queued; tasks cut off by the grace period are picked up again after the orphan
    /// timeout.
    pub async fn run_workers<P: Payload, H: Handler<P>>(
        &self,
        handler: Arc<H>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let boot = boot_id();
        let grace = self.config.shutdown_grace;
        let mut monitor = Monitor::new()
            .should_restart(|worker, error| {
                warn!(worker = %worker.name(), %error, "queue worker stopped; restarting");
                true
            })
            .with_terminator(async move { tokio::time::sleep(grace).await });
        for lane in self.lanes.iter() {
            let name = format!("{boot}-{}", lane.name);
            let (concurrency, poll) = (lane.concurrency, self.config.queue.poll_interval);
            let handler = handler.clone();
            // The same worker on either backend; the storages are different types, so the
            // registration is spelled once as a macro rather than twice by hand.
            macro_rules! register {
                ($storage:expr) => {{
                    let storage = $storage;
                    monitor.register(move |restarts| {
                        WorkerBuilder::new(format!("{name}-r{restarts}"))
                            .backend(
                                storage
                                    .clone()
                                    .poll_with_interval(poll)
                                    .before_start(move |_| restart_pause(restarts)),
                            )
                            .data(handler.clone())
                            .concurrency(concurrency)
                            .catch_panic()
                            .build(handle::<P, H>)
                    })
                }};
            }
            monitor = match &self.backend {
                Backend::Sqlite(pool) => register!(self.sqlite_storage::<P>(pool, lane.name)),
                Backend::Redis(conn) => register!(self.redis_storage::<P>(conn, lane.name)),
            };
        }
        info!(backend = ?self.config.queue.backend, "workers started");
        crate::systemd::ready();
        let signal = async move {
            shutdown.cancelled().await;
            info!(grace = %crate::duration::format(grace), "shutting down: finishing in-flight jobs");
            Ok(())
        };
        monitor
            .run_with_signal(signal)
            .await
            .context("queue workers failed")?;
        Ok(())
    }
}

/// An apalis task for `payload`: at most [`INFRA_ATTEMPTS`] runs, due at `run_at` (whole
/// seconds, rounded up: never earlier than asked), deduplicated by `key`.
fn build_task<P: Payload>(
    payload: &P,
    run_at: Option<DateTime<Utc>>,
    key: Option<String>,
) -> apalis_core::task::Task<P> {
    let mut task = TaskBuilder::new(payload.clone()).max_attempts(INFRA_ATTEMPTS);
    if let Some(at) = run_at {
        let millis = at.timestamp_millis().max(0) as u64;
        task = task.run_at_timestamp(millis.div_ceil(1000));
    }
    if let Some(key) = key {
        task = task.idempotency_key(key);
    }
    task.build()
}

/// The task handler apalis calls: hands the payload to our [`Handler`].
///
/// The payload runs as a task of its own on the runtime's worker threads: apalis polls its
/// workers' handler futures from the monitor's future (one thread), so running them inline
/// would put every delivery's HTTP and database work of a node on a single core.
async fn handle<P: Payload, H: Handler<P>>(
    payload: P,
    handler: Data<Arc<H>>,
) -> Result<(), BoxDynError> {
    let handler: Arc<H> = (*handler).clone();
    match tokio::spawn(async move { handler.handle(payload).await }).await {
        Ok(result) => result.map_err(|e| format!("{e:#}").into()),
        Err(e) if e.is_panic() => Err("the job panicked".into()),
        Err(e) => Err(format!("the job was cancelled: {e}").into()),
    }
}

/// A restarted worker waits a little longer each time, so a backend that is down (Redis
/// restarting) is not hammered in a tight loop.
async fn restart_pause<E>(restarts: usize) -> Result<(), E> {
    if restarts > 0 {
        let pause = Duration::from_millis(250 * restarts.min(20) as u64);
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

/// Host, pid and a random suffix: unique per boot, readable in the queue's worker list.
fn boot_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// A Redis connection that reconnects by itself, with timeouts so a dead server is noticed.
async fn connect_redis(url: &str) -> anyhow::Result<ConnectionManager> {
    let shown = crate::redact_url(url);
    let client = redis::Client::open(url)
        .with_context(|| format!("[queue] redis_url `{shown}` is not valid"))?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_with_config(client, cfg)
        .await
        .with_context(|| format!("cannot connect to Redis at {shown}"))
}
