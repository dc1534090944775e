//! Undoing a batch: an undo batch whose requests give back what the
//! batch's own requests removed, as their records say. It passes the same
//! rails as any batch: over `[safety] max_batch_requests` it halts for an
//! approval before any call.

use super::RailError;
use crate::domain::truncate;
use crate::domain::{Actor, EventAction, Halt, HaltCode, StoredState};
use crate::engine::Engine;
use crate::pipeline::undo::record;
use crate::store::{NewBatch, UndoRow, UndoSource};

/// Requests read per page of the batch being undone.
const PAGE: u32 = 1_000;

/// What asking for an undo did.
#[derive(Debug, serde::Serialize)]
pub struct Undo {
    /// The undo batch.
    pub batch_id: String,
    /// The batch it undoes.
    pub undoes: String,
    /// Requests in the undo batch: one per request of the batch (named in
    /// `only`, when given).
    pub requests: u64,
    /// Why the undo batch waits for an approval, when it does.
    pub halted: Option<Halt>,
}

/// Makes and releases (or halts) the undo batch of `batch_id`, for the
/// people in `only` (all when `None`), decided by `actor`.
pub async fn undo(
    engine: &Engine,
    batch_id: &str,
    only: Option<&[String]>,
    actor: &Actor,
) -> Result<Undo, RailError> {
    let store = engine.store();
    let batch = store
        .batch(batch_id)
        .await?
        .ok_or_else(|| RailError::NotFound(truncate(batch_id)))?;
    if batch.source == "undo" {
        return Err(RailError::UndoOfUndo(batch.id));
    }
    if batch.dry_run {
        return Err(RailError::NothingToUndo(batch.id));
    }
    let counts = store.batch_counts(&batch).await?;
    let waiting = counts.open + counts.scheduled + counts.held;
    let stopped = matches!(
        batch.stored_state,
        Some(StoredState::Halted | StoredState::Held | StoredState::Intake)
    );
    if waiting > 0 || stopped {
        return Err(RailError::NotFinished {
            batch: batch.id,
            open: waiting,
        });
    }
    if let Some(only) = only {
        let found = store.users_in_batch(&batch.id, only).await?;
        if let Some(unknown) = only.iter().find(|u| !found.contains(u)) {
            return Err(RailError::NotInBatch(truncate(unknown)));
        }
    }
    let mut undo_batch: Option<String> = None;
    let made = make(engine, &batch.id, only, actor, &mut undo_batch).await;
    let requests = match (made, &undo_batch) {
        (Ok(n), _) => n,
        (Err(e), Some(id)) => {
            // A batch made half-way leaves nothing runnable behind.
            let why = "the making of this undo batch failed";
            store.cancel_batch(id, why, &Actor::system()).await?;
            return Err(e);
        }
        (Err(e), None) => return Err(e),
    };
    let Some(id) = undo_batch else {
        return Err(RailError::NothingToUndo(batch.id));
    };
    let detail = serde_json::json!({"batch": batch.id, "only": only, "requests": requests});
    store
        .record_event(&id, actor, EventAction::Undoes, detail)
        .await?;
    let detail = serde_json::json!({"batch": id, "only": only});
    store
        .record_event(&batch.id, actor, EventAction::UndoneBy, detail)
        .await?;
    let cap = engine.config().safety.max_batch_requests;
    let halted = (requests > cap).then(|| {
        Halt::new(
            HaltCode::MaxBatchRequests,
            format!(
                "an undo of {requests} requests exceeds [safety] max_batch_requests = {cap}; run `offboard approve {id}` to apply it"
            ),
        )
    });
    match &halted {
        Some(halt) => store.halt_batch(&id, halt).await?,
        None => {
            store.end_intake(&id).await?;
            engine.queue().enqueue_batch(store, &id).await?;
        }
    }
    tracing::info!(batch = %id, undoes = %batch.id, requests, halted = halted.is_some(), "undo batch made");
    Ok(Undo {
        batch_id: id,
        undoes: batch.id,
        requests,
        halted,
    })
}

/// Writes the undo batch's requests, a page of the batch at a time,
/// creating the undo batch (held in intake) with the first of them; the
/// number written.
async fn make(
    engine: &Engine,
    batch_id: &str,
    only: Option<&[String]>,
    actor: &Actor,
    undo_batch: &mut Option<String>,
) -> Result<u64, RailError> {
    let store = engine.store();
    let mut requests = 0u64;
    let mut after = String::new();
    loop {
        let page = store.undo_sources(batch_id, &after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(requests);
        };
        after = last.request.id.clone();
        let rows = undo_rows(&page, only)?;
        if rows.is_empty() {
            continue;
        }
        let id = match undo_batch {
            Some(id) => id.clone(),
            None => {
                let id = store
                    .create_batch(&NewBatch {
                        source: "undo".into(),
                        source_name: Some(batch_id.to_owned()),
                        dry_run: false,
                        actor: actor.clone(),
                        origin: "undo",
                    })
                    .await?;
                *undo_batch = Some(id.clone());
                // Nothing of it runs before the cap is checked.
                store.mark_intake(&id).await?;
                id
            }
        };
        requests += rows.len() as u64;
        store.write_undo_rows(&id, &rows).await?;
    }
}

/// The undo requests of one page: every request (in `only`, when given),
/// also one that removed nothing: undoing it withdraws the offboarding, so
/// it no longer stands in the way of undoing an older one.
fn undo_rows(page: &[UndoSource], only: Option<&[String]>) -> Result<Vec<UndoRow>, RailError> {
    let mut rows = Vec::new();
    for source in page {
        let user = source.request.target.user_id.as_str();
        if only.is_some_and(|o| !o.iter().any(|u| u == user)) {
            continue;
        }
        let removal = record::removal(source)?;
        rows.push(UndoRow {
            line: source.line,
            undoes: source.request.id.clone(),
            target: source.request.target.clone(),
            reason: source.request.reason.clone(),
            removal,
        });
    }
    Ok(rows)
}
