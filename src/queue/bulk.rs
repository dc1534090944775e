//! Pushing many jobs at once on SQLite, in the transaction that marks their
//! requests enqueued.
//!
//! apalis-sqlite 1.0 pushes one `INSERT` per job (`push_tasks` loops over
//! `queries/task/sink.sql`), each a round trip to SQLite's connection
//! thread: a million-row intake spent most of its time there. This writes
//! the same rows — the same columns, values and encodings as that sink — on
//! the store's writer thread and connection, with one prepared statement.
//! Doing it in our own write transaction also makes "job exists" and
//! "request marked enqueued" one atomic step, so a crash can no longer
//! leave duplicate jobs behind.
//!
//! An intake on SQLite stores its new requests held (`enqueued = 2`, so no
//! sweep for unqueued requests takes them) and holds their jobs back until
//! the batch may run ([`push_held_page`]), because a mark written
//! afterwards rewrites every row and moves it in and out of
//! `requests_batch_unqueued` (BENCHMARKS.md, "Why: held jobs"). The push reads the held requests back by
//! rowid and records how far it got in the transaction that writes their
//! jobs, so a crash resumes it without a duplicate. A request adopted by
//! an intake (it is then unqueued, `enqueued = 0`) and marked by a sweep
//! (`1`) is never held again, so the push leaves it alone. The cursor is a
//! rowid, which `VACUUM` may renumber: vacuum a database only while no
//! batch holds jobs (`SELECT id FROM batches WHERE push_pending = 1`).
//!
//! It knows apalis-sqlite's `Jobs` schema: re-check it against
//! `queries/task/sink.sql` on every apalis upgrade. Every test that runs a
//! batch on SQLite runs its jobs through this path. apalis-postgres already
//! pushes a whole slice in one `unnest` statement, so it keeps its own.

use std::time::{SystemTime, UNIX_EPOCH};

use apalis::prelude::Task;
use rusqlite::{OptionalExtension, params};

use super::{QUEUE_NAME, RequestJob, Unqueued};
use crate::domain::now_ms;
use crate::store::{NewJob, Store, StoreError, UNENQUEUED_OF_SQL, UNENQUEUED_PAGE};

/// The status apalis's sink gives a new job (with no attempts yet).
const NEW_STATUS: &str = "Pending";
/// apalis's default when a task sets no maximum (sink.rs).
const APALIS_DEFAULT_MAX_ATTEMPTS: usize = 25;
const INSERT_JOB_SQL: &str = "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key)
     VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(job_type, idempotency_key) DO NOTHING";
const MARK_ENQUEUED_SQL: &str = "UPDATE requests SET enqueued = 1 WHERE id = ?1";
/// Marks a page of a batch read by `UNENQUEUED_OF_SQL` in one statement:
/// in the transaction that read it, the page is exactly the batch's
/// unqueued requests up to its last id. Walking `requests_batch_unqueued`
/// once replaces a primary-key lookup and a statement per request
/// (BENCHMARKS.md, "Why: multi-row statements on the writer").
/// `INDEXED BY` turns a plan that lost the index into an error, not a
/// scan of the whole batch per page.
const MARK_PAGE_OF_SQL: &str = "UPDATE requests INDEXED BY requests_batch_unqueued SET enqueued = 1
     WHERE batch_id = ?1 AND enqueued = 0 AND outcome IS NULL AND id <= ?2";

/// How far a batch's push has got, while it holds requests with no job
/// and may run (the same states as [`HELD_BATCHES_SQL`]).
const PUSH_CURSOR_SQL: &str =
    "SELECT pushed_through FROM batches WHERE id = ?1 AND push_pending = 1
       AND (stored_state IS NULL OR stored_state NOT IN ('intake', 'halted', 'cancelled'))";
/// The next held requests of a batch, in the order intake stored them.
/// `enqueued = 2` (intake's `HELD`) leaves out an adopted request (from
/// another batch or an earlier chunk of this one), which comes unqueued
/// and gets its job from [`enqueue_page`], and a reopened one.
const HELD_PAGE_SQL: &str = "SELECT rowid, id, CASE WHEN dry_run = 2 THEN NULL ELSE effective_at END AS effective_at FROM requests INDEXED BY requests_batch
     WHERE batch_id = ?1 AND rowid > ?2 AND enqueued = 2 AND outcome IS NULL
     ORDER BY rowid LIMIT ?3";
const PUSHED_THROUGH_SQL: &str = "UPDATE batches SET pushed_through = ?2 WHERE id = ?1";
const PUSHED_ALL_SQL: &str = "UPDATE batches SET push_pending = 0 WHERE id = ?1";
/// Batches holding jobs that may run now, oldest first.
const HELD_BATCHES_SQL: &str = "SELECT id FROM batches WHERE push_pending = 1
       AND (stored_state IS NULL OR stored_state NOT IN ('intake', 'halted', 'cancelled'))
     ORDER BY id";

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

