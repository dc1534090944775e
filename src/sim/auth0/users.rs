//! `/users/{user}/…`: the organizations a user belongs to (verify), and
//! blocking a user.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::IntoResponse;
use chrono::Utc;
use serde_json::{Value, json};
use std::sync::Arc;

use super::envelope::{Answer, invalid_body, object_body};
use super::paging::OffsetPage;
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
    Ok(Json(json!({
        "user_id": user.user_id,
        "email": user.email,
        "name": user.name,
        "blocked": user.blocked,
    }))
    .into_response())
}
