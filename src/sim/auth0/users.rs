//! `/users/{user}/…`: the organizations a user belongs to (verify),
//! blocking a user, and ending their sessions and refresh tokens.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;
use serde_json::{Value, json};
use std::sync::Arc;

use super::envelope::{Answer, invalid_body, object_body, require_scope};
use super::paging::OffsetPage;
use crate::sim::directory::Auth0User;
use crate::sim::request::{PathIds, QueryPairs};
use crate::sim::state::SimState;

pub(super) async fn organizations(
    State(state): State<Arc<SimState>>,
    ids: PathIds,
    query: QueryPairs,
) -> Answer {
    let paging = OffsetPage::parse(&query)?;
    let store = state.auth0();
    let user = store.user(ids.get("user"))?;
    let orgs = store.orgs_of(&user.user_id, Utc::now());
    let total = orgs.len();
    let page: Vec<Value> = orgs
        .into_iter()
        .skip(paging.start())
        .take(paging.per_page)
        .map(|org| {
            let mut json = json!({"id": org.id, "name": org.name});
            if !org.display_name.is_empty() {
                json["display_name"] = json!(org.display_name);
            }
            json
        })
        .collect();
    Ok(Json(paging.wrap("organizations", page, total)).into_response())
}

/// `GET /users/{user}`: the user (the attributes offboarding reads).
pub(super) async fn get(State(state): State<Arc<SimState>>, ids: PathIds) -> Answer {
    let store = state.auth0();
    let user = store.user(ids.get("user"))?;
    Ok(Json(user_json(user)).into_response())
}

/// `PATCH /users/{user}`: only `blocked` is modelled; the vendor's other
/// attributes are accepted and left alone, as they do not bear on offboarding.
pub(super) async fn update(
    State(state): State<Arc<SimState>>,
    ids: PathIds,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let body = object_body(body)?;
    if body.is_empty() {
        return Err(invalid_body(
            "Payload validation error: 'Too few properties defined (0), minimum 1'.",
        )
        .into());
    }
    let blocked = match body.get("blocked") {
        None => None,
        Some(Value::Bool(blocked)) => Some(*blocked),
        Some(_) => {
            return Err(invalid_body(
                "Payload validation error: 'Expected type boolean' on property blocked.",
            )
            .into());
        }
    };
    let mut store = state.auth0();
    let user = store.user_mut(ids.get("user"))?;
    if let Some(blocked) = blocked {
        user.blocked = blocked;
    }
    Ok(Json(user_json(user)).into_response())
}

/// `DELETE /users/{user}/sessions`: 202, every session of the user ended.
pub(super) async fn delete_sessions(State(state): State<Arc<SimState>>, ids: PathIds) -> Answer {
    revoke(&state, &ids, "delete:sessions", |u| u.sessions = 0)
}

/// `DELETE /users/{user}/refresh-tokens`: 202, every refresh token revoked.
pub(super) async fn delete_refresh_tokens(
    State(state): State<Arc<SimState>>,
    ids: PathIds,
) -> Answer {
    revoke(&state, &ids, "delete:refresh_tokens", |u| {
        u.refresh_tokens = 0
    })
}

/// The scope is checked before the user, as the vendor authorises first.
fn revoke(
    state: &SimState,
    ids: &PathIds,
    scope: &str,
    end: impl FnOnce(&mut Auth0User),
) -> Answer {
    require_scope(state, scope)?;
    let mut store = state.auth0();
    end(store.user_mut(ids.get("user"))?);
    Ok(StatusCode::ACCEPTED.into_response())
}

/// A user as `GET` and `PATCH /users/{user}` answer (the attributes
/// offboarding reads).
fn user_json(user: &Auth0User) -> Value {
    json!({
        "user_id": user.user_id,
        "email": user.email,
        "name": user.name,
        "blocked": user.blocked,
    })
}
