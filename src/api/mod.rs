//! The HTTP API of `offboard serve` (axum): CSV uploads, batch status and
//! reports, retries, health and metrics. Every route but `/healthz` (and,
//! with `public_probes`, `/readyz` and `/metrics`) needs
//! `Authorization: Bearer <token>`; errors share one JSON envelope. Every
//! request is logged once, with its `X-Request-Id`.

mod audit;
mod auth;
mod batches;
mod body;
mod error;
mod health;
mod server;
mod tokens;
mod trace;
mod upload;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use secrecy::SecretString;

use crate::domain::Role;
use crate::engine::Engine;
use crate::identity::TrustedProxy;

pub use error::ApiError;
pub use server::{Limits, serve};
pub use tokens::{TokenRequestError, token_request};
pub(crate) use upload::{bounded as upload_bounded, spool as upload_spool};

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub engine: Arc<Engine>,
    /// The `[http] token_env` token (the built-in admin `bootstrap`), when
    /// set.
    token: Option<Arc<SecretString>>,
    /// `[http.trusted_proxy]`, when configured.
    proxy: Option<Arc<TrustedProxy>>,
    max_upload_bytes: u64,
    /// Set while queue workers run in this process (`/readyz`); `None`
    /// when this process runs none (`serve --no-workers`), so readiness is
    /// the API's and the database's alone.
    pub workers_running: Option<Arc<AtomicBool>>,
}

impl ApiState {
    pub fn new(
        engine: Arc<Engine>,
        token: Option<SecretString>,
        workers_running: Option<Arc<AtomicBool>>,
    ) -> Result<Self, crate::config::ConfigError> {
        let http = &engine.config().http;
        let max_upload_bytes = http.max_upload_bytes;
        let proxy = http
            .trusted_proxy
            .as_ref()
            .map(|p| p.parse().map(Arc::new))
            .transpose()?;
        Ok(Self {
            engine,
            token: token.map(Arc::new),
            proxy,
            max_upload_bytes,
            workers_running,
        })
    }
}

impl ApiState {
    /// `[http.trusted_proxy]`, when configured.
    pub fn proxy(&self) -> Option<&TrustedProxy> {
        self.proxy.as_deref()
    }

    /// Largest accepted upload, in bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes
    }
}

/// Every route with the role it needs; `approve` checks more itself (an
/// operator releases only their own hold, a halted batch needs an
/// approver who did not submit it).
fn protected_routes(probes: Option<Router<ApiState>>) -> Router<ApiState> {
    let mut viewer = Router::new()
        .route("/v1/batches", get(batches::list))
        .route("/v1/batches/{id}", get(batches::get))
        .route("/v1/batches/{id}/requests", get(batches::requests))
        .route("/v1/batches/{id}/report", get(batches::report))
        .route("/v1/audit", get(audit::list));
    if let Some(probes) = probes {
        viewer = viewer.merge(probes);
    }
    let operator = Router::new()
        .route("/v1/batches", post(upload::create_batch))
        .route("/v1/batches/{id}/retry", post(batches::retry))
        .route("/v1/batches/{id}/approve", post(batches::approve))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
        .route("/v1/batches/{id}/undo", post(batches::undo))
        .route("/v1/jobs/{name}/reconcile", post(batches::reconcile));
    let admin = Router::new()
        .route("/v1/tokens", get(tokens::list).post(tokens::add))
        .route("/v1/tokens/{name}", delete(tokens::revoke))
        .route("/v1/purge", post(tokens::purge));
    // Each group reaches only callers whose role reaches the group's.
    let needs = |role| axum::middleware::from_fn_with_state(role, auth::require_role);
    viewer
        .route_layer(needs(Role::Viewer))
        .merge(operator.route_layer(needs(Role::Operator)))
        .merge(admin.route_layer(needs(Role::Admin)))
}

/// The API's routes, with `pages` (the web console's, which sit above
/// the API and use its state) on the same listener.
pub fn router(state: ApiState, pages: Router<ApiState>) -> Router {
    let http = state.engine.config().http.clone();
    let probes = Router::new()
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics));
    // Kubernetes probes and Prometheus scrapes carry no token.
    let (public, protected) = if http.public_probes {
        (probes, protected_routes(None))
    } else {
        (Router::new(), protected_routes(Some(probes)))
    };
    let protected = protected
        // Uploads are streamed to disk and limited there, with a 413 in our
        // envelope; axum's own 2 MiB default would cut them short.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let app = Router::new()
        .route("/healthz", get(health::live))
        .merge(public)
        .merge(protected)
        .merge(pages)
        .fallback(error::not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Duration::from_millis(http.request_timeout_ms),
            error::request_timeout,
        ));
    trace::layer(app)
}
