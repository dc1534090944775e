//! The HTTP API of `offboard serve` (axum): CSV uploads, batch status and
//! reports, retries, health and metrics. Every route but `/healthz` (and,
//! with `public_probes`, `/readyz` and `/metrics`) needs
//! `Authorization: Bearer <token>`; errors share one JSON envelope. Every
//! request is logged once, with its `X-Request-Id`.

mod auth;
mod batches;
mod body;
mod error;
mod health;
mod server;
mod trace;
mod upload;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use secrecy::SecretString;

use crate::engine::Engine;

pub use error::ApiError;
pub use server::{Limits, serve};

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub engine: Arc<Engine>,
    token: Arc<SecretString>,
    max_upload_bytes: u64,
    /// Set while queue workers run in this process (`/readyz`); `None`
    /// when this process runs none (`serve --no-workers`), so readiness is
    /// the API's and the database's alone.
    pub workers_running: Option<Arc<AtomicBool>>,
}

impl ApiState {
    pub fn new(
        engine: Arc<Engine>,
        token: SecretString,
        workers_running: Option<Arc<AtomicBool>>,
    ) -> Self {
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
    let http = state.engine.config().http.clone();
    let probes = Router::new()
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics));
    let mut protected = Router::new()
        .route("/v1/batches", post(upload::create_batch).get(batches::list))
        .route("/v1/batches/{id}", get(batches::get))
        .route("/v1/batches/{id}/requests", get(batches::requests))
        .route("/v1/batches/{id}/report", get(batches::report))
        .route("/v1/batches/{id}/retry", post(batches::retry))
        .route("/v1/batches/{id}/approve", post(batches::approve))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
        .route("/v1/batches/{id}/undo", post(batches::undo));
    // Kubernetes probes and Prometheus scrapes carry no token.
    let public = if http.public_probes {
        probes
    } else {
        protected = protected.merge(probes);
        Router::new()
    };
    let protected = protected
        // Uploads are streamed to disk and limited there, with a 413 in our
        // envelope; axum's own 2 MiB default would cut them short.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let app = Router::new()
        .route("/healthz", get(health::live))
        .merge(public)
        .merge(protected)
        .fallback(error::not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Duration::from_millis(http.request_timeout_ms),
            error::request_timeout,
        ));
    trace::layer(app)
}
