//! The step loop: plan → strip_roles → remove_membership →
//! revoke_sessions → prune_custom_roles → verify, each
//! skipped when its checkpoint exists, each checkpointed with the audit
//! events of its calls before the next starts (but `verify`, which only
//! reads, may run while the removal's checkpoint commits).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::PipelineError;
use super::preview::{self, Left, PlanCheckpoint};
use crate::connectors::{CallContext, Change, StepError};
use crate::domain::AuditEvent;
use crate::domain::{Outcome, RoleId, RunMode, Step};
use crate::engine::Engine;
use crate::store::{Finish, PlanSaved, RequestRow};

/// Why the loop stopped before an outcome was stored.
pub(crate) enum Stopped {
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
pub(super) struct StripCheckpoint {
    pub removed: Vec<String>,
    pub complete: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct MembershipCheckpoint {
    pub change: Change,
}

/// Checkpoint of `revoke_sessions`: whether the provider had the user
/// (and so ended their sessions and refresh tokens).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RevokeCheckpoint {
    pub revoked: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct PruneCheckpoint {
    notes: Vec<String>,
}

/// Runs the steps of `request` that have no checkpoint in `checkpoints`
/// (read with its claim).
pub(super) async fn run(
    engine: &Engine,
    request: &RequestRow,
    checkpoints: HashMap<Step, serde_json::Value>,
) -> Result<(), Stopped> {
    let store = engine.store();
    let t = &request.target;
    if engine.is_protected(t.provider.as_str(), t.user_id.as_str(), []) {
        let message = format!(
            "{} is protected (providers.{}.protected_users or service_account_id); no call was made",
            t.user_id, t.provider
        );
        return finish(
            engine,
            request,
            Outcome::Skipped,
            request.roles_removed.clone(),
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
            request.roles_removed.clone(),
            Some(("unknown_provider", message)),
            &CallContext::default(),
        )
        .await;
    };
    let cx = call_context(engine, request);
    let stop = |error: StepError, roles: Vec<String>| Stopped::Step {
        error,
        finish_roles: with_earlier(request, roles),
        events: cx.drain_audit(),
        retries: cx.drain_retries(),
    };

    let stored: Option<PlanCheckpoint> = checkpoints.get(&Step::Plan).map(decode).transpose()?;
    let (plan, left, fresh) = match stored {
        // A released preview reads the provider again before its first
        // destructive call, and applies no more than was previewed.
        Some(cp) if cp.preview && request.mode == RunMode::Live => {
            let current = connector
                .plan(&cx, t)
                .await
                .map_err(|e| stop(e, Vec::new()))?;
            let (plan, left) = preview::applied(&cp.plan, current);
            (plan, left, true)
        }
        Some(cp) => (cp.plan, cp.left, false),
        // The claim just checked for a cancel; the plan is the first step.
        None => (
            connector
                .plan(&cx, t)
                .await
                .map_err(|e| stop(e, Vec::new()))?,
            Left::default(),
            true,
        ),
    };
    // The row's spelling was checked above; the person the provider
    // resolved is checked here, before any call that changes anything.
    let subject = plan.subject.as_deref().unwrap_or(t.user_id.as_str());
    if engine.is_protected(
        t.provider.as_str(),
        subject,
        plan.emails.iter().map(String::as_str),
    ) {
        let who = if subject == t.user_id.as_str() {
            subject.to_owned()
        } else {
            format!("{} (at the provider {subject})", t.user_id)
        };
        let message = format!(
            "{who} is protected (providers.{}.protected_users or service_account_id); nothing was changed",
            t.provider
        );
        return finish(
            engine,
            request,
            Outcome::Skipped,
            request.roles_removed.clone(),
            Some(("protected_user", message)),
            &cx,
        )
        .await;
    }
    if fresh {
        let checkpoint = PlanCheckpoint {
            plan: plan.clone(),
            preview: request.mode == RunMode::Preview,
            left: left.clone(),
        };
        // One person, one request: a second open request that resolved to
        // someone another one already acts for makes no call.
        let person = (request.mode == RunMode::Live).then_some(subject);
        if let Some(other) = save_plan(engine, request, &checkpoint, person, &cx).await? {
            let message = format!(
                "{} is {subject} at the provider, whom request {other} already offboards; nothing was changed",
                t.user_id
            );
            return finish(
                engine,
                request,
                Outcome::Skipped,
                request.roles_removed.clone(),
                Some(("duplicate_person", message)),
                &cx,
            )
            .await;
        }
    }
    let planned: Vec<String> = plan.role_ids.iter().map(|r| r.to_string()).collect();
    let would = if plan.is_member {
        format!("would remove {} role(s) and the membership", planned.len())
    } else {
        "not a member, nothing to remove".to_owned()
    };
    match request.mode {
        RunMode::Live => {}
        RunMode::Preview => {
            // Waits for its batch's release, with what it would remove,
            // which stays readable (in the message) once it is released.
            let roles = if planned.is_empty() {
                String::new()
            } else {
                format!(" ({})", planned.join(", "))
            };
            // What an earlier release removed stays readable while the
            // row shows the new plan.
            let before = if request.roles_removed_earlier.is_empty() {
                String::new()
            } else {
                format!(
                    "; removed before the retry: {}",
                    request.roles_removed_earlier.join(", ")
                )
            };
            let message = format!("previewed: {would}{roles}{before}");
            store
                .preview(
                    &request.id,
                    &request.claim,
                    &planned,
                    &message,
                    cx.drain_retries(),
                    &cx.drain_audit(),
                )
                .await?;
            return Ok(());
        }
        // Dispatched to `undo::run` before any call; never here.
        RunMode::Undo => {
            return Err(Stopped::Infra(PipelineError::Store(
                crate::store::StoreError::Corrupt(format!(
                    "undo request {} reached the offboarding steps",
                    request.id
                )),
            )));
        }
        RunMode::DryRun => {
            let message = format!("dry run: {would}");
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
    }

    let strip = match roles_step(
        engine,
        request,
        &cx,
        &checkpoints,
        Step::StripRoles,
        &plan.role_ids,
        |remaining| {
            let (cx, plan) = (&cx, &plan);
            async move { connector.strip_roles(cx, t, plan, &remaining).await }
        },
    )
    .await?
    {
        Ok(cp) => cp,
        Err((error, removed)) => return Err(stop(error, removed)),
    };

    // A membership that appeared after a preview stays, so it is no
    // failure to find it still there.
    let verifies = !left.keeps_membership();
    // `verify` only reads: where no policy step follows the removal, it
    // runs while the membership's checkpoint commits. A call that changes
    // anything waits for the checkpoint before it.
    let mut verified_early = None;
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
            let step = Step::RemoveMembership;
            // The crash hook stops right after the checkpoint, with no
            // call made after it.
            let crash_test = engine.crash_after() == Some(step);
            if verifies && !connector.policy_steps() && !crash_test {
                let (cancel, verified) = tokio::join!(
                    store_checkpoint(engine, request, (step, &cp), None, &cx),
                    connector.verify(&cx, t, &plan)
                );
                let done = &strip.removed;
                checkpointed(engine, request, step, cancel?, done, &cx).await?;
                verified_early = Some(verified);
            } else {
                save(engine, request, step, &cp, &strip.removed, &cx).await?;
            }
            cp
        }
    };

