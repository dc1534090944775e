//! Batch listing, status, requests, reports and retries.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::Params;
use super::{ApiError, ApiState};
use axum::Extension;

use crate::domain::{Outcome, Role};
use crate::identity::Identity;
use crate::report::status::{describe, describe_one};
use crate::report::{csv_parts, json_report};
use crate::store::{BatchRow, ReportWindow, Store};

#[derive(Debug, Deserialize)]
pub(super) struct Page {
    #[serde(default = "default_limit")]
    limit: u32,
    #[serde(default)]
    offset: u64,
    /// The `next_cursor` of the page before: keyset paging, an index
    /// seek at any depth (`offset` walks past the earlier rows).
    after: Option<String>,
    /// Only requests with this outcome (`GET …/requests`).
    outcome: Option<String>,
}

fn default_limit() -> u32 {
    50
}

pub(super) fn page_limit(limit: u32) -> Result<u32, ApiError> {
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit must be between 1 and 1000",
        ))
    }
}

async fn batch(store: &Store, id: &str) -> Result<BatchRow, ApiError> {
    store
        .batch(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::batch_not_found(id))
}

pub(super) async fn list(
    State(state): State<ApiState>,
    Params(page): Params<Page>,
) -> Result<impl IntoResponse, ApiError> {
    let store = state.engine.store();
    let limit = page_limit(page.limit)?;
    // One row past the page says whether another follows.
    if let Some(after) = &page.after
        && (after.len() != 26 || !after.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "after is not a cursor this API gave",
        ));
    }
    let mut rows = match &page.after {
        Some(after) => store.list_batches_after(Some(after), limit + 1).await,
        None if page.offset > 0 => store.list_batches(limit + 1, page.offset).await,
        None => store.list_batches_after(None, limit + 1).await,
    }
    .map_err(ApiError::internal)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last().map(|b| b.id.clone())).flatten();
    let next_offset = (more && page.after.is_none()).then(|| page.offset + limit as u64);
    let mut batches = Vec::with_capacity(rows.len());
    for b in rows {
        batches.push(describe(store, b).await.map_err(ApiError::internal)?);
    }
    Ok(axum::Json(json!({
        "batches": batches,
        "next_cursor": next_cursor,
        "next_offset": next_offset,
    })))
}

pub(super) async fn get(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let store = state.engine.store();
    let b = batch(store, &id).await?;
    Ok(axum::Json(
        describe_one(store, b).await.map_err(ApiError::internal)?,
    ))
}

pub(super) async fn requests(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(page): Params<Page>,
) -> Result<impl IntoResponse, ApiError> {
    let store = state.engine.store();
    let b = batch(store, &id).await?;
    let limit = page_limit(page.limit)?;
    if let Some(o) = &page.outcome {
        let known = o.parse::<Outcome>().is_ok()
            || matches!(o.as_str(), "rejected" | "scheduled" | "pending" | "held");
        if !known {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "unknown outcome",
            ));
        }
    }
    // One row past the page says whether another page follows.
    let selected = match &page.after {
        Some(after) => {
            let line = after.parse::<u64>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    "after is not a cursor this API gave",
                )
            })?;
            store
                .report_page(&b.id, page.outcome.as_deref(), Some(line), limit + 1)
                .await
        }
        None => {
            let window = ReportWindow {
                outcome: page.outcome.as_deref(),
                offset: page.offset,
                limit: limit + 1,
            };
            store.report_window(&b.id, window).await
        }
    }
    .map_err(ApiError::internal)?;
    let more = selected.len() > limit as usize;
    let requests: Vec<_> = selected.into_iter().take(limit as usize).collect();
    let next_cursor = more
        .then(|| requests.last().map(|r| r.line.to_string()))
        .flatten();
    let next_offset = (more && page.after.is_none()).then(|| page.offset + limit as u64);
    Ok(axum::Json(json!({
        "requests": requests,
        "next_cursor": next_cursor,
        "next_offset": next_offset,
    })))
}

pub(super) async fn report(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let store = state.engine.store();
    let b = batch(store, &id).await?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("text/csv") {
        let body = Body::from_stream(csv_parts(store.clone(), b.id.clone()));
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response());
    }
    if !(accept.is_empty() || accept.contains("application/json") || accept.contains("*/*")) {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "the report is available as text/csv or application/json",
        ));
    }
    let parts = json_report(store, &b, false)
        .await
        .map_err(ApiError::internal)?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(parts),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct RetryQuery {
    /// Comma-separated outcomes to run again (default `dead`).
    outcome: Option<String>,
    /// Reopen a CSV batch older than `[safety] retry_max_age` anyway.
    #[serde(default)]
    force: bool,
}

pub(super) async fn retry(
    State(state): State<ApiState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    Params(q): Params<RetryQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let store = state.engine.store();
    let b = batch(store, &id).await?;
    let mut outcomes = Vec::new();
    for name in q.outcome.as_deref().unwrap_or("dead").split(',') {
        match name.trim().parse::<Outcome>() {
            Ok(o @ (Outcome::Dead | Outcome::Failed | Outcome::NeedsAttention)) => outcomes.push(o),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    "outcome must be dead, failed or needs_attention",
                ));
            }
        }
    }
    let keep = still_wanted(&state, &b.id).await?;
    let retried = crate::pipeline::rails::retry(
        &state.engine,
        &b.id,
        &outcomes,
        q.force,
        &keep,
        &identity.actor,
    )
    .await
    .map_err(rail_error)?;
    Ok((StatusCode::ACCEPTED, axum::Json(retried)))
}

/// A reconciliation's roster read again: the members it wants now.
async fn still_wanted(
    state: &ApiState,
    batch_id: &str,
) -> Result<std::collections::HashSet<String>, ApiError> {
    crate::jobs::reconcile::still_wanted(&state.engine, batch_id, None)
        .await
        .map_err(ApiError::internal)
}

