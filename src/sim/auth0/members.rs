//! `/organizations/{org}/members`: listing an organization's members
//! (reconcile), removing memberships, and adding members (undo).
//!
//! Offset paging stops at 1,000 records (`invalid_paging`); checkpoint paging
//! (`from`/`take`, following `next`) reaches every member. Removals become
//! visible only after `FaultConfig::auth0_membership_delay_ms`, as the vendor
//! documents that they apply within seconds.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use std::sync::Arc;

use super::envelope::{Answer, id_list, invalid_body, object_body, require_scope};
use super::paging::{Checkpoint, OffsetPage, encode_cursor};
use super::store::{Auth0Store, OrgStore};
use crate::sim::directory::Auth0Member;
use crate::sim::problem::Problem;
use crate::sim::request::{PathIds, QueryPairs};
use crate::sim::state::SimState;

/// Offset paging cannot reach past this many records.
const OFFSET_LIMIT: usize = 1000;
/// The most members one removal may name.
const MAX_MEMBERS: usize = 10;

pub(super) async fn list(
    State(state): State<Arc<SimState>>,
    ids: PathIds,
    query: QueryPairs,
) -> Answer {
    let now = Utc::now();
    // The query is validated before the organization is looked up, as the
    // vendor's schema validation comes first.
    if let Some(checkpoint) = Checkpoint::parse(&query)? {
        let store = state.auth0();
        let org = store.org(ids.get("org"))?;
        return Ok(Json(checkpoint_page(&store, org, &checkpoint, now)).into_response());
    }
    let paging = OffsetPage::parse(&query)?;
    if paging.start() >= OFFSET_LIMIT {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_paging",
            format!(
                "Requesting page {} exceeds the allowed maximum of {OFFSET_LIMIT} records; use checkpoint pagination.",
                paging.page
            ),
        )
        .into());
    }
    let store = state.auth0();
    let org = store.org(ids.get("org"))?;
    let page = org
        .members_from(0, now)
        .skip(paging.start())
        .take(paging.per_page)
        .map(|m| member_json(&store, m))
        .collect();
    // Counting walks every member, so only pay for it when asked.
    let total = if paging.include_totals {
        org.members_from(0, now).count()
    } else {
        0
    };
    Ok(Json(paging.wrap("members", page, total)).into_response())
}

/// One checkpoint page; `next` names the first member of the following page.
fn checkpoint_page(
    store: &Auth0Store,
    org: &OrgStore,
    checkpoint: &Checkpoint,
    now: DateTime<Utc>,
) -> Value {
    let first = checkpoint
        .from
        .as_deref()
        .map_or(0, |from| org.position_from(from));
    let mut members = org.members_from(first, now);
    let page: Vec<Value> = members
        .by_ref()
        .take(checkpoint.take)
        .map(|m| member_json(store, m))
        .collect();
    let mut body = json!({"members": page});
    if let Some(next) = members.next() {
        body["next"] = json!(encode_cursor(&next.user_id));
    }
    body
}

fn member_json(store: &Auth0Store, member: &Auth0Member) -> Value {
    let mut json = json!({"user_id": member.user_id});
    if let Ok(user) = store.user(Some(&member.user_id)) {
        json["email"] = json!(user.email);
        json["name"] = json!(user.name);
    }
    json
}

pub(super) async fn remove(
    State(state): State<Arc<SimState>>,
    ids: PathIds,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let body = object_body(body)?;
    let members = id_list(&body, "members", MAX_MEMBERS)?;
    let delay = state.faults.auth0_membership_delay();
    let now = Utc::now();
    // The delay is validated to at most a day, so this cannot overflow.
    let visible_at = now + TimeDelta::from_std(delay).unwrap_or(TimeDelta::zero());
    let mut store = state.auth0();
    store
        .org_mut(ids.get("org"))?
        .remove_members(&members, visible_at, now);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST …/members` `{"members": [...]}`: 204; every id must be a user of
/// the tenant (Auth0 adds existing users only).
pub(super) async fn add(
    State(state): State<Arc<SimState>>,
    ids: PathIds,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    require_scope(&state, "create:organization_members")?;
    let body = object_body(body)?;
    let members = id_list(&body, "members", MAX_MEMBERS)?;
    let mut store = state.auth0();
    if let Some(unknown) = members.iter().find(|m| store.user(Some(m)).is_err()) {
        return Err(invalid_body(format!("The user {unknown} does not exist.")).into());
    }
    store
        .org_mut(ids.get("org"))?
        .add_members(&members, Utc::now());
    Ok(StatusCode::NO_CONTENT.into_response())
}
