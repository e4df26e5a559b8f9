//! Housekeeping: finished tasks are pruned after the retention period, nothing else.

use crate::support::helpers::*;
use std::sync::Arc;
use std::time::Duration;
use syncd::config::Config;
use syncd::jobs::{Job, JobKind, Trigger};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_queue_drops_only_finished_tasks_older_than_the_retention() {
    let env = TestEnv::sqlite();
    let config = Arc::new(Config::load(&env.config_path(), true).unwrap());
    let store = env.store().await;
    let queue = syncd::jobs::connect_queue(config, &store).await.unwrap();
    // The embedded queue's own tables (in the state file, or beside a PostgreSQL state).
    let jobs = syncd::store::open_sqlite_pool(&env.queue_db_path())
        .await
        .unwrap();
    for _ in 0..3 {
        let job = Job::new(JobKind::FeedFetch, "acme", "prices", Trigger::Schedule);
        queue.push(&job, None, None).await.unwrap();
    }
    let now = chrono::Utc::now().timestamp();
    let ids: Vec<(String,)> = sqlx::query_as("SELECT id FROM Jobs ORDER BY id")
        .fetch_all(&jobs)
        .await
        .unwrap();
    // One finished long ago, one finished just now, one still pending.
    for (id, done_at) in [(&ids[0].0, now - 30 * 24 * 3600), (&ids[1].0, now)] {
        sqlx::query("UPDATE Jobs SET status = 'Done', done_at = ? WHERE id = ?")
            .bind(done_at)
            .bind(id)
            .execute(&jobs)
            .await
            .unwrap();
    }
    assert_eq!(
        queue
            .vacuum(Duration::from_secs(7 * 24 * 3600))
            .await
            .unwrap(),
        1
    );
    let left: Vec<(String, String)> = sqlx::query_as("SELECT id, status FROM Jobs ORDER BY id")
        .fetch_all(&jobs)
        .await
        .unwrap();
    assert_eq!(
        left,
        vec![
            (ids[1].0.clone(), "Done".into()),
            (ids[2].0.clone(), "Pending".into())
        ]
    );
}
