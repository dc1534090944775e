//! `/Groups`: a user's groups (by member filter, where the provider supports
//! it), one group, and PATCH to take members out.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use std::sync::Arc;

use super::envelope::{Answer, bad_request, scim_json};
use super::filter::parse_filter;
use super::patch;
use super::resource::{ListPage, Projection, check_if_match, etag, group_json};
use super::store::GroupStore;
use super::{single, unchanged};
use crate::sim::directory::fold_eq;
use crate::sim::request::{PathIds, QueryPairs};
use crate::sim::state::SimState;

pub(super) async fn list(State(state): State<Arc<SimState>>, query: QueryPairs) -> Answer {
    let page = ListPage::parse(&query)?;
    let projection = Projection::parse(&query);
    let store = state.scim();
    let render = |group: &GroupStore| group_json(&store, group, &projection);
    let Some(text) = query.first("filter") else {
        let groups = store.groups();
        return Ok(scim_json(
            StatusCode::OK,
            &page.answer(groups.iter(), groups.len(), render),
        ));
    };
    if !store.behaviour().group_filter_supported {
        return Err(bad_request(
            "invalidFilter",
            "This service provider does not support filtering groups.",
        )
        .into());
    }
    let unsupported = || {
        bad_request(
            "invalidFilter",
            format!(
                "Unsupported filter {text:?}; groups can be filtered by members[value eq \"…\"] or displayName eq \"…\"."
            ),
        )
    };
    let comparison = parse_filter(text).ok_or_else(unsupported)?;
    let matches: Vec<&GroupStore> = match comparison.attribute.as_str() {
        "members.value" => match store.user_position(Some(&comparison.value)) {
            Ok(user) => store.groups_of(user).collect(),
            Err(_) => Vec::new(),
        },
        "displayname" => store
            .groups()
            .iter()
            .filter(|g| fold_eq(&g.display_name, &comparison.value))
            .collect(),
        _ => return Err(unsupported().into()),
    };
    let body = page.answer(matches.iter().copied(), matches.len(), render);
    Ok(scim_json(StatusCode::OK, &body))
}

pub(super) async fn get(
    State(state): State<Arc<SimState>>,
    ids: PathIds,
    query: QueryPairs,
    headers: HeaderMap,
) -> Answer {
    let store = state.scim();
    let group = store.group(store.group_position(ids.get("id"))?);
    if let Some(answer) = unchanged(&headers, group.version) {
        return Ok(answer);
    }
    let body = group_json(&store, group, &Projection::parse(&query));
    Ok(single(StatusCode::OK, &body, group.version))
}

/// 204 with the new ETag, so a client can chain writes without a re-read.
pub(super) async fn patch(
    State(state): State<Arc<SimState>>,
    ids: PathIds,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let mut store = state.scim();
    let pos = store.group_position(ids.get("id"))?;
    let ops = patch::parse(body)?;
    store.patch_group(pos, &ops, |version| check_if_match(&headers, version))?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(tag) = HeaderValue::from_str(&etag(store.group(pos).version)) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Ok(response)
}
