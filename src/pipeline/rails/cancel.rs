//! Cancelling a batch or a single request: the kill switch.

use super::RailError;
use crate::domain::{Actor, EventAction};
use crate::engine::Engine;

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
    if let Some(request) = store.request(id).await? {
        let n = u64::from(store.cancel_request(id, "cancelled", &message).await?);
        if n > 0 {
            let detail = serde_json::json!({"request": id, "user_id": request.target.user_id});
            store
                .record_event(&request.batch_id, actor, EventAction::Cancelled, detail)
                .await?;
        }
        return Ok(Cancellation {
            kind: "request",
            id: id.to_owned(),
            cancelled: n,
        });
    }
    Err(RailError::NotFound(crate::domain::truncate(id)))
}

/// Cancels every held preview whose `[safety] hold_ttl` ran out; how many.
pub async fn expire_holds(engine: &Engine) -> Result<u64, RailError> {
    let store = engine.store();
    let ttl = &engine.config().safety.hold_ttl;
    let before = crate::domain::now_ms()
        .saturating_sub(crate::config::millis(engine.config().safety.hold_ttl()));
    let expired = store.expired_holds(before).await?;
    let why = format!("the hold expired: not released within [safety] hold_ttl = {ttl}");
    for batch in &expired {
        store.cancel_batch(batch, &why, &Actor::system()).await?;
    }
    Ok(expired.len() as u64)
}