#[derive(Debug, Deserialize)]
pub(super) struct ApproveQuery {
    /// Comma-separated user ids: apply (or undo) only their requests.
    only: Option<String>,
}

impl ApproveQuery {
    fn only(self) -> Option<Vec<String>> {
        self.only.map(|o| {
            o.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
    }
}

fn rail_error(e: crate::pipeline::rails::RailError) -> ApiError {
    use crate::pipeline::rails::RailError;
    match e {
        RailError::NotFound(id) => ApiError::batch_not_found(&id),
        RailError::NotHalted(_) => ApiError::new(StatusCode::CONFLICT, "not_halted", e.to_string()),
        RailError::NotInBatch(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_in_batch",
            e.to_string(),
        ),
        RailError::RetryTooOld { .. } => {
            ApiError::new(StatusCode::CONFLICT, "retry_too_old", e.to_string())
        }
        RailError::HoldExpired { .. } => {
            ApiError::new(StatusCode::CONFLICT, "hold_expired", e.to_string())
        }
        RailError::PreviewNotReady { .. } => {
            ApiError::new(StatusCode::CONFLICT, "preview_not_ready", e.to_string())
        }
        RailError::NotRetryable(_) => {
            ApiError::new(StatusCode::CONFLICT, "not_retryable", e.to_string())
        }
        RailError::FourEyes { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "four_eyes_required", e.to_string())
        }
        RailError::NeedsApprover(_) => {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
        }
        RailError::UndoOfUndo(_) => {
            ApiError::new(StatusCode::CONFLICT, "undo_of_undo", e.to_string())
        }
        RailError::NothingToUndo(_) => {
            ApiError::new(StatusCode::CONFLICT, "nothing_to_undo", e.to_string())
        }
        RailError::NotFinished { .. } => {
            ApiError::new(StatusCode::CONFLICT, "batch_not_finished", e.to_string())
        }
        RailError::Store(_) | RailError::Queue(_) => ApiError::internal(e),
    }
}

/// An approver approves any halted batch (not their own) and releases any
/// preview; an operator releases only a preview they hold.
async fn may_approve(state: &ApiState, identity: &Identity, id: &str) -> Result<(), ApiError> {
    if identity.allows(Role::Approver) {
        return Ok(());
    }
    let b = batch(state.engine.store(), id).await?;
    if b.stored_state == Some(crate::domain::StoredState::Held) {
        let owner = crate::pipeline::rails::hold_owner(&state.engine, &b.id)
            .await
            .map_err(rail_error)?;
        if owner.as_deref() == Some(identity.actor.as_str()) {
            return Ok(());
        }
    }
    Err(super::auth::forbidden(identity, Role::Approver))
}

pub(super) async fn approve(
    State(state): State<ApiState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    Params(q): Params<ApproveQuery>,
) -> Result<impl IntoResponse, ApiError> {
    may_approve(&state, &identity, &id).await?;
    let only = q.only();
    let keep = still_wanted(&state, &id).await?;
    let approval = crate::pipeline::rails::approve(
        &state.engine,
        &id,
        only.as_deref(),
        &keep,
        &identity.actor,
        identity.allows(Role::Approver),
    )
    .await
    .map_err(rail_error)?;
    Ok((StatusCode::ACCEPTED, axum::Json(approval)))
}

pub(super) async fn cancel(
    State(state): State<ApiState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let c = crate::pipeline::rails::cancel(&state.engine, &id, &identity.actor)
        .await
        .map_err(rail_error)?;
    Ok((StatusCode::ACCEPTED, axum::Json(c)))
}

#[derive(Debug, Deserialize)]
pub(super) struct ReconcileQuery {
    /// Plan, store and show the plan; change nothing (the default).
    #[serde(default = "yes")]
    dry_run: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/jobs/{name}/reconcile?dry_run=true`: one reconciliation of a
/// scheduled job now. An operator may run it as a dry run; a run that
/// changes anything needs an approver, and passes the same rails.
pub(super) async fn reconcile(
    State(state): State<ApiState>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
    Params(q): Params<ReconcileQuery>,
) -> Result<impl IntoResponse, ApiError> {
    if !q.dry_run && !identity.allows(Role::Approver) {
        return Err(super::auth::forbidden(&identity, Role::Approver));
    }
    let config = state.engine.config();
    let dir = std::path::PathBuf::from(&config.jobs.dir);
    let jobs = crate::jobs::load(&dir, config).map_err(ApiError::internal)?;
    let spec = jobs.reconcile(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "job_not_found",
            format!("no reconciliation job {}", crate::domain::truncate(&name)),
        )
    })?;
    let trigger = crate::jobs::reconcile::Trigger {
        actor: identity.actor.clone(),
        origin: "schedule",
    };
    let result = crate::jobs::reconcile::reconcile(&state.engine, spec, q.dry_run, &trigger)
        .await
        .map_err(|e| match e {
            crate::jobs::reconcile::ReconcileError::Listing { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "listing_failed", e.to_string())
            }
            other => ApiError::internal(other),
        })?;
    Ok((StatusCode::ACCEPTED, axum::Json(result)))
}

/// `POST /v1/batches/{id}/undo[?only=USER,…]`: 202 with the undo batch.
pub(super) async fn undo(
    State(state): State<ApiState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    Params(q): Params<ApproveQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let only = q.only();
    let undo = crate::pipeline::rails::undo(&state.engine, &id, only.as_deref(), &identity.actor)
        .await
        .map_err(rail_error)?;
    Ok((StatusCode::ACCEPTED, axum::Json(undo)))
}
