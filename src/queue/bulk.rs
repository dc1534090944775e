//! Pushing many jobs at once on SQLite, in the transaction that marks their
//! requests enqueued.
//!
//! apalis-sqlite 1.0 pushes one `INSERT` per job, each a round trip to
//! SQLite's connection thread: a million-row intake spent most of its time
//! there. Here the store's hand-off (`store::handoff`) reads the requests
//! that need jobs and marks them, and runs our job-writing closure
//! ([`schema::JobRows`](super::schema::JobRows)) inside the same write
//! transaction on its writer thread, so "job exists" and "request marked
//! enqueued" are one atomic step and a crash leaves no duplicate job.
//! Intake on SQLite holds its requests' jobs back until the batch may run
//! ([`push_held_page`]); see `store::handoff` for why, and for the
//! different mechanics on PostgreSQL, where apalis already pushes a whole
//! page in one `unnest` statement.
//!
//! Every test that runs a batch on SQLite runs its jobs through this path.

use apalis::prelude::Task;

use super::schema::JobRows;
use super::{RequestJob, Unqueued};
use crate::domain::now_ms;
use crate::store::{Store, StoreError};

/// Inserts a job per task into apalis-sqlite's `Jobs` table and marks the
/// requests enqueued, in one transaction.
pub(super) async fn push_and_mark(
    store: &Store,
    tasks: &[Task<RequestJob>],
) -> Result<(), StoreError> {
    let rows = JobRows::of(tasks)?;
    let ids = tasks
        .iter()
        .flat_map(|t| t.args.ids().map(str::to_owned))
        .collect();
    store.hand_off_ids(ids, move |tx| rows.write(tx)).await
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
        .hand_off_unqueued(batch, limit, |tx, page| {
            JobRows::of(&super::slices(page, now_ms()))?.write(tx)
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
    store
        .hand_off_held(batch.to_owned(), limit, |tx, page| {
            JobRows::of(&super::slices(page, now_ms()))?.write(tx)
        })
        .await
}

/// The batches whose held requests may run now and still need jobs (an
/// intake or approval that stopped before its push finished).
pub(super) async fn held_batches(store: &Store) -> Result<Vec<String>, StoreError> {
    store.held_batches().await
}

#[cfg(test)]
mod tests {
    use apalis::prelude::{TaskBuilder, TaskSink};
    use apalis_sqlite::SqliteStorage;
    use sqlx::Row;

    use super::*;
    use crate::queue::QueuePool;
    use crate::queue::{QUEUE_NAME, Queue};

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

    fn sqlite_pool(queue: &QueuePool) -> sqlx::SqlitePool {
        let QueuePool::Sqlite(pool) = queue.clone() else {
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
        let (_dir, _url, store, queue_pool) = crate::queue::scratch_queue().await;
        let a = batch_of(&store, &["a0", "a1", "a2", "a3", "a4"]).await;
        let b = batch_of(&store, &["b0", "b1"]).await;
        let pool = sqlite_pool(&queue_pool);
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
        queue_pool.close().await;
    }

    /// Intake holds its requests' jobs; the push writes them page by page,
    /// each request once and in order, only for its own batch, and records
    /// that the batch holds no more. A second push finds nothing; the
    /// start-up sweep pushes a batch that may run and still holds jobs.
    #[tokio::test]
    async fn a_batch_s_held_requests_are_pushed_once_in_order() {
        let (_dir, _url, store, queue_pool) = crate::queue::scratch_queue().await;
        let a = batch_of(&store, &["a0", "a1", "a2", "a3", "a4"]).await;
        let b = batch_of(&store, &["b0", "b1"]).await;
        let pool = sqlite_pool(&queue_pool);
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
        let queue = Queue::new(&queue_pool, &crate::config::WorkerConfig::default());
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
        queue_pool.close().await;
    }

    /// A request of a halted batch that a later intake adopts gets one job,
    /// from the adopting batch, even when a sweep for unqueued requests
    /// marks it before that batch's push; the halted batch, once approved,
    /// pushes only what it still holds. Held batches that may not run (in
    /// intake, halted, cancelled) are neither offered to the start-up sweep
    /// nor pushed.
    #[tokio::test]
    async fn an_adopted_request_gets_one_job() {
        let (_dir, _url, store, queue_pool) = crate::queue::scratch_queue().await;
        let queue = Queue::new(&queue_pool, &crate::config::WorkerConfig::default());
        let pool = sqlite_pool(&queue_pool);
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
        queue_pool.close().await;
    }

    /// A job written here must be the row apalis's own sink writes for the
    /// same task: every column but the generated id. This is the guard on
    /// the schema this module copies.
    #[tokio::test]
    async fn writes_the_row_apalis_writes() {
        let (_dir, _url, store, queue_pool) = crate::queue::scratch_queue().await;
        let pool = sqlite_pool(&queue_pool);
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
        queue_pool.close().await;
    }
}
