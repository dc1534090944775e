//! One reconciliation: list the members, read the roster, plan a request
//! per member missing from it, and check the rails before anything runs.

use std::collections::HashSet;

use super::rails::PlanFacts;
use super::roster::read_roster;
use super::{MatchOn, ReconcileSpec};
use crate::connectors::{CallContext, Member};
use crate::domain::now_ms;
use crate::domain::{
    Actor, DepartmentId, Halt, OrgId, Outcome, ProviderName, RunMode, Target, UserId,
};
use crate::engine::Engine;
use crate::store::{AcceptedRow, IntakeChunk, NewBatch, Store};

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
    /// Members to offboard (not counting protected or unmatched ones).
    pub removals: Vec<String>,
    /// Protected members missing from the roster: planned as skipped.
    pub protected: Vec<String>,
    /// Members the roster cannot match (no email under `match_on =
    /// "email"`): planned as skipped, never removed.
    pub unmatched: Vec<String>,
    /// Why the batch waits for approval, when it does.
    pub halted: Option<Halt>,
    pub dry_run: bool,
}

/// Who asked for a reconciliation and how: its `submitted` event.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub actor: Actor,
    /// `schedule` or `cli`.
    pub origin: &'static str,
}

/// How the plan treats each member missing from the roster.
struct Drift {
    removals: Vec<String>,
    protected: Vec<String>,
    unmatched: Vec<String>,
}

fn drift(
    engine: &Engine,
    spec: &ReconcileSpec,
    members: &[Member],
    keys: &HashSet<String>,
) -> Drift {
    let mut d = Drift {
        removals: Vec::new(),
        protected: Vec::new(),
        unmatched: Vec::new(),
    };
    for m in members {
        let email = m.email.as_deref().map(str::trim).filter(|e| !e.is_empty());
        let present = match spec.roster.match_on {
            MatchOn::UserId => keys.contains(&m.user_id),
            MatchOn::Email => match email {
                Some(e) => keys.contains(&e.to_ascii_lowercase()),
                // Nothing to match on: never "missing from the roster".
                None => {
                    d.unmatched.push(m.user_id.clone());
                    continue;
                }
            },
        };
        if present {
            continue;
        }
        if engine.is_protected(&spec.provider, &m.user_id, email) {
            d.protected.push(m.user_id.clone());
        } else {
            d.removals.push(m.user_id.clone());
        }
    }
    d
}

