//! How Recoup speaks errors: `{"status": "error", "error": "…"}` from its
//! handlers, `{"status": "error", "message": "…"}` from its credential
//! checks, and whatever its hosting platform sends when the application
//! never answered: plain text or an HTML page, not JSON.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::sim::problem::Problem;

/// The problem code of errors whose body says `message` instead of `error`.
pub(super) const MESSAGE_FIELD: &str = "message";

/// A handler's failure, answered in Recoup's envelope.
#[derive(Debug)]
pub(super) struct RecoupError(pub Problem);

impl From<Problem> for RecoupError {
    fn from(problem: Problem) -> Self {
        RecoupError(problem)
    }
}

impl IntoResponse for RecoupError {
    fn into_response(self) -> Response {
        render(self.0)
    }
}

/// What every Recoup handler returns.
pub(super) type Answer = Result<Response, RecoupError>;

/// Render a problem as Recoup (or the platform in front of it) would.
pub(crate) fn render(problem: Problem) -> Response {
    let status = problem.status;
    let response = match status.as_u16() {
        429 => text(
            "text/plain; charset=utf-8",
            status,
            "Too Many Requests\n".to_owned(),
        ),
        502..=504 => {
            let reason = status.canonical_reason().unwrap_or("Error");
            let page = format!(
                "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head>\
                 <body><h1>{code} {reason}</h1><p>The deployment could not answer.</p></body></html>\n",
                code = status.as_u16()
            );
            text("text/html; charset=utf-8", status, page)
        }
        _ => {
            let field = if problem.code == MESSAGE_FIELD {
                "message"
            } else {
                "error"
            };
            let mut body = json!({"status": "error"});
            body[field] = json!(problem.message);
            (status, Json(body)).into_response()
        }
    };
    problem.finish(response)
}

fn text(content_type: &'static str, status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(super) fn bad_request(message: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

pub(super) fn forbidden(message: &str) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "forbidden", message)
}
