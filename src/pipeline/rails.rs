//! Approving a halted batch and cancelling a batch or a request: the
//! decisions a person makes about work the rails stopped.

use std::collections::HashSet;

use crate::domain::Actor;
use crate::engine::Engine;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RailError {
    #[error("no batch or request {0}")]
    NotFound(String),
    #[error("batch {0} is not halted: there is nothing to approve")]
    NotHalted(String),
    #[error("--only names {0}, who is not in the batch's plan")]
    NotInBatch(String),
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
