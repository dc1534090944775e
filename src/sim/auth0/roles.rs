//! `/organizations/{org}/members/{user}/roles`: a member's organization
//! roles, read (plan), removed in bulk, and assigned (undo).
//!
//! Auth0 documents no 404 for a role the member does not hold: removal takes
//! away what is held and ignores the rest, so a repeated removal succeeds.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;
use serde_json::{Value, json};
use std::sync::Arc;

use super::envelope::{Answer, id_list, object_body, require_scope};
use super::paging::OffsetPage;
use crate::sim::problem::Problem;
use crate::sim::request::{PathIds, QueryPairs};
use crate::sim::state::SimState;

/// The most role ids one removal may name.
const MAX_ROLES: usize = 20;

pub(super) async fn list(
    State(state): State<Arc<SimState>>,
    ids: PathIds,
    query: QueryPairs,
) -> Answer {
    let paging = OffsetPage::parse(&query)?;
    let store = state.auth0();
    let org = store.org(ids.get("org"))?;
    let member = org.member(ids.get("user"), Utc::now())?;
    let roles = org.roles_of(member);
    let total = roles.len();
    let page: Vec<Value> = roles
        .into_iter()
        .skip(paging.start())
        .take(paging.per_page)
        .map(|r| json!({"id": r.id, "name": r.name, "description": r.description}))
        .collect();
    Ok(Json(paging.wrap("roles", page, total)).into_response())
}

pub(super) async fn remove(
    State(state): State<Arc<SimState>>,
    ids: PathIds,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let roles = roles_body(body)?;
    let mut store = state.auth0();
    store
        .org_mut(ids.get("org"))?
        .remove_roles(ids.get("user"), &roles, Utc::now())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST …/members/{user}/roles` `{"roles": [...]}`: 204; roles already
/// held stay, unknown roles are a 400.
pub(super) async fn assign(
    State(state): State<Arc<SimState>>,
    ids: PathIds,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    require_scope(&state, "create:organization_member_roles")?;
    let roles = roles_body(body)?;
    let mut store = state.auth0();
    store
        .org_mut(ids.get("org"))?
        .assign_roles(ids.get("user"), &roles, Utc::now())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The `{"roles": [...]}` body of a removal or an assignment: the schema
/// allows no other property next to `roles`.
fn roles_body(body: Result<Bytes, BytesRejection>) -> Result<Vec<String>, Problem> {
    let body = object_body(body)?;
    if let Some(extra) = body.keys().find(|k| k.as_str() != "roles") {
        return Err(super::envelope::invalid_body(format!(
            "Payload validation error: 'Additional properties not allowed: {extra}'."
        )));
    }
    id_list(&body, "roles", MAX_ROLES)
}
