//! Admin routes: personal tokens (`/v1/tokens`) and retention's purge.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::batches::page_limit;
use super::error::Params;
use super::{ApiError, ApiState};
use crate::config::{DurationError, millis, parse_duration};
use crate::domain::role::{TokenNameError, UnknownRole};
use crate::domain::{Role, check_token_name, now_ms};
use crate::identity::{Identity, issue_token};
use crate::store::NewToken;

/// A token's name, role or lifetime refused (by the API or `offboard
/// tokens add`).
#[derive(Debug, thiserror::Error)]
pub enum TokenRequestError {
    #[error(transparent)]
    Name(#[from] TokenNameError),
    #[error(transparent)]
    Role(#[from] UnknownRole),
    #[error("--expires: {0}")]
    Expires(DurationError),
}

/// Parses an `add`'s name, role and lifetime (shared with the CLI).
pub fn token_request(
    name: &str,
    role: &str,
    expires: Option<&str>,
) -> Result<(Role, Option<i64>), TokenRequestError> {
    check_token_name(name)?;
    let role: Role = role.parse()?;
    let expires_at = expires
        .map(|e| {
            parse_duration(e)
                .map(|d| now_ms().saturating_add(millis(d)))
                .map_err(TokenRequestError::Expires)
        })
        .transpose()?;
    Ok((role, expires_at))
}

#[derive(Debug, Deserialize)]
pub(super) struct TokenPage {
    /// The last name of the page before (keyset).
    after: Option<String>,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

pub(super) async fn list(
    State(state): State<ApiState>,
    Params(page): Params<TokenPage>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = page_limit(page.limit)?;
    let mut rows = state
        .engine
        .store()
        .list_tokens(page.after.as_deref(), limit + 1)
        .await
        .map_err(ApiError::internal)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more.then(|| rows.last().map(|t| t.name.clone())).flatten();
    Ok(Json(json!({"tokens": rows, "next_cursor": next})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTokenBody {
    name: String,
    role: String,
    /// A lifetime such as `90d`; none lives until revoked.
    expires: Option<String>,
}

pub(super) async fn add(
    State(state): State<ApiState>,
    Extension(identity): Extension<Identity>,
    body: Result<Json<NewTokenBody>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) =
        body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.body_text()))?;
    let (role, expires_at) = token_request(&body.name, &body.role, body.expires.as_deref())
        .map_err(|m| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_token",
                m.to_string(),
            )
        })?;
    let issued = issue_token();
    let stored = state
        .engine
        .store()
        .add_token(&NewToken {
            name: &body.name,
            role,
            sha256: &issued.sha256,
            expires_at,
            created_by: identity.actor.as_str(),
        })
        .await
        .map_err(ApiError::internal)?;
    if !stored {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "token_exists",
            format!(
                "a live token is already called {}: revoke it first",
                body.name
            ),
        ));
    }
    tracing::info!(token = %body.name, role = %role, by = %identity.actor, "personal token made");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "name": body.name,
            "role": role,
            // Shown this once; only its hash is kept.
            "token": issued.token.expose_secret(),
        })),
    ))
}

pub(super) async fn revoke(
    State(state): State<ApiState>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let revoked = state
        .engine
        .store()
        .revoke_token(&name)
        .await
        .map_err(ApiError::internal)?;
    if !revoked {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "token_not_found",
            format!("no live token called {}", crate::domain::truncate(&name)),
        ));
    }
    tracing::info!(token = %name, by = %identity.actor, "personal token revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(super) struct PurgeQuery {
    #[serde(default)]
    dry_run: bool,
}

/// `POST /v1/purge[?dry_run=true]`: retention now.
pub(super) async fn purge(
    State(state): State<ApiState>,
    Extension(identity): Extension<Identity>,
    Params(q): Params<PurgeQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let purged = crate::retention::purge(&state.engine, q.dry_run, &identity.actor)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"dry_run": q.dry_run, "batches": purged})))
}
