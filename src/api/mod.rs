//! The HTTP API of `offboard serve` (axum): CSV uploads, batch status and
//! reports, retries, health and metrics. Every route but `/healthz` needs
//! `Authorization: Bearer <token>`; errors share one JSON envelope.

mod auth;
mod batches;
mod error;
mod health;
mod upload;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use secrecy::SecretString;

use crate::engine::Engine;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub engine: Arc<Engine>,
    token: Arc<SecretString>,
    max_upload_bytes: u64,
    /// Set while queue workers run in this process (`/readyz`).
    pub workers_running: Arc<AtomicBool>,
}

impl ApiState {
    pub fn new(engine: Arc<Engine>, token: SecretString, workers_running: Arc<AtomicBool>) -> Self {
        let max_upload_bytes = engine.config().http.max_upload_bytes;
        Self {
            engine,
            token: Arc::new(token),
            max_upload_bytes,
            workers_running,
        }
    }
}

pub fn router(state: ApiState) -> Router {
    let protected = Router::new()
        .route("/v1/batches", post(upload::create_batch).get(batches::list))
        .route("/v1/batches/{id}", get(batches::get))
        .route("/v1/batches/{id}/requests", get(batches::requests))
        .route("/v1/batches/{id}/report", get(batches::report))
        .route("/v1/batches/{id}/retry", post(batches::retry))
        .route("/v1/batches/{id}/approve", post(batches::approve))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics))
        // Uploads are streamed to disk and limited there, with a 413 in our
        // envelope; axum's own 2 MiB default would cut them short.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(health::live))
        .merge(protected)
        .fallback(error::not_found)
        .with_state(state)
}
