//! The console's pages: what a person reads.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use super::PageError;
use super::session::{ConsoleUser, SIGN_IN_COOKIE, over_tls, random_token, set_cookie};
use super::views::{
    Actions, BatchPage, BatchView, BatchesPage, EventView, JobView, NavUser, RejectedView, RowView,
    SchedulesPage, SignInPage, UploadPage, html,
};
use crate::api::ApiState;
use crate::domain::{EventAction, Outcome, OutcomeCounts, Role};
use crate::engine::Engine;
use crate::report::status::describe;
use crate::store::{BatchRow, ReportWindow, Store};

/// Rows of a page of requests, at most.
pub(super) const PAGE_ROWS: u32 = 100;
/// Rejected rows a page lists, at most.
const REJECTED_SHOWN: u32 = 100;

/// The person at the console, or a redirect to sign in.
pub(super) fn signed_in(user: Option<Extension<ConsoleUser>>) -> Result<ConsoleUser, PageError> {
    user.map(|Extension(u)| u).ok_or_else(PageError::sign_in)
}

pub(super) fn nav(user: &ConsoleUser) -> NavUser {
    NavUser {
        actor: user.identity.actor.to_string(),
        role: user.identity.role,
        csrf: user.csrf.clone(),
        can_upload: user.identity.allows(Role::Operator),
    }
}

pub(super) async fn sign_in(headers: HeaderMap) -> Response {
    // The sign-in form's own form token rides in a cookie of its own
    // until a session exists.
    let csrf = random_token();
    let page = SignInPage {
        nav: None,
        csrf: &csrf,
        problem: None,
    };
    let mut response = html(&page);
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, Some(&csrf), over_tls(&headers)),
    );
    response
}

