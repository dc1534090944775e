//! Retrying what failed: the reopened requests plan again and pass the
//! same rails as any new batch.

use std::collections::HashSet;

use super::RailError;
use crate::domain::now_ms;
use crate::domain::{Actor, EventAction, Halt, HaltCode, Outcome, RunMode};
use crate::engine::Engine;
use crate::store::{ReopenError, Reopening};

/// What a retry did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Retried {
    pub batch_id: String,
    /// Requests reopened to plan and run again.
    pub requeued: u64,
    /// Reconciliation requests whose person is back in the roster: ended
    /// `cancelled` / `back_in_roster` instead.
    pub back_in_roster: u64,
    /// The batch was a held preview: its reopened requests are previewed
    /// again and it waits for a release.
    pub held: bool,
    /// Why the reopened requests wait for approval, when they do.
    pub halted: Option<String>,
    pub halt_code: Option<HaltCode>,
}

/// Reopens the batch's requests that ended with one of `outcomes`: each
/// plans again from scratch. A CSV batch older than `[safety]
/// retry_max_age` needs `force`; people in `keep` (a reconciliation's
/// roster, read again) are not run again; more reopened requests than
/// `[safety] max_batch_requests` halt the batch, with `actor` as the one
/// who asked for them.
pub async fn retry(
    engine: &Engine,
    batch_id: &str,
    outcomes: &[Outcome],
    force: bool,
    keep: &HashSet<String>,
    actor: &Actor,
) -> Result<Retried, RailError> {
    let store = engine.store();
    let batch = store
        .batch(batch_id)
        .await?
        .ok_or_else(|| RailError::NotFound(crate::domain::truncate(batch_id)))?;
    let safety = &engine.config().safety;
    let age = now_ms().saturating_sub(batch.created_at);
    if batch.source != "reconcile" && !force && age > crate::config::millis(safety.retry_max_age())
    {
        return Err(RailError::RetryTooOld {
            batch: batch.id,
            age_hours: age / 3_600_000,
            max: safety.retry_max_age.clone(),
        });
    }
    let candidates = store.reopenable(&batch.id, outcomes).await?;
    let (back, run): (Vec<_>, Vec<_>) = candidates
        .into_iter()
        .partition(|(_, user)| keep.contains(user));
    let back: Vec<String> = back.into_iter().map(|(id, _)| id).collect();
    let run: Vec<String> = run.into_iter().map(|(id, _)| id).collect();
    // A batch that was a held preview is previewed again: its requests
    // apply nothing nobody has looked at, and its release passes the cap.
    let was_held = store
        .events(&batch.id)
        .await?
        .iter()
        .any(|e| e.action == EventAction::Held);
    let mode = if was_held {
        RunMode::Preview
    } else {
        RunMode::Live
    };
    let cap = safety.max_batch_requests;
    let runs = run.len() as u64;
    // A dry run's requests stay dry runs (the store keeps their mode): they
    // change nothing, so no cap applies.
    let halted = (mode == RunMode::Live && !batch.dry_run && runs > cap).then(|| {
        Halt::new(
            HaltCode::MaxBatchRequests,
            format!(
                "a retry reopens {runs} requests, more than [safety] max_batch_requests = {cap}; run `offboard approve {}` to run them",
                batch.id
            ),
        )
    });
    let detail = serde_json::json!({
        "outcomes": outcomes.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
        "reopened": runs,
        "back_in_roster": back.len(),
        "force": force,
    });
    let jobs = store
        .reopen(&Reopening {
            batch_id: &batch.id,
            outcomes,
            run: &run,
            back: &back,
            mode,
            halt: halted.as_ref(),
            actor,
            detail,
        })
        .await
        .map_err(|e| match e {
            ReopenError::NotRetryable(id) => RailError::NotRetryable(id),
            ReopenError::Store(e) => RailError::Store(e),
        })?;
    if halted.is_none() {
        engine.queue().enqueue(store, &jobs).await?;
    }
    tracing::info!(batch = %batch.id, requeued = jobs.len(), back_in_roster = back.len(), halted = halted.is_some(), "batch retried");
    Ok(Retried {
        batch_id: batch.id,
        requeued: jobs.len() as u64,
        back_in_roster: back.len() as u64,
        held: mode == RunMode::Preview,
        halt_code: halted.as_ref().map(|h| h.code),
        halted: halted.map(|h| h.reason),
    })
}
