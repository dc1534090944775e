//! The simulated Recoup API, served under `/recoup`.
//!
//! It models the vendor's documented behaviour (see `../shared/api-contracts.md`,
//! section "Recoup", and `../shared/specs/recoup-members.openapi.yaml`) and, where the
//! documents are silent, its public server code: exactly one of `x-api-key`
//! or a bearer token, the `{"status": "error", "error": "…"}` envelope (some
//! 401s say `message`), idempotent member removal, and answers limited to
//! what the caller's account shares.

mod envelope;
mod handlers;
mod store;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{delete, get};
use std::sync::Arc;

use super::faults::FaultLayer;
use super::problem::Problem;
use super::state::SimState;

pub(crate) use store::RecoupStore;

/// Where the Recoup API lives on the simulator's single port.
pub(crate) const PREFIX: &str = "/recoup";
/// The provider name used in the call log and for per-provider rate limits.
pub(crate) const PROVIDER: &str = "recoup";

/// All Recoup routes. Authentication happens inside the handlers, because
/// the vendor checks it at different points on different routes.
pub(crate) fn router(state: Arc<SimState>) -> Router {
    let faults = FaultLayer::new(state.clone(), PROVIDER, envelope::render);
    Router::new()
        .route(
            "/api/organizations/members",
            delete(handlers::remove_member),
        )
        .route("/api/organizations", get(handlers::organizations))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            faults,
            FaultLayer::inject,
        ))
        .with_state(state)
}

/// Exactly one credential, and the right one. An empty header counts as
/// absent, as it does for the vendor.
fn authenticate(headers: &HeaderMap, token: &str) -> Result<(), Problem> {
    let present = |name: &str| headers.get(name).filter(|v| !v.is_empty());
    let api_key = present("x-api-key");
    let authorization = present(header::AUTHORIZATION.as_str());
    let refused =
        |message: &str| Problem::new(StatusCode::UNAUTHORIZED, envelope::MESSAGE_FIELD, message);
    match (api_key, authorization) {
        (Some(_), Some(_)) | (None, None) => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Exactly one of x-api-key or Authorization must be provided",
        )),
        (Some(key), None) if key.as_bytes() == token.as_bytes() => Ok(()),
        (Some(_), None) => Err(refused("Unauthorized")),
        (None, Some(value)) => {
            let credential = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, credential)| credential.trim())
                .filter(|c| !c.is_empty());
            match credential {
                Some(c) if c == token => Ok(()),
                Some(_) => Err(refused("Failed to verify authentication token")),
                None => Err(refused("Authorization header with Bearer token required")),
            }
        }
    }
}

async fn not_found() -> Response {
    envelope::render(Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not found",
    ))
}

async fn method_not_allowed() -> Response {
    envelope::render(Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
    ))
}
