//! The console's actions: what a person decides. Each checks the form
//! token and the person's role again, and records the person as the actor.

use std::collections::HashSet;

use axum::Extension;
use axum::extract::{Form, Path, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::PageError;
use super::pages::signed_in;
use super::session::{
    ConsoleUser, SESSION_COOKIE, SIGN_IN_COOKIE, cookie, over_tls, random_token, same, set_cookie,
    sha256,
};
use super::views::{SignInPage, html};
use crate::api::ApiState;
use crate::domain::now_ms;
use crate::domain::{Outcome, Role};
use crate::identity::{TOKEN_PREFIX, hash_token};
use crate::intake::{IntakeOptions, ProviderCatalog, SubmitError, submit_csv};
use crate::pipeline::rails::{self, RailError};
use crate::store::NewSession;

/// A form that carries the session's form token, and nothing else.
#[derive(Debug, Deserialize)]
pub(super) struct TokenOnly {
    #[serde(default)]
    csrf: String,
}

/// The person behind a form: signed in, with the session's form token.
fn checked(user: Option<Extension<ConsoleUser>>, csrf: &str) -> Result<ConsoleUser, PageError> {
    let user = signed_in(user)?;
    if csrf.is_empty() || !same(csrf, &user.csrf) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "this form is out of date or was not sent from the console: reload the page and try again",
        ));
    }
    Ok(user)
}

fn needs(user: &ConsoleUser, role: Role) -> Result<(), PageError> {
    if user.identity.allows(role) {
        Ok(())
    } else {
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this needs the {role} role; {} has {}",
                user.identity.actor, user.identity.role
            ),
        ))
    }
}

fn back_to(batch: &str) -> Response {
    Redirect::to(&format!("/batches/{batch}")).into_response()
}

fn rail_page(e: RailError) -> PageError {
    let status = match &e {
        RailError::NotFound(_) => StatusCode::NOT_FOUND,
        RailError::FourEyes { .. } | RailError::NeedsApprover(_) => StatusCode::FORBIDDEN,
        RailError::NotInBatch(_) => StatusCode::UNPROCESSABLE_ENTITY,
        RailError::Store(_) | RailError::Queue(_) => {
            return PageError::internal(e);
        }
        _ => StatusCode::CONFLICT,
    };
    PageError::new(status, e.to_string())
}

#[derive(Debug, Deserialize)]
pub(super) struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

pub(super) async fn sign_in(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    let again = |problem: &str, status: StatusCode| {
        let csrf = random_token();
        let page = SignInPage {
            nav: None,
            csrf: &csrf,
            problem: Some(problem),
        };
        let mut response = html(&page);
        *response.status_mut() = status;
        response.headers_mut().append(
            SET_COOKIE,
            set_cookie(SIGN_IN_COOKIE, Some(&csrf), over_tls(&headers)),
        );
        response
    };
    if expected.is_empty() || !same(&form.csrf, expected) {
        return again(
            "the sign-in form was out of date: try again",
            StatusCode::FORBIDDEN,
        );
    }
    let token = form.token.trim();
    let store = state.engine.store();
    let holder = if token.starts_with(TOKEN_PREFIX) {
        match store.token_by_hash(&hash_token(token)).await {
            Ok(h) => h,
            Err(e) => return PageError::internal(e).into_response(),
        }
    } else {
        None
    };
    let Some(h) = holder.filter(|h| !h.revoked && h.expires_at.is_none_or(|at| at > now_ms()))
    else {
        return again(
            "that token is not a live personal token",
            StatusCode::UNAUTHORIZED,
        );
    };
    let id = random_token();
    let csrf = random_token();
    let stored = store
        .add_session(&NewSession {
            id_sha256: &sha256(&id),
            actor: &h.name,
            role: h.role,
            token_id: Some(h.id),
            csrf: &csrf,
        })
        .await;
    if let Err(e) = stored {
        return PageError::internal(e).into_response();
    }
    tracing::info!(actor = %h.name, "signed in to the console");
    let tls = over_tls(&headers);
    let mut response = Redirect::to("/batches").into_response();
    let h = response.headers_mut();
    h.append(SET_COOKIE, set_cookie(SESSION_COOKIE, Some(&id), tls));
    h.append(SET_COOKIE, set_cookie(SIGN_IN_COOKIE, None, tls));
    response
}

