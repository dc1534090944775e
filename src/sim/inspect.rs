//! `/_sim/…`: the simulator's own routes, for tests, benchmarks and demos.
//!
//! They need no credentials, are never faulted and never logged, so looking
//! at the simulator does not change what it records.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

use super::faults::FaultConfig;
use super::state::SimState;

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/_sim/state", get(directory))
        .route("/_sim/calls", get(calls))
        .route("/_sim/faults", get(faults).post(set_faults))
        .route("/_sim/auth0/tokens", get(tokens))
        .route(
            "/_sim/auth0/revoke-tokens",
            axum::routing::post(revoke_tokens),
        )
        .with_state(state)
}

async fn directory(State(state): State<Arc<SimState>>) -> Response {
    Json(state.directory()).into_response()
}

async fn calls(State(state): State<Arc<SimState>>) -> Response {
    Json(state.calls.snapshot()).into_response()
}

/// How many access tokens the Auth0 token endpoint issued.
async fn tokens(State(state): State<Arc<SimState>>) -> Response {
    Json(json!({"issued": state.issued_tokens().count})).into_response()
}

/// Revokes every issued Auth0 access token, as a key rotation would.
async fn revoke_tokens(State(state): State<Arc<SimState>>) -> Response {
    state.issued_tokens().revoke_all();
    StatusCode::NO_CONTENT.into_response()
}

async fn faults(State(state): State<Arc<SimState>>) -> Response {
    Json(state.faults.config()).into_response()
}

/// Replace the whole fault configuration; fields left out are off.
async fn set_faults(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    let config = serde_json::from_slice::<FaultConfig>(&body)
        .map_err(|e| e.to_string())
        .and_then(|config| config.validate().map(|()| config));
    match config {
        Ok(config) => {
            state.faults.replace(config.clone());
            Json(config).into_response()
        }
        Err(message) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"code": "invalid_faults", "message": message})),
        )
            .into_response(),
    }
}
