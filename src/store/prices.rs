//! A feed's price list, imported inside one transaction: readers see the old list until the
//! new one is complete, and a failed import (rolled back) leaves the old list untouched.
//!
//! Change records are written in the same transaction. For each batch of the new file the
//! stored rows of the same parts are read back and compared: new parts are `added`, parts
//! whose price or stock differ are `changed`, and only those rows are written — a daily file
//! in which most prices stay the same costs mostly reads. Parts of the old list that the new
//! full file no longer has are `removed`; to find them without holding the old list in
//! memory, the import keeps a 64-bit hash of every part number it saw (8 bytes a part) and
//! walks the stored list once at the end. A first import records no per-part changes
//! (everything would be "added"); its count goes to the sync state.

use super::Store;
use super::db;
use serde::Serialize;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// One parsed price row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceRow {
    /// Part number, trimmed.
    pub sku: String,
    /// Exact decimal text, normalised (`"123.45"`); empty on a delete row.
    pub price: String,
    /// Units in stock, if the feed has them.
    pub stock: Option<i64>,
    /// Manufacturer part number.
    pub mpn: Option<String>,
    /// EAN/GTIN.
    pub ean: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Currency code, upper case.
    pub currency: Option<String>,
    /// Delta files only: what to do with the row.
    pub action: Option<Action>,
}

/// A delta file's action code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `A` (or `N`): a new part.
    Add,
    /// `C` (or `U`): a changed part.
    Change,
    /// `D`: the part is gone.
    Delete,
}

impl Action {
    /// Reads `A`/`N`, `C`/`U` or `D`, in either case.
    pub fn parse(code: &str) -> Option<Action> {
        match code.trim().to_ascii_uppercase().as_str() {
            "A" | "N" => Some(Action::Add),
            "C" | "U" => Some(Action::Change),
            "D" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// What an import changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChangeCounts {
    /// Parts that are new.
    pub added: i64,
    /// Parts that are gone.
    pub removed: i64,
    /// Parts whose price changed.
    pub price_changed: i64,
    /// Parts whose stock changed.
    pub stock_changed: i64,
}

/// A change record as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PriceChange {
    /// Part number.
    pub sku: String,
    /// `added`, `removed` or `changed`.
    pub change: String,
    /// Price before (null when added).
    pub old_price: Option<String>,
    /// Price after (null when removed).
    pub new_price: Option<String>,
    /// Stock before.
    pub old_stock: Option<i64>,
    /// Stock after.
    pub new_stock: Option<i64>,
}

/// Rows per statement: 7 parameters each stays below SQLite's limit of 32,766.
const ROWS_PER_STATEMENT: usize = 1000;

/// An open import of one feed. Dropping it without [`PriceImport::commit`] rolls back and
/// keeps the previous list.
pub struct PriceImport {
    tx: db::Tx,
    tenant: String,
    feed: String,
    run: String,
    /// Rows the feed had before this import.
    pub previous: i64,
    delta: bool,
    /// 64-bit hashes of the part numbers a full file listed: 8 bytes a part.
    seen: Vec<u64>,
    counts: ChangeCounts,
}

impl Store {
    /// Starts importing `tenant/feed` as import `run`. `delta` files change the list; full
    /// files replace it.
    pub async fn begin_price_import(
        &self,
        tenant: &str,
        feed: &str,
        run: &str,
        delta: bool,
    ) -> sqlx::Result<PriceImport> {
        // BEGIN IMMEDIATE: take the write lock now, not halfway through (where a busy
        // database could no longer be waited for).
        let mut tx = self
            .db()
            .begin_write(&format!("prices/{tenant}/{feed}"))
            .await?;
        if tx.is_postgres() {
            // Each chunk's statements are planned for their own values: a generic plan, made
            // once for the statement and kept (PostgreSQL switches to one after five runs),
            // joins a chunk to the whole price list by a scan, which turns a large import
            // quadratic (a million-row replace: 12 minutes instead of seconds).
            db::query("SET LOCAL plan_cache_mode = force_custom_plan")
                .execute(&mut tx)
                .await?;
        }
        let (previous,): (i64,) =
            db::query_as("SELECT COUNT(*) FROM prices WHERE tenant = ? AND feed = ?")
                .bind(tenant)
                .bind(feed)
                .fetch_one(&mut tx)
                .await?;
        if tx.is_postgres() && previous > 0 {
            // The per-chunk lookups are planned from the table's statistics. Right after a
            // feed's first import they still describe the table before it (autovacuum has
            // not caught up), and a plan for a near-empty table scans the whole list for
            // every chunk: a million-row replace took 6 minutes instead of seconds. ANALYZE
            // samples a bounded number of rows, so refreshing stale figures is cheap.
            let (estimate,): (f64,) = db::query_as(
                "SELECT reltuples::float8 FROM pg_class WHERE oid = 'prices'::regclass",
            )
            .fetch_one(&mut tx)
            .await?;
            if estimate < previous as f64 {
                db::query("ANALYZE prices").execute(&mut tx).await?;
            }
        }
        Ok(PriceImport {
            tx,
            tenant: tenant.to_string(),
            feed: feed.to_string(),
            run: run.to_string(),
            previous,
            delta,
            seen: Vec::new(),
            counts: ChangeCounts::default(),
        })
    }

