//! How Aitronos speaks errors, and how untrusted request parts become them.
//!
//! Every failure, whether a handler's, the auth check's or an injected
//! fault's, goes through [`render`], so clients only ever see the vendor's
//! envelope.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::sim::problem::Problem;

/// A handler's failure, answered in the Aitronos envelope.
#[derive(Debug)]
pub(super) struct AitronosError(pub Problem);

impl From<Problem> for AitronosError {
    fn from(problem: Problem) -> Self {
        AitronosError(problem)
    }
}

impl IntoResponse for AitronosError {
    fn into_response(self) -> Response {
        render(self.0)
    }
}

/// Render a problem exactly as the vendor documents its error envelope.
pub(crate) fn render(problem: Problem) -> Response {
    let kind = if problem.is_client_error() {
        "client_error"
    } else {
        "server_error"
    };
    let body = json!({
        "success": false,
        "error": {
            "code": problem.code,
            "message": problem.message,
            "system_message": format!("{}: {}", problem.code, problem.message),
            "type": kind,
            "status": problem.status.as_u16(),
            "details": problem.details,
            "trace_id": format!("{:032x}", rand::rng().random::<u128>()),
            "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    });
    problem.finish((problem.status, Json(body)).into_response())
}

pub(super) fn validation_error(message: impl Into<String>) -> AitronosError {
    AitronosError(Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
        message,
    ))
}

/// Path ids, where an id that cannot even be decoded simply matches nothing.
pub(super) struct Ids<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Ids<T> {
    type Rejection = AitronosError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(ids)) => Ok(Ids(ids)),
            Err(_) => Err(AitronosError(Problem::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "No resource matches this path.",
            ))),
        }
    }
}

/// Query parameters; a malformed value is the client's validation error.
pub(super) struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = AitronosError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(params)| Params(params))
            .map_err(|e: QueryRejection| validation_error(e.body_text()))
    }
}