/// Which requests a write marks enqueued.
enum Marks {
    /// These, one by one.
    Each(Vec<String>),
    /// A batch's unqueued requests up to and including this id.
    OfBatchThrough { batch: String, last: String },
    /// None: intake stored them held.
    Held,
}

/// The jobs of `tasks` and their requests' marks, ready to write.
struct JobsOf {
    rows: Vec<JobRow>,
    marks: Marks,
}

impl JobsOf {
    /// The jobs of `tasks`, which mark each of their requests.
    fn new(tasks: &[Task<RequestJob>]) -> Result<JobsOf, StoreError> {
        let marks = Marks::Each(
            tasks
                .iter()
                .flat_map(|t| t.args.ids().map(str::to_owned))
                .collect(),
        );
        JobsOf::marking(tasks, marks)
    }

    fn marking(tasks: &[Task<RequestJob>], marks: Marks) -> Result<JobsOf, StoreError> {
        let now_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(JobsOf {
            rows: tasks
                .iter()
                .map(|t| JobRow::of(t, now_secs))
                .collect::<Result<_, _>>()?,
            marks,
        })
    }

    fn write(&self, tx: &rusqlite::Transaction<'_>) -> Result<(), rusqlite::Error> {
        let mut insert = tx.prepare_cached(INSERT_JOB_SQL)?;
        for row in &self.rows {
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
        match &self.marks {
            Marks::Each(ids) => {
                let mut mark = tx.prepare_cached(MARK_ENQUEUED_SQL)?;
                for id in ids {
                    mark.execute(params![id])?;
                }
            }
            Marks::OfBatchThrough { batch, last } => {
                tx.prepare_cached(MARK_PAGE_OF_SQL)?
                    .execute(params![batch, last])?;
            }
            Marks::Held => {}
        }
        Ok(())
    }
}

/// Inserts a job per task into apalis-sqlite's `Jobs` table and marks the
/// requests enqueued, in one transaction.
pub(super) async fn push_and_mark(
    store: &Store,
    tasks: &[Task<RequestJob>],
) -> Result<(), StoreError> {
    let jobs = JobsOf::new(tasks)?;
    store.on_sqlite_writer(move |tx| Ok(jobs.write(tx)?)).await
}

/// Enqueues the next `limit` of `which` requests that have no job, in
/// slices, in the transaction that reads them; returns how many.
pub(super) async fn enqueue_page(
    store: &Store,
    which: Unqueued<'_>,
    limit: usize,
) -> Result<usize, StoreError> {
    let batch = match which {
        Unqueued::OfBatch(batch) => Some(batch.to_owned()),
        Unqueued::Any => None,
    };
    store
        .on_sqlite_writer(move |tx| {
            let job = |r: &rusqlite::Row<'_>| {
                Ok(NewJob {
                    request_id: r.get(0)?,
                    effective_at: r.get(1)?,
                })
            };
            let page: Vec<NewJob> = match &batch {
                Some(batch) => tx
                    .prepare_cached(UNENQUEUED_OF_SQL)?
                    .query_map(params![batch, limit as i64], job)?
                    .collect::<Result<_, _>>()?,
                None => tx
                    .prepare_cached(UNENQUEUED_PAGE)?
                    .query_map(params![limit as i64], job)?
                    .collect::<Result<_, _>>()?,
            };
            let tasks = super::slices(&page, now_ms());
            let jobs = match (batch, page.last()) {
                (Some(batch), Some(last)) => {
                    let last = last.request_id.clone();
                    JobsOf::marking(&tasks, Marks::OfBatchThrough { batch, last })?
                }
                _ => JobsOf::new(&tasks)?,
            };
            jobs.write(tx)?;
            Ok(page.len())
        })
        .await
}

/// Pushes the jobs of the next `limit` requests `batch` holds, in the
/// transaction that reads them and moves the batch's cursor past them;
/// returns how many (0 once the batch holds none, which it then records).
pub(super) async fn push_held_page(
    store: &Store,
    batch: &str,
    limit: usize,
) -> Result<usize, StoreError> {
    let batch = batch.to_owned();
    store
        .on_sqlite_writer(move |tx| {
            let Some(after) = tx
                .prepare_cached(PUSH_CURSOR_SQL)?
                .query_row(params![batch], |r| r.get::<_, i64>(0))
                .optional()?
            else {
                return Ok(0);
            };
            let held: Vec<(i64, NewJob)> = tx
                .prepare_cached(HELD_PAGE_SQL)?
                .query_map(params![batch, after, limit as i64], |r| {
                    Ok((
                        r.get(0)?,
                        NewJob {
                            request_id: r.get(1)?,
                            effective_at: r.get(2)?,
                        },
                    ))
                })?
                .collect::<Result<_, _>>()?;
            let Some(&(last, _)) = held.last() else {
                tx.prepare_cached(PUSHED_ALL_SQL)?.execute(params![batch])?;
                return Ok(0);
            };
            let page: Vec<NewJob> = held.into_iter().map(|(_, job)| job).collect();
            let tasks = super::slices(&page, now_ms());
            JobsOf::marking(&tasks, Marks::Held)?.write(tx)?;
            tx.prepare_cached(PUSHED_THROUGH_SQL)?
                .execute(params![batch, last])?;
            Ok(page.len())
        })
        .await
}