pub(super) async fn sign_out(
    State(state): State<ApiState>,
    user: Option<Extension<ConsoleUser>>,
    headers: HeaderMap,
    Form(form): Form<TokenOnly>,
) -> Response {
    if let Err(r) = checked(user, &form.csrf) {
        return r.into_response();
    }
    let idle = crate::config::millis(state.engine.config().http.session_idle());
    if let Some(id) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = state.engine.store().end_session(&sha256(id), idle).await
    {
        return PageError::internal(e).into_response();
    }
    let mut response = Redirect::to("/sign-in").into_response();
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(SESSION_COOKIE, None, over_tls(&headers)),
    );
    response
}

/// Submit (or request approval for) a preview: releases the hold.
pub(super) async fn release(
    State(state): State<ApiState>,
    user: Option<Extension<ConsoleUser>>,
    Path(id): Path<String>,
    Form(form): Form<TokenOnly>,
) -> Result<Response, PageError> {
    let user = checked(user, &form.csrf)?;
    needs(&user, Role::Operator)?;
    if !user.identity.allows(Role::Approver) {
        let owner = rails::hold_owner(&state.engine, &id)
            .await
            .map_err(rail_page)?;
        if owner.as_deref() != Some(user.identity.actor.as_str()) {
            return Err(needs(&user, Role::Approver).unwrap_err());
        }
    }
    let batch = state
        .engine
        .store()
        .batch(&id)
        .await
        .map_err(PageError::internal)?;
    if batch.and_then(|b| b.stored_state) != Some(crate::domain::StoredState::Held) {
        return Err(PageError::new(
            StatusCode::CONFLICT,
            "this batch is not a held preview",
        ));
    }
    rails::approve(
        &state.engine,
        &id,
        None,
        &HashSet::new(),
        &user.identity.actor,
        user.identity.allows(Role::Approver),
    )
    .await
    .map_err(rail_page)?;
    Ok(back_to(&id))
}

/// `Approve`, or `Approve selected` with the checked people.
pub(super) async fn approve(
    State(state): State<ApiState>,
    user: Option<Extension<ConsoleUser>>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, PageError> {
    // Repeated `only` fields: read the form by hand.
    let mut csrf = String::new();
    let mut scope = String::new();
    let mut only = Vec::new();
    for (k, v) in form_urlencoded(&body) {
        match k.as_str() {
            "csrf" => csrf = v,
            "scope" => scope = v,
            "only" => only.push(v),
            _ => {}
        }
    }
    let user = checked(user, &csrf)?;
    needs(&user, Role::Approver)?;
    let only = match scope.as_str() {
        "selected" if only.is_empty() => {
            return Err(PageError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "select the people to approve first",
            ));
        }
        "selected" => Some(only),
        _ if !only.is_empty() => {
            return Err(PageError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "people are ticked: use Approve selected to approve only them, or untick them to approve the whole batch",
            ));
        }
        _ => None,
    };
    let keep = crate::jobs::reconcile::still_wanted(&state.engine, &id, None)
        .await
        .map_err(PageError::internal)?;
    rails::approve(
        &state.engine,
        &id,
        only.as_deref(),
        &keep,
        &user.identity.actor,
        user.identity.allows(Role::Approver),
    )
    .await
    .map_err(rail_page)?;
    Ok(back_to(&id))
}

