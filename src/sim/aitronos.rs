//! The simulated Aitronos API, served under `/aitronos/v1`.
//!
//! It models the vendor's documented behaviour (see `../shared/api-contracts.md`,
//! section "Aitronos"): API-key or bearer auth on every route, the
//! `{"success": false, "error": {…}}` envelope on every error, soft-deleted
//! memberships, and the last-owner protection.

mod envelope;
mod handlers;
mod store;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use std::sync::Arc;

use super::faults::FaultLayer;
use super::problem::Problem;
use super::state::SimState;

pub(crate) use store::AitronosStore;

/// Where the Aitronos API lives on the simulator's single port.
pub(crate) const PREFIX: &str = "/aitronos/v1";
/// The provider name used in the call log and for per-provider rate limits.
pub(crate) const PROVIDER: &str = "aitronos";

/// All Aitronos routes; faults wrap everything, auth only the real routes,
/// so an unknown path answers 404 as the vendor's router does.
pub(crate) fn router(state: Arc<SimState>) -> Router {
    let faults = FaultLayer::new(state.clone(), PROVIDER, envelope::render);
    Router::new()
        .route("/organizations/{org}/users", post(handlers::list_users))
        .route(
            "/organizations/{org}/users/{user}",
            get(handlers::get_user).delete(handlers::remove_user),
        )
        .route(
            "/organizations/{org}/users/{user}/effective-permissions",
            get(handlers::effective_permissions),
        )
        .route(
            "/organizations/{org}/roles/{role}",
            get(handlers::get_role).delete(handlers::delete_role),
        )
        .route(
            "/organizations/{org}/roles/{role}/members",
            get(handlers::role_members),
        )
        .route(
            "/organizations/{org}/roles/{role}/members/{user}",
            delete(handlers::remove_role),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(faults, FaultLayer::inject))
        .with_state(state)
}

async fn authenticate(State(state): State<Arc<SimState>>, req: Request, next: Next) -> Response {
    if presents_token(req.headers(), &state.token) {
        next.run(req).await
    } else {
        envelope::render(Problem::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "A valid X-API-Key or Bearer token is required.",
        ))
    }
}

/// The vendor accepts either header; one valid credential is enough.
fn presents_token(headers: &HeaderMap, token: &str) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let api_key = text(header::HeaderName::from_static("x-api-key"));
    let bearer = text(header::AUTHORIZATION)
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credential)| credential.trim());
    api_key == Some(token) || bearer == Some(token)
}

async fn not_found() -> Response {
    envelope::render(Problem::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "No such endpoint.",
    ))
}

async fn method_not_allowed() -> Response {
    envelope::render(Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "This endpoint does not support that method.",
    ))
}
