//! `/Users`: find a user (by `userName` filter or id), deactivate it with
//! PATCH, delete it. After DELETE every call on the id answers 404
//! (RFC 7644 §3.6).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use std::sync::Arc;

use super::envelope::{Answer, bad_request, scim_json};
use super::filter::parse_filter;
use super::patch;
use super::resource::{ListPage, Projection, check_if_match, user_json};
use super::{single, unchanged};
use crate::sim::request::{PathIds, QueryPairs};
use crate::sim::state::SimState;

pub(super) async fn list(State(state): State<Arc<SimState>>, query: QueryPairs) -> Answer {
    let page = ListPage::parse(&query)?;
    let projection = Projection::parse(&query);
    let store = state.scim();
    let render = |pos| user_json(&store, pos, &projection);
    let body = match query.first("filter") {
        None => page.answer(store.live_users(), store.live_user_count(), render),
        Some(text) => {
            let name = parse_filter(text)
                .filter(|c| c.attribute == "username")
                .ok_or_else(|| {
                    bad_request(
                        "invalidFilter",
                        format!("Unsupported filter {text:?}; users can be filtered by userName eq \"…\" only."),
                    )
                })?
                .value;
            let matches = store.users_named(&name);
            page.answer(matches.iter().copied(), matches.len(), render)
        }
    };
    Ok(scim_json(StatusCode::OK, &body))
}

pub(super) async fn get(
    State(state): State<Arc<SimState>>,
    ids: PathIds,
    query: QueryPairs,
    headers: HeaderMap,
) -> Answer {
    let store = state.scim();
    let pos = store.user_position(ids.get("id"))?;
    let version = store.user(pos).version;
    if let Some(answer) = unchanged(&headers, version) {
        return Ok(answer);
    }
    let body = user_json(&store, pos, &Projection::parse(&query));
    Ok(single(StatusCode::OK, &body, version))
}

pub(super) async fn patch(
    State(state): State<Arc<SimState>>,
    ids: PathIds,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let mut store = state.scim();
    let pos = store.user_position(ids.get("id"))?;
    let ops = patch::parse(body)?;
    store.patch_user(pos, &ops, |version| check_if_match(&headers, version))?;
    let version = store.user(pos).version;
    let body = user_json(&store, pos, &Projection::default());
    Ok(single(StatusCode::OK, &body, version))
}

pub(super) async fn delete(
    State(state): State<Arc<SimState>>,
    ids: PathIds,
    headers: HeaderMap,
) -> Answer {
    let mut store = state.scim();
    let pos = store.user_position(ids.get("id"))?;
    check_if_match(&headers, store.user(pos).version)?;
    store.delete_user(pos);
    Ok(StatusCode::NO_CONTENT.into_response())
}