/// Counts as people read them.
fn counts_text(c: &OutcomeCounts) -> String {
    let mut parts = Vec::new();
    for (n, what) in [
        (c.succeeded, "succeeded"),
        (c.already_done, "already done"),
        (c.skipped, "skipped"),
        (c.needs_attention, "need attention"),
        (c.failed, "failed"),
        (c.dead, "dead"),
        (c.cancelled, "cancelled"),
        (c.rejected, "rejected"),
        (c.held, "held for review"),
        (c.scheduled, "scheduled"),
        (c.open, "to run"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    if parts.is_empty() {
        "nothing yet".into()
    } else {
        parts.join(", ")
    }
}

fn eta_text(seconds: Option<f64>) -> Option<String> {
    seconds.map(|s| match s as u64 {
        0..=59 => format!("about {} s left", s.ceil() as u64),
        s @ 60..=3599 => format!("about {} min left", s.div_ceil(60)),
        s => format!("about {} h left", s.div_ceil(3600)),
    })
}

/// A batch's view, with who submitted it.
pub(super) async fn batch_view(store: &Store, batch: BatchRow) -> Result<BatchView, PageError> {
    Ok(batch_view_counted(store, batch).await?.0)
}

/// [`batch_view`] with the counts and events it read.
async fn batch_view_counted(
    store: &Store,
    batch: BatchRow,
) -> Result<(BatchView, OutcomeCounts, Vec<crate::domain::BatchEvent>), PageError> {
    let events = store.events(&batch.id).await.map_err(PageError::internal)?;
    let submitter = events
        .iter()
        .find(|e| e.action == EventAction::Submitted)
        .map(|e| e.actor.clone())
        .unwrap_or_default();
    let source = events
        .iter()
        .find(|e| e.action == EventAction::Submitted)
        .and_then(|e| e.detail["source"].as_str().map(str::to_owned))
        .unwrap_or_else(|| batch.source.clone());
    let status = describe(store, batch).await.map_err(PageError::internal)?;
    let moving = status.counts.open > 0 && !matches!(status.state.as_str(), "halted" | "cancelled");
    let planning = moving && status.state == "held";
    let counts = status.counts.clone();
    let view = BatchView {
        reason: status.batch.halt_reason.clone().or_else(|| {
            (status.state == "held").then(|| "a preview waiting to be submitted".to_owned())
        }),
        id: status.batch.id,
        created: crate::store::format_ms(status.batch.created_at),
        state: status.state,
        source,
        name: status.batch.source_name,
        submitter,
        counts: counts_text(&status.counts),
        percent: (status.progress * 100.0).floor() as u32,
        eta: eta_text(status.eta_seconds),
        planning,
        moving,
    };
    Ok((view, counts, events))
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    after: Option<String>,
}

pub(super) async fn batches(
    State(state): State<ApiState>,
    user: Option<Extension<ConsoleUser>>,
    Query(q): Query<ListQuery>,
) -> Result<Response, PageError> {
    let user = signed_in(user)?;
    let store = state.engine.store();
    let fail = |e| PageError::internal(e);
    let mut rows = Vec::new();
    // Batches waiting for a person come first, on the first page.
    if q.after.is_none() {
        for b in store.waiting_batches(50).await.map_err(fail)? {
            rows.push(batch_view(store, b).await?);
        }
    }
    let mut page = store
        .list_batches_after(q.after.as_deref(), 51)
        .await
        .map_err(fail)?;
    let more = page.len() > 50;
    page.truncate(50);
    let next = more.then(|| page.last().map(|b| b.id.clone())).flatten();
    for b in page {
        if rows.iter().any(|r| r.id == b.id) {
            continue;
        }
        rows.push(batch_view(store, b).await?);
    }
    let page = BatchesPage {
        can_upload: user.identity.allows(Role::Operator),
        nav: Some(nav(&user)),
        rows,
        next,
    };
    Ok(html(&page))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct BatchQuery {
    outcome: Option<String>,
    after: Option<u64>,
}

pub(super) async fn batch(
    State(state): State<ApiState>,
    user: Option<Extension<ConsoleUser>>,
    Path(id): Path<String>,
    Query(q): Query<BatchQuery>,
) -> Result<Response, PageError> {
    let user = signed_in(user)?;
    let page = render_batch_page(&state.engine, &user, &id, q.outcome.as_deref(), q.after).await?;
    Ok(page)
}

/// The outcomes a batch page can filter on.
fn outcomes() -> Vec<String> {
    let mut all: Vec<String> = Outcome::ALL.iter().map(|o| o.as_str().to_owned()).collect();
    all.extend(["held", "pending", "scheduled", "rejected"].map(str::to_owned));
    all
}

/// What `user` may decide on a batch in `state` (the server checks again
/// when they do).
async fn actions(
    engine: &Engine,
    user: &ConsoleUser,
    b: &BatchView,
    counts: &OutcomeCounts,
) -> Result<Actions, PageError> {
    let role = user.identity.role;
    let actor = user.identity.actor.as_str();
    let mut a = Actions::default();
    match b.state.as_str() {
        "held" => {
            let owner = crate::pipeline::rails::hold_owner(engine, &b.id)
                .await
                .map_err(PageError::internal)?;
            let may = role >= Role::Approver
                || (role >= Role::Operator && owner.as_deref() == Some(actor));
            // Every request must be planned before the preview can go.
            if may && counts.open == 0 {
                let cap = engine.config().safety.max_batch_requests;
                a.release = Some(if counts.held > cap {
                    "Request approval".to_owned()
                } else {
                    "Submit".to_owned()
                });
            }
        }
        "halted" => {
            let four_eyes = engine.config().safety.four_eyes;
            let submitters = crate::pipeline::rails::submitters(engine, &b.id)
                .await
                .map_err(PageError::internal)?;
            a.approve =
                role >= Role::Approver && !(four_eyes && submitters.iter().any(|s| s == actor));
        }
        _ => {}
    }
    let open = matches!(b.state.as_str(), "queued" | "running" | "halted" | "held");
    a.cancel = role >= Role::Operator && open;
    a.retry = role >= Role::Operator
        && (counts.dead > 0 || counts.failed > 0)
        && matches!(b.state.as_str(), "completed" | "completed_with_failures");
    Ok(a)
}

/// The batch page for `user`, rendered: a public function so the console
/// benchmark times exactly what a browser is sent.
pub async fn render_batch_page(
    engine: &Engine,
    user: &ConsoleUser,
    id: &str,
    filter: Option<&str>,
    after: Option<u64>,
) -> Result<Response, PageError> {
    let store = engine.store();
    let batch = store
        .batch(id)
        .await
        .map_err(PageError::internal)?
        .ok_or_else(|| {
            PageError::new(
                StatusCode::NOT_FOUND,
                format!("no batch {}", crate::domain::truncate(id)),
            )
        })?;
    let rejected_rows = batch.rejected_rows;
    let batch_id = batch.id.clone();
    let (b, counts, events) = batch_view_counted(store, batch).await?;
    let filter = filter.filter(|f| outcomes().iter().any(|o| o == f));
    let mut rows = store
        .report_page(&batch_id, filter, after, PAGE_ROWS + 1)
        .await
        .map_err(PageError::internal)?;
    let more = rows.len() > PAGE_ROWS as usize;
    rows.truncate(PAGE_ROWS as usize);
    let next = more
        .then(|| rows.last().map(|r| r.line.to_string()))
        .flatten();
    let rejected = if after.is_none() && filter.is_none() && rejected_rows > 0 {
        let window = ReportWindow {
            outcome: Some("rejected"),
            offset: 0,
            limit: REJECTED_SHOWN,
        };
        store
            .report_window(&batch_id, window)
            .await
            .map_err(PageError::internal)?
            .into_iter()
            .map(|r| RejectedView {
                line: r.line,
                code: r.error_code,
                message: r.error_message,
            })
            .collect()
    } else {
        Vec::new()
    };
    let events = events
        .into_iter()
        .map(|e| EventView {
            at: e.at,
            actor: e.actor,
            action: e.action.to_string(),
            detail: event_detail(&e.detail),
        })
        .collect();
    let actions = actions(engine, user, &b, &counts).await?;
    let rows = rows
        .into_iter()
        .map(|r| {
            let detail = match (r.error_code.is_empty(), r.error_message.is_empty()) {
                (true, true) => String::new(),
                (true, false) => r.error_message,
                (false, true) => r.error_code,
                (false, false) => format!("{}: {}", r.error_code, r.error_message),
            };
            RowView {
                open: matches!(r.outcome.as_str(), "pending" | "held" | "scheduled"),
                line: r.line,
                user_id: r.user_id,
                outcome: r.outcome,
                roles: r.roles_removed.join(", "),
                transfer: r.transfer_to_department_id,
                detail,
            }
        })
        .collect();
    let page = BatchPage {
        nav: Some(nav(user)),
        csrf: user.csrf.clone(),
        b,
        actions,
        rejected,
        rows,
        outcomes: outcomes(),
        filter: filter.map(str::to_owned),
        next,
        events,
    };
    Ok(html(&page))
}

/// An event's detail as a short line: its fields, without quotes.
fn event_detail(detail: &serde_json::Value) -> String {
    let Some(map) = detail.as_object() else {
        return String::new();
    };
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}: {s}"),
            other => format!("{k}: {other}"),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// `GET /batches/{id}/progress`: what the page's script updates in place.
pub(super) async fn progress(
    State(state): State<ApiState>,
    user: Option<Extension<ConsoleUser>>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    signed_in(user)?;
    let store = state.engine.store();
    let batch = store
        .batch(&id)
        .await
        .map_err(PageError::internal)?
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "no such batch"))?;
    let status = describe(store, batch).await.map_err(PageError::internal)?;
    Ok(Json(serde_json::json!({
        "state": status.state,
        "percent": (status.progress * 100.0).floor() as u32,
        "counts": counts_text(&status.counts),
        "eta": eta_text(status.eta_seconds),
    }))
    .into_response())
}

async fn batch_for_download(state: &ApiState, id: &str) -> Result<BatchRow, PageError> {
    state
        .engine
        .store()
        .batch(id)
        .await
        .map_err(PageError::internal)?
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "no such batch"))
}