    // Tenant-wide, so it runs whatever the plan found: a retry after a
    // missing scope plans a person whose membership is already gone.
    let revoked = match checkpoints.get(&Step::RevokeSessions) {
        Some(v) => decode::<RevokeCheckpoint>(v)?.revoked,
        None => match connector
            .revoke_sessions(&cx, t)
            .await
            .map_err(|e| stop(e, strip.removed.clone()))?
        {
            Some(revoked) => {
                let cp = RevokeCheckpoint { revoked };
                let step = Step::RevokeSessions;
                save(engine, request, step, &cp, &strip.removed, &cx).await?;
                revoked
            }
            None => false,
        },
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
                    let step = Step::PruneCustomRoles;
                    save(engine, request, step, &cp, &strip.removed, &cx).await?;
                    cp
                }
                // No pruning policy on this connection: nothing to resume.
                None => PruneCheckpoint { notes: Vec::new() },
            }
        }
    };
    let verified = match verified_early {
        _ if !verifies => None,
        Some(verified) => verified.map_err(|e| stop(e, strip.removed.clone()))?,
        None => connector
            .verify(&cx, t, &plan)
            .await
            .map_err(|e| stop(e, strip.removed.clone()))?,
    };
    let removed = with_earlier(request, strip.removed);
    if !left.is_empty() {
        let message = left.describe();
        return finish(
            engine,
            request,
            Outcome::NeedsAttention,
            removed,
            Some(("plan_changed", message)),
            &cx,
        )
        .await;
    }
    let outcome = if removed.is_empty() && membership.change == Change::Unchanged {
        Outcome::AlreadyDone
    } else {
        Outcome::Succeeded
    };
    // A role left alone by pruning, or a removal the provider could not
    // show, is worth a note, not a failure.
    let mut notes: Vec<String> = verified.iter().map(|n| n.message.clone()).collect();
    if revoked {
        notes.push(format!(
            "sessions and refresh tokens of {} revoked, tenant-wide",
            t.user_id
        ));
    }
    notes.extend(prune.notes);
    let code = verified.map_or(if revoked { "sessions_revoked" } else { "" }, |n| n.code);
    let note = (!notes.is_empty()).then(|| (code, notes.join("; ")));
    finish(engine, request, outcome, removed, note, &cx).await
}

