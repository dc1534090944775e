//! Pushing many jobs at once on SQLite, in the transaction that marks their
//! requests enqueued.
//!
//! apalis-sqlite 1.0 pushes one `INSERT` per job (`push_tasks` loops over
//! `queries/task/sink.sql`), each a round trip to SQLite's connection
//! thread: a million-row intake spent most of its time there. This writes
//! the same rows — the same columns, values and encodings as that sink — in
//! multi-row statements. Doing it in our own write transaction also makes
//! "job exists" and "request marked enqueued" one atomic step, so a crash
//! can no longer leave duplicate jobs behind.
//!
//! It knows apalis-sqlite's `Jobs` schema: re-check it against
//! `queries/task/sink.sql` on every apalis upgrade. Every test that runs a
//! batch on SQLite runs its jobs through this path. apalis-postgres already
//! pushes a whole slice in one `unnest` statement, so it keeps its own.

use std::time::{SystemTime, UNIX_EPOCH};

use apalis::prelude::Task;

use super::{QUEUE_NAME, RequestJob};
use crate::store::{Backend, Params, Store, StoreError, set_enqueued};

/// The status apalis's sink gives a new job (with no attempts yet).
const NEW_STATUS: &str = "Pending";
/// Jobs per statement: 10 parameters each, far below SQLite's 32,766.
const JOBS_PER_STATEMENT: usize = 500;
/// apalis's default when a task sets no maximum (sink.rs).
const APALIS_DEFAULT_MAX_ATTEMPTS: usize = 25;

/// One job row as apalis-sqlite's sink would write it.
struct JobRow {
    job: Vec<u8>,
    id: String,
    max_attempts: i64,
    run_at: i64,
    priority: i64,
    metadata: String,
    idempotency_key: Option<String>,
}

impl JobRow {
    fn of(task: &Task<RequestJob>, now_secs: u64) -> Result<JobRow, StoreError> {
        // apalis-sqlite stores args through its JSON codec (`serde_json::to_vec`).
        let job = serde_json::to_vec(&task.args)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode a queue job: {e}")))?;
        Ok(JobRow {
            job,
            id: task
                .task_id()
                .map_or_else(|| ulid::Ulid::new().to_string(), |id| id.to_string()),
            max_attempts: task.max_attempts().unwrap_or(APALIS_DEFAULT_MAX_ATTEMPTS) as i64,
            run_at: task.run_at().unwrap_or(now_secs) as i64,
            priority: task.priority().unwrap_or_default() as i64,
            metadata: serde_json::to_string(task.metadata()).unwrap_or_default(),
            idempotency_key: task.idempotency_key().map(str::to_owned),
        })
    }
}

/// Inserts a job per task into apalis-sqlite's `Jobs` table and marks the
/// requests enqueued, in one transaction.
pub(super) async fn push_and_mark(
    store: &Store,
    tasks: &[Task<RequestJob>],
) -> Result<(), StoreError> {
    debug_assert_eq!(store.backend(), Backend::Sqlite);
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rows = tasks
        .iter()
        .map(|t| JobRow::of(t, now_secs))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tx = store.begin_write().await?;
    for part in rows.chunks(JOBS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key)
             VALUES {} ON CONFLICT(job_type, idempotency_key) DO NOTHING",
            Params::new(Backend::Sqlite).tuples(part.len(), 10)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in part {
            q = q
                .bind(row.job.as_slice())
                .bind(row.id.as_str())
                .bind(QUEUE_NAME)
                .bind(NEW_STATUS)
                .bind(0_i64)
                .bind(row.max_attempts)
                .bind(row.run_at)
                .bind(row.priority)
                .bind(row.metadata.as_str())
                .bind(row.idempotency_key.as_deref());
        }
        q.execute(&mut *tx).await?;
    }
    let ids: Vec<&str> = tasks.iter().flat_map(|t| t.args.ids()).collect();
    set_enqueued(&mut tx, Backend::Sqlite, &ids).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use apalis::prelude::{TaskBuilder, TaskSink};
    use apalis_sqlite::SqliteStorage;
    use sqlx::Row;

    use super::*;
    use crate::store::QueuePool;

    /// A job written here must be the row apalis's own sink writes for the
    /// same task: every column but the generated id. This is the guard on
    /// the schema this module copies.
    #[tokio::test]
    async fn writes_the_row_apalis_writes() {
        let (_dir, _url, store) = crate::store::scratch_store().await;
        let QueuePool::Sqlite(pool) = store.queue_pool().clone() else {
            unreachable!("a sqlite URL")
        };
        let task = |id: &str| {
            TaskBuilder::new(RequestJob::of(vec![id.to_owned()]))
                .max_attempts(3)
                .run_at_timestamp(4_000_000_000)
                .build()
        };
        let mut apalis = SqliteStorage::<RequestJob>::new(&pool)
            .with_config(apalis_sqlite::Config::default().queue(QUEUE_NAME));
        apalis.push_task(task("req_a")).await.unwrap();
        push_and_mark(&store, &[task("req_a")]).await.unwrap();
        let rows = sqlx::query(
            "SELECT CAST(job AS TEXT) AS job, job_type, status, attempts, max_attempts, run_at,
                    last_result, lock_at, lock_by, done_at, priority, metadata, idempotency_key,
                    typeof(job) AS job_kind
             FROM Jobs ORDER BY rowid",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), 2);
        let columns = [
            "job",
            "job_type",
            "status",
            "metadata",
            "idempotency_key",
            "job_kind",
        ];
        for c in columns {
            let a: Option<String> = rows[0].get(c);
            let b: Option<String> = rows[1].get(c);
            assert_eq!(a, b, "column {c}");
        }
        for c in [
            "attempts",
            "max_attempts",
            "run_at",
            "lock_at",
            "done_at",
            "priority",
        ] {
            let a: Option<i64> = rows[0].get(c);
            let b: Option<i64> = rows[1].get(c);
            assert_eq!(a, b, "column {c}");
        }
        let job: String = rows[1].get("job");
        assert_eq!(job, r#"{"request_id":"req_a"}"#);
        store.close().await;
    }
}
