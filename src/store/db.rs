//! One query API over the two state databases, SQLite and PostgreSQL.
//!
//! The state's SQL is written once, in the dialect both engines share (`?` placeholders,
//! `ON CONFLICT … DO UPDATE`, `RETURNING`, `IS DISTINCT FROM`, `TRUE`/`FALSE`); where they
//! differ a call site asks [`Db::is_postgres`]. A query collects its arguments as [`Arg`]s and
//! becomes a native sqlx query of the right driver when it runs, so rows are decoded by the
//! drivers themselves (times stay `chrono` values: TEXT on SQLite, TIMESTAMPTZ on PostgreSQL).
//! For PostgreSQL the `?` placeholders are numbered (`$1`, `$2`, …) on the way out.

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{FromRow, Postgres, SqlSafeStr, SqlStr, Sqlite, Transaction};
use std::marker::PhantomData;

/// A pool of connections to the state database.
#[derive(Debug, Clone)]
pub enum Db {
    /// The embedded default.
    Sqlite(SqlitePool),
    /// Shared by several nodes.
    Postgres(PgPool),
}

/// An open transaction. Dropped without [`Tx::commit`], it rolls back.
#[derive(Debug)]
pub enum Tx {
    /// On SQLite.
    Sqlite(Transaction<'static, Sqlite>),
    /// On PostgreSQL.
    Postgres(Transaction<'static, Postgres>),
}

/// Where a query runs: the pool or an open transaction.
pub enum Exec<'e> {
    #[doc(hidden)]
    SqlitePool(&'e SqlitePool),
    #[doc(hidden)]
    PgPool(&'e PgPool),
    #[doc(hidden)]
    SqliteConn(&'e mut SqliteConnection),
    #[doc(hidden)]
    PgConn(&'e mut PgConnection),
}

impl<'e> From<&'e Db> for Exec<'e> {
    fn from(db: &'e Db) -> Self {
        match db {
            Db::Sqlite(p) => Exec::SqlitePool(p),
            Db::Postgres(p) => Exec::PgPool(p),
        }
    }
}

impl<'e> From<&'e mut Tx> for Exec<'e> {
    fn from(tx: &'e mut Tx) -> Self {
        match tx {
            Tx::Sqlite(t) => Exec::SqliteConn(&mut *t),
            Tx::Postgres(t) => Exec::PgConn(&mut *t),
        }
    }
}

impl Db {
    /// Whether this is PostgreSQL (for the few statements the dialects write differently).
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> sqlx::Result<Tx> {
        Ok(match self {
            Db::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Starts a transaction that writes what it read, serialised with every other writer of
    /// `key`: SQLite takes its one write lock at once (`BEGIN IMMEDIATE`, so a busy database
    /// is waited for at the start, not halfway through); PostgreSQL takes a transaction-scoped
    /// advisory lock on `key`, so that two nodes doing the same read-then-write (a dispatcher
    /// moving its cursor, two imports of one feed) take turns while unrelated work does not.
    pub async fn begin_write(&self, key: &str) -> sqlx::Result<Tx> {
        Ok(match self {
            Db::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(lock_id(key))
                    .execute(&mut *tx)
                    .await?;
                Tx::Postgres(tx)
            }
        })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }
}

impl Tx {
    /// Whether this is a PostgreSQL transaction.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Tx::Postgres(_))
    }

    /// Makes the transaction's writes visible.
    pub async fn commit(self) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        }
    }
}

/// A stable 64-bit id for an advisory lock name (FNV-1a: the same on every node and build).
fn lock_id(key: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"syncd:".iter().chain(key.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// One bound value.
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    #[doc(hidden)]
    Text(Option<&'a str>),
    #[doc(hidden)]
    OwnedText(Option<String>),
    #[doc(hidden)]
    Int(Option<i64>),
    #[doc(hidden)]
    Float(Option<f64>),
    #[doc(hidden)]
    Bool(Option<bool>),
    #[doc(hidden)]
    Time(Option<DateTime<Utc>>),
    #[doc(hidden)]
    Bytes(Option<&'a [u8]>),
}

macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr;)*) => {
        $(impl<'a> From<$t> for Arg<'a> {
            fn from($v: $t) -> Self {
                $e
            }
        })*
    };
}

arg_from! {
    &'a str => |v| Arg::Text(Some(v));
    &'a String => |v| Arg::Text(Some(v.as_str()));
    String => |v| Arg::OwnedText(Some(v));
    &'a &'a str => |v| Arg::Text(Some(*v));
    Option<&'a str> => |v| Arg::Text(v);
    &'a Option<&'a str> => |v| Arg::Text(*v);
    Option<String> => |v| Arg::OwnedText(v);
    &'a Option<String> => |v| Arg::Text(v.as_deref());
    Option<&'a String> => |v| Arg::Text(v.map(String::as_str));
    i64 => |v| Arg::Int(Some(v));
    Option<i64> => |v| Arg::Int(v);
    &'a i64 => |v| Arg::Int(Some(*v));
    &'a Option<i64> => |v| Arg::Int(*v);
    i32 => |v| Arg::Int(Some(i64::from(v)));
    Option<i32> => |v| Arg::Int(v.map(i64::from));
    u32 => |v| Arg::Int(Some(i64::from(v)));
    u16 => |v| Arg::Int(Some(i64::from(v)));
    Option<u16> => |v| Arg::Int(v.map(i64::from));
    f64 => |v| Arg::Float(Some(v));
    Option<f64> => |v| Arg::Float(v);
    bool => |v| Arg::Bool(Some(v));
    Option<bool> => |v| Arg::Bool(v);
    DateTime<Utc> => |v| Arg::Time(Some(v));
    &'a DateTime<Utc> => |v| Arg::Time(Some(*v));
    Option<DateTime<Utc>> => |v| Arg::Time(v);
    &'a Option<DateTime<Utc>> => |v| Arg::Time(*v);
    &'a [u8] => |v| Arg::Bytes(Some(v));
    &'a Vec<u8> => |v| Arg::Bytes(Some(v.as_slice()));
}

/// A statement and its arguments, not yet run.
#[derive(Debug)]
#[must_use = "a query does nothing until it is executed or fetched"]
pub struct Query<'a> {
    sql: SqlStr,
    args: Vec<Arg<'a>>,
}

/// A statement whose rows decode into `T`.
#[derive(Debug)]
#[must_use = "a query does nothing until it is fetched"]
pub struct QueryAs<'a, T> {
    query: Query<'a>,
    row: PhantomData<fn() -> T>,
}

