//! The state database: sync state, issues, prices and our own job-run counters.
//!
//! SQLite by default, opened the way a daemon that must lose nothing needs it: WAL (readers
//! never block the writer, so the CLI works while the daemon runs), `synchronous = NORMAL`
//! (durable at every checkpoint, no fsync per commit), and a busy timeout so that the CLI and
//! the daemon wait for each other instead of failing. With the SQLite queue the same file
//! holds apalis' tables, so a job and the state it changes live in one database.
//! The SQL is kept portable so that PostgreSQL can follow.

pub mod issues;
pub mod job_runs;
pub mod prices;
pub mod sync_state;

use anyhow::Context;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::time::Duration;

/// Handle to the state database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the SQLite file and brings its schema up to date.
    pub async fn open_sqlite(path: &Path) -> anyhow::Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create the state directory", dir.display()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            .pragma("temp_store", "MEMORY");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await
            .with_context(|| format!("{}: cannot open the state database", path.display()))?;
        let mut migrator = sqlx::migrate!("./migrations");
        // apalis keeps its own migrations in `_sqlx_migrations` of the same file; ours live
        // in a table of their own so neither migrator trips over the other's versions.
        migrator.dangerous_set_table_name("syncd_migrations");
        migrator
            .run(&pool)
            .await
            .with_context(|| format!("{}: cannot migrate the state database", path.display()))?;
        Ok(Store { pool })
    }

    /// The connection pool (shared with the SQLite queue).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The current time, truncated to milliseconds so that what is stored reads back equal.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