/// `application/x-www-form-urlencoded` pairs, decoded.
fn form_urlencoded(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

pub(super) async fn retry(
    State(state): State<ApiState>,
    user: Option<Extension<ConsoleUser>>,
    Path(id): Path<String>,
    Form(form): Form<TokenOnly>,
) -> Result<Response, PageError> {
    let user = checked(user, &form.csrf)?;
    needs(&user, Role::Operator)?;
    let keep = crate::jobs::reconcile::still_wanted(&state.engine, &id, None)
        .await
        .map_err(PageError::internal)?;
    rails::retry(
        &state.engine,
        &id,
        &[Outcome::Dead, Outcome::Failed],
        false,
        &keep,
        &user.identity.actor,
    )
    .await
    .map_err(rail_page)?;
    Ok(back_to(&id))
}

pub(super) async fn cancel(
    State(state): State<ApiState>,
    user: Option<Extension<ConsoleUser>>,
    Path(id): Path<String>,
    Form(form): Form<TokenOnly>,
) -> Result<Response, PageError> {
    let user = checked(user, &form.csrf)?;
    needs(&user, Role::Operator)?;
    rails::cancel(&state.engine, &id, &user.identity.actor)
        .await
        .map_err(rail_page)?;
    Ok(back_to(&id))
}

/// A leavers file from the browser: stored as a held preview, then its
/// page.
pub(super) async fn upload(
    State(state): State<ApiState>,
    user: Option<Extension<ConsoleUser>>,
    request: Request,
) -> Result<Response, PageError> {
    let user = signed_in(user)?;
    needs(&user, Role::Operator)?;
    let limit = state.max_upload_bytes();
    let spooled = crate::api::upload_bounded(limit, request, async |request| {
        crate::api::upload_spool(&state, request).await
    })
    .await?;
    let csrf = spooled.fields.get("csrf").map(String::as_str).unwrap_or("");
    if csrf.is_empty() || !same(csrf, &user.csrf) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "this form is out of date or was not sent from the console: reload the page and try again",
        ));
    }
    let provider = spooled
        .fields
        .get("provider")
        .map(|p| p.trim())
        .filter(|p| !p.is_empty());
    let config = state.engine.config();
    let catalog = ProviderCatalog::new(config, provider, "the provider choice")
        .map_err(|m| PageError::new(StatusCode::UNPROCESSABLE_ENTITY, m.to_string()))?;
    let options = IntakeOptions {
        source: "api".into(),
        source_name: spooled.name.clone(),
        dry_run: false,
        hold: true,
        dedupe_window: Some(config.intake.dedupe_window()),
        max_requests: Some(config.safety.max_batch_requests),
        actor: user.identity.actor.clone(),
        origin: "upload",
    };
    let file = spooled.file.reopen().map_err(PageError::internal)?;
    match submit_csv(
        state.engine.store(),
        state.engine.queue(),
        &catalog,
        file,
        &options,
    )
    .await
    {
        Ok(summary) => {
            wait_for_preview(&state, &summary.batch_id).await;
            Ok(back_to(&summary.batch_id))
        }
        // Every row was refused: the batch's page says which and why.
        Err(SubmitError::NoValidRow { batch_id, .. }) => Ok(back_to(&batch_id)),
        Err(SubmitError::Input(e)) => Err(PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.to_string(),
        )),
        Err(e) => Err(PageError::internal(e)),
    }
}

/// `Run now (dry run)` on a schedule.
pub(super) async fn run_schedule(
    State(state): State<ApiState>,
    user: Option<Extension<ConsoleUser>>,
    Path(name): Path<String>,
    Form(form): Form<TokenOnly>,
) -> Result<Response, PageError> {
    let user = checked(user, &form.csrf)?;
    needs(&user, Role::Operator)?;
    let config = state.engine.config();
    let dir = std::path::PathBuf::from(&config.jobs.dir);
    let jobs = crate::jobs::load(&dir, config).map_err(PageError::internal)?;
    let spec = jobs
        .reconcile(&name)
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "no such reconciliation job"))?;
    let trigger = crate::jobs::reconcile::Trigger {
        actor: user.identity.actor.clone(),
        origin: "schedule",
    };
    let result = crate::jobs::reconcile::reconcile(&state.engine, spec, true, &trigger)
        .await
        .map_err(|e| PageError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
    Ok(back_to(&result.batch_id))
}

/// Gives the workers a moment to plan a fresh preview, so that its page
/// opens with the plan; a large one goes on planning while its page shows
/// the progress.
async fn wait_for_preview(state: &ApiState, batch_id: &str) {
    let store = state.engine.store();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let planned = match store.batch(batch_id).await {
            Ok(Some(b)) => store.batch_counts(&b).await.is_ok_and(|c| c.open == 0),
            _ => true,
        };
        if planned {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