    /// The stored rows of a feed, ordered by SKU.
    pub async fn prices(&self, tenant: &str, feed: &str) -> sqlx::Result<Vec<PriceRow>> {
        type Row = (
            String,
            String,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = db::query_as(
            "SELECT sku, price, stock, mpn, ean, description, currency FROM prices
             WHERE tenant = ? AND feed = ? ORDER BY sku",
        )
        .bind(tenant)
        .bind(feed)
        .fetch_all(self.db())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(sku, price, stock, mpn, ean, description, currency)| PriceRow {
                    sku,
                    price,
                    stock,
                    mpn,
                    ean,
                    description,
                    currency,
                    action: None,
                },
            )
            .collect())
    }

    /// The change records of a feed, oldest first.
    pub async fn price_changes(&self, tenant: &str, feed: &str) -> sqlx::Result<Vec<PriceChange>> {
        db::query_as(
            "SELECT sku, change, old_price, new_price, old_stock, new_stock FROM price_changes
             WHERE tenant = ? AND feed = ? ORDER BY id",
        )
        .bind(tenant)
        .bind(feed)
        .fetch_all(self.db())
        .await
    }

    /// Forgets change records older than `keep`.
    pub async fn prune_price_changes(&self, keep: chrono::Duration) -> sqlx::Result<u64> {
        Ok(db::query("DELETE FROM price_changes WHERE recorded_at < ?")
            .bind(super::now() - keep)
            .execute(self.db())
            .await?
            .rows_affected())
    }
}

fn sku_hash(sku: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    sku.hash(&mut h);
    h.finish()
}

impl PriceImport {
    /// Parts the new full file listed so far, duplicates included (for the shrink guard).
    pub fn parts_seen(&self) -> usize {
        self.seen.len()
    }

