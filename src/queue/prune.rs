//! Housekeeping of apalis's job rows. apalis keeps every finished job row,
//! and its queries slow as the table grows (bare no-op jobs drain at
//! 4,000/s over 20,000 rows but 1,100/s over 100,000). Our tables hold each
//! request's record, so a finished job row has nothing left to say once it
//! is old. And a stopped worker's fetched jobs go straight back.

use std::time::Duration;

use super::{QUEUE_NAME, QueueError, QueuePool};
use crate::store::StoreError;

/// How often `serve` prunes, and how old a finished job must be.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);
pub const KEEP_FINISHED: Duration = Duration::from_secs(3600);

/// Deletes this queue's jobs that finished (`Done`, or `Killed` after a
/// panic) more than `older_than` ago; jobs that failed stay for diagnosis.
/// Returns how many went.
pub async fn prune_finished(queue: &QueuePool, older_than: Duration) -> Result<u64, QueueError> {
    let result = match queue {
        QueuePool::Sqlite(pool) => {
            // apalis-sqlite stores done_at in unix seconds.
            let before = chrono::Utc::now().timestamp() - older_than.as_secs() as i64;
            sqlx::query(
                "DELETE FROM Jobs WHERE job_type = ?1 AND status IN ('Done', 'Killed') AND done_at <= ?2",
            )
            .bind(QUEUE_NAME)
            .bind(before)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        }
        QueuePool::Postgres(pool) => sqlx::query(
            "DELETE FROM apalis.jobs WHERE job_type = $1 AND status IN ('Done', 'Killed')
               AND done_at <= now() - ($2 * interval '1 second')",
        )
        .bind(QUEUE_NAME)
        .bind(older_than.as_secs_f64())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()),
    };
    result.map_err(|e| QueueError::Store(StoreError::Sql(e)))
}

/// Gives back the jobs `worker` still holds once it has stopped (its
/// in-flight requests finished): apalis re-enqueues the tasks it buffered,
/// but a fetch that was under way when the stop came can leave jobs marked
/// as held, and those would wait for crash recovery (`heartbeat_secs ×
/// missed_heartbeats`). A held job whose handler did finish only lost its
/// ack; run again, its request is already final and nothing is called.
/// Returns how many went back.
pub async fn release_held(queue: &QueuePool, worker: &str) -> Result<u64, QueueError> {
    let result = match queue {
        QueuePool::Sqlite(pool) => sqlx::query(
            "UPDATE Jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL
             WHERE lock_by = ?1 AND (status = 'Running' OR status = 'Queued')",
        )
        .bind(worker)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()),
        QueuePool::Postgres(pool) => sqlx::query(
            "UPDATE apalis.jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL
             WHERE lock_by = $1 AND status IN ('Running', 'Queued')",
        )
        .bind(worker)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()),
    };
    result.map_err(|e| QueueError::Store(StoreError::Sql(e)))
}
