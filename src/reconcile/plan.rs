//! One reconciliation: list the members, read the roster, plan a request
//! per member missing from it, and check the rails before anything runs.

use std::collections::HashSet;

use super::roster::read_roster;
use super::{MatchOn, ReconcileSpec};
use crate::connectors::CallContext;
use crate::domain::{DepartmentId, OrgId, ProviderName, Target, UserId};
use crate::engine::Engine;
use crate::store::{AcceptedRow, IntakeChunk, NewBatch, now_ms};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("provider connection {0} is not configured")]
    UnknownProvider(String),
    #[error("cannot list the members of {org}: {error}")]
    Listing { org: String, error: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
}

/// What a reconciliation planned.
#[derive(Debug, serde::Serialize)]
pub struct ReconcileResult {
    pub batch_id: String,
    pub members: usize,
    pub roster_rows: usize,
    /// Members to offboard (not counting protected ones).
    pub removals: Vec<String>,
    /// Protected members missing from the roster: planned as skipped.
    pub protected: Vec<String>,
    /// Why the batch waits for approval, when it does.
    pub halted: Option<String>,
    pub dry_run: bool,
}

/// Every reason to stop before the first change, in the order checked.
fn rail(
    spec: &ReconcileSpec,
    roster: &Result<HashSet<String>, String>,
    removals: usize,
    members: usize,
) -> Option<String> {
    let roster = match roster {
        Err(e) => return Some(format!("{e}; nothing was removed")),
        Ok(r) => r,
    };
    if roster.is_empty() {
        return Some("the roster is empty: an empty roster never means \"remove everyone\"".into());
    }
    if let Some(floor) = spec.min_roster_rows
        && (roster.len() as u64) < floor
    {
        return Some(format!(
            "the roster has {} rows, fewer than min_roster_rows = {floor}",
            roster.len()
        ));
    }
    if let Some(cap) = spec.max_removals
        && removals as u64 > cap
    {
        return Some(format!(
            "{removals} planned removals exceed max_removals = {cap}"
        ));
    }
    if let Some(pct) = spec.max_removal_percent
        && members > 0
        && (removals as f64) * 100.0 / (members as f64) > pct
    {
        return Some(format!(
            "{removals} planned removals are {:.1}% of {members} members, over max_removal_percent = {pct}",
            removals as f64 * 100.0 / members as f64
        ));
    }
    None
}

/// Plans and stores one reconciliation batch; enqueues it unless a rail
/// halted it.
pub async fn reconcile(
    engine: &Engine,
    spec: &ReconcileSpec,
    dry_run: bool,
) -> Result<ReconcileResult, ReconcileError> {
    let connector = engine
        .connector(&spec.provider)
        .ok_or_else(|| ReconcileError::UnknownProvider(spec.provider.clone()))?;
    let org = OrgId::new_unchecked(spec.organization_id.clone());
    let cx = CallContext::default();
    let members = connector
        .list_members(&cx, &org)
        .await
        .map_err(|e| ReconcileError::Listing {
            org: spec.organization_id.clone(),
            error: format!("{}: {}", e.code, e.message),
        })?;
    let roster = read_roster(&spec.roster).await.map_err(|e| e.to_string());
    let empty = HashSet::new();
    let keys = roster.as_ref().unwrap_or(&empty);
    let (mut removals, mut protected) = (Vec::new(), Vec::new());
    for m in &members {
        let present = match spec.roster.match_on {
            MatchOn::UserId => keys.contains(&m.user_id),
            MatchOn::Email => m
                .email
                .as_ref()
                .is_some_and(|e| keys.contains(&e.to_ascii_lowercase())),
        };
        if present {
            continue;
        }
        if engine.is_protected(&spec.provider, &m.user_id, m.email.as_deref()) {
            protected.push(m.user_id.clone());
        } else {
            removals.push(m.user_id.clone());
        }
    }
    let halted = rail(spec, &roster, removals.len(), members.len());
    let dry_run = dry_run || spec.dry_run;
    let store = engine.store();
    let batch_id = store
        .create_batch(&NewBatch {
            source: "reconcile".into(),
            source_name: Some(spec.name.clone()),
            dry_run,
        })
        .await?;
    store.mark_intake(&batch_id).await?;
    // Built as the chunks are written, so the plan's rows never sit in
    // memory all at once.
    let mut rows = removals
        .iter()
        .map(|u| (u, "not in the roster"))
        .chain(
            protected
                .iter()
                .map(|u| (u, "not in the roster (protected)")),
        )
        .enumerate()
        .map(|(i, (user, why))| AcceptedRow {
            line: i as u64 + 1,
            target: Target {
                provider: ProviderName::new_unchecked(spec.provider.clone()),
                organization_id: org.clone(),
                user_id: UserId::new_unchecked(user.clone()),
                transfer_to_department_id: spec
                    .transfer_to_department_id
                    .clone()
                    .map(DepartmentId::new_unchecked),
            },
            reason: Some(why.into()),
            effective_at: None,
        });
    let since = now_ms() - engine.config().intake.dedupe_window().as_millis() as i64;
    loop {
        let accepted: Vec<AcceptedRow> = rows.by_ref().take(2_000).collect();
        if accepted.is_empty() {
            break;
        }
        let chunk = IntakeChunk {
            accepted,
            rejected: Vec::new(),
        };
        store
            .write_intake_chunk(&batch_id, dry_run, Some(since), chunk)
            .await?;
    }
    match &halted {
        Some(reason) => {
            tracing::warn!(job = %spec.name, batch = %batch_id, reason = %reason, "reconciliation halted");
            store.halt_batch(&batch_id, reason).await?;
        }
        None => {
            store.end_intake(&batch_id).await?;
            engine.queue().enqueue_batch(store, &batch_id).await?;
        }
    }
    Ok(ReconcileResult {
        batch_id,
        members: members.len(),
        roster_rows: keys.len(),
        removals,
        protected,
        halted,
        dry_run,
    })
}
