//! Retrying what failed: the reopened requests plan again and pass the
//! same rails as any new batch.

use std::collections::HashSet;

use super::RailError;
use crate::domain::{Actor, EventAction, Halt, HaltCode, Outcome};
use crate::engine::Engine;
use crate::store::now_ms;

/// What a retry did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Retried {
    pub batch_id: String,
    /// Requests reopened to plan and run again.
    pub requeued: u64,
    /// Reconciliation requests whose person is back in the roster: ended
    /// `cancelled` / `back_in_roster` instead.
    pub back_in_roster: u64,
    /// Why the reopened requests wait for approval, when they do.
    pub halted: Option<Halt>,
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
        .ok_or_else(|| RailError::NotFound(crate::intake::row::truncate(batch_id)))?;
    let safety = &engine.config().safety;
    let age = now_ms() - batch.created_at;
    if batch.source != "reconcile" && !force && age > safety.retry_max_age().as_millis() as i64 {
        return Err(RailError::RetryTooOld {
            batch: batch.id,
            age_hours: age / 3_600_000,
            max: safety.retry_max_age.clone(),
        });
    }
    let candidates = store.reopenable(&batch.id, outcomes).await?;
    let back: HashSet<&str> = candidates
        .iter()
        .filter(|(_, user)| keep.contains(user))
        .map(|(id, _)| id.as_str())
        .collect();
    let runs = (candidates.len() - back.len()) as u64;
    let detail = serde_json::json!({
        "outcomes": outcomes.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
        "reopened": runs,
        "force": force,
    });
    store
        .record_event(&batch.id, actor, EventAction::Retried, detail)
        .await?;
    let cap = safety.max_batch_requests;
    let halted = (runs > cap).then(|| {
        Halt::new(
            HaltCode::MaxBatchRequests,
            format!(
                "a retry reopens {runs} requests, more than [safety] max_batch_requests = {cap}; run `offboard approve {}` to run them",
                batch.id
            ),
        )
    });
    // Halted before they reopen, so no sweep can give them a job first.
    if let Some(halt) = &halted {
        store.halt_batch(&batch.id, halt).await?;
    }
    let ids: Vec<String> = candidates.iter().map(|(id, _)| id.clone()).collect();
    let mut jobs = store.reopen(&ids, outcomes).await?;
    for id in &back {
        let why = "not run again: back in the roster when the retry was asked for";
        store.cancel_request(id, "back_in_roster", why).await?;
    }
    jobs.retain(|j| !back.contains(j.request_id.as_str()));
    if halted.is_none() {
        engine.queue().enqueue(store, &jobs).await?;
    }
    tracing::info!(batch = %batch.id, requeued = jobs.len(), back_in_roster = back.len(), halted = halted.is_some(), "batch retried");
    Ok(Retried {
        batch_id: batch.id,
        requeued: jobs.len() as u64,
        back_in_roster: back.len() as u64,
        halted,
    })
}