/// Plans and stores one reconciliation batch; enqueues it unless a rail
/// halted it.
pub async fn reconcile(
    engine: &Engine,
    spec: &ReconcileSpec,
    dry_run: bool,
    trigger: &Trigger,
) -> Result<ReconcileResult, ReconcileError> {
    let connector = engine
        .connector(&spec.provider)
        .ok_or_else(|| ReconcileError::UnknownProvider(spec.provider.clone()))?;
    let org = OrgId::new_unchecked(spec.organization_id.clone());
    let cx = CallContext::default();
    let members = match connector.list_members(&cx, &org).await {
        Ok(members) => members,
        Err(e) => {
            let error = format!("{}: {}", e.code, e.message);
            notice_listing_failed(engine.store(), spec, &error).await?;
            return Err(ReconcileError::Listing {
                org: spec.organization_id.clone(),
                error,
            });
        }
    };
    let roster = read_roster(&spec.roster).await;
    let empty = HashSet::new();
    let keys = roster.as_ref().unwrap_or(&empty);
    let Drift {
        removals,
        protected,
        unmatched,
    } = drift(engine, spec, &members, keys);
    let store = engine.store();
    let facts = PlanFacts {
        roster: roster.as_ref().map(HashSet::len),
        last_good_roster: store.last_good_roster_rows(&spec.name).await?,
        members: members.len(),
        removals: removals.len(),
        unmatched: unmatched.len(),
        max_batch_requests: engine.config().safety.max_batch_requests,
    };
    let halted = spec.rails.halt(&facts);
    let dry_run = dry_run || spec.dry_run;
    let batch_id = store
        .create_batch(&NewBatch {
            source: "reconcile".into(),
            source_name: Some(spec.name.clone()),
            dry_run,
            actor: trigger.actor.clone(),
            origin: trigger.origin,
        })
        .await?;
    store.mark_intake(&batch_id).await?;
    if let Ok(r) = &roster {
        store.set_roster_rows(&batch_id, r.len() as u64).await?;
    }
    let target = |user: &str| Target {
        provider: ProviderName::new_unchecked(spec.provider.clone()),
        organization_id: org.clone(),
        user_id: UserId::new_unchecked(user),
        transfer_to_department_id: spec
            .transfer_to_department_id
            .clone()
            .map(DepartmentId::new_unchecked),
    };
    let since = now_ms().saturating_sub(crate::config::millis(
        engine.config().intake.dedupe_window(),
    ));
    let planned = removals
        .iter()
        .map(|u| (u, "not in the roster"))
        .chain(
            protected
                .iter()
                .map(|u| (u, "not in the roster (protected)")),
        )
        .chain(
            unmatched
                .iter()
                .map(|u| (u, "no email to match the roster on")),
        );
    // Built as the chunks are written, so the plan's rows never sit in
    // memory all at once.
    let rows = planned.enumerate().map(|(i, (user, why))| AcceptedRow {
        line: i as u64 + 1,
        target: target(user),
        reason: Some(why.into()),
        effective_at: None,
    });
    let unmatched_from = (removals.len() + protected.len()) as u64 + 1;
    let mode = if dry_run {
        RunMode::DryRun
    } else {
        RunMode::Live
    };
    let created = write_rows(store, &batch_id, mode, since, rows, unmatched_from).await?;
    // Unmatched members are settled before any job could run them.
    let message = "the member has no email, so the roster cannot say whether they still belong; a reconciliation never removes them";
    store
        .settle_unrun(&created, Outcome::Skipped, "unmatched_member", message)
        .await?;
    match &halted {
        Some(halt) => {
            tracing::warn!(job = %spec.name, batch = %batch_id, code = %halt.code, reason = %halt.reason, "reconciliation halted");
            store.halt_batch(&batch_id, halt).await?;
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
        unmatched,
        halted,
        dry_run,
    })
}

/// Records `reconcile.failed`: no plan could be made, so no batch exists
/// to halt (an unreadable roster halts its batch instead).
async fn notice_listing_failed(
    store: &Store,
    spec: &ReconcileSpec,
    error: &str,
) -> Result<(), ReconcileError> {
    let notice = crate::store::Notice {
        kind: "reconcile.failed",
        dedupe_key: format!("reconcile.failed/{}/{}", spec.name, ulid::Ulid::new()),
        batch_id: None,
        facts: serde_json::json!({
            "job": spec.name,
            "provider": spec.provider,
            "organization_id": spec.organization_id,
            "error": format!("cannot list the members of {}: {error}", spec.organization_id),
        }),
        problems: true,
    };
    store.record_notice(&notice).await?;
    Ok(())
}

/// Stores `rows` 2,000 at a time; the requests created for lines from
/// `settled_from` on, which must never run.
async fn write_rows(
    store: &Store,
    batch_id: &str,
    mode: RunMode,
    since: i64,
    mut rows: impl Iterator<Item = AcceptedRow>,
    settled_from: u64,
) -> Result<Vec<String>, ReconcileError> {
    let mut settled = Vec::new();
    loop {
        let accepted: Vec<AcceptedRow> = rows.by_ref().take(2_000).collect();
        if accepted.is_empty() {
            return Ok(settled);
        }
        // The unmatched lines come last, in chunks of their own.
        let (run, unrun): (Vec<_>, Vec<_>) =
            accepted.into_iter().partition(|r| r.line < settled_from);
        for (part, keep) in [(run, false), (unrun, true)] {
            if part.is_empty() {
                continue;
            }
            let chunk = IntakeChunk {
                accepted: part,
                rejected: Vec::new(),
            };
            let jobs = store
                .write_intake_chunk(batch_id, mode, Some(since), chunk)
                .await?;
            if keep {
                settled.extend(jobs.into_iter().map(|j| j.request_id));
            }
        }
    }
}
