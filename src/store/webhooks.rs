//! Webhook events, deliveries, attempts and endpoint health.
//!
//! The change tables (`price_changes`, `company_changes`) are the outbox: the dispatcher
//! reads the rows not yet dispatched, turns them into events and one delivery per subscribed
//! endpoint, and marks those rows dispatched — all in one transaction, so an event exists
//! exactly when its rows are marked. A delivery is `pending` until an attempt succeeds (`delivered`),
//! the schedule runs out or the endpoint refuses it for good (`failed`), or the endpoint is
//! disabled (`held`: kept, not sent, released by `syncd endpoint enable`).
//!
//! The rows are marked one by one rather than passed by a cursor over their ids: PostgreSQL
//! hands out ids when rows are inserted, not when they commit, so a long import on one node
//! can commit ids below those another node's import committed (and a cursor moved past)
//! meanwhile. Dispatchers of several nodes take turns through a lock (see
//! [`db::Db::begin_write`]).

use super::Store;
use super::db;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// A pending delivery whose next attempt has no queue task yet.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Unqueued {
    /// Delivery id.
    pub id: String,
    /// Tenant id.
    pub tenant: String,
    /// Endpoint name.
    pub endpoint: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// When the next attempt is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// What an attempt needs to know about its delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryWork {
    /// Delivery id (the `webhook-id`).
    pub id: String,
    /// Tenant id.
    pub tenant: String,
    /// Endpoint name.
    pub endpoint: String,
    /// Event type.
    pub event_type: String,
    /// pending | delivered | failed | held
    pub status: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// Asked for by an operator.
    pub manual: bool,
    /// The exact body to send.
    pub payload: String,
    /// Whether the endpoint is disabled.
    pub disabled: bool,
    /// Whether the endpoint has an open `webhook_failing` or `misconfigured` issue (a
    /// success then resolves it).
    pub open_issues: bool,
}

/// One finished attempt, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord<'a> {
    /// Delivery id.
    pub delivery_id: &'a str,
    /// Tenant id.
    pub tenant: &'a str,
    /// Endpoint name.
    pub endpoint: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// Asked for by an operator.
    pub manual: bool,
    /// When the request started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: i64,
    /// The HTTP status, if a response came.
    pub status_code: Option<u16>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// The first 16 KiB of the response body.
    pub response_body: Option<String>,
    /// The delivery's status after this attempt.
    pub new_status: &'a str,
    /// When the next attempt is due, if there is one.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Whether the attempt counts towards the endpoint's failure streak (`Some(false)`:
    /// a failure that does not count, e.g. 429; `None`: a success).
    pub failure_counts: Option<bool>,
}

/// An endpoint's health after an attempt.
#[derive(Debug, Clone, Copy, Default)]
pub struct Health {
    /// Failed attempts since the last success.
    pub consecutive_failures: i64,
    /// The first failure after the last success.
    pub failing_since: Option<DateTime<Utc>>,
    /// Whether it had failures before this attempt (a success then resolves issues).
    pub was_failing: bool,
}

/// A delivery as `syncd deliveries` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    /// Delivery id (the `webhook-id`).
    pub id: String,
    /// The event delivered.
    pub event_id: String,
    /// Tenant id.
    pub tenant: String,
    /// Endpoint name.
    pub endpoint: String,
    /// Event type.
    pub event_type: String,
    /// pending | delivered | failed | held
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// Asked for by an operator.
    pub manual: bool,
    /// Status code of the last attempt.
    pub last_status: Option<i64>,
    /// Error of the last attempt.
    pub last_error: Option<String>,
    /// When the next attempt is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the delivery was created.
    pub created_at: DateTime<Utc>,
    /// When it succeeded.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first.
    #[sqlx(skip)]
    pub attempt_log: Vec<AttemptRow>,
}

/// One attempt as logged.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AttemptRow {
    /// Delivery id.
    #[serde(skip)]
    pub delivery_id: String,
    /// 1 for the first.
    pub attempt: i64,
    /// Asked for by an operator.
    pub manual: bool,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: i64,
    /// HTTP status, if a response came.
    pub status_code: Option<i64>,
    /// What went wrong.
    pub error: Option<String>,
    /// First 16 KiB of the response.
    pub response_body: Option<String>,
    /// When the next attempt was scheduled.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Filter for [`Store::list_deliveries`].
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this `(tenant, endpoint)`.
    pub endpoint: Option<(String, String)>,
    /// Only this tenant (a tenant's admin token sees its own deliveries only).
    pub tenant: Option<String>,
    /// Only deliveries that failed or are retrying after a failure.
    pub failed: bool,
    /// At most this many, newest first.
    pub limit: i64,
}

