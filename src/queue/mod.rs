//! The durable queue (apalis on SQLite or PostgreSQL): one job per
//! offboarding request, carrying only the request id. Our tables, not
//! apalis's, say what a request has done; the queue only decides when it
//! runs and where.

mod bulk;
mod floor;
mod prune;
mod worker;

use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;

use crate::config::WorkerConfig;
use crate::store::{NewJob, QueuePool, Store, StoreError, now_ms};

pub use floor::noop_floor;
pub use prune::{KEEP_FINISHED, PRUNE_EVERY, prune_finished, release_held};
pub use worker::{WorkerHandle, spawn_worker};

/// The queue name, fixed so that renaming a Rust type never strands jobs.
pub const QUEUE_NAME: &str = "offboard.requests";
/// Jobs pushed per transaction when a batch is enqueued.
const ENQUEUE_PAGE: usize = 2_000;
/// Storage-level re-runs of a job whose handler failed on infrastructure
/// (database) errors. Provider errors never fail a job: the pipeline records
/// them and reschedules through our own attempt budget.
const JOB_MAX_ATTEMPTS: usize = 3;

/// The payload of a queue job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RequestJob {
    pub request_id: String,
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
    settings: WorkerConfig,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("name", &QUEUE_NAME).finish()
    }
}

impl Queue {
    pub fn new(store: &Store, settings: &WorkerConfig) -> Queue {
        let storage = match store.queue_pool() {
            QueuePool::Sqlite(pool) => {
                Storage::Sqlite(SqliteStorage::new(pool).with_config(sqlite_config(settings)))
            }
            QueuePool::Postgres(pool) => {
                Storage::Postgres(PostgresStorage::new(pool).with_config(postgres_config(settings)))
            }
        };
        Queue {
            storage,
            settings: settings.clone(),
        }
    }

    pub(crate) fn storage(&self) -> Storage {
        self.storage.clone()
    }

    pub(crate) fn settings(&self) -> &WorkerConfig {
        &self.settings
    }

    /// Pushes one job per new request and marks the requests enqueued. On
    /// SQLite both happen in one transaction ([`bulk`]). On PostgreSQL
    /// apalis pushes the jobs in one statement and the marks follow; a crash
    /// in between leaves requests that [`Queue::enqueue_missing`] finds at
    /// the next start, and the duplicate jobs that may cause are harmless,
    /// since a job must claim its request.
    pub async fn enqueue(&self, store: &Store, jobs: &[NewJob]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let tasks: Vec<_> = jobs
            .iter()
            .map(|j| {
                let mut b = TaskBuilder::new(RequestJob {
                    request_id: j.request_id.clone(),
                })
                .max_attempts(JOB_MAX_ATTEMPTS);
                if let Some(at) = j.effective_at.filter(|at| *at > now) {
                    b = b.run_at_timestamp(not_before_secs(at));
                }
                b.build()
            })
            .collect();
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
        self.enqueue_pages(store, || store.unenqueued_of(batch_id, ENQUEUE_PAGE as u32))
            .await
    }

    /// Enqueues pages from `next_page` until one comes back empty. Each
    /// page's requests leave the next one as they are marked enqueued.
    async fn enqueue_pages<F, P>(&self, store: &Store, mut next_page: F) -> Result<u64, QueueError>
    where
        F: FnMut() -> P,
        P: std::future::Future<Output = Result<Vec<NewJob>, StoreError>>,
    {
        let mut total = 0;
        loop {
            let page = next_page().await?;
            if page.is_empty() {
                return Ok(total);
            }
            total += page.len() as u64;
            self.enqueue(store, &page).await?;
        }
    }

    /// Pushes a job that runs the request again after `delay`.
    pub async fn schedule(&self, request_id: &str, delay: Duration) -> Result<(), QueueError> {
        let task = TaskBuilder::new(RequestJob {
            request_id: request_id.to_owned(),
        })
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
        self.enqueue_pages(store, || store.unenqueued_requests(ENQUEUE_PAGE as u32))
            .await
    }
}

/// apalis schedules in whole seconds and truncates, which could run a job
/// up to a second before a provider's stated time; round up instead.
fn not_before_secs(at_ms: i64) -> u64 {
    (at_ms.max(0) as u64).div_ceil(1000)
}

/// Jobs a worker fetches at once; more than `concurrency` would only leave
/// jobs buffered in one process while another idles.
const FETCH_BATCH: usize = 50;

fn sqlite_config(settings: &WorkerConfig) -> apalis_sqlite::Config {
    apalis_sqlite::Config::default()
        .queue(QUEUE_NAME)
        .batch_size(FETCH_BATCH.min(settings.concurrency))
        .heartbeat_interval(Duration::from_secs(settings.heartbeat_secs))
        .missed_heartbeats(settings.missed_heartbeats)
}

/// A silent worker's jobs go back to the queue after `heartbeat_secs ×
/// missed_heartbeats` (apalis's own default would be five minutes).
fn postgres_config(settings: &WorkerConfig) -> apalis_postgres::Config {
    apalis_postgres::Config::default()
        .queue(QUEUE_NAME)
        .batch_size(FETCH_BATCH.min(settings.concurrency))
        .heartbeat_interval(Duration::from_secs(settings.heartbeat_secs))
        .missed_heartbeats(settings.missed_heartbeats)
}
