//! The queue's own floor for `bench engine`: no-op jobs through apalis
//! alone, enqueued and drained the way offboard's jobs are (the queue's
//! settings, page size and poll interval), so the bench can say how close
//! the pipeline comes to the queue it is built on. Bench-only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::{
    BackendExt, BoxDynError, Data, TaskBuilder, TaskSink, WorkerBuilder, WorkerBuilderExt,
    WorkerContext,
};
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use tokio::sync::Notify;

use crate::config::WorkerConfig;
use crate::queue::QueuePool;
use crate::queue::{ENQUEUE_PAGE, POLL_INTERVAL, QueueError, postgres_config, sqlite_config};

/// A queue of its own, so no-op jobs never meet offboard's.
const FLOOR_QUEUE: &str = "offboard.bench.noop";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct NoopJob {
    n: u64,
}

struct Drained {
    done: AtomicUsize,
    target: usize,
    all_done: Notify,
}

async fn noop(_job: NoopJob, drained: Data<Arc<Drained>>) -> Result<(), BoxDynError> {
    if drained.done.fetch_add(1, Ordering::SeqCst) + 1 == drained.target {
        drained.all_done.notify_one();
    }
    Ok(())
}

/// Enqueues `jobs` no-op jobs (in the pages offboard uses) and drains them
/// with one worker of `settings.concurrency`; returns the wall time of both.
pub(super) async fn noop_floor(
    queue: &QueuePool,
    settings: &WorkerConfig,
    jobs: usize,
) -> Result<Duration, QueueError> {
    let drained = Arc::new(Drained {
        done: AtomicUsize::new(0),
        target: jobs,
        all_done: Notify::new(),
    });
    let started = Instant::now();
    let context = WorkerContext::new(&format!("offboard-floor-{}", std::process::id()));
    let push_err = |e: String| QueueError::Push(e);
    // Both backends, the same steps: push in pages, then drain.
    macro_rules! run {
        ($storage:expr, $backend:expr) => {{
            let mut storage = $storage;
            let mut n = 0u64;
            while (n as usize) < jobs {
                let page = (jobs - n as usize).min(ENQUEUE_PAGE);
                let tasks: Vec<_> = (n..n + page as u64)
                    .map(|n| TaskBuilder::new(NoopJob { n }).max_attempts(3).build())
                    .collect();
                storage
                    .push_all(futures::stream::iter(tasks))
                    .await
                    .map_err(|e| push_err(e.to_string()))?;
                n += page as u64;
            }
            let worker = WorkerBuilder::new(&context)
                .backend($backend(storage))
                .concurrency(settings.concurrency)
                .data(drained.clone())
                .build(noop);
            tokio::spawn(async move { worker.run().await })
        }};
    }
    let task = match queue {
        QueuePool::Sqlite(pool) => run!(
            SqliteStorage::<NoopJob>::new(pool)
                .with_config(sqlite_config(settings).queue(FLOOR_QUEUE)),
            |s: SqliteStorage<NoopJob>| s.poll_with_interval(POLL_INTERVAL)
        ),
        QueuePool::Postgres(pool) => run!(
            PostgresStorage::<NoopJob>::new(pool)
                .with_config(postgres_config(settings).queue(FLOOR_QUEUE)),
            |s: PostgresStorage<NoopJob>| s.with_pubsub()
        ),
    };
    if jobs > 0 {
        drained.all_done.notified().await;
    }
    let elapsed = started.elapsed();
    let _ = context.stop();
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    Ok(elapsed)
}
