//! The durable queue (apalis on SQLite or PostgreSQL): one job per slice of
//! up to [`SLICE_REQUESTS`] offboarding requests, carrying only their ids.
//! Our tables, not apalis's, say what a request has done; the queue only
//! decides when it runs and where. A slice shares one fetch, lock and ack
//! among its requests: those were most of the queue's cost per request
//! (BENCHMARKS.md, "One job per slice"). Everything of apalis's is here:
//! its pool, migrations and index changes ([`QueuePool`]), the `Jobs`
//! rows we write ourselves (`schema`), pushing through the store's
//! hand-off, the worker, and pruning.

mod bulk;
mod pool;
mod prune;
mod schema;
mod worker;

use std::time::Duration;

use apalis::prelude::{Task, TaskBuilder, TaskSink};
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;

use crate::config::WorkerConfig;
use crate::domain::now_ms;
use crate::store::{NewJob, Store, StoreError};

pub use pool::QueuePool;
pub use prune::{KEEP_FINISHED, PRUNE_EVERY, prune_finished, release_held};
pub(crate) use worker::POLL_INTERVAL;
pub use worker::{RunRequest, WorkerError, WorkerHandle, spawn_worker};

/// The queue name, fixed so that renaming a Rust type never strands jobs.
pub const QUEUE_NAME: &str = "offboard.requests";
/// Jobs pushed per transaction when a batch is enqueued.
pub(crate) const ENQUEUE_PAGE: usize = 2_000;
/// Storage-level re-runs of a job whose handler failed on infrastructure
/// (database) errors. Provider errors never fail a job: the pipeline records
/// them and reschedules through our own attempt budget.
const JOB_MAX_ATTEMPTS: usize = 3;

/// Requests per queue job at most. Small enough that a slice's requests
/// start together and finish close together, and that two workers still
/// share a small batch; large enough that the queue's own writes per
/// request almost vanish.
pub const SLICE_REQUESTS: usize = 16;

/// The payload of a queue job: one request (a rescheduled run, or a job
/// written before slices) or a slice of a batch's requests.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RequestJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_ids: Vec<String>,
}

impl RequestJob {
    /// A job for `ids`; one id keeps the single-request shape.
    pub fn of(mut ids: Vec<String>) -> RequestJob {
        if ids.len() == 1 {
            return RequestJob {
                request_id: ids.pop(),
                request_ids: Vec::new(),
            };
        }
        RequestJob {
            request_id: None,
            request_ids: ids,
        }
    }

    /// Every request the job runs, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.request_id
            .iter()
            .chain(&self.request_ids)
            .map(String::as_str)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot enqueue jobs: {0}")]
    Push(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// apalis's storage on the configured engine.
#[derive(Clone)]
pub(crate) enum Storage {
    Sqlite(SqliteStorage<RequestJob>),
    Postgres(PostgresStorage<RequestJob>),
}

/// Runs the same code on whichever storage the queue has: the two types
/// share apalis's traits but no common type.
macro_rules! on_storage {
    ($storage:expr, $s:pat => $body:expr) => {
        match $storage {
            Storage::Sqlite($s) => $body,
            Storage::Postgres($s) => $body,
        }
    };
}

/// Handle for pushing jobs; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    storage: Storage,
    pool: QueuePool,
    settings: WorkerConfig,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("name", &QUEUE_NAME).finish()
    }
}

impl Queue {
    pub fn new(pool: &QueuePool, settings: &WorkerConfig) -> Queue {
        let storage = match pool {
            QueuePool::Sqlite(pool) => {
                Storage::Sqlite(SqliteStorage::new(pool).with_config(sqlite_config(settings)))
            }
            QueuePool::Postgres(pool) => {
                Storage::Postgres(PostgresStorage::new(pool).with_config(postgres_config(settings)))
            }
        };
        Queue {
            storage,
            pool: pool.clone(),
            settings: settings.clone(),
        }
    }

    /// The pool apalis's storage is built on (housekeeping, shutdown).
    pub fn pool(&self) -> &QueuePool {
        &self.pool
    }

    pub(crate) fn storage(&self) -> Storage {
        self.storage.clone()
    }

    pub(crate) fn settings(&self) -> &WorkerConfig {
        &self.settings
    }

