//! The simulated Auth0 Management API v2, served under `/auth0/api/v2`.
//!
//! It models what the vendor documents (see `../shared/api-contracts.md`, section
//! "Auth0", and `../shared/specs/auth0-management-offboarding.oas.json`): bearer auth,
//! the `{statusCode, error, message, errorCode}` error body, `X-RateLimit-*`
//! headers on every answer, offset and checkpoint paging, and membership
//! removals that reads see only after a while.

mod envelope;
mod members;
mod oauth;
mod paging;
mod roles;
mod store;
mod users;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get};
use std::sync::Arc;

use super::faults::{FaultLayer, Quota};
use super::problem::Problem;
use super::request::RouteIds;
use super::state::SimState;

pub(crate) use oauth::{Issued, token};
pub(crate) use store::Auth0Store;

/// The tenant's token endpoint (outside the Management API's prefix).
pub(crate) const TOKEN_PATH: &str = "/auth0/oauth/token";

/// Where the Auth0 Management API lives on the simulator's single port.
pub(crate) const PREFIX: &str = "/auth0/api/v2";
/// The provider name used in the call log and for per-provider rate limits.
pub(crate) const PROVIDER: &str = "auth0";

/// What the headers say when no rate limit is configured: plenty, always.
const UNLIMITED: Quota = Quota {
    limit: 1000,
    remaining: 999,
    next_token_secs: 1.0,
};

/// All Auth0 routes. The rate-limit headers wrap everything, faults
/// included, because Auth0 sends them on every answer.
pub(crate) fn router(state: Arc<SimState>) -> Router {
    let faults = FaultLayer::new(state.clone(), PROVIDER, envelope::render);
    Router::new()
        .route_ids(
            "/organizations/{org}/members",
            get(members::list)
                .delete(members::remove)
                .post(members::add),
        )
        .route_ids(
            "/organizations/{org}/members/{user}/roles",
            get(roles::list).delete(roles::remove).post(roles::assign),
        )
        .route_ids("/users/{user}/organizations", get(users::organizations))
        .route_ids("/users/{user}", get(users::get).patch(users::update))
        .route_ids("/users/{user}/sessions", delete(users::delete_sessions))
        .route_ids(
            "/users/{user}/refresh-tokens",
            delete(users::delete_refresh_tokens),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(faults, FaultLayer::inject))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit_headers,
        ))
        .with_state(state)
}

async fn authenticate(State(state): State<Arc<SimState>>, req: Request, next: Next) -> Response {
    match bearer(req.headers()) {
        Some(token) if token == state.token || state.issued_tokens().valid(token) => {
            next.run(req).await
        }
        Some(_) => envelope::render(Problem::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "Invalid token",
        )),
        None => envelope::render(Problem::new(
            StatusCode::UNAUTHORIZED,
            "missing_authentication",
            "Missing authentication",
        )),
    }
}

/// The credential of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credential)| credential.trim())
}

/// Middleware: put the bucket's `X-RateLimit-*` headers on every answer.
///
/// A scripted 429 already announced when to come back; that instant stands,
/// and the other headers are made to agree with it.
async fn rate_limit_headers(
    State(state): State<Arc<SimState>>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = next.run(req).await;
    let quota = state.faults.quota(PROVIDER).unwrap_or(UNLIMITED);
    let limited = response.status() == StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(quota.limit));
    let remaining = if limited { 0 } else { quota.remaining };
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    if !headers.contains_key("x-ratelimit-reset") {
        headers.insert("x-ratelimit-reset", HeaderValue::from(reset_at(quota)));
    }
    response
}

/// Epoch second by which the next token is back, rounded up so a client
/// that waits until then finds one.
fn reset_at(quota: Quota) -> i64 {
    let now = chrono::Utc::now();
    let now_secs = now.timestamp() as f64 + f64::from(now.timestamp_subsec_micros()) / 1e6;
    // Saturating cast: an absurdly slow refill cannot overflow the header.
    (now_secs + quota.next_token_secs).ceil() as i64
}

async fn not_found() -> Response {
    envelope::render(Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not Found",
    ))
}

async fn method_not_allowed() -> Response {
    envelope::render(Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method Not Allowed",
    ))
}