/// A sortable unique id with a prefix: milliseconds, then 64 random bits.
pub fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}{:011x}{:016x}",
        Utc::now().timestamp_millis(),
        rand::random::<u64>()
    )
}

/// One change row of the outbox, as the event composer (`webhooks::events`) reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxRow {
    /// A row of `price_changes`.
    Price {
        /// Tenant id.
        tenant: String,
        /// The feed.
        feed: String,
        /// The import that made the change.
        run: String,
        /// The part.
        sku: String,
        /// `added`, `removed` or `changed`.
        change: String,
        /// Price before (decimal text).
        old_price: Option<String>,
        /// Price after.
        new_price: Option<String>,
        /// Stock before.
        old_stock: Option<i64>,
        /// Stock after.
        new_stock: Option<i64>,
    },
    /// A row of `company_changes`.
    Company {
        /// Tenant id.
        tenant: String,
        /// The CRM source.
        crm: String,
        /// The run that made the change.
        run: String,
        /// The company's domain.
        domain: String,
        /// What changed.
        change: String,
        /// The company's data (JSON text).
        data: String,
    },
}

/// An event ready to be stored, with the endpoints it goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// `evt_…`.
    pub id: String,
    /// Tenant id.
    pub tenant: String,
    /// `price.changed`, `stock.changed`, `company.enriched`.
    pub event_type: &'static str,
    /// The integration the changes came from.
    pub source: String,
    /// The JSON body every delivery sends.
    pub payload: String,
    /// The subscribed endpoints: one delivery each.
    pub endpoints: Vec<String>,
}

/// What turns outbox rows into events (given the time of the dispatch).
pub type Composer<'a> = &'a (dyn Fn(&[OutboxRow], DateTime<Utc>) -> Vec<NewEvent> + Sync);

/// Rows read per outbox table per transaction.
const OUTBOX_BATCH: i64 = 5000;

