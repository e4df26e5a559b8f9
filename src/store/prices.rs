//! A feed's price list, replaced whole inside one transaction: readers see the old list until
//! the new one is complete, and a failed import (rolled back) leaves the old list untouched.

use super::Store;
use sqlx::{Sqlite, Transaction};

/// One parsed price row.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceRow {
    /// Part number, trimmed.
    pub sku: String,
    /// Exact decimal text, normalised (`"123.45"`).
    pub price: String,
    /// Units in stock, if the feed has them.
    pub stock: Option<i64>,
}

/// Rows per INSERT statement: 3 parameters each stays below SQLite's limit of 32,766.
const ROWS_PER_STATEMENT: usize = 1000;

/// An open replacement of one feed's rows. Dropping it without [`PriceReplace::commit`]
/// rolls back and keeps the previous list.
pub struct PriceReplace {
    tx: Transaction<'static, Sqlite>,
    tenant: String,
    feed: String,
}

impl Store {
    /// Starts replacing `tenant/feed`'s rows: the old rows are deleted inside the transaction.
    pub async fn begin_price_replace(
        &self,
        tenant: &str,
        feed: &str,
    ) -> sqlx::Result<PriceReplace> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM prices WHERE tenant = ? AND feed = ?")
            .bind(tenant)
            .bind(feed)
            .execute(&mut *tx)
            .await?;
        Ok(PriceReplace {
            tx,
            tenant: tenant.to_string(),
            feed: feed.to_string(),
        })
    }

    /// The stored rows of a feed, ordered by SKU.
    pub async fn prices(&self, tenant: &str, feed: &str) -> sqlx::Result<Vec<PriceRow>> {
        let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
            "SELECT sku, price, stock FROM prices WHERE tenant = ? AND feed = ? ORDER BY sku",
        )
        .bind(tenant)
        .bind(feed)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(sku, price, stock)| PriceRow { sku, price, stock })
            .collect())
    }
}

impl PriceReplace {
    /// Inserts rows; a SKU seen twice keeps its last row.
    pub async fn insert(&mut self, rows: &[PriceRow]) -> sqlx::Result<()> {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            // Tenant and feed are bound once per statement, not once per row: the rows come
            // in as a VALUES list (SQLite names its columns column1, column2, …).
            let mut sql = String::with_capacity(160 + chunk.len() * 8);
            sql.push_str(
                "INSERT INTO prices (tenant, feed, sku, price, stock) \
                 SELECT ?, ?, column1, column2, column3 FROM (VALUES ",
            );
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 { "(?,?,?)" } else { ",(?,?,?)" });
            }
            sql.push_str(
                ") WHERE true ON CONFLICT (tenant, feed, sku) DO UPDATE SET price = excluded.price, stock = excluded.stock",
            );
            // Only placeholders are formatted into the text; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&self.tenant)
                .bind(&self.feed);
            for row in chunk {
                q = q.bind(&row.sku).bind(&row.price).bind(row.stock);
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Makes the new list visible; returns how many distinct rows it has.
    pub async fn commit(mut self) -> sqlx::Result<i64> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM prices WHERE tenant = ? AND feed = ?")
                .bind(&self.tenant)
                .bind(&self.feed)
                .fetch_one(&mut *self.tx)
                .await?;
        self.tx.commit().await?;
        Ok(count)
    }
}
