//! The undo request's step loop: undo_plan → restore_membership →
//! restore_roles, each skipped when its checkpoint exists and each
//! checkpointed with the audit events of its calls, as the offboarding
//! steps are. It gives back what the request it undoes removed (read when
//! the undo batch was made) and only what is missing at the provider now,
//! so a second undo of the same batch ends `already_done`.

pub mod record;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::steps::{Stopped, StripCheckpoint, call_context, decode, finish, save};
use crate::connectors::{CallContext, Change, StepError};
use crate::domain::{Outcome, Removal, Restore, Step};
use crate::engine::Engine;
use crate::store::RequestRow;

/// Checkpoint of `undo_plan`: what is missing now, and what was removed.
#[derive(Debug, Serialize, Deserialize)]
struct UndoPlanCheckpoint {
    removal: Removal,
    restore: Restore,
}

#[derive(Debug, Serialize, Deserialize)]
struct RestoreMembershipCheckpoint {
    change: Change,
}

/// Runs the undo steps of `request` that have no checkpoint yet.
pub async fn run(
    engine: &Engine,
    request: &RequestRow,
    checkpoints: HashMap<Step, serde_json::Value>,
) -> Result<(), Stopped> {
    let t = &request.target;
    let cx = call_context(engine, request);
    let Some(connector) = engine.connector(t.provider.as_str()) else {
        let message = format!(
            "provider connection {} is not configured in this process",
            t.provider
        );
        let error = Some(("unknown_provider", message));
        return finish(engine, request, Outcome::Failed, Vec::new(), error, &cx).await;
    };
    let stop = |error: StepError, roles: Vec<String>| Stopped::Step {
        error,
        finish_roles: roles,
        events: cx.drain_audit(),
        retries: cx.drain_retries(),
    };
    let planned: UndoPlanCheckpoint = match checkpoints.get(&Step::UndoPlan) {
        Some(v) => decode(v)?,
        None => {
            let Some(removal) = plan(engine, request, &cx).await? else {
                return Ok(());
            };
            // Nothing removed, nothing to read or give back.
            let restore = if removal.is_empty() {
                Restore::default()
            } else {
                connector
                    .restore_plan(&cx, t, &removal)
                    .await
                    .map_err(|e| stop(e, Vec::new()))?
            };
            let cp = UndoPlanCheckpoint { removal, restore };
            save(engine, request, Step::UndoPlan, &cp, &cx).await?;
            cp
        }
    };
    let restore = &planned.restore;

    let membership: RestoreMembershipCheckpoint = match checkpoints.get(&Step::RestoreMembership) {
        Some(v) => decode(v)?,
        None => {
            let change = connector
                .restore_membership(&cx, t, restore)
                .await
                .map_err(|e| stop(e, Vec::new()))?;
            let cp = RestoreMembershipCheckpoint { change };
            save(engine, request, Step::RestoreMembership, &cp, &cx).await?;
            cp
        }
    };

    let mut roles: StripCheckpoint = match checkpoints.get(&Step::RestoreRoles) {
        Some(v) => decode(v)?,
        None => StripCheckpoint::default(),
    };
    if !roles.complete {
        let remaining: Vec<_> = restore
            .roles
            .iter()
            .filter(|r| !roles.removed.iter().any(|d| d == r.as_str()))
            .cloned()
            .collect();
        let result = connector.restore_roles(&cx, t, restore, &remaining).await;
        roles
            .removed
            .extend(result.removed.iter().map(|r| r.to_string()));
        if let Some(error) = result.error {
            let value = serde_json::to_value(&roles).unwrap_or_default();
            engine
                .store()
                .save_step(&request.id, &request.claim, Step::RestoreRoles, &value, &[])
                .await?;
            return Err(stop(error, roles.removed));
        }
        roles.complete = true;
        save(engine, request, Step::RestoreRoles, &roles, &cx).await?;
    }

    let changed = membership.change == Change::Changed || !roles.removed.is_empty();
    let outcome = if changed {
        Outcome::Succeeded
    } else {
        Outcome::AlreadyDone
    };
    let note = describe(&planned, &roles.removed, changed);
    finish(engine, request, outcome, roles.removed, note, &cx).await
}

/// What the undo request gives back, read when its batch was made, once
/// the checks that may stop it before any call have passed: `None` when
/// the request ended here (skipped).
async fn plan(
    engine: &Engine,
    request: &RequestRow,
    cx: &CallContext,
) -> Result<Option<Removal>, Stopped> {
    let store = engine.store();
    let Some(link) = store.undo_link(&request.id).await? else {
        return Err(Stopped::Infra(super::PipelineError::Store(
            crate::store::StoreError::Corrupt(format!(
                "undo request {} has no record of what it undoes",
                request.id
            )),
        )));
    };
    // A person offboarded again since must stay offboarded.
    if let Some(batch) = store.offboarded_again(&link.undoes).await? {
        let message = format!(
            "{} was offboarded again by batch {batch}, which still stands; nothing was restored (undo that batch first if they are to come back)",
            request.target.user_id
        );
        let error = Some(("offboarded_again", message));
        finish(engine, request, Outcome::Skipped, Vec::new(), error, cx).await?;
        return Ok(None);
    }
    // Before the first call that gives anything back: from here on the
    // undone request answers no resubmission, which must plan afresh.
    store.mark_undone(&link.undoes, &request.batch_id).await?;
    Ok(Some(link.removal))
}

/// The report's note: what was given back, and that revoked sessions stay
/// revoked.
fn describe(
    planned: &UndoPlanCheckpoint,
    roles: &[String],
    changed: bool,
) -> Option<(&'static str, String)> {
    let mut parts = Vec::new();
    let r = &planned.restore;
    if r.membership {
        parts.push("the membership".to_owned());
    }
    if !roles.is_empty() {
        parts.push(format!("the roles {}", roles.join(", ")));
    }
    if r.unblock {
        parts.push("sign-in (unblocked)".to_owned());
    }
    let mut note = if changed {
        format!("restored {}", parts.join(", "))
    } else if planned.removal.is_empty() {
        "the offboarding removed nothing, so nothing was given back".to_owned()
    } else {
        format!(
            "nothing was missing: {} already back",
            planned.removal.describe()
        )
    };
    if planned.removal.sessions_revoked {
        note.push_str(
            "; the sessions and refresh tokens the offboarding revoked are not restored (the person signs in again)",
        );
    }
    Some(("", note))
}
