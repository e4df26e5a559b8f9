//! Our own count of how often each job has started. apalis re-enqueues the jobs of a dead
//! worker without limit, so a job that crashes the process would loop forever; counting
//! starts here turns that loop into a `retries_exhausted` issue.

use super::Store;
use super::db;

/// What the run counter says about a job that is about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStart {
    /// Go ahead; this is start number `n` (1 for a normal first run).
    Start(i64),
    /// The job already finished (a duplicate delivery): skip it.
    AlreadyFinished,
}

impl Store {
    /// Counts one more start of `job_id`.
    pub async fn start_run(
        &self,
        job_id: &str,
        tenant: &str,
        integration: &str,
    ) -> sqlx::Result<RunStart> {
        let now = super::now();
        let (starts, finished): (i64, bool) = db::query_as(
            "INSERT INTO job_runs (job_id, tenant, integration, starts, started_at)
             VALUES (?, ?, ?, 1, ?)
             ON CONFLICT (job_id) DO UPDATE SET
                 starts = CASE WHEN job_runs.finished_at IS NULL THEN job_runs.starts + 1
                               ELSE job_runs.starts END,
                 started_at = excluded.started_at
             RETURNING starts, finished_at IS NOT NULL",
        )
        .bind(job_id)
        .bind(tenant)
        .bind(integration)
        .bind(now)
        .fetch_one(self.db())
        .await?;
        Ok(if finished {
            RunStart::AlreadyFinished
        } else {
            RunStart::Start(starts)
        })
    }

    /// Marks `job_id` finished, whatever its outcome.
    pub async fn finish_run(&self, job_id: &str) -> sqlx::Result<()> {
        db::query("UPDATE job_runs SET finished_at = ? WHERE job_id = ?")
            .bind(super::now())
            .bind(job_id)
            .execute(self.db())
            .await?;
        Ok(())
    }

    /// Forgets finished runs older than `keep`.
    pub async fn prune_runs(&self, keep: chrono::Duration) -> sqlx::Result<u64> {
        Ok(
            db::query("DELETE FROM job_runs WHERE finished_at IS NOT NULL AND finished_at < ?")
                .bind(super::now() - keep)
                .execute(self.db())
                .await?
                .rows_affected(),
        )
    }
}