    /// Writes rows: full files and `A`/`C` rows of deltas upsert, `D` rows delete. A SKU
    /// seen twice in one file keeps its last row.
    pub async fn write(&mut self, rows: &[PriceRow]) -> sqlx::Result<()> {
        if !self.delta && self.previous > 0 {
            self.seen.extend(rows.iter().map(|r| sku_hash(&r.sku)));
        }
        if self.previous == 0 {
            // First import: nothing to compare with, and no per-part records.
            let (deletes, upserts): (Vec<&PriceRow>, Vec<&PriceRow>) =
                rows.iter().partition(|r| r.action == Some(Action::Delete));
            for chunk in upserts.chunks(ROWS_PER_STATEMENT) {
                self.upsert(chunk).await?;
            }
            for row in deletes {
                self.delete(&row.sku).await?;
            }
            return Ok(());
        }
        let (deletes, upserts): (Vec<&PriceRow>, Vec<&PriceRow>) =
            rows.iter().partition(|r| r.action == Some(Action::Delete));
        for chunk in upserts.chunks(ROWS_PER_STATEMENT) {
            // A part listed twice in one chunk: the last row wins and is compared once.
            let mut last: HashMap<&str, &PriceRow> = HashMap::with_capacity(chunk.len());
            for row in chunk {
                last.insert(&row.sku, row);
            }
            let unique: Vec<&PriceRow> = if last.len() == chunk.len() {
                chunk.to_vec()
            } else {
                chunk
                    .iter()
                    .filter(|r| std::ptr::eq(last[r.sku.as_str()], **r))
                    .copied()
                    .collect()
            };
            let diffs = self.differing(&unique).await?;
            if diffs.is_empty() {
                continue;
            }
            let mut to_write = Vec::with_capacity(diffs.len());
            let mut changes = Vec::new();
            for d in &diffs {
                let row = last[d.sku.as_str()];
                to_write.push(row);
                if !d.existed {
                    self.counts.added += 1;
                    changes.push(Change {
                        sku: &row.sku,
                        change: "added",
                        old_price: None,
                        new_price: Some(&row.price),
                        old_stock: None,
                        new_stock: row.stock,
                    });
                    continue;
                }
                let price_changed = d.price.as_deref() != Some(row.price.as_str());
                let stock_changed = d.stock != row.stock;
                if price_changed || stock_changed {
                    self.counts.price_changed += i64::from(price_changed);
                    self.counts.stock_changed += i64::from(stock_changed);
                    changes.push(Change {
                        sku: &row.sku,
                        change: "changed",
                        old_price: d.price.as_deref(),
                        new_price: Some(&row.price),
                        old_stock: d.stock,
                        new_stock: row.stock,
                    });
                }
            }
            self.record(&changes).await?;
            self.upsert(&to_write).await?;
        }
        for row in deletes {
            let old: Option<(String, Option<i64>)> = db::query_as(
                "SELECT price, stock FROM prices WHERE tenant = ? AND feed = ? AND sku = ?",
            )
            .bind(&self.tenant)
            .bind(&self.feed)
            .bind(&row.sku)
            .fetch_optional(&mut self.tx)
            .await?;
            if let Some((price, stock)) = old {
                self.counts.removed += 1;
                let change = Change {
                    sku: &row.sku,
                    change: "removed",
                    old_price: Some(&price),
                    new_price: None,
                    old_stock: stock,
                    new_stock: None,
                };
                self.record(&[change]).await?;
                self.delete(&row.sku).await?;
            }
        }
        Ok(())
    }

