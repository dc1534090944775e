//! Handlers for the Aitronos endpoints an offboarding uses.
//!
//! Each one parses its untrusted inputs, takes the directory lock briefly
//! (never across an `.await`), and answers in the vendor's documented shape.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

use super::envelope::{AitronosError, Ids, Params, validation_error};
use super::store::OrgStore;
use crate::sim::directory::AitronosMember;
use crate::sim::problem::Problem;
use crate::sim::state::SimState;

type Shared = State<Arc<SimState>>;
type Answer = Result<Response, AitronosError>;

pub(super) async fn effective_permissions(
    State(state): Shared,
    Ids((org, user)): Ids<(String, String)>,
) -> Answer {
    let store = state.aitronos();
    let org = store.org(&org)?;
    let member = org.current_member(&user)?;
    Ok(Json(json!({
        "user_id": member.user_id,
        "role_ids": member.role_ids,
        "capabilities": capabilities(org, member),
        "department_scope": member.department_ids,
        "resolved_at": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    }))
    .into_response())
}

pub(super) async fn get_user(
    State(state): Shared,
    Ids((org, user)): Ids<(String, String)>,
) -> Answer {
    let store = state.aitronos();
    let member = store.org(&org)?.member(&user)?;
    Ok(Json(member).into_response())
}

/// What `DELETE /organizations/{org}/users/{user}` must carry.
#[derive(Deserialize)]
struct RemoveUserBody {
    confirm: Option<bool>,
    transfer_resources_to_department_id: Option<String>,
}

pub(super) async fn remove_user(
    State(state): Shared,
    Ids((org, user)): Ids<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let body = body
        .ok()
        .and_then(|bytes| serde_json::from_slice::<RemoveUserBody>(&bytes).ok());
    let mut store = state.aitronos();
    let org = store.org_mut(&org)?;
    let Some(body) = body.filter(|b| b.confirm == Some(true)) else {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "CONFIRMATION_REQUIRED",
            "Removing a user requires {\"confirm\": true} in the request body.",
        )
        .into());
    };
    org.remove_member(&user, body.transfer_resources_to_department_id.as_deref())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn get_role(
    State(state): Shared,
    Ids((org, role)): Ids<(String, String)>,
) -> Answer {
    let store = state.aitronos();
    let org = store.org(&org)?;
    let found = org.role(&role)?;
    Ok(Json(json!({
        "id": found.id,
        "name": found.name,
        "is_custom": found.is_custom,
        "is_system_role": found.is_system_role,
        "member_count": org.member_count(&role),
    }))
    .into_response())
}

pub(super) async fn delete_role(
    State(state): Shared,
    Ids((org, role)): Ids<(String, String)>,
) -> Answer {
    state.aitronos().org_mut(&org)?.delete_role(&role)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Paging of `GET …/roles/{role}/members`.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct MembersPage {
    skip: usize,
    limit: usize,
}

impl Default for MembersPage {
    fn default() -> Self {
        MembersPage { skip: 0, limit: 50 }
    }
}

pub(super) async fn role_members(
    State(state): Shared,
    Ids((org, role)): Ids<(String, String)>,
    Params(page): Params<MembersPage>,
) -> Answer {
    if !(1..=100).contains(&page.limit) {
        return Err(validation_error("limit must be between 1 and 100."));
    }
    let store = state.aitronos();
    let org = store.org(&org)?;
    org.role(&role)?;
    let (members, total) = org.role_members(&role, page.skip, page.limit);
    let members: Vec<Value> = members
        .into_iter()
        .map(|m| json!({"user_id": m.user_id, "email": m.email, "account_state": m.account_state}))
        .collect();
    Ok(Json(json!({"members": members, "total": total})).into_response())
}

/// Paging of `POST /organizations/{org}/users`, as the vendor's SDK sends it.
#[derive(Deserialize)]
#[serde(default)]
struct UsersPage {
    skip: usize,
    take: usize,
    include_inactive: bool,
}

impl Default for UsersPage {
    fn default() -> Self {
        UsersPage {
            skip: 0,
            take: 50,
            include_inactive: false,
        }
    }
}

pub(super) async fn list_users(
    State(state): Shared,
    Ids(org): Ids<String>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let body = body.map_err(|e| validation_error(e.body_text()))?;
    // An empty body means "first page with defaults", as the SDK's optional arguments do.
    let page: UsersPage = if body.iter().all(u8::is_ascii_whitespace) {
        UsersPage::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| validation_error(e.to_string()))?
    };
    if !(1..=1000).contains(&page.take) {
        return Err(validation_error("take must be between 1 and 1000."));
    }
    let store = state.aitronos();
    let org = store.org(&org)?;
    let (users, total) = org.list_members(page.skip, page.take, page.include_inactive);
    Ok(Json(UsersAnswer {
        users,
        total_users_count: total,
        skip: page.skip,
        take: page.take,
    })
    .into_response())
}

/// The answer to `POST /organizations/{org}/users`, serialized straight
/// from the store (a `json!` value would copy every member first).
#[derive(serde::Serialize)]
struct UsersAnswer<'a> {
    users: Vec<&'a AitronosMember>,
    total_users_count: usize,
    skip: usize,
    take: usize,
}

pub(super) async fn remove_role(
    State(state): Shared,
    Ids((org, role, user)): Ids<(String, String, String)>,
) -> Answer {
    state.aitronos().org_mut(&org)?.remove_role(&role, &user)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What the member's roles allow; the vendor derives capabilities from roles,
/// so the simulator does too, from the role names it ships.
fn capabilities(org: &OrgStore, member: &AitronosMember) -> Vec<String> {
    let mut caps = BTreeSet::new();
    for role in member.role_ids.iter().filter_map(|id| org.role(id).ok()) {
        let granted: &[&str] = match role.name.trim().to_ascii_lowercase().as_str() {
            "owner" => &[
                "organization:manage",
                "billing:manage",
                "members:manage",
                "roles:manage",
                "resources:manage",
            ],
            "admin" => &["members:manage", "roles:manage", "resources:manage"],
            "member" => &["resources:read", "resources:write"],
            _ => &[],
        };
        caps.extend(granted.iter().map(|c| (*c).to_owned()));
        if granted.is_empty() {
            caps.insert(format!("custom:{}", role.id));
        }
    }
    caps.into_iter().collect()
}
