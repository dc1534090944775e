//! Liveness, readiness and Prometheus metrics.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::{ApiError, ApiState};

/// The process answers.
pub(super) async fn live() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// The database answers and, where this process runs workers, they run.
pub(super) async fn ready(State(state): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    state.engine.store().ping().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database does not answer",
        )
    })?;
    // Under `--no-workers` no worker is expected here.
    if state
        .workers_running
        .as_ref()
        .is_some_and(|w| !w.load(Ordering::SeqCst))
    {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "workers_not_running",
            "no queue worker runs in this process",
        ));
    }
    Ok(axum::Json(json!({"status": "ready"})))
}

pub(super) async fn metrics(State(state): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let handle =
        crate::metrics::handle().ok_or_else(|| ApiError::internal("no metrics recorder"))?;
    let open = state
        .engine
        .store()
        .open_requests()
        .await
        .map_err(ApiError::internal)?;
    crate::metrics::queue_depth(open);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    ))
}
