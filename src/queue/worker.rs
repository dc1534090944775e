//! A worker process's queue consumer: apalis pulls jobs and hands each
//! request id to the function it was given (the pipeline's run, wired by
//! `pipeline::spawn_worker`, so the queue knows nothing above it).
//! Stopping it lets in-flight requests finish their current step; jobs
//! fetched but not started go back to the queue.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{
    AbortError, BackendExt, BoxDynError, Data, Strategy, WorkerBuilder, WorkerBuilderExt,
    WorkerContext,
};
use apalis_postgres::Pubsub;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use futures::future::BoxFuture;

use super::{QUEUE_NAME, Queue, RequestJob, Storage};

/// Runs one request of a job to the end of its run; an error is an
/// infrastructure failure, and the queue runs the job again.
pub type RunRequest = Arc<
    dyn Fn(String) -> BoxFuture<'static, Result<(), Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + Sync,
>;

/// How often an idle worker looks for new jobs (apalis otherwise waits for
/// its heartbeat, 30 s by default).
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// On PostgreSQL an insert wakes idle workers at once (LISTEN/NOTIFY); the
/// poll only catches jobs scheduled for later, which send no notification,
/// and notifications lost while the listener reconnects.
const PG_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Longest wait for in-flight steps on shutdown; apalis can hang forever on
/// a stop that meets a sleeping task (`../shared/apalis-notes.md` §5.5).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Why a worker did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// apalis's worker ended with an error of its own.
    #[error("{0}")]
    Queue(String),
    #[error("worker task failed: {0}")]
    Task(tokio::task::JoinError),
    #[error("worker did not stop within {0}s; unfinished requests resume after the claim expires")]
    Timeout(u64),
}

/// A running worker; stop it with [`WorkerHandle::shutdown`].
pub struct WorkerHandle {
    context: WorkerContext,
    task: JoinHandle<Result<(), WorkerError>>,
}

impl WorkerHandle {
    pub fn name(&self) -> &str {
        self.context.name()
    }

    /// Stops fetching, waits (bounded) for in-flight requests.
    pub async fn shutdown(self) -> Result<(), WorkerError> {
        let _ = self.context.stop();
        match tokio::time::timeout(SHUTDOWN_GRACE, self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(WorkerError::Task(join)),
            Err(_) => Err(WorkerError::Timeout(SHUTDOWN_GRACE.as_secs())),
        }
    }

    /// Whether the worker stopped on its own (an error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// What a worker's jobs share: the queue (to push a stopping slice's rest
/// back), the run of one request, and one slot per request that may run at
/// once (`worker.concurrency`), whichever slice it came in.
struct Runner {
    queue: Queue,
    run: RunRequest,
    slots: Arc<Semaphore>,
}

/// Runs a job's requests side by side, each as it gets a slot. Once the
/// worker is stopping, the requests not yet started go back to the queue as
/// a job of their own, so a stop waits only for the ones under way.
///
/// A panic in one request must not take the worker down or stop the rest of
/// its slice; once the slice is done it becomes an `AbortError` (no
/// storage-level re-run) and that request stays open, with its claim
/// expiring so an operator's retry can pick it up. An infrastructure error
/// fails the job, and the queue runs the slice again: its finished requests
/// are final by then and make no call.
async fn handle(
    job: RequestJob,
    runner: Data<Arc<Runner>>,
    worker: WorkerContext,
) -> Result<(), BoxDynError> {
    let ids: Vec<String> = job.ids().map(str::to_owned).collect();
    let mut running = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let slot = runner.slots.clone().acquire_owned().await?;
        if worker.is_shutting_down() {
            drop(slot);
            let rest = ids[i..].to_vec();
            tracing::debug!(
                requests = rest.len(),
                "worker stopping; slice rest requeued"
            );
            runner.queue.schedule_all(rest, Duration::ZERO).await?;
            break;
        }
        let request = (runner.run)(id.clone());
        let run = tokio::spawn(async move {
            let result = request.await;
            drop(slot);
            result
        });
        running.push((id, run));
    }
    let mut failed: Option<BoxDynError> = None;
    for (id, run) in running {
        match run.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(request = %id, error = %e, "request hit an infrastructure error; the slice runs again");
                failed.get_or_insert(e);
            }
            Err(join) if join.is_panic() => {
                tracing::error!(request = %id, "request handler panicked");
                failed =
                    Some(AbortError::new(std::io::Error::other("request handler panicked")).into());
            }
            Err(join) => {
                failed.get_or_insert_with(|| Box::new(join));
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Starts a worker named `name` on `queue`, in the background; `run` runs
/// each request of the jobs it takes.
pub fn spawn_worker(queue: &Queue, name: &str, run: RunRequest) -> WorkerHandle {
    let context = WorkerContext::new(name);
    let concurrency = queue.settings().concurrency;
    let runner = Arc::new(Runner {
        queue: queue.clone(),
        run,
        slots: Arc::new(Semaphore::new(concurrency)),
    });
    // The two backends differ in type, so each arm builds its own worker.
    let task = match runner.queue.storage() {
        Storage::Sqlite(storage) => {
            let worker = WorkerBuilder::new(&context)
                .backend(storage.poll_with_interval(POLL_INTERVAL))
                .concurrency(concurrency)
                .data(runner)
                .build(handle);
            tokio::spawn(async move {
                worker
                    .run()
                    .await
                    .map_err(|e| WorkerError::Queue(e.to_string()))
            })
        }
        Storage::Postgres(storage) => {
            let wake = Strategy::new()
                .stream(Pubsub::new(storage.pool().clone(), QUEUE_NAME.to_owned()))
                .interval(PG_POLL_INTERVAL);
            let worker = WorkerBuilder::new(&context)
                .backend(storage.poll_with_strategy(wake))
                .concurrency(concurrency)
                .data(runner)
                .build(handle);
            tokio::spawn(async move {
                worker
                    .run()
                    .await
                    .map_err(|e| WorkerError::Queue(e.to_string()))
            })
        }
    };
    WorkerHandle { context, task }
}