/// The batches whose held requests may run now and still need jobs (an
/// intake or approval that stopped before its push finished).
pub(super) async fn held_batches(store: &Store) -> Result<Vec<String>, StoreError> {
    store
        .on_sqlite_writer(|tx| {
            Ok(tx
                .prepare_cached(HELD_BATCHES_SQL)?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?)
        })
        .await
}

#[cfg(test)]
mod tests {
    use apalis::prelude::{TaskBuilder, TaskSink};
    use apalis_sqlite::SqliteStorage;
    use sqlx::Row;

    use super::*;
    use crate::queue::Queue;
    use crate::store::QueuePool;

    /// A batch of requests as an intake stores them; returns its id.
    async fn batch_of(store: &Store, users: &[&str]) -> String {
        use crate::store::{chunk_of, scratch_batch};
        let batch = scratch_batch(store).await;
        store
            .write_intake_chunk(&batch, crate::domain::RunMode::Live, None, chunk_of(users))
            .await
            .unwrap();
        batch
    }

    fn sqlite_pool(store: &Store) -> sqlx::SqlitePool {
        let QueuePool::Sqlite(pool) = store.queue_pool().clone() else {
            unreachable!("a sqlite URL")
        };
        pool
    }

    async fn ids_of(pool: &sqlx::SqlitePool, sql: &str, batch: &str) -> Vec<String> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(batch)
            .fetch_all(pool)
            .await
            .unwrap()
    }

    /// The requests of every job in the queue, in the order pushed.
    async fn requests_in_jobs(pool: &sqlx::SqlitePool) -> Vec<String> {
        let jobs: Vec<String> =
            sqlx::query_scalar("SELECT CAST(job AS TEXT) FROM Jobs ORDER BY rowid")
                .fetch_all(pool)
                .await
                .unwrap();
        jobs.iter()
            .flat_map(|j| {
                serde_json::from_str::<RequestJob>(j)
                    .unwrap()
                    .ids()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    const ALL_OF_SQL: &str = "SELECT id FROM requests WHERE batch_id = ?1 ORDER BY id";

    /// The page marked in one statement is exactly the page read: the
    /// batch's first unqueued requests in id order, no more, and nothing of
    /// another batch; the pages together mark the batch once. (Intake holds
    /// its requests marked, so they are unmarked here, as adopted ones or
    /// those of an older version come.)
    #[tokio::test]
    async fn a_batch_s_pages_mark_exactly_their_own_requests() {
        let (_dir, _url, store) = crate::store::scratch_store().await;
        let a = batch_of(&store, &["a0", "a1", "a2", "a3", "a4"]).await;
        let b = batch_of(&store, &["b0", "b1"]).await;
        let pool = sqlite_pool(&store);
        sqlx::query("UPDATE requests SET enqueued = 0")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE batches SET push_pending = 0")
            .execute(&pool)
            .await
            .unwrap();
        const MARKED_SQL: &str =
            "SELECT id FROM requests WHERE batch_id = ?1 AND enqueued = 1 ORDER BY id";
        let all_of_a = ids_of(&pool, ALL_OF_SQL, &a).await;
        let mut pages = Vec::new();
        loop {
            let n = enqueue_page(&store, Unqueued::OfBatch(&a), 2)
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            pages.push(n);
            let marked = ids_of(&pool, MARKED_SQL, &a).await;
            assert_eq!(marked, all_of_a[..marked.len()], "a prefix in id order");
            assert_eq!(marked.len(), pages.iter().sum::<usize>());
            assert!(
                ids_of(&pool, MARKED_SQL, &b).await.is_empty(),
                "the other batch"
            );
        }
        assert_eq!(pages, [2, 2, 1]);
        assert_eq!(
            requests_in_jobs(&pool).await,
            all_of_a,
            "one job each, in order"
        );
        store.close().await;
    }

    /// Intake holds its requests' jobs; the push writes them page by page,
    /// each request once and in order, only for its own batch, and records
    /// that the batch holds no more. A second push finds nothing; the
    /// start-up sweep pushes a batch that may run and still holds jobs.
    #[tokio::test]
    async fn a_batch_s_held_requests_are_pushed_once_in_order() {
        let (_dir, _url, store) = crate::store::scratch_store().await;
        let a = batch_of(&store, &["a0", "a1", "a2", "a3", "a4"]).await;
        let b = batch_of(&store, &["b0", "b1"]).await;
        let pool = sqlite_pool(&store);
        assert!(requests_in_jobs(&pool).await.is_empty(), "held, not pushed");
        assert_eq!(held_batches(&store).await.unwrap(), [a.clone(), b.clone()]);
        let mut pages = Vec::new();
        loop {
            let n = push_held_page(&store, &a, 2).await.unwrap();
            if n == 0 {
                break;
            }
            pages.push(n);
            let pushed = requests_in_jobs(&pool).await;
            assert_eq!(pushed.len(), pages.iter().sum::<usize>());
        }
        assert_eq!(pages, [2, 2, 1]);
        assert_eq!(
            requests_in_jobs(&pool).await,
            ids_of(&pool, ALL_OF_SQL, &a).await
        );
        assert_eq!(push_held_page(&store, &a, 2).await.unwrap(), 0);
        assert_eq!(
            held_batches(&store).await.unwrap(),
            std::slice::from_ref(&b),
            "a holds none now"
        );
        // What a start-up sweep finds after a crash before b's push.
        let queue = Queue::new(&store, &crate::config::WorkerConfig::default());
        assert_eq!(queue.enqueue_missing(&store).await.unwrap(), 2);
        assert!(held_batches(&store).await.unwrap().is_empty());
        let mut all = ids_of(&pool, ALL_OF_SQL, &a).await;
        all.extend(ids_of(&pool, ALL_OF_SQL, &b).await);
        assert_eq!(
            requests_in_jobs(&pool).await,
            all,
            "b's jobs too, once each"
        );
        store.close().await;
    }

    /// A request of a halted batch that a later intake adopts gets one job,
    /// from the adopting batch, even when a sweep for unqueued requests
    /// marks it before that batch's push; the halted batch, once approved,
    /// pushes only what it still holds. Held batches that may not run (in
    /// intake, halted, cancelled) are neither offered to the start-up sweep
    /// nor pushed.
    #[tokio::test]
    async fn an_adopted_request_gets_one_job() {
        let (_dir, _url, store) = crate::store::scratch_store().await;
        let queue = Queue::new(&store, &crate::config::WorkerConfig::default());
        let pool = sqlite_pool(&store);
        let halted = batch_of(&store, &["x", "y"]).await;
        let halt =
            crate::domain::Halt::new(crate::domain::HaltCode::MaxBatchRequests, "over the cap");
        store.halt_batch(&halted, &halt).await.unwrap();
        let later = batch_of(&store, &["x", "z"]).await;
        let taking_in = batch_of(&store, &["t"]).await;
        store.mark_intake(&taking_in).await.unwrap();
        let cancelled = batch_of(&store, &["c"]).await;
        store
            .cancel_batch(
                &cancelled,
                "by a test",
                &crate::domain::Actor::named("test"),
            )
            .await
            .unwrap();
        assert_eq!(
            held_batches(&store).await.unwrap(),
            std::slice::from_ref(&later)
        );
        for batch in [&halted, &taking_in, &cancelled] {
            assert_eq!(push_held_page(&store, batch, 10).await.unwrap(), 0);
        }
        // A sweep (another process's start) marks the adopted x first.
        assert_eq!(enqueue_page(&store, Unqueued::Any, 10).await.unwrap(), 1);
        assert_eq!(queue.enqueue_batch(&store, &later).await.unwrap(), 1);
        assert_eq!(
            ids_of(&pool, ALL_OF_SQL, &later).await.len(),
            2,
            "x moved to the later batch"
        );
        assert!(
            store
                .release_batch(&halted, &crate::domain::Actor::named("approver"), None, &[])
                .await
                .unwrap()
        );
        assert_eq!(queue.enqueue_batch(&store, &halted).await.unwrap(), 1);
        let mut pushed = requests_in_jobs(&pool).await;
        pushed.sort();
        let mut all: Vec<String> =
            sqlx::query_scalar("SELECT id FROM requests WHERE batch_id IN (?1, ?2) ORDER BY id")
                .bind(&halted)
                .bind(&later)
                .fetch_all(&pool)
                .await
                .unwrap();
        all.sort();
        assert_eq!(pushed, all, "x, y and z, each once");
        assert_eq!(queue.enqueue_missing(&store).await.unwrap(), 0);
        store.close().await;
    }

    /// A job written here must be the row apalis's own sink writes for the
    /// same task: every column but the generated id. This is the guard on
    /// the schema this module copies.
    #[tokio::test]
    async fn writes_the_row_apalis_writes() {
        let (_dir, _url, store) = crate::store::scratch_store().await;
        let pool = sqlite_pool(&store);
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
