//! The state database: sync state, issues, prices and our own job-run counters.
//!
//! SQLite by default, opened the way a daemon that must lose nothing needs it: WAL (readers
//! never block the writer, so the CLI works while the daemon runs), `synchronous = NORMAL`
//! (durable at every checkpoint, no fsync per commit), and a busy timeout so that the CLI and
//! the daemon wait for each other instead of failing. With the SQLite queue the same file
//! holds apalis' tables, so a job and the state it changes live in one database.
//!
//! PostgreSQL (`[state] url = "postgres://…"`) holds the same tables for several nodes: the
//! queries are shared (see [`db`]), the migrations are per engine (`migrations/sqlite`,
//! `migrations/postgres`), and sqlx's migrator takes an advisory lock there, so nodes starting
//! together migrate once.

pub mod admin_tokens;
pub mod companies;
pub mod credentials;
pub mod db;
pub mod issues;
pub mod job_runs;
pub mod oauth;
pub mod prices;
pub mod sync_state;
pub mod webhooks;

use anyhow::Context;
use db::Db;
use sqlx::SqlitePool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::time::Duration;

/// Handle to the state database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// Opens the state database `[state] url` names and brings its schema up to date.
    pub async fn open(config: &crate::config::Config) -> anyhow::Result<Store> {
        if config.state_is_postgres() {
            Store::open_postgres(&config.state.url, config.state.max_connections).await
        } else {
            Store::open_sqlite(&config.sqlite_path()).await
        }
    }

    /// Connects to PostgreSQL and brings its schema up to date. The database must exist.
    pub async fn open_postgres(url: &str, max_connections: u32) -> anyhow::Result<Store> {
        let shown = crate::redact_url(url);
        let options: PgConnectOptions = url
            .parse()
            .with_context(|| format!("[state] url `{shown}` is not a PostgreSQL URL"))?;
        // One plain connection first: a pool that cannot connect only reports a timeout, and
        // the operator needs the reason (refused, unknown database, authentication).
        use sqlx::Connection;
        match sqlx::PgConnection::connect_with(&options).await {
            Ok(conn) => {
                let _ = conn.close().await;
            }
            Err(e) => {
                let hint = if e.to_string().contains("does not exist") {
                    " (create it first, e.g. `createdb syncd`; syncd creates the tables)"
                } else {
                    ""
                };
                anyhow::bail!("{shown}: cannot connect to the state database: {e}{hint}");
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.application_name("syncd"))
            .await
            .with_context(|| format!("{shown}: cannot connect to the state database"))?;
        let mut migrator = sqlx::migrate!("./migrations/postgres");
        migrator.dangerous_set_table_name("syncd_migrations");
        // An older node (rolling upgrade, rollback) starts on a schema a newer one migrated.
        migrator.set_ignore_missing(true);
        // sqlx holds an advisory lock while it migrates: nodes starting together take turns.
        migrator
            .run(&pool)
            .await
            .with_context(|| format!("{shown}: cannot migrate the state database"))?;
        Ok(Store {
            db: Db::Postgres(pool),
        })
    }

    /// Opens (creating if needed) the SQLite file and brings its schema up to date.
    pub async fn open_sqlite(path: &Path) -> anyhow::Result<Store> {
        let pool = open_sqlite_pool(path).await?;
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        // apalis keeps its own migrations in `_sqlx_migrations` of the same file; ours live
        // in a table of their own so neither migrator trips over the other's versions.
        migrator.dangerous_set_table_name("syncd_migrations");
        migrator.set_ignore_missing(true);
        migrate(&migrator, &pool)
            .await
            .with_context(|| format!("{}: cannot migrate the state database", path.display()))?;
        Ok(Store {
            db: Db::Sqlite(pool),
        })
    }

    /// The database, for queries (see [`db`]).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The SQLite pool, when the state is SQLite (the embedded queue shares it).
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.db {
            Db::Sqlite(p) => Some(p),
            Db::Postgres(_) => None,
        }
    }

    /// Closes every connection (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// Opens (creating if needed) a SQLite file the way the daemon needs it: WAL, `NORMAL`
/// synchronous, a 30 s busy timeout.
pub async fn open_sqlite_pool(path: &Path) -> anyhow::Result<SqlitePool> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the state directory", dir.display()))?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true)
        .pragma("temp_store", "MEMORY");
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .min_connections(1)
        .connect_with(options)
        .await
        .with_context(|| format!("{}: cannot open the database", path.display()))?;
    enable_wal(&pool, path).await?;
    Ok(pool)
}

/// Runs `migrator`, tolerating another process (the daemon, a CLI command) that migrates the
/// same fresh file at the same moment: SQLite has no migration lock, so the loser of the race
/// fails on the version row the winner wrote, and simply finds everything applied next time.
pub async fn migrate(
    migrator: &sqlx::migrate::Migrator,
    pool: &SqlitePool,
) -> Result<(), sqlx::migrate::MigrateError> {
    let mut attempt = 0;
    loop {
        match migrator.run(pool).await {
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "migration raced another process; retrying");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// Switches the file to WAL once. The switch needs an exclusive lock that SQLite's busy
/// timeout does not wait for, so it is not a connect option (every CLI command would then
/// fail while the daemon writes); WAL is persistent, so later opens find it already set.
async fn enable_wal(pool: &SqlitePool, path: &Path) -> anyhow::Result<()> {
    for attempt in 0..100 {
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(pool)
            .await?;
        if mode.eq_ignore_ascii_case("wal") {
            return Ok(());
        }
        // While another connection uses the file the switch either fails with "locked" or
        // quietly keeps the old mode (SQLite then answers with the old mode's name): wait.
        match sqlx::query_as::<_, (String,)>("PRAGMA journal_mode = WAL")
            .fetch_one(pool)
            .await
        {
            Ok((now,)) if now.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(_) => {}
            Err(e) if attempt < 99 && e.to_string().contains("locked") => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("{}: cannot switch to WAL mode", path.display()));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "{}: the database stayed locked; cannot switch to WAL mode",
        path.display()
    )
}

/// The current time, truncated to milliseconds so that what is stored reads back equal.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