impl Store {
    /// Turns change rows not yet dispatched into events (`compose` decides which, with
    /// what body) and one delivery per subscribed endpoint, and marks the rows dispatched,
    /// in one transaction. Returns the change rows read and the deliveries created.
    pub async fn dispatch_outbox(
        &self,
        compose: Composer<'_>,
        first_delay: chrono::Duration,
    ) -> sqlx::Result<(usize, usize)> {
        let mut tx = self.db().begin_write("webhook-dispatch").await?;
        type PriceRow = (
            i64,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
        );
        let prices: Vec<PriceRow> = db::query_as(
            "SELECT id, tenant, feed, run, sku, change, old_price, new_price, old_stock, new_stock
             FROM price_changes WHERE NOT dispatched ORDER BY id LIMIT ?",
        )
        .bind(OUTBOX_BATCH)
        .fetch_all(&mut tx)
        .await?;
        type CompanyRow = (i64, String, String, String, String, String, String);
        let companies: Vec<CompanyRow> = db::query_as(
            "SELECT id, tenant, crm, run, domain, change, data
             FROM company_changes WHERE NOT dispatched ORDER BY id LIMIT ?",
        )
        .bind(OUTBOX_BATCH)
        .fetch_all(&mut tx)
        .await?;
        if prices.is_empty() && companies.is_empty() {
            return Ok((0, 0));
        }
        let rows = prices.len() + companies.len();
        let price_ids: Vec<i64> = prices.iter().map(|r| r.0).collect();
        let company_ids: Vec<i64> = companies.iter().map(|r| r.0).collect();
        let outbox: Vec<OutboxRow> = prices
            .into_iter()
            .map(
                |(
                    _,
                    tenant,
                    feed,
                    run,
                    sku,
                    change,
                    old_price,
                    new_price,
                    old_stock,
                    new_stock,
                )| {
                    OutboxRow::Price {
                        tenant,
                        feed,
                        run,
                        sku,
                        change,
                        old_price,
                        new_price,
                        old_stock,
                        new_stock,
                    }
                },
            )
            .chain(
                companies
                    .into_iter()
                    .map(
                        |(_, tenant, crm, run, domain, change, data)| OutboxRow::Company {
                            tenant,
                            crm,
                            run,
                            domain,
                            change,
                            data,
                        },
                    ),
            )
            .collect();
        let now = super::now();
        let events = compose(&outbox, now);

        let disabled: BTreeSet<(String, String)> =
            db::query_as("SELECT tenant, endpoint FROM webhook_endpoints WHERE disabled = TRUE")
                .fetch_all(&mut tx)
                .await?
                .into_iter()
                .collect();
        let due = now + first_delay;
        let mut created = 0;
        for e in events {
            db::query(
                "INSERT INTO webhook_events (id, tenant, type, source, payload, created_at)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&e.id)
            .bind(&e.tenant)
            .bind(e.event_type)
            .bind(&e.source)
            .bind(&e.payload)
            .bind(now)
            .execute(&mut tx)
            .await?;
            for endpoint in &e.endpoints {
                let held = disabled.contains(&(e.tenant.clone(), endpoint.clone()));
                insert_delivery(
                    &mut tx,
                    &e.id,
                    &e.tenant,
                    endpoint,
                    e.event_type,
                    held,
                    false,
                    now,
                    due,
                )
                .await?;
                created += 1;
            }
        }
        for (table, ids) in [
            ("price_changes", &price_ids),
            ("company_changes", &company_ids),
        ] {
            for chunk in ids.chunks(1000) {
                let marks = vec!["?"; chunk.len()].join(",");
                // Only placeholders and a fixed table name are formatted into the text.
                let mut q = db::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET dispatched = TRUE WHERE id IN ({marks})"
                )));
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(&mut tx).await?;
            }
        }
        tx.commit().await?;
        Ok((rows, created))
    }

    /// Pending deliveries without a queue task, soonest first; also those whose task should
    /// have run before `lost_before` (a queue that lost tasks, e.g. a wiped Redis).
    pub async fn unqueued_deliveries(
        &self,
        limit: i64,
        lost_before: Option<DateTime<Utc>>,
    ) -> sqlx::Result<Vec<Unqueued>> {
        let mut rows: Vec<Unqueued> = db::query_as(
            "SELECT id, tenant, endpoint, attempts, next_attempt_at FROM webhook_deliveries
             WHERE status = 'pending' AND queued = FALSE ORDER BY next_attempt_at LIMIT ?",
        )
        .bind(limit)
        .fetch_all(self.db())
        .await?;
        if let Some(lost_before) = lost_before
            && (rows.len() as i64) < limit
        {
            let lost: Vec<Unqueued> = db::query_as(
                "SELECT id, tenant, endpoint, attempts, next_attempt_at FROM webhook_deliveries
                 WHERE status = 'pending' AND queued = TRUE AND next_attempt_at < ?
                 ORDER BY next_attempt_at LIMIT ?",
            )
            .bind(lost_before)
            .bind(limit - rows.len() as i64)
            .fetch_all(self.db())
            .await?;
            rows.extend(lost);
        }
        Ok(rows)
    }

    /// Marks deliveries as queued, each only if it has not changed since it was read (an
    /// attempt or an operator may have rescheduled it meanwhile; then it is pushed again).
    pub async fn mark_queued(&self, pushed: &[Unqueued]) -> sqlx::Result<()> {
        let mut tx = self.db().begin_write("webhook-queue").await?;
        for d in pushed {
            db::query(
                "UPDATE webhook_deliveries SET queued = TRUE
                 WHERE id = ? AND status = 'pending' AND attempts = ? AND next_attempt_at IS NOT DISTINCT FROM ?",
            )
            .bind(&d.id)
            .bind(d.attempts)
            .bind(d.next_attempt_at)
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await
    }

    /// The delivery and its body, for an attempt.
    pub async fn delivery_work(&self, id: &str) -> sqlx::Result<Option<DeliveryWork>> {
        db::query_as(
            "SELECT d.id, d.tenant, d.endpoint, d.event_type, d.status, d.attempts, d.manual,
                    e.payload,
                    COALESCE((SELECT disabled FROM webhook_endpoints w
                              WHERE w.tenant = d.tenant AND w.endpoint = d.endpoint), FALSE) AS disabled,
                    EXISTS (SELECT 1 FROM issues i
                            WHERE i.tenant = d.tenant AND i.integration = d.endpoint
                              AND i.kind IN ('webhook_failing', 'misconfigured')
                              AND i.resolved_at IS NULL) AS open_issues
             FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
             WHERE d.id = ?",
        )
        .bind(id)
        .fetch_optional(self.db())
        .await
    }

    /// Leaves a delivery pending without an attempt, to be queued again at `at` (the
    /// endpoint is at its `max_in_flight`).
    pub async fn defer_delivery(
        &self,
        id: &str,
        attempts: i64,
        at: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        db::query(
            "UPDATE webhook_deliveries SET next_attempt_at = ?, queued = FALSE, updated_at = ?
             WHERE id = ? AND status = 'pending' AND attempts = ?",
        )
        .bind(at)
        .bind(super::now())
        .bind(id)
        .bind(attempts)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Ends a delivery without an attempt (its endpoint left the catalog).
    pub async fn abandon_delivery(&self, id: &str, reason: &str) -> sqlx::Result<()> {
        db::query(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = ?, next_attempt_at = NULL,
                    updated_at = ? WHERE id = ? AND status = 'pending'",
        )
        .bind(reason)
        .bind(super::now())
        .bind(id)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Records an attempt, the delivery's new state and the endpoint's health, together.
    pub async fn record_attempt(&self, a: &AttemptRecord<'_>) -> sqlx::Result<Health> {
        let now = super::now();
        let mut tx = self
            .db()
            .begin_write(&format!("webhook-endpoint/{}/{}", a.tenant, a.endpoint))
            .await?;
        let (attempt,): (i64,) = db::query_as(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, status = ?, next_attempt_at = ?,
                    queued = FALSE, last_status = ?, last_error = ?, updated_at = ?,
                    delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END
             WHERE id = ? RETURNING attempts",
        )
        .bind(a.new_status)
        .bind(a.next_attempt_at)
        .bind(a.status_code.map(i64::from))
        .bind(a.error.as_deref())
        .bind(now)
        .bind(a.new_status)
        .bind(now)
        .bind(a.delivery_id)
        .fetch_one(&mut tx)
        .await?;
        db::query(
            "INSERT INTO webhook_attempts (delivery_id, tenant, endpoint, event_type, attempt, manual,
                    started_at, duration_ms, status_code, error, response_body, next_attempt_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(a.delivery_id)
        .bind(a.tenant)
        .bind(a.endpoint)
        .bind(a.event_type)
        .bind(attempt)
        .bind(a.manual)
        .bind(a.started_at)
        .bind(a.duration_ms)
        .bind(a.status_code.map(i64::from))
        .bind(a.error.as_deref())
        .bind(a.response_body.as_deref())
        .bind(a.next_attempt_at)
        .execute(&mut tx)
        .await?;
        let before: Option<(i64, Option<DateTime<Utc>>)> = db::query_as(
            "SELECT consecutive_failures, failing_since FROM webhook_endpoints
             WHERE tenant = ? AND endpoint = ?",
        )
        .bind(a.tenant)
        .bind(a.endpoint)
        .fetch_optional(&mut tx)
        .await?;
        let (failures, since) = before.unwrap_or((0, None));
        let health = match a.failure_counts {
            None => Health {
                consecutive_failures: 0,
                failing_since: None,
                was_failing: failures > 0,
            },
            Some(counts) => Health {
                consecutive_failures: failures + i64::from(counts),
                failing_since: if counts {
                    since.or(Some(a.started_at))
                } else {
                    since
                },
                was_failing: failures > 0,
            },
        };
        // Only write the endpoint row when something changed: a healthy endpoint's
        // successes cost no extra write.
        if before.is_none() || a.failure_counts.is_some() || failures > 0 {
            let success = a.failure_counts.is_none();
            db::query(
                "INSERT INTO webhook_endpoints (tenant, endpoint, consecutive_failures, failing_since,
                        last_success_at, last_failure_at)
                 VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (tenant, endpoint) DO UPDATE SET
                    consecutive_failures = excluded.consecutive_failures,
                    failing_since = excluded.failing_since,
                    last_success_at = COALESCE(excluded.last_success_at, webhook_endpoints.last_success_at),
                    last_failure_at = COALESCE(excluded.last_failure_at, webhook_endpoints.last_failure_at)",
            )
            .bind(a.tenant)
            .bind(a.endpoint)
            .bind(health.consecutive_failures)
            .bind(health.failing_since)
            .bind(success.then_some(now))
            .bind((!success).then_some(now))
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await?;
        Ok(health)
    }

    /// Whether the endpoint is disabled.
    pub async fn endpoint_disabled(&self, tenant: &str, endpoint: &str) -> sqlx::Result<bool> {
        let row: Option<(bool,)> = db::query_as(
            "SELECT disabled FROM webhook_endpoints WHERE tenant = ? AND endpoint = ?",
        )
        .bind(tenant)
        .bind(endpoint)
        .fetch_optional(self.db())
        .await?;
        Ok(row.is_some_and(|(d,)| d))
    }

    /// Disables an endpoint and holds its pending deliveries. Returns false when it already
    /// was disabled.
    pub async fn disable_endpoint(
        &self,
        tenant: &str,
        endpoint: &str,
        reason: &str,
    ) -> sqlx::Result<bool> {
        let now = super::now();
        let mut tx = self
            .db()
            .begin_write(&format!("webhook-endpoint/{tenant}/{endpoint}"))
            .await?;
        let changed = db::query(
            "INSERT INTO webhook_endpoints (tenant, endpoint, disabled, disabled_at, disabled_reason)
             VALUES (?, ?, TRUE, ?, ?)
             ON CONFLICT (tenant, endpoint) DO UPDATE SET disabled = TRUE,
                disabled_at = excluded.disabled_at, disabled_reason = excluded.disabled_reason
             WHERE webhook_endpoints.disabled = FALSE",
        )
        .bind(tenant)
        .bind(endpoint)
        .bind(now)
        .bind(reason)
        .execute(&mut tx)
        .await?
        .rows_affected()
            > 0;
        hold_pending(&mut tx, tenant, endpoint).await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// Holds one delivery (its endpoint is disabled).
    pub async fn hold_delivery(&self, id: &str) -> sqlx::Result<()> {
        db::query(
            "UPDATE webhook_deliveries SET status = 'held', queued = FALSE, updated_at = ?
             WHERE id = ? AND status = 'pending'",
        )
        .bind(super::now())
        .bind(id)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Enables an endpoint with a clean slate and releases its held deliveries (due now).
    /// Returns the number released.
    pub async fn enable_endpoint(&self, tenant: &str, endpoint: &str) -> sqlx::Result<u64> {
        let now = super::now();
        let mut tx = self
            .db()
            .begin_write(&format!("webhook-endpoint/{tenant}/{endpoint}"))
            .await?;
        db::query(
            "UPDATE webhook_endpoints SET disabled = FALSE, disabled_at = NULL, disabled_reason = NULL,
                    consecutive_failures = 0, failing_since = NULL
             WHERE tenant = ? AND endpoint = ?",
        )
        .bind(tenant)
        .bind(endpoint)
        .execute(&mut tx)
        .await?;
        let released = db::query(
            "UPDATE webhook_deliveries SET status = 'pending', queued = FALSE, next_attempt_at = ?,
                    updated_at = ?
             WHERE tenant = ? AND endpoint = ? AND status = 'held'",
        )
        .bind(now)
        .bind(now)
        .bind(tenant)
        .bind(endpoint)
        .execute(&mut tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(released)
    }

    /// Makes a delivery due again now, as a manual attempt. Returns `(tenant, endpoint,
    /// previous status)`, or `None` for an unknown id.
    pub async fn redeliver(&self, id: &str) -> sqlx::Result<Option<(String, String, String)>> {
        let now = super::now();
        let mut tx = self
            .db()
            .begin_write(&format!("webhook-delivery/{id}"))
            .await?;
        let row: Option<(String, String, String)> =
            db::query_as("SELECT tenant, endpoint, status FROM webhook_deliveries WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut tx)
                .await?;
        if let Some((tenant, endpoint, _)) = &row {
            let disabled: Option<(bool,)> = db::query_as(
                "SELECT disabled FROM webhook_endpoints WHERE tenant = ? AND endpoint = ?",
            )
            .bind(tenant)
            .bind(endpoint)
            .fetch_optional(&mut tx)
            .await?;
            let status = if disabled.is_some_and(|(d,)| d) {
                "held"
            } else {
                "pending"
            };
            db::query(
                "UPDATE webhook_deliveries SET status = ?, queued = FALSE, next_attempt_at = ?, manual = TRUE,
                        updated_at = ? WHERE id = ?",
            )
            .bind(status)
            .bind(now)
            .bind(now)
            .bind(id)
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    /// Events of `tenant` created at or after `since`, oldest first: `(id, type)`.
    pub async fn events_since(
        &self,
        tenant: &str,
        since: DateTime<Utc>,
    ) -> sqlx::Result<Vec<(String, String)>> {
        db::query_as(
            "SELECT id, type FROM webhook_events WHERE tenant = ? AND created_at >= ?
             ORDER BY created_at, id",
        )
        .bind(tenant)
        .bind(since)
        .fetch_all(self.db())
        .await
    }

    /// New manual deliveries of `events` to one endpoint, due now. Returns their ids.
    pub async fn replay(
        &self,
        tenant: &str,
        endpoint: &str,
        events: &[(String, String)],
    ) -> sqlx::Result<Vec<String>> {
        let now = super::now();
        let mut tx = self
            .db()
            .begin_write(&format!("webhook-endpoint/{tenant}/{endpoint}"))
            .await?;
        let mut ids = Vec::new();
        for (event_id, event_type) in events {
            ids.push(
                insert_delivery(
                    &mut tx, event_id, tenant, endpoint, event_type, false, true, now, now,
                )
                .await?,
            );
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Deliveries, newest first, with their attempts.
    pub async fn list_deliveries(&self, f: &DeliveryFilter) -> sqlx::Result<Vec<DeliveryRow>> {
        let (tenant, endpoint) = f
            .endpoint
            .as_ref()
            .map(|(t, e)| (Some(t.as_str()), Some(e.as_str())))
            .unwrap_or((None, None));
        let mut rows: Vec<DeliveryRow> = db::query_as(
            "SELECT id, event_id, tenant, endpoint, event_type, status, attempts, manual, last_status,
                    last_error, next_attempt_at, created_at, delivered_at
             FROM webhook_deliveries
             WHERE (? IS NULL OR (tenant = ? AND endpoint = ?))
               AND (? IS NULL OR tenant = ?)
               AND (NOT ? OR status = 'failed' OR (status IN ('pending', 'held') AND attempts > 0))
             ORDER BY created_at DESC, id DESC LIMIT ?",
        )
        .bind(tenant)
        .bind(tenant)
        .bind(endpoint)
        .bind(f.tenant.as_deref())
        .bind(f.tenant.as_deref())
        .bind(f.failed)
        .bind(f.limit)
        .fetch_all(self.db())
        .await?;
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            by_id.insert(r.id.clone(), i);
        }
        for chunk in rows
            .iter()
            .map(|r| r.id.clone())
            .collect::<Vec<_>>()
            .chunks(500)
        {
            let placeholders = vec!["?"; chunk.len()].join(",");
            let sql = format!(
                "SELECT delivery_id, attempt, manual, started_at, duration_ms, status_code, error,
                        response_body, next_attempt_at
                 FROM webhook_attempts WHERE delivery_id IN ({placeholders}) ORDER BY id"
            );
            // Only placeholders are formatted into the text; every value is bound.
            let mut q = db::query_as::<AttemptRow>(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id);
            }
            for a in q.fetch_all(self.db()).await? {
                if let Some(&i) = by_id.get(&a.delivery_id) {
                    rows[i].attempt_log.push(a);
                }
            }
        }
        Ok(rows)
    }

    /// Deletes attempts, finished deliveries and undelivered-to-nobody events older than
    /// `keep`. Held and pending deliveries (and their events) are kept.
    pub async fn prune_webhooks(&self, keep: chrono::Duration) -> sqlx::Result<u64> {
        let cutoff = super::now() - keep;
        let mut total = 0;
        for sql in [
            "DELETE FROM webhook_attempts WHERE started_at < ?",
            "DELETE FROM webhook_deliveries WHERE status IN ('delivered', 'failed') AND updated_at < ?",
            "DELETE FROM webhook_events WHERE created_at < ?
                AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
        ] {
            total += db::query(sql)
                .bind(cutoff)
                .execute(self.db())
                .await?
                .rows_affected();
        }
        Ok(total)
    }
}

#[allow(clippy::too_many_arguments)]
async fn insert_delivery(
    tx: &mut db::Tx,
    event_id: &str,
    tenant: &str,
    endpoint: &str,
    event_type: &str,
    held: bool,
    manual: bool,
    now: DateTime<Utc>,
    due: DateTime<Utc>,
) -> sqlx::Result<String> {
    let id = new_id("msg_");
    db::query(
        "INSERT INTO webhook_deliveries (id, event_id, tenant, endpoint, event_type, status,
                next_attempt_at, manual, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(event_id)
    .bind(tenant)
    .bind(endpoint)
    .bind(event_type)
    .bind(if held { "held" } else { "pending" })
    .bind(due)
    .bind(manual)
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

async fn hold_pending(tx: &mut db::Tx, tenant: &str, endpoint: &str) -> sqlx::Result<()> {
    db::query(
        "UPDATE webhook_deliveries SET status = 'held', queued = FALSE, updated_at = ?
         WHERE tenant = ? AND endpoint = ? AND status = 'pending'",
    )
    .bind(super::now())
    .bind(tenant)
    .bind(endpoint)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
