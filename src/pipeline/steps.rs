//! The step loop: plan → strip_roles → remove_membership → verify, each
//! skipped when its checkpoint exists, each checkpointed with the audit
//! events of its calls.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::PipelineError;
use crate::connectors::{CallContext, Change, Plan, StepError};
use crate::domain::{Outcome, Step};
use crate::engine::Engine;
use crate::store::{AuditEvent, Finish, RequestRow};

/// Why the loop stopped before an outcome was stored.
pub enum Stopped {
    /// A person cancelled the request; its outcome is stored.
    Cancelled,
    Infra(PipelineError),
    Step {
        error: StepError,
        finish_roles: Vec<String>,
        events: Vec<AuditEvent>,
        /// In-place retries of this run.
        retries: u32,
    },
}

impl From<crate::store::StoreError> for Stopped {
    fn from(e: crate::store::StoreError) -> Self {
        Stopped::Infra(e.into())
    }
}

/// Checkpoint of `strip_roles`; `complete` is false when it stopped part
/// way, so a resumed run removes only the rest and still reports all.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StripCheckpoint {
    removed: Vec<String>,
    complete: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct MembershipCheckpoint {
    change: Change,
}

#[derive(Debug, Serialize, Deserialize)]
struct PruneCheckpoint {
    notes: Vec<String>,
}

/// Runs the steps of `request` that have no checkpoint in `checkpoints`
/// (read with its claim).
pub async fn run(
    engine: &Engine,
    request: &RequestRow,
    checkpoints: HashMap<Step, serde_json::Value>,
) -> Result<(), Stopped> {
    let store = engine.store();
    let t = &request.target;
    if engine.is_protected(t.provider.as_str(), t.user_id.as_str()) {
        let message = format!(
            "{} is protected (providers.{}.protected_users or service_account_id); no call was made",
            t.user_id, t.provider
        );
        return finish(
            engine,
            request,
            Outcome::Skipped,
            Vec::new(),
            Some(("protected_user", message)),
            &CallContext::default(),
        )
        .await;
    }
    let Some(connector) = engine.connector(t.provider.as_str()) else {
        let message = format!(
            "provider connection {} is not configured in this process",
            t.provider
        );
        return finish(
            engine,
            request,
            Outcome::Failed,
            Vec::new(),
            Some(("unknown_provider", message)),
            &CallContext::default(),
        )
        .await;
    };
    let cx = CallContext::for_request(&request.id, &request.batch_id).with_audit_sink(
        std::sync::Arc::new(ClaimedAudit {
            store: store.clone(),
            id: request.id.clone(),
            owner: request.claim.clone(),
        }),
    );
    cx.lap();
    let stop = |error: StepError, roles: Vec<String>| Stopped::Step {
        error,
        finish_roles: roles,
        events: cx.drain_audit(),
        retries: cx.drain_retries(),
    };

    let plan: Plan = match checkpoints.get(&Step::Plan) {
        Some(v) => decode(v)?,
        None => {
            // The claim just checked for a cancel; the plan is the first step.
            let plan = connector
                .plan(&cx, t)
                .await
                .map_err(|e| stop(e, Vec::new()))?;
            save(engine, request, Step::Plan, &plan, &cx).await?;
            plan
        }
    };
    let planned: Vec<String> = plan.role_ids.iter().map(|r| r.to_string()).collect();
    if request.dry_run {
        let message = if plan.is_member {
            format!(
                "dry run: would remove {} role(s) and the membership",
                planned.len()
            )
        } else {
            "dry run: not a member, nothing to remove".to_owned()
        };
        return finish(
            engine,
            request,
            Outcome::Skipped,
            planned,
            Some(("dry_run", message)),
            &cx,
        )
        .await;
    }

    let mut strip: StripCheckpoint = match checkpoints.get(&Step::StripRoles) {
        Some(v) => decode(v)?,
        None => StripCheckpoint::default(),
    };
    if !strip.complete {
        let remaining: Vec<_> = plan
            .role_ids
            .iter()
            .filter(|r| !strip.removed.iter().any(|d| d == r.as_str()))
            .cloned()
            .collect();
        let result = connector.strip_roles(&cx, t, &plan, &remaining).await;
        strip
            .removed
            .extend(result.removed.iter().map(|r| r.to_string()));
        if let Some(error) = result.error {
            store
                .save_step(
                    &request.id,
                    &request.claim,
                    Step::StripRoles,
                    &serde_json::to_value(&strip).unwrap_or_default(),
                    &[],
                )
                .await?;
            return Err(stop(error, strip.removed));
        }
        strip.complete = true;
        save(engine, request, Step::StripRoles, &strip, &cx).await?;
    }

    let membership: MembershipCheckpoint = match checkpoints.get(&Step::RemoveMembership) {
        Some(v) => decode(v)?,
        None => {
            let change = if plan.is_member {
                connector
                    .remove_membership(&cx, t, &plan)
                    .await
                    .map_err(|e| stop(e, strip.removed.clone()))?
            } else {
                Change::Unchanged // the plan found no membership; verify confirms
            };
            let cp = MembershipCheckpoint { change };
            save(engine, request, Step::RemoveMembership, &cp, &cx).await?;
            cp
        }
    };

    let prune: PruneCheckpoint = match checkpoints.get(&Step::PruneCustomRoles) {
        Some(v) => decode(v)?,
        None => {
            let notes = connector
                .prune(&cx, t, &plan)
                .await
                .map_err(|e| stop(e, strip.removed.clone()))?;
            match notes {
                Some(notes) => {
                    let cp = PruneCheckpoint { notes };
                    save(engine, request, Step::PruneCustomRoles, &cp, &cx).await?;
                    cp
                }
                // No pruning policy on this connection: nothing to resume.
                None => PruneCheckpoint { notes: Vec::new() },
            }
        }
    };
    let verified = connector
        .verify(&cx, t, &plan)
        .await
        .map_err(|e| stop(e, strip.removed.clone()))?;
    let outcome = if strip.removed.is_empty() && membership.change == Change::Unchanged {
        Outcome::AlreadyDone
    } else {
        Outcome::Succeeded
    };
    // A role left alone by pruning, or a removal the provider could not
    // show, is worth a note, not a failure.
    let mut notes: Vec<String> = verified.iter().map(|n| n.message.clone()).collect();
    notes.extend(prune.notes);
    let code = verified.map_or("", |n| n.code);
    let note = (!notes.is_empty()).then(|| (code, notes.join("; ")));
    finish(engine, request, outcome, strip.removed, note, &cx).await
}