/// What an executed statement did.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    rows: u64,
}

impl Done {
    /// Rows inserted, updated or deleted.
    pub fn rows_affected(&self) -> u64 {
        self.rows
    }
}

/// A row type both drivers can decode.
pub trait Row:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}
impl<T> Row for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

/// A statement with `?` placeholders.
pub fn query<'a>(sql: impl SqlSafeStr) -> Query<'a> {
    Query {
        sql: sql.into_sql_str(),
        args: Vec::new(),
    }
}

/// A statement with `?` placeholders whose rows decode into `T`.
pub fn query_as<'a, T: Row>(sql: impl SqlSafeStr) -> QueryAs<'a, T> {
    QueryAs {
        query: query(sql),
        row: PhantomData,
    }
}

/// `?` → `$1`, `$2`, … outside quoted text, for PostgreSQL.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

/// Binds every argument to a native query (the same code for both drivers).
macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Text(v) => q.bind(v),
                Arg::OwnedText(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::Float(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::Time(v) => q.bind(v),
                Arg::Bytes(v) => q.bind(v),
            };
        }
        q
    }};
}

fn sqlite_query(
    sql: SqlStr,
    args: Vec<Arg<'_>>,
) -> sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments> {
    bind_all!(sqlx::query(sql), args)
}

fn pg_query(
    sql: &SqlStr,
    args: Vec<Arg<'_>>,
) -> sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments> {
    // Only placeholders were formatted into the text (every value is bound), and numbering
    // them keeps it that way.
    bind_all!(
        sqlx::query(sqlx::AssertSqlSafe(numbered(sql.as_str()))),
        args
    )
}

impl<'a> Query<'a> {
    /// Binds the next `?`.
    pub fn bind(mut self, value: impl Into<Arg<'a>>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Runs the statement.
    pub async fn execute<'e>(self, on: impl Into<Exec<'e>>) -> sqlx::Result<Done> {
        let rows = match on.into() {
            Exec::SqlitePool(p) => sqlite_query(self.sql, self.args).execute(p).await?,
            Exec::SqliteConn(c) => sqlite_query(self.sql, self.args).execute(c).await?,
            Exec::PgPool(p) => {
                return Ok(Done {
                    rows: pg_query(&self.sql, self.args)
                        .execute(p)
                        .await?
                        .rows_affected(),
                });
            }
            Exec::PgConn(c) => {
                return Ok(Done {
                    rows: pg_query(&self.sql, self.args)
                        .execute(c)
                        .await?
                        .rows_affected(),
                });
            }
        };
        Ok(Done {
            rows: rows.rows_affected(),
        })
    }
}

impl<'a, T: Row> QueryAs<'a, T> {
    /// Binds the next `?`.
    pub fn bind(mut self, value: impl Into<Arg<'a>>) -> Self {
        self.query = self.query.bind(value);
        self
    }

    /// Every row.
    pub async fn fetch_all<'e>(self, on: impl Into<Exec<'e>>) -> sqlx::Result<Vec<T>> {
        let Query { sql, args } = self.query;
        match on.into() {
            Exec::SqlitePool(p) => sqlite_query(sql, args).try_map(row).fetch_all(p).await,
            Exec::SqliteConn(c) => sqlite_query(sql, args).try_map(row).fetch_all(c).await,
            Exec::PgPool(p) => pg_query(&sql, args).try_map(row).fetch_all(p).await,
            Exec::PgConn(c) => pg_query(&sql, args).try_map(row).fetch_all(c).await,
        }
    }

    /// The first row, if any.
    pub async fn fetch_optional<'e>(self, on: impl Into<Exec<'e>>) -> sqlx::Result<Option<T>> {
        let Query { sql, args } = self.query;
        match on.into() {
            Exec::SqlitePool(p) => sqlite_query(sql, args).try_map(row).fetch_optional(p).await,
            Exec::SqliteConn(c) => sqlite_query(sql, args).try_map(row).fetch_optional(c).await,
            Exec::PgPool(p) => pg_query(&sql, args).try_map(row).fetch_optional(p).await,
            Exec::PgConn(c) => pg_query(&sql, args).try_map(row).fetch_optional(c).await,
        }
    }

    /// The first row; an error when there is none.
    pub async fn fetch_one<'e>(self, on: impl Into<Exec<'e>>) -> sqlx::Result<T> {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

fn row<R: sqlx::Row, T: for<'r> FromRow<'r, R>>(r: R) -> sqlx::Result<T> {
    T::from_row(&r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ? AND c = '?' AND d IN (?, ?)"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND d IN ($2, $3)"
        );
    }

    #[test]
    fn lock_ids_are_stable_and_distinct() {
        assert_eq!(lock_id("webhook-dispatch"), lock_id("webhook-dispatch"));
        assert_ne!(lock_id("prices/acme/ingram"), lock_id("prices/acme/td"));
    }
}
