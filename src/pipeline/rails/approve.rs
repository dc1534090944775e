//! Approving a halted batch, and releasing a held preview.

use std::collections::HashSet;

use super::RailError;
use crate::domain::now_ms;
use crate::domain::{Actor, EventAction, Halt, HaltCode, StoredState};
use crate::engine::Engine;
use crate::store::{BatchRow, LeftOut};

/// What an approval did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Approval {
    pub batch_id: String,
    pub enqueued: u64,
    /// Requests left out (not in `--only`, back in the roster, or whose
    /// person another open request offboards).
    pub cancelled: u64,
    /// Why a released preview over `[safety] max_batch_requests` waits for
    /// an approval like any halted batch.
    pub halted: Option<String>,
    pub halt_code: Option<HaltCode>,
}

/// Applies a halted batch, or releases a held preview: requests for users
/// in `only` (all when `None`) and not in `keep` run; the others end
/// `cancelled`. The state change, the cancels and the event are one
/// transaction, so two approvals at once cannot both act.
///
/// `may_approve_halted` says whether `actor` may approve a halted batch
/// (an approver): checked here, on the state this approval acts on, since
/// a preview's release can halt it between a caller's look and this.
pub async fn approve(
    engine: &Engine,
    batch_id: &str,
    only: Option<&[String]>,
    keep: &HashSet<String>,
    actor: &Actor,
    may_approve_halted: bool,
) -> Result<Approval, RailError> {
    let store = engine.store();
    let batch = store
        .batch(batch_id)
        .await?
        .ok_or_else(|| RailError::NotFound(batch_id.to_owned()))?;
    let held = match batch.stored_state {
        Some(StoredState::Halted) => false,
        Some(StoredState::Held) => true,
        _ => return Err(RailError::NotHalted(batch.id)),
    };
    if held {
        check_hold(engine, &batch).await?;
    } else if !may_approve_halted {
        return Err(RailError::NeedsApprover(batch.id));
    } else if engine.config().safety.four_eyes {
        let submitters = submitters(engine, &batch.id).await?;
        if submitters.iter().any(|s| s == actor.as_str()) {
            return Err(RailError::FourEyes {
                batch: batch.id,
                actor: actor.to_string(),
            });
        }
    }
    let open = store.open_requests_of(&batch.id).await?;
    if let Some(only) = only {
        let planned: HashSet<&str> = open.iter().map(|(_, u)| u.as_str()).collect();
        if let Some(unknown) = only.iter().find(|u| !planned.contains(u.as_str())) {
            return Err(RailError::NotInBatch(crate::domain::truncate(unknown)));
        }
    }
    let left_out: Vec<LeftOut> = open
        .iter()
        .filter_map(|(id, user)| {
            if keep.contains(user) {
                Some(LeftOut::new(
                    id,
                    "back_in_roster",
                    "not removed: back in the roster when the plan was approved",
                ))
            } else if only.is_some_and(|o| !o.contains(user)) {
                Some(LeftOut::new(
                    id,
                    "cancelled",
                    "not removed: left out of the approval (--only)",
                ))
            } else {
                None
            }
        })
        .collect();
    let mut approval = Approval {
        batch_id: batch.id.clone(),
        cancelled: left_out.len() as u64,
        ..Approval::default()
    };
    if held {
        let cap = engine.config().safety.max_batch_requests;
        let over = |n: u64| {
            Halt::new(
                HaltCode::MaxBatchRequests,
                format!(
                    "{n} requests exceed [safety] max_batch_requests = {cap}; the preview was released and needs an approval: run `offboard approve {}`",
                    batch.id
                ),
            )
        };
        let released = store
            .release_hold(&batch.id, actor, only, &left_out, cap, over)
            .await?
            .ok_or_else(|| RailError::NotHalted(batch.id.clone()))?;
        approval.cancelled += released.duplicates;
        if let Some(halt) = released.halted {
            tracing::info!(batch = %batch.id, "preview released over the cap: halted");
            approval.halt_code = Some(halt.code);
            approval.halted = Some(halt.reason);
            return Ok(approval);
        }
    } else if !store
        .release_batch(&batch.id, actor, only, &left_out)
        .await?
    {
        return Err(RailError::NotHalted(batch.id));
    }
    approval.enqueued = engine.queue().enqueue_batch(store, &batch.id).await?;
    tracing::info!(batch = %batch.id, enqueued = approval.enqueued, cancelled = approval.cancelled, "batch approved");
    Ok(approval)
}

/// A preview may be released once every request is planned, and only
/// within `[safety] hold_ttl`; an expired one is cancelled here.
async fn check_hold(engine: &Engine, batch: &BatchRow) -> Result<(), RailError> {
    let store = engine.store();
    let safety = &engine.config().safety;
    if now_ms().saturating_sub(batch.created_at) > crate::config::millis(safety.hold_ttl()) {
        let ttl = &safety.hold_ttl;
        let why = format!("the hold expired: not released within [safety] hold_ttl = {ttl}");
        store
            .cancel_batch(&batch.id, &why, &Actor::system())
            .await?;
        return Err(RailError::HoldExpired {
            batch: batch.id.clone(),
            ttl: ttl.clone(),
        });
    }
    let counts = store.batch_counts(batch).await?;
    let unplanned = counts.open + counts.scheduled;
    if unplanned > 0 {
        return Err(RailError::PreviewNotReady {
            batch: batch.id.clone(),
            open: unplanned,
        });
    }
    Ok(())
}

/// Everyone who asked for the batch's work: who submitted it, retried it
/// or released it. None of them may approve it when four eyes are asked.
pub async fn submitters(engine: &Engine, batch_id: &str) -> Result<Vec<String>, RailError> {
    Ok(engine
        .store()
        .events(batch_id)
        .await?
        .into_iter()
        .filter(|e| {
            matches!(
                e.action,
                EventAction::Submitted | EventAction::Retried | EventAction::Released
            )
        })
        .map(|e| e.actor)
        .collect())
}

/// Who holds a held preview: the actor of its latest `held` event (its
/// submitter, or whoever retried it into a preview again).
pub async fn hold_owner(engine: &Engine, batch_id: &str) -> Result<Option<String>, RailError> {
    Ok(engine
        .store()
        .events(batch_id)
        .await?
        .into_iter()
        .rev()
        .find(|e| e.action == EventAction::Held)
        .map(|e| e.actor))
}
