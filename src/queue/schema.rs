//! apalis-sqlite's `Jobs` table, as far as we write it ourselves: one row
//! per task exactly as apalis's own sink writes it (`queries/task/sink.sql`:
//! the same columns, values and encodings), written with one prepared
//! statement inside the store's write transaction (`store::handoff` runs
//! the closure that calls [`JobRows::write`]). apalis-sqlite 1.0 sends one
//! statement per row through sqlx's connection thread instead.
//!
//! Re-check it against apalis's sink on every apalis upgrade; the test
//! `writes_the_row_apalis_writes` in `queue::bulk` compares the two rows.

use std::time::{SystemTime, UNIX_EPOCH};

use apalis::prelude::Task;
use rusqlite::params;

use super::{QUEUE_NAME, RequestJob};
use crate::store::{StoreError, WriterTx};

/// The status apalis's sink gives a new job (with no attempts yet).
const NEW_STATUS: &str = "Pending";
/// apalis's default when a task sets no maximum (sink.rs).
const APALIS_DEFAULT_MAX_ATTEMPTS: usize = 25;
const INSERT_JOB_SQL: &str = "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key)
     VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(job_type, idempotency_key) DO NOTHING";

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

/// The rows of some tasks, ready to write.
pub(super) struct JobRows(Vec<JobRow>);

impl JobRows {
    pub(super) fn of(tasks: &[Task<RequestJob>]) -> Result<JobRows, StoreError> {
        let now_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(JobRows(
            tasks
                .iter()
                .map(|t| JobRow::of(t, now_secs))
                .collect::<Result<_, _>>()?,
        ))
    }

    /// Inserts the rows in `tx`, the store's write transaction.
    pub(super) fn write(&self, tx: &WriterTx<'_>) -> Result<(), StoreError> {
        let mut insert = tx.prepare_cached(INSERT_JOB_SQL)?;
        for row in &self.0 {
            insert.execute(params![
                row.job,
                row.id,
                QUEUE_NAME,
                NEW_STATUS,
                row.max_attempts,
                row.run_at,
                row.priority,
                row.metadata,
                row.idempotency_key
            ])?;
        }
        Ok(())
    }
}