    /// Pushes the new requests as jobs, a slice of [`SLICE_REQUESTS`] per
    /// job (a request not to start before a later time gets a job of its
    /// own, scheduled then), and marks the requests enqueued. On SQLite
    /// both happen in one transaction ([`bulk`]). On PostgreSQL apalis
    /// pushes the jobs in one statement and the marks follow; a crash in
    /// between leaves requests that [`Queue::enqueue_missing`] finds at the
    /// next start, and the duplicate jobs that may cause are harmless,
    /// since a job must claim its request.
    pub async fn enqueue(&self, store: &Store, jobs: &[NewJob]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let tasks = slices(jobs, now_ms());
        match self.storage.clone() {
            Storage::Sqlite(_) => bulk::push_and_mark(store, &tasks).await?,
            Storage::Postgres(mut s) => {
                s.push_all(futures::stream::iter(tasks))
                    .await
                    .map_err(|e| QueueError::Push(e.to_string()))?;
                let ids: Vec<String> = jobs.iter().map(|j| j.request_id.clone()).collect();
                store.mark_enqueued(&ids).await?;
            }
        }
        Ok(())
    }

    /// Enqueues every request of a batch that has no job yet, a page at a
    /// time (a batch may hold a million requests).
    pub async fn enqueue_batch(&self, store: &Store, batch_id: &str) -> Result<u64, QueueError> {
        self.enqueue_pages(store, Unqueued::OfBatch(batch_id)).await
    }

    /// Enqueues `which` requests a page at a time, until a page comes back
    /// empty: each page's requests leave the next one as they are marked
    /// enqueued. On SQLite a page is read, pushed and marked in one
    /// transaction on the store's writer ([`bulk::enqueue_page`]), after
    /// the jobs that intake held for those batches ([`bulk::push_held_page`]).
    async fn enqueue_pages(&self, store: &Store, which: Unqueued<'_>) -> Result<u64, QueueError> {
        let mut total = 0;
        if let Storage::Sqlite(_) = self.storage {
            let batches = match which {
                Unqueued::OfBatch(batch) => vec![batch.to_owned()],
                Unqueued::Any => bulk::held_batches(store).await?,
            };
            for batch in &batches {
                loop {
                    let pushed = bulk::push_held_page(store, batch, ENQUEUE_PAGE).await?;
                    if pushed == 0 {
                        break;
                    }
                    total += pushed as u64;
                }
            }
        }
        loop {
            let enqueued = match self.storage {
                Storage::Sqlite(_) => bulk::enqueue_page(store, which, ENQUEUE_PAGE).await?,
                Storage::Postgres(_) => {
                    let page = match which {
                        Unqueued::OfBatch(batch) => {
                            store.unenqueued_of(batch, ENQUEUE_PAGE as u32).await?
                        }
                        Unqueued::Any => store.unenqueued_requests(ENQUEUE_PAGE as u32).await?,
                    };
                    self.enqueue(store, &page).await?;
                    page.len()
                }
            };
            if enqueued == 0 {
                return Ok(total);
            }
            total += enqueued as u64;
        }
    }

    /// Pushes a job that runs the request again after `delay`.
    pub async fn schedule(&self, request_id: &str, delay: Duration) -> Result<(), QueueError> {
        self.schedule_all(vec![request_id.to_owned()], delay).await
    }

    /// Pushes one job that runs `request_ids` after `delay`.
    pub async fn schedule_all(
        &self,
        request_ids: Vec<String>,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let task = TaskBuilder::new(RequestJob::of(request_ids))
            .max_attempts(JOB_MAX_ATTEMPTS)
            .run_at_timestamp(not_before_secs(now_ms() + delay.as_millis() as i64))
            .build();
        on_storage!(self.storage.clone(), mut s => s
            .push_task(task)
            .await
            .map_err(|e| QueueError::Push(e.to_string())))
    }

    /// Enqueues open requests that never got a job, a page at a time.
    pub async fn enqueue_missing(&self, store: &Store) -> Result<u64, QueueError> {
        self.enqueue_pages(store, Unqueued::Any).await
    }
}

/// Which open requests with no queue job a sweep takes.
#[derive(Debug, Clone, Copy)]
enum Unqueued<'a> {
    /// A batch's, in id order.
    OfBatch(&'a str),
    /// Any batch's that may run (not in intake, halted or cancelled),
    /// oldest first.
    Any,
}

/// The tasks for `jobs`: consecutive requests that may start now share a
/// slice; a request effective later runs alone, at its time.
fn slices(jobs: &[NewJob], now: i64) -> Vec<Task<RequestJob>> {
    let task = |ids: Vec<String>, at: Option<i64>| {
        let mut b = TaskBuilder::new(RequestJob::of(ids)).max_attempts(JOB_MAX_ATTEMPTS);
        if let Some(at) = at {
            b = b.run_at_timestamp(not_before_secs(at));
        }
        b.build()
    };
    let mut tasks = Vec::with_capacity(jobs.len() / SLICE_REQUESTS + 1);
    let mut slice = Vec::with_capacity(SLICE_REQUESTS);
    for job in jobs {
        match job.effective_at.filter(|at| *at > now) {
            Some(at) => tasks.push(task(vec![job.request_id.clone()], Some(at))),
            None => {
                slice.push(job.request_id.clone());
                if slice.len() == SLICE_REQUESTS {
                    tasks.push(task(std::mem::take(&mut slice), None));
                }
            }
        }
    }
    if !slice.is_empty() {
        tasks.push(task(slice, None));
    }
    tasks
}

