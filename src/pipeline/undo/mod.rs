//! The undo request's step loop: undo_plan → restore_membership →
//! restore_roles, each skipped when its checkpoint exists and each
//! checkpointed with the audit events of its calls, as the offboarding
//! steps are. It gives back what the request it undoes removed (read when
//! the undo batch was made) and only what is missing at the provider now,
//! so a second undo of the same batch ends `already_done`.

pub(crate) mod record;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::steps::{Stopped, call_context, decode, finish, roles_step, save, with_earlier};
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
pub(crate) async fn run(
    engine: &Engine,
    request: &RequestRow,
    checkpoints: HashMap<Step, serde_json::Value>,
) -> Result<(), Stopped> {
    let t = &request.target;
    let cx = call_context(engine, request);
    // Checked on every run, a resumed one too: a newer offboarding may
    // have come while this request waited for its next attempt.
    let Some(removal) = check(engine, request, &cx).await? else {
        return Ok(());
    };
    let Some(connector) = engine.connector(t.provider.as_str()) else {
        let message = format!(
            "provider connection {} is not configured in this process",
            t.provider
        );
        let error = Some(("unknown_provider", message));
        let roles = request.roles_removed.clone();
        return finish(engine, request, Outcome::Failed, roles, error, &cx).await;
    };
    let stop = |error: StepError, roles: Vec<String>| Stopped::Step {
        error,
        finish_roles: with_earlier(request, roles),
        events: cx.drain_audit(),
        retries: cx.drain_retries(),
    };
    let planned: UndoPlanCheckpoint = match checkpoints.get(&Step::UndoPlan) {
        Some(v) => decode(v)?,
        None => {
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
            save(engine, request, Step::UndoPlan, &cp, &[], &cx).await?;
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
            save(engine, request, Step::RestoreMembership, &cp, &[], &cx).await?;
            cp
        }
    };

    let roles = match roles_step(
        engine,
        request,
        &cx,
        &checkpoints,
        Step::RestoreRoles,
        &restore.roles,
        |remaining| {
            let cx = &cx;
            async move { connector.restore_roles(cx, t, restore, &remaining).await }
        },
    )
    .await?
    {
        Ok(cp) => cp,
        Err((error, restored)) => return Err(stop(error, restored)),
    };

    let changed = membership.change == Change::Changed || !roles.removed.is_empty();
    let outcome = if changed {
        Outcome::Succeeded
    } else {
        Outcome::AlreadyDone
    };
    let note = describe(&planned, &roles.removed, changed);
    let given_back = with_earlier(request, roles.removed);
    finish(engine, request, outcome, given_back, note, &cx).await
}

/// What the undo request gives back, read when its batch was made, once
/// the check that may stop it before any call has passed: `None` when the
/// request ended here (skipped).
async fn check(
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
            "{} was offboarded again by batch {batch}, which still stands; nothing (more) was restored (undo that batch first if they are to come back)",
            request.target.user_id
        );
        let error = Some(("offboarded_again", message));
        // What an earlier attempt gave back stays on record.
        let roles = request.roles_removed.clone();
        finish(engine, request, Outcome::Skipped, roles, error, cx).await?;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::domain::{Outcome, Removal, RunMode, Step};
    use crate::engine::Engine;
    use crate::store::{ClaimResult, Finish, UndoRow, chunk_of, scratch_batch};

    /// A resumed undo request checks again before it gives anything back:
    /// an offboarding that came while it waited keeps the person out.
    #[tokio::test]
    async fn a_resumed_undo_checks_for_a_newer_offboarding_again() {
        let (_dir, _url, store, queue) = crate::queue::scratch_queue().await;
        let engine = Engine::with_store(crate::config::Config::default(), Vec::new(), store, queue)
            .expect("an engine with no provider");
        let store = engine.store();
        let lease = Duration::from_secs(60);
        let done = Finish {
            outcome: Outcome::Succeeded,
            roles_removed: vec!["role_a".into()],
            error_code: None,
            error_message: None,
        };
        let offboard = |batch: String| {
            let store = store.clone();
            let done = done.clone();
            async move {
                let jobs = store
                    .write_intake_chunk(&batch, RunMode::Live, None, chunk_of(&["u1"]))
                    .await
                    .unwrap();
                let id = jobs[0].request_id.clone();
                let ClaimResult::Claimed(_) = store.claim(&id, "w", lease).await.unwrap() else {
                    panic!("not claimed");
                };
                store.finish(&id, "w", &done, 0, &[]).await.unwrap();
                id
            }
        };
        let original = offboard(scratch_batch(store).await).await;
        let undo_batch = scratch_batch(store).await;
        let row = UndoRow {
            line: 2,
            undoes: original.clone(),
            target: chunk_of(&["u1"]).accepted.remove(0).target,
            reason: None,
            removal: Removal {
                roles: vec!["role_a".into()],
                ..Removal::default()
            },
        };
        store.write_undo_rows(&undo_batch, &[row]).await.unwrap();
        let undo_id = store.undo_sources(&undo_batch, "", 1).await.unwrap();
        assert!(
            undo_id.is_empty(),
            "an undo request is no live request to undo"
        );
        let undo_id: String = sqlx::query_scalar("SELECT id FROM requests WHERE batch_id = $1")
            .bind(&undo_batch)
            .fetch_one(&store.pool)
            .await
            .unwrap();
        // An earlier run planned the undo, then had to wait.
        let ClaimResult::Claimed(_) = store.claim(&undo_id, "w", lease).await.unwrap() else {
            panic!("not claimed");
        };
        let planned = serde_json::json!({
            "removal": {"roles": ["role_a"]},
            "restore": {"roles": ["role_a"]}
        });
        store
            .save_step(&undo_id, "w", Step::UndoPlan, &planned, &[])
            .await
            .unwrap();
        store
            .postpone(&undo_id, "w", None, None, 0, &[])
            .await
            .unwrap();
        // Meanwhile the person is offboarded again.
        offboard(scratch_batch(store).await).await;

        crate::pipeline::run_job(&engine, &undo_id).await.unwrap();
        let request = store.request(&undo_id).await.unwrap().unwrap();
        assert_eq!(request.outcome, Some(Outcome::Skipped));
        assert_eq!(request.error_code.as_deref(), Some("offboarded_again"));
        store.close().await;
    }
}
