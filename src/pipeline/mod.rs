//! The per-request pipeline: claim the request, run the steps that have no
//! checkpoint yet, and give the request its outcome. Provider failures never
//! fail the queue job: they become outcomes or a rescheduled attempt.
//! [`spawn_worker`] gives the queue's worker this run; `rails` holds the
//! decisions taken on a batch (approve, retry, cancel, hold, undo) and
//! `undo` the run that gives access back.

mod lease;
mod preview;
pub mod rails;
mod steps;
pub(crate) mod undo;

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::connectors::{ErrorClass, StepError};
use crate::domain::now_ms;
use crate::domain::{Outcome, RunMode, Step, StoredState};
use crate::engine::Engine;
use crate::queue::{QueueError, RunRequest, WorkerHandle};
use crate::store::{ClaimResult, Claimed, Finish, RequestRow, StoreError};

/// An infrastructure failure; the queue re-runs the job.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Starts a worker on the engine's queue, in the background, that runs
/// each request it takes through [`run_job`].
pub fn spawn_worker(engine: Arc<Engine>) -> WorkerHandle {
    let name = engine.worker_name().to_owned();
    let queue = engine.queue().clone();
    let run: RunRequest = Arc::new(move |request_id: String| {
        let engine = engine.clone();
        Box::pin(async move {
            run_job(&engine, &request_id)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
    });
    crate::queue::spawn_worker(&queue, &name, run)
}

/// Runs one queue job for `request_id`.
pub async fn run_job(engine: &Engine, request_id: &str) -> Result<(), PipelineError> {
    let owner = format!("{}:{}", engine.worker_name(), ulid::Ulid::new());
    let lease = engine.config().worker.lease();
    let request = match engine.store().claim(request_id, &owner, lease).await? {
        ClaimResult::Claimed(claimed) => *claimed,
        ClaimResult::Final | ClaimResult::Missing => return Ok(()),
        ClaimResult::HeldBy { remaining_ms } => {
            // Another worker runs it (or died holding it): look again once
            // its claim would have expired, so a dead holder never strands it.
            let wait = Duration::from_millis(remaining_ms.max(0) as u64 + 500);
            engine.queue().schedule(request_id, wait).await?;
            return Ok(());
        }
    };
    let span = tracing::info_span!(
        "request",
        request = %request.request.id,
        batch = %request.request.batch_id
    );
    run_claimed(engine, request, &owner, lease)
        .instrument(span)
        .await?;
    // The batch may be finished now, or a preview planned.
    if let Err(e) = engine.store().notice_after_run(request_id).await {
        tracing::warn!(error = %e, request = %request_id, "cannot record a batch notification");
    }
    Ok(())
}

async fn run_claimed(
    engine: &Engine,
    claimed: Claimed,
    owner: &str,
    lease: Duration,
) -> Result<(), PipelineError> {
    let Claimed {
        request,
        batch_state,
        cancel_requested,
        checkpoints,
    } = claimed;
    match (batch_state, cancel_requested) {
        (Some(StoredState::Halted | StoredState::Intake), false) => {
            // Waits for the batch's release (an approval, the end of its
            // intake), whose sweep enqueues what is marked unqueued. A
            // release between the claim and the park has swept already, so
            // then the sweep runs here.
            let store = engine.store();
            store.park(&request.id, &request.claim).await?;
            let released = store
                .batch(&request.batch_id)
                .await?
                .is_some_and(|b| !b.stored_state.is_some_and(StoredState::waits_for_release));
            if released {
                engine
                    .queue()
                    .enqueue_batch(store, &request.batch_id)
                    .await?;
            }
            return Ok(());
        }
        (Some(StoredState::Cancelled), _) | (_, true) => {
            // What an earlier attempt removed stays on record; a held
            // preview's roles are only what it would remove.
            let removed = if request.mode == RunMode::Preview {
                request.roles_removed_earlier.clone()
            } else {
                request.roles_removed.clone()
            };
            let changed = !removed.is_empty()
                || checkpoints
                    .keys()
                    .any(|s| !matches!(s, Step::Plan | Step::UndoPlan));
            let message = if changed {
                "cancelled by a person between two attempts; no further change was started"
            } else {
                "cancelled by a person before it ran"
            };
            engine
                .store()
                .finish(
                    &request.id,
                    &request.claim,
                    &crate::store::Finish {
                        outcome: Outcome::Cancelled,
                        roles_removed: removed,
                        error_code: Some("cancelled".into()),
                        error_message: Some(message.into()),
                    },
                    0,
                    &[],
                )
                .await?;
            return Ok(());
        }
        _ => {}
    }
    // A preview plans now, whenever it may run: its release is what must
    // wait for `effective_at`.
    let waits = request.mode != RunMode::Preview;
    if let Some(at) = request.effective_at.filter(|at| waits && *at > now_ms()) {
        engine
            .store()
            .postpone(&request.id, &request.claim, None, None, 0, &[])
            .await?;
        engine
            .queue()
            .schedule(&request.id, Duration::from_millis((at - now_ms()) as u64))
            .await?;
        return Ok(());
    }
    let mut lease = lease::keep_alive(engine.store().clone(), &request.id, owner, lease);
    // A lost claim stops the step that is running, its provider call in
    // flight included: another worker runs the request now.
    let result = tokio::select! {
        // A run that has ended wins: its finish may itself be what a
        // renewal just found (the claim ends with the outcome).
        biased;
        result = async {
            if request.mode == RunMode::Undo {
                undo::run(engine, &request, checkpoints).await
            } else {
                steps::run(engine, &request, checkpoints).await
            }
        } => result,
        () = lease.lost() => {
            tracing::warn!("the claim on this request was lost to another worker; its running step was stopped");
            return Ok(());
        }
    };
    lease.stop();
    match result {
        Ok(()) | Err(steps::Stopped::Cancelled) => Ok(()),
        Err(steps::Stopped::Infra(e)) => Err(e),
        Err(steps::Stopped::Step {
            error,
            finish_roles,
            events,
            retries,
        }) => settle_error(engine, &request, error, finish_roles, events, retries).await,
    }
}

/// Turns a step's error into an outcome, or a later attempt when the error
/// is transient and the request's attempt budget allows.
async fn settle_error(
    engine: &Engine,
    request: &RequestRow,
    error: StepError,
    roles_removed: Vec<String>,
    events: Vec<crate::domain::AuditEvent>,
    retries: u32,
) -> Result<(), PipelineError> {
    let store = engine.store();
    let policy = engine.retry_policy(request.target.provider.as_str());
    let attempts = request.attempts + retries;
    let outcome = match &error.class {
        ErrorClass::Transient { retry_after } if attempts < policy.max_attempts => {
            let wait =
                retry_after.unwrap_or_else(|| crate::connectors::retry::backoff(&policy, attempts));
            tracing::info!(
                attempt = attempts,
                delay_ms = wait.as_millis() as u64,
                reason = %error.code,
                "request will be retried"
            );
            store
                .postpone(
                    &request.id,
                    &request.claim,
                    Some((error.code.as_str(), error.message.as_str())),
                    // What this attempt removed is on record while it waits.
                    Some(&roles_removed),
                    retries,
                    &events,
                )
                .await?;
            engine.queue().schedule(&request.id, wait).await?;
            return Ok(());
        }
        ErrorClass::Transient { .. } if error.attention_when_exhausted => Outcome::NeedsAttention,
        ErrorClass::Transient { .. } => Outcome::Dead,
        ErrorClass::NeedsAttention => Outcome::NeedsAttention,
        ErrorClass::Permanent => Outcome::Failed,
    };
    let message = if outcome == Outcome::Dead {
        format!(
            "gave up after {attempts} attempts; last error: {}",
            error.message
        )
    } else {
        error.message.clone()
    };
    tracing::warn!(outcome = %outcome, error = %error.code, "request stopped");
    crate::metrics::request_finished(request.target.provider.as_str(), outcome.as_str());
    store
        .finish(
            &request.id,
            &request.claim,
            &Finish {
                outcome,
                roles_removed,
                error_code: Some(error.code),
                error_message: Some(message),
            },
            retries,
            &events,
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::store::{chunk_of, scratch_batch};

    /// A request whose job runs while its batch is halted waits without a
    /// job and gets exactly one again when the batch is approved.
    #[tokio::test]
    async fn a_request_met_in_a_halted_batch_runs_after_its_approval() {
        let (_dir, _url, store, queue) = crate::queue::scratch_queue().await;
        let engine = Engine::with_store(crate::config::Config::default(), Vec::new(), store, queue)
            .expect("an engine with no provider");
        let (store, queue) = (engine.store(), engine.queue());
        let batch = scratch_batch(store).await;
        let jobs = store
            .write_intake_chunk(
                &batch,
                crate::domain::RunMode::Live,
                None,
                chunk_of(&["u1"]),
            )
            .await
            .unwrap();
        assert_eq!(queue.enqueue_batch(store, &batch).await.unwrap(), 1);
        // Halted after its push: the job is already in the queue.
        let halt = crate::domain::Halt::new(crate::domain::HaltCode::MaxBatchRequests, "by a test");
        store.halt_batch(&batch, &halt).await.unwrap();
        run_job(&engine, &jobs[0].request_id).await.unwrap();
        let request = store.request(&jobs[0].request_id).await.unwrap().unwrap();
        assert_eq!(request.outcome, None, "still open");
        assert_eq!(queue.enqueue_missing(store).await.unwrap(), 0, "halted");
        let approval = rails::approve(
            &engine,
            &batch,
            None,
            &HashSet::new(),
            &crate::domain::Actor::named("approver"),
            true,
        )
        .await
        .unwrap();
        assert_eq!(approval.enqueued, 1, "the approval enqueues it again");
        assert_eq!(queue.enqueue_missing(store).await.unwrap(), 0, "once");
    }
}