/// apalis schedules in whole seconds and truncates, which could run a job
/// up to a second before a provider's stated time; round up instead.
fn not_before_secs(at_ms: i64) -> u64 {
    (at_ms.max(0) as u64).div_ceil(1000)
}

/// Jobs a worker fetches at once; more than `concurrency` would only leave
/// jobs buffered in one process while another idles.
const FETCH_BATCH: usize = 50;

pub(crate) fn sqlite_config(settings: &WorkerConfig) -> apalis_sqlite::Config {
    apalis_sqlite::Config::default()
        .queue(QUEUE_NAME)
        .batch_size(FETCH_BATCH.min(settings.concurrency))
        .heartbeat_interval(Duration::from_secs(settings.heartbeat_secs))
        .missed_heartbeats(settings.missed_heartbeats)
}

/// A silent worker's jobs go back to the queue after `heartbeat_secs ×
/// missed_heartbeats` (apalis's own default would be five minutes).
pub(crate) fn postgres_config(settings: &WorkerConfig) -> apalis_postgres::Config {
    apalis_postgres::Config::default()
        .queue(QUEUE_NAME)
        .batch_size(FETCH_BATCH.min(settings.concurrency))
        .heartbeat_interval(Duration::from_secs(settings.heartbeat_secs))
        .missed_heartbeats(settings.missed_heartbeats)
}

/// A scratch store's database (`store::scratch_store`) with the queue's
/// side opened and migrated too.
#[cfg(test)]
pub(crate) async fn scratch_queue() -> (tempfile::TempDir, String, Store, QueuePool) {
    let (dir, url, store) = crate::store::scratch_store().await;
    let pool = QueuePool::connect(&crate::config::DatabaseConfig {
        url: url.clone(),
        ..crate::config::DatabaseConfig::default()
    })
    .await
    .unwrap();
    pool.migrate().await.unwrap();
    (dir, url, store, pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: usize, effective_at: Option<i64>) -> NewJob {
        NewJob {
            request_id: format!("req_{n:03}"),
            effective_at,
        }
    }

    /// Requests that may start now fill slices in order; one effective
    /// later runs alone at its time, and the slice around it goes on.
    #[test]
    fn requests_are_sliced_in_order_and_later_ones_run_alone() {
        let now = 1_000_000;
        let mut jobs: Vec<NewJob> = (0..SLICE_REQUESTS * 2 + 1).map(|n| job(n, None)).collect();
        jobs.insert(3, job(999, Some(now + 5_000)));
        jobs.insert(4, job(998, Some(now - 5_000)));
        let tasks = slices(&jobs, now);
        let ids: Vec<Vec<&str>> = tasks.iter().map(|t| t.args.ids().collect()).collect();
        assert_eq!(ids.len(), 4);
        assert_eq!(ids[0], ["req_999"]);
        assert_eq!(tasks[0].run_at(), Some(not_before_secs(now + 5_000)));
        assert_eq!(ids[1].len(), SLICE_REQUESTS);
        assert_eq!(
            ids[1][..5],
            ["req_000", "req_001", "req_002", "req_998", "req_003"]
        );
        assert_eq!(ids[2].len(), SLICE_REQUESTS);
        assert_eq!(ids[3], ["req_031", "req_032"]);
        let all: usize = ids.iter().map(Vec::len).sum();
        assert_eq!(all, jobs.len(), "every request is in exactly one job");
    }

    /// Jobs written before slices (`{"request_id": …}`) still run, and a
    /// single request keeps that shape.
    #[test]
    fn the_single_request_payload_is_unchanged() {
        let old: RequestJob = serde_json::from_str(r#"{"request_id":"req_a"}"#).unwrap();
        assert_eq!(old.ids().collect::<Vec<_>>(), ["req_a"]);
        let one = serde_json::to_string(&RequestJob::of(vec!["req_a".into()])).unwrap();
        assert_eq!(one, r#"{"request_id":"req_a"}"#);
        let two = RequestJob::of(vec!["req_a".into(), "req_b".into()]);
        let back: RequestJob = serde_json::from_str(&serde_json::to_string(&two).unwrap()).unwrap();
        assert_eq!(back.ids().collect::<Vec<_>>(), ["req_a", "req_b"]);
    }
}