    /// The rows of `chunk` that are new or differ from what is stored, with the stored price
    /// and stock. The comparison runs inside SQLite: an unchanged part costs one lookup and
    /// never leaves the database.
    async fn differing(&mut self, chunk: &[&PriceRow]) -> sqlx::Result<Vec<Diff>> {
        let mut sql = String::with_capacity(500 + chunk.len() * 16);
        sql.push_str("SELECT v.column1, p.price, p.stock, p.sku IS NOT NULL FROM (VALUES ");
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 {
                "(?,?,?,?,?,?,?)"
            } else {
                ",(?,?,?,?,?,?,?)"
            });
        }
        sql.push_str(
            ") AS v LEFT JOIN prices AS p ON p.tenant = ? AND p.feed = ? AND p.sku = v.column1
             WHERE p.sku IS NULL OR p.price IS DISTINCT FROM v.column2 OR p.stock IS DISTINCT FROM v.column3
                OR p.mpn IS DISTINCT FROM v.column4 OR p.ean IS DISTINCT FROM v.column5
                OR p.description IS DISTINCT FROM v.column6 OR p.currency IS DISTINCT FROM v.column7",
        );
        // Only placeholders are formatted into the text; every value is bound.
        let mut q =
            db::query_as::<(String, Option<String>, Option<i64>, bool)>(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            q = q
                .bind(&row.sku)
                .bind(&row.price)
                .bind(row.stock)
                .bind(&row.mpn)
                .bind(&row.ean)
                .bind(&row.description)
                .bind(&row.currency);
        }
        let rows = q
            .bind(&self.tenant)
            .bind(&self.feed)
            .fetch_all(&mut self.tx)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(sku, price, stock, existed)| Diff {
                sku,
                price,
                stock,
                existed,
            })
            .collect())
    }

    async fn count(&mut self) -> sqlx::Result<i64> {
        let (n,): (i64,) =
            db::query_as("SELECT COUNT(*) FROM prices WHERE tenant = ? AND feed = ?")
                .bind(&self.tenant)
                .bind(&self.feed)
                .fetch_one(&mut self.tx)
                .await?;
        Ok(n)
    }

    async fn upsert(&mut self, chunk: &[&PriceRow]) -> sqlx::Result<()> {
        // Tenant and feed are bound once per statement, the rows come in as a VALUES list
        // (both engines name its columns column1, column2, …).
        let mut sql = String::with_capacity(400 + chunk.len() * 16);
        sql.push_str(
            "INSERT INTO prices (tenant, feed, sku, price, stock, mpn, ean, description, currency)
             SELECT ?, ?, column1, column2, column3, column4, column5, column6, column7 FROM (VALUES ",
        );
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 {
                "(?,?,?,?,?,?,?)"
            } else {
                ",(?,?,?,?,?,?,?)"
            });
        }
        sql.push_str(
            ") AS v WHERE true ON CONFLICT (tenant, feed, sku) DO UPDATE SET
                 price = excluded.price, stock = excluded.stock, mpn = excluded.mpn, ean = excluded.ean,
                 description = excluded.description, currency = excluded.currency",
        );
        // Only placeholders are formatted into the text; every value is bound.
        let mut q = db::query(sqlx::AssertSqlSafe(sql))
            .bind(&self.tenant)
            .bind(&self.feed);
        for row in chunk {
            q = q
                .bind(&row.sku)
                .bind(&row.price)
                .bind(row.stock)
                .bind(&row.mpn)
                .bind(&row.ean)
                .bind(&row.description)
                .bind(&row.currency);
        }
        q.execute(&mut self.tx).await?;
        Ok(())
    }

    async fn delete(&mut self, sku: &str) -> sqlx::Result<()> {
        db::query("DELETE FROM prices WHERE tenant = ? AND feed = ? AND sku = ?")
            .bind(&self.tenant)
            .bind(&self.feed)
            .bind(sku)
            .execute(&mut self.tx)
            .await?;
        Ok(())
    }

    async fn record(&mut self, changes: &[Change<'_>]) -> sqlx::Result<()> {
        let now = super::now();
        for chunk in changes.chunks(ROWS_PER_STATEMENT) {
            let mut sql = String::from(
                "INSERT INTO price_changes (tenant, feed, run, recorded_at, sku, change, old_price, new_price, old_stock, new_stock)
                 SELECT ?, ?, ?, ?, column1, column2, column3, column4, column5, column6 FROM (VALUES ",
            );
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 {
                    "(?,?,?,?,?,?)"
                } else {
                    ",(?,?,?,?,?,?)"
                });
            }
            sql.push_str(") AS v");
            // Only placeholders are formatted into the text; every value is bound.
            let mut q = db::query(sqlx::AssertSqlSafe(sql))
                .bind(&self.tenant)
                .bind(&self.feed)
                .bind(&self.run)
                .bind(now);
            for c in chunk {
                q = q
                    .bind(c.sku)
                    .bind(c.change)
                    .bind(c.old_price)
                    .bind(c.new_price)
                    .bind(c.old_stock)
                    .bind(c.new_stock);
            }
            q.execute(&mut self.tx).await?;
        }
        Ok(())
    }

    /// Removes (and records) the `expected` stored parts a full file no longer lists. The
    /// stored list is walked in key order, a page of part numbers at a time, and checked
    /// against the sorted hashes of what the file listed.
    async fn remove_unseen(&mut self, mut expected: i64) -> sqlx::Result<()> {
        let mut after = String::new();
        while expected > 0 {
            // One JSON array per page instead of one row message per part: the driver's
            // per-row cost would dominate the walk otherwise.
            let (page,): (Option<String>,) = db::query_as(if self.tx.is_postgres() {
                "SELECT json_agg(sku ORDER BY sku)::text FROM
                   (SELECT sku FROM prices WHERE tenant = ? AND feed = ? AND sku > ? ORDER BY sku LIMIT 10000) AS page"
            } else {
                "SELECT json_group_array(sku) FROM
                   (SELECT sku FROM prices WHERE tenant = ? AND feed = ? AND sku > ? ORDER BY sku LIMIT 10000) AS page"
            })
            .bind(&self.tenant)
            .bind(&self.feed)
            .bind(&after)
            .fetch_one(&mut self.tx)
            .await?;
            let page: Vec<String> = serde_json::from_str(page.as_deref().unwrap_or("[]"))
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            let Some(last) = page.last() else { break };
            after = last.clone();
            let gone: Vec<&str> = page
                .iter()
                .map(String::as_str)
                .filter(|sku| self.seen.binary_search(&sku_hash(sku)).is_err())
                .collect();
            for chunk in gone.chunks(ROWS_PER_STATEMENT) {
                expected -= chunk.len() as i64;
                self.counts.removed += chunk.len() as i64;
                let placeholders = vec!["?"; chunk.len()].join(",");
                // Only placeholders are formatted into the text; every value is bound.
                let record = format!(
                    "INSERT INTO price_changes (tenant, feed, run, recorded_at, sku, change, old_price, old_stock)
                     SELECT tenant, feed, ?, ?, sku, 'removed', price, stock FROM prices
                     WHERE tenant = ? AND feed = ? AND sku IN ({placeholders})"
                );
                let delete = format!(
                    "DELETE FROM prices WHERE tenant = ? AND feed = ? AND sku IN ({placeholders})"
                );
                let mut q = db::query(sqlx::AssertSqlSafe(record))
                    .bind(&self.run)
                    .bind(super::now())
                    .bind(&self.tenant)
                    .bind(&self.feed);
                for sku in chunk {
                    q = q.bind(*sku);
                }
                q.execute(&mut self.tx).await?;
                let mut q = db::query(sqlx::AssertSqlSafe(delete))
                    .bind(&self.tenant)
                    .bind(&self.feed);
                for sku in chunk {
                    q = q.bind(*sku);
                }
                q.execute(&mut self.tx).await?;
            }
        }
        Ok(())
    }

    /// Removes what a full file no longer lists, and makes the new list visible. Returns the
    /// rows now stored and what changed.
    pub async fn commit(mut self) -> sqlx::Result<(i64, ChangeCounts)> {
        let mut count = self.count().await?;
        if !self.delta && self.previous > 0 {
            // Every part of the file is stored now; anything beyond them is what the file
            // no longer lists. Usually nothing: then the stored list is not walked at all.
            self.seen.sort_unstable();
            self.seen.dedup();
            let extra = count - self.seen.len() as i64;
            if extra > 0 {
                self.remove_unseen(extra).await?;
                count = self.count().await?;
            }
        }
        if self.previous == 0 {
            self.counts.added = count;
        }
        self.tx.commit().await?;
        Ok((count, self.counts))
    }
}

/// A change record about to be written.
struct Change<'a> {
    sku: &'a str,
    change: &'static str,
    old_price: Option<&'a str>,
    new_price: Option<&'a str>,
    old_stock: Option<i64>,
    new_stock: Option<i64>,
}

/// A stored row that differs from the file's.
struct Diff {
    sku: String,
    price: Option<String>,
    stock: Option<i64>,
    existed: bool,
}