fn attachment(content_type: &'static str, name: String, body: Body) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn report_csv(
    State(state): State<ApiState>,
    user: Option<Extension<ConsoleUser>>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    signed_in(user)?;
    let b = batch_for_download(&state, &id).await?;
    let parts = crate::report::csv_parts(state.engine.store().clone(), b.id.clone());
    Ok(attachment(
        "text/csv; charset=utf-8",
        format!("{}.report.csv", b.id),
        Body::from_stream(parts),
    ))
}

pub(super) async fn report_json(
    State(state): State<ApiState>,
    user: Option<Extension<ConsoleUser>>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    signed_in(user)?;
    let b = batch_for_download(&state, &id).await?;
    let parts = crate::report::json_report(state.engine.store(), &b, true)
        .await
        .map_err(PageError::internal)?;
    Ok(attachment(
        "application/json",
        format!("{}.report.json", b.id),
        Body::from_stream(parts),
    ))
}

pub(super) async fn upload(
    State(state): State<ApiState>,
    user: Option<Extension<ConsoleUser>>,
) -> Result<Response, PageError> {
    let user = signed_in(user)?;
    if !user.identity.allows(Role::Operator) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "uploading needs the operator role",
        ));
    }
    let page = UploadPage {
        nav: Some(nav(&user)),
        csrf: user.csrf.clone(),
        providers: state.engine.config().providers.keys().cloned().collect(),
    };
    Ok(html(&page))
}

pub(super) async fn schedules(
    State(state): State<ApiState>,
    user: Option<Extension<ConsoleUser>>,
) -> Result<Response, PageError> {
    let user = signed_in(user)?;
    let config = state.engine.config();
    let dir = std::path::PathBuf::from(&config.jobs.dir);
    let jobs = crate::jobs::load(&dir, config).map_err(PageError::internal)?;
    let store = state.engine.store();
    let now = chrono::Utc::now();
    let mut views = Vec::new();
    for spec in &jobs.reconciles {
        let last = store
            .last_batch_of("reconcile", &spec.name)
            .await
            .map_err(PageError::internal)?;
        let (last_run, last_batch, last_result) = match last {
            Some(b) => {
                let view = batch_view(store, b).await?;
                (
                    view.created.clone(),
                    Some(view.id.clone()),
                    format!("{}: {}", view.state, view.counts),
                )
            }
            None => ("never".to_owned(), None, "—".to_owned()),
        };
        let next_run = spec
            .schedule
            .after(&now.with_timezone(&spec.timezone))
            .next()
            .map(|t| {
                t.with_timezone(&chrono::Utc)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .unwrap_or_else(|| "never".into());
        views.push(JobView {
            name: spec.name.clone(),
            provider: spec.provider.clone(),
            organization: spec.organization_id.clone(),
            schedule: spec.schedule.to_string(),
            timezone: spec.timezone.to_string(),
            last_run,
            last_batch,
            next_run,
            last_result,
        });
    }
    let page = SchedulesPage {
        nav: Some(nav(&user)),
        csrf: user.csrf.clone(),
        jobs: views,
        can_run: user.identity.allows(Role::Operator),
    };
    Ok(html(&page))
}