/// Runs a roles step (`strip_roles`, or an undo's `restore_roles`) from
/// its checkpoint: `call` gets only the `wanted` roles not done yet, and a
/// step that stops part way checkpoints what it did, so a resumed run does
/// the rest and still reports all. `Ok(Err(_))` is the step's error with
/// the roles done so far.
pub(super) async fn roles_step<Fut>(
    engine: &Engine,
    request: &RequestRow,
    cx: &CallContext,
    checkpoints: &HashMap<Step, serde_json::Value>,
    step: Step,
    wanted: &[RoleId],
    call: impl FnOnce(Vec<RoleId>) -> Fut,
) -> Result<Result<StripCheckpoint, (StepError, Vec<String>)>, Stopped>
where
    Fut: std::future::Future<Output = crate::connectors::StripResult>,
{
    let mut cp: StripCheckpoint = match checkpoints.get(&step) {
        Some(v) => decode(v)?,
        None => StripCheckpoint::default(),
    };
    if cp.complete {
        return Ok(Ok(cp));
    }
    let remaining = wanted
        .iter()
        .filter(|r| !cp.removed.iter().any(|d| d == r.as_str()))
        .cloned()
        .collect();
    let result = call(remaining).await;
    cp.removed
        .extend(result.removed.iter().map(|r| r.to_string()));
    if let Some(error) = result.error {
        let value = serde_json::to_value(&cp).unwrap_or_default();
        let on_record = with_earlier(request, cp.removed.clone());
        engine
            .store()
            .save_step_and_roles(
                &request.id,
                &request.claim,
                (step, &value),
                Some(&on_record),
                &[],
            )
            .await?;
        return Ok(Err((error, cp.removed)));
    }
    cp.complete = true;
    save(engine, request, step, &cp, &cp.removed, cx).await?;
    Ok(Ok(cp))
}

/// Stores the step's checkpoint (see [`store_checkpoint`]) and stops the
/// run if a cancel was asked for; `done` are the roles removed (or, in an
/// undo, given back) so far by this attempt and the checkpoints it resumed
/// from, for the record of a cancel.
pub(super) async fn save<T: Serialize>(
    engine: &Engine,
    request: &RequestRow,
    step: Step,
    data: &T,
    done: &[String],
    cx: &CallContext,
) -> Result<(), Stopped> {
    // A roles step puts what was removed so far on the request's record.
    let roles = matches!(step, Step::StripRoles | Step::RestoreRoles)
        .then(|| with_earlier(request, done.to_vec()));
    let cancel = store_checkpoint(engine, request, (step, data), roles, cx).await?;
    checkpointed(engine, request, step, cancel, done, cx).await
}

/// The roles on the request's record: those an earlier attempt removed
/// before a retry reopened it stay, and `roles` of this run follow.
pub(super) fn with_earlier(request: &RequestRow, roles: Vec<String>) -> Vec<String> {
    let mut all = request.roles_removed.clone();
    all.extend(
        roles
            .into_iter()
            .filter(|r| !request.roles_removed.contains(r)),
    );
    all
}

/// Stores the step's checkpoint with the events of the calls made so far
/// (taken from `cx` now, not when the commit is awaited), and `roles` as
/// the request's `roles_removed` when given; answers whether a cancel was
/// asked for.
fn store_checkpoint<'a, T: Serialize>(
    engine: &'a Engine,
    request: &'a RequestRow,
    (step, data): (Step, &T),
    roles: Option<Vec<String>>,
    cx: &CallContext,
) -> impl std::future::Future<Output = Result<bool, crate::store::StoreError>> + 'a {
    crate::metrics::step(step.as_str(), cx.lap().as_secs_f64());
    let value = serde_json::to_value(data).unwrap_or_default();
    let events = cx.drain_audit();
    async move {
        let (id, owner) = (&request.id, &request.claim);
        engine
            .store()
            .save_step_and_roles(id, owner, (step, &value), roles.as_deref(), &events)
            .await
    }
}

