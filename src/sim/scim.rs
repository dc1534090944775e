//! The simulated SCIM 2.0 service provider, served under `/scim/v2`.
//!
//! It models RFC 7643/7644 as `../shared/api-contracts.md` (section "SCIM 2.0")
//! describes it: bearer auth, `application/scim+json`, RFC error bodies,
//! ListResponse paging, PATCH with value-filtered paths, weak ETags with
//! `If-Match`, and the optional parts real providers differ on
//! ([`ScimBehaviour`](super::ScimBehaviour)) switchable per directory.

mod envelope;
mod filter;
mod groups;
mod patch;
mod resource;
mod store;
mod users;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

use super::faults::FaultLayer;
use super::problem::Problem;
use super::request::RouteIds;
use super::state::SimState;
use envelope::scim_json;
use resource::{MAX_RESULTS, etag, not_modified};

pub(crate) use store::ScimStore;

/// Where the SCIM service lives on the simulator's single port.
pub(crate) const PREFIX: &str = "/scim/v2";
/// The provider name used in the call log and for per-provider rate limits.
pub(crate) const PROVIDER: &str = "scim";

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const CONFIG_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

/// All SCIM routes; faults wrap everything, auth only the real routes.
/// Methods the service does not implement (create, replace) answer 501, as
/// RFC 7644 §3.12 prescribes for an unsupported operation.
pub(crate) fn router(state: Arc<SimState>) -> Router {
    let faults = FaultLayer::new(state.clone(), PROVIDER, envelope::render);
    Router::new()
        .route("/Users", get(users::list))
        .route_ids(
            "/Users/{id}",
            get(users::get).patch(users::patch).delete(users::delete),
        )
        .route("/Groups", get(groups::list))
        .route_ids("/Groups/{id}", get(groups::get).patch(groups::patch))
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .method_not_allowed_fallback(not_implemented)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(faults, FaultLayer::inject))
        .with_state(state)
}

async fn authenticate(State(state): State<Arc<SimState>>, req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credential)| credential.trim());
    if bearer == Some(state.token.as_str()) {
        next.run(req).await
    } else {
        envelope::render(Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authorization failure. The authorization header is invalid or missing.",
        ))
    }
}

/// One resource with its ETag.
fn single(status: StatusCode, body: &Value, version: u64) -> Response {
    let mut response = scim_json(status, body);
    if let Ok(tag) = HeaderValue::from_str(&etag(version)) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// 304 when the caller's `If-None-Match` already names this version.
fn unchanged(headers: &HeaderMap, version: u64) -> Option<Response> {
    not_modified(headers, version).then(|| {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(tag) = HeaderValue::from_str(&etag(version)) {
            response.headers_mut().insert(header::ETAG, tag);
        }
        response
    })
}

/// RFC 7643 §5: what this service implements.
async fn service_provider_config() -> Response {
    let body = json!({
        "schemas": [CONFIG_SCHEMA],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a bearer token.",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig"},
    });
    scim_json(StatusCode::OK, &body)
}

async fn not_found() -> Response {
    envelope::render(Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "No such endpoint.",
    ))
}

async fn not_implemented() -> Response {
    envelope::render(Problem::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "This service provider does not support that operation.",
    ))
}
