//! Approving a halted batch and cancelling a batch or a request: the
//! decisions a person makes about work the rails stopped.

use std::collections::HashSet;

use crate::domain::{Actor, EventAction, Halt, HaltCode, Outcome};
use crate::engine::Engine;
use crate::store::{StoreError, now_ms};

#[derive(Debug, thiserror::Error)]
pub enum RailError {
    #[error("no batch or request {0}")]
    NotFound(String),
    #[error("batch {0} is not halted: there is nothing to approve")]
    NotHalted(String),
    #[error("--only names {0}, who is not in the batch's plan")]
    NotInBatch(String),
    #[error(
        "batch {batch} was taken in {age_hours} h ago, more than [safety] retry_max_age = {max}: the people in it may have come back since; retry with --force (?force=true) to reopen it anyway"
    )]
    RetryTooOld {
        batch: String,
        age_hours: i64,
        max: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
}

/// What an approval did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Approval {
    pub batch_id: String,
    pub enqueued: u64,
    /// Requests left out (not in `--only`, or no longer to be removed).
    pub cancelled: u64,
}

/// Applies a halted batch: requests for users in `only` (all when `None`)
/// and not in `keep` run; the others end `cancelled`.
pub async fn approve(
    engine: &Engine,
    batch_id: &str,
    only: Option<&[String]>,
    keep: &HashSet<String>,
    actor: &Actor,
) -> Result<Approval, RailError> {
    let store = engine.store();
    let batch = store
        .batch(batch_id)
        .await?
        .ok_or_else(|| RailError::NotFound(batch_id.to_owned()))?;
    if batch.stored_state.as_deref() != Some("halted") {
        return Err(RailError::NotHalted(batch.id));
    }
    let open = store.open_requests_of(&batch.id).await?;
    if let Some(only) = only {
        let planned: HashSet<&str> = open.iter().map(|(_, u)| u.as_str()).collect();
        if let Some(unknown) = only.iter().find(|u| !planned.contains(u.as_str())) {
            return Err(RailError::NotInBatch(crate::intake::row::truncate(unknown)));
        }
    }
    let mut approval = Approval {
        batch_id: batch.id.clone(),
        ..Approval::default()
    };
    for (id, user) in &open {
        let why = if keep.contains(user) {
            Some((
                "back_in_roster",
                "not removed: back in the roster when the plan was approved",
            ))
        } else if only.is_some_and(|o| !o.contains(user)) {
            Some((
                "cancelled",
                "not removed: left out of the approval (--only)",
            ))
        } else {
            None
        };
        if let Some((code, why)) = why {
            store.cancel_request(id, code, why).await?;
            approval.cancelled += 1;
        }
    }
    store.release_batch(&batch.id, actor, only).await?;
    approval.enqueued = engine.queue().enqueue_batch(store, &batch.id).await?;
    tracing::info!(batch = %batch.id, enqueued = approval.enqueued, cancelled = approval.cancelled, "batch approved");
    Ok(approval)
}

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

/// What a cancel did.
#[derive(Debug, serde::Serialize)]
pub struct Cancellation {
    /// `batch` or `request`.
    pub kind: &'static str,
    pub id: String,
    /// Requests that will not run (ended now, or before their next step).
    pub cancelled: u64,
}

/// Cancels a batch (every open request it created) or a single request.
pub async fn cancel(engine: &Engine, id: &str, actor: &Actor) -> Result<Cancellation, RailError> {
    let store = engine.store();
    let message = format!("cancelled by {actor}");
    if let Some(batch) = store.batch(id).await? {
        let n = store.cancel_batch(&batch.id, &message, actor).await?;
        return Ok(Cancellation {
            kind: "batch",
            id: batch.id,
            cancelled: n,
        });
    }
    if store.request(id).await?.is_some() {
        let n = u64::from(store.cancel_request(id, "cancelled", &message).await?);
        return Ok(Cancellation {
            kind: "request",
            id: id.to_owned(),
            cancelled: n,
        });
    }
    Err(RailError::NotFound(crate::intake::row::truncate(id)))
}