/// Saves the plan's checkpoint, with the person it resolved (`person`, on
/// a live run) claimed in the same commit. `Some(request)`: that request
/// already acts for them, nothing was stored, and the calls' events stay
/// in `cx` for the outcome.
async fn save_plan(
    engine: &Engine,
    request: &RequestRow,
    checkpoint: &PlanCheckpoint,
    person: Option<&str>,
    cx: &CallContext,
) -> Result<Option<String>, Stopped> {
    let Some(person) = person else {
        save(engine, request, Step::Plan, checkpoint, &[], cx).await?;
        return Ok(None);
    };
    let lap = cx.lap();
    let value = serde_json::to_value(checkpoint).unwrap_or_default();
    let events = cx.drain_audit();
    let saved = engine
        .store()
        .save_plan(&request.id, &request.claim, person, &value, &events)
        .await;
    let cancel = match saved {
        Ok(PlanSaved::Stored { cancel }) => cancel,
        Ok(PlanSaved::HeldBy(other)) => {
            cx.keep_audit(events);
            return Ok(Some(other));
        }
        Err(e) => {
            cx.keep_audit(events);
            return Err(e.into());
        }
    };
    crate::metrics::step(Step::Plan.as_str(), lap.as_secs_f64());
    checkpointed(engine, request, Step::Plan, cancel, &[], cx).await?;
    Ok(None)
}

/// After a step's checkpoint is stored: the crash hook of the tests, and
/// no step starts after a cancel. A cancelled request keeps on its record
/// what the run did before it (`done`, see [`save`]).
async fn checkpointed(
    engine: &Engine,
    request: &RequestRow,
    step: Step,
    cancel: bool,
    done: &[String],
    cx: &CallContext,
) -> Result<(), Stopped> {
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
        let mut message = format!("cancelled by a person after its {step} step");
        if !done.is_empty() {
            let did = if Step::UNDO.contains(&step) {
                "given back"
            } else {
                "removed"
            };
            message.push_str(&format!(" (roles {did} so far: {})", done.join(", ")));
        }
        message.push_str("; no further change was started");
        let roles = with_earlier(request, done.to_vec());
        let error = Some(("cancelled", message));
        finish(engine, request, Outcome::Cancelled, roles, error, cx).await?;
        return Err(Stopped::Cancelled);
    }
    Ok(())
}

pub(super) async fn finish(
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

pub(super) fn decode<T: for<'de> Deserialize<'de>>(
    value: &serde_json::Value,
) -> Result<T, Stopped> {
    serde_json::from_value(value.clone()).map_err(|e| {
        Stopped::Infra(PipelineError::Store(crate::store::StoreError::Corrupt(
            format!("checkpoint does not decode: {e}"),
        )))
    })
}

/// The context of a claimed request's calls: their audit events are
/// stored under its claim between its checkpoints.
pub(super) fn call_context(engine: &Engine, request: &RequestRow) -> CallContext {
    let cx = CallContext::for_request(&request.id, &request.batch_id).with_audit_sink(
        std::sync::Arc::new(ClaimedAudit {
            store: engine.store().clone(),
            id: request.id.clone(),
            batch_id: request.batch_id.clone(),
            owner: request.claim.clone(),
        }),
    );
    cx.lap();
    cx
}

/// A run's audit events stored between its checkpoints, under its claim.
struct ClaimedAudit {
    store: crate::store::Store,
    id: String,
    batch_id: String,
    owner: String,
}

#[async_trait::async_trait]
impl crate::connectors::AuditSink for ClaimedAudit {
    async fn store(
        &self,
        events: &[AuditEvent],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.store.save_audit(&self.id, &self.owner, events).await?)
    }

    async fn credentials_rejected(&self, provider: &str, status: u16) {
        // Once per batch and connection, however many calls trip it.
        let notice = crate::store::Notice {
            kind: "provider.credentials_rejected",
            dedupe_key: format!("provider.credentials_rejected/{}/{provider}", self.batch_id),
            batch_id: Some(self.batch_id.clone()),
            facts: serde_json::json!({
                "provider": provider,
                "status": status,
                "error": format!(
                    "{provider} rejected our credentials (HTTP {status}) on {} calls in a row; the batch makes no more calls to it. Fix the token in the variable named by providers.{provider}.token_env (or its scopes), then retry the batch's failed requests",
                    crate::connectors::http::AUTH_FAILURES_TO_TRIP
                ),
            }),
            problems: true,
        };
        if let Err(e) = self.store.record_notice(&notice).await {
            tracing::warn!(error = %e, "cannot record the credentials notification");
        }
    }
}