async fn save<T: Serialize>(
    engine: &Engine,
    request: &RequestRow,
    step: Step,
    data: &T,
    cx: &CallContext,
) -> Result<(), Stopped> {
    crate::metrics::step(step.as_str(), cx.lap().as_secs_f64());
    let value = serde_json::to_value(data).unwrap_or_default();
    let cancel = engine
        .store()
        .save_step(&request.id, &request.claim, step, &value, &cx.drain_audit())
        .await?;
    tracing::debug!(step = %step, "step checkpointed");
    if engine.crash_after() == Some(step) {
        eprintln!(
            "{}: aborting after step {step} (test hook)",
            crate::engine::CRASH_AFTER_STEP_ENV
        );
        std::process::abort();
    }
    if cancel {
        // Every step ends here, so no step starts after a cancel.
        let message = "cancelled by a person; no further step was started".to_owned();
        finish(
            engine,
            request,
            Outcome::Cancelled,
            Vec::new(),
            Some(("cancelled", message)),
            cx,
        )
        .await?;
        return Err(Stopped::Cancelled);
    }
    Ok(())
}

async fn finish(
    engine: &Engine,
    request: &RequestRow,
    outcome: Outcome,
    roles_removed: Vec<String>,
    error: Option<(&str, String)>,
    cx: &CallContext,
) -> Result<(), Stopped> {
    let (error_code, error_message) = match error {
        Some((c, m)) => ((!c.is_empty()).then(|| c.to_owned()), Some(m)),
        None => (None, None),
    };
    tracing::info!(outcome = %outcome, "request finished");
    crate::metrics::request_finished(request.target.provider.as_str(), outcome.as_str());
    engine
        .store()
        .finish(
            &request.id,
            &request.claim,
            &Finish {
                outcome,
                roles_removed,
                error_code,
                error_message,
            },
            cx.drain_retries(),
            &cx.drain_audit(),
        )
        .await?;
    Ok(())
}

fn decode<T: for<'de> Deserialize<'de>>(value: &serde_json::Value) -> Result<T, Stopped> {
    serde_json::from_value(value.clone()).map_err(|e| {
        Stopped::Infra(PipelineError::Store(crate::store::StoreError::Corrupt(
            format!("checkpoint does not decode: {e}"),
        )))
    })
}

/// A run's audit events stored between its checkpoints, under its claim.
struct ClaimedAudit {
    store: crate::store::Store,
    id: String,
    owner: String,
}

#[async_trait::async_trait]
impl crate::connectors::AuditSink for ClaimedAudit {
    async fn store(&self, events: &[AuditEvent]) -> Result<(), String> {
        self.store
            .save_audit(&self.id, &self.owner, events)
            .await
            .map_err(|e| e.to_string())
    }
}
