//! How a SCIM service provider speaks: `application/scim+json` bodies, and
//! errors in RFC 7644 §3.12's shape, whose `status` is a string and whose
//! `scimType` appears only for the RFC's own error types.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ERROR_SCHEMA;
use crate::sim::problem::Problem;

/// The `scimType` values RFC 7644 §3.12 defines.
const SCIM_TYPES: [&str; 10] = [
    "invalidFilter",
    "tooMany",
    "uniqueness",
    "mutability",
    "invalidSyntax",
    "invalidPath",
    "noTarget",
    "invalidValue",
    "invalidVers",
    "sensitive",
];

/// A handler's failure, answered as a SCIM error.
#[derive(Debug)]
pub(super) struct ScimError(pub Problem);

impl From<Problem> for ScimError {
    fn from(problem: Problem) -> Self {
        ScimError(problem)
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        render(self.0)
    }
}

/// What every SCIM handler returns.
pub(super) type Answer = Result<Response, ScimError>;

/// Render a problem as a SCIM error. A problem's code is its `scimType`
/// when it is one of the RFC's.
pub(crate) fn render(problem: Problem) -> Response {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": problem.status.as_str(),
        "detail": problem.message,
    });
    if !problem.injected && SCIM_TYPES.contains(&problem.code) {
        body["scimType"] = json!(problem.code);
    }
    let mut response = scim_json(problem.status, &body);
    if problem.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"scim\""),
        );
    }
    problem.finish(response)
}

/// A SCIM JSON answer.
pub(super) fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, Body::from(body.to_string())).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    response
}

/// A problem with one of the RFC's `scimType`s.
pub(super) fn scim_type(
    status: StatusCode,
    kind: &'static str,
    detail: impl Into<String>,
) -> Problem {
    Problem::new(status, kind, detail)
}

pub(super) fn bad_request(kind: &'static str, detail: impl Into<String>) -> Problem {
    scim_type(StatusCode::BAD_REQUEST, kind, detail)
}

pub(super) fn not_found(kind: &str, id: Option<&str>) -> Problem {
    let id = id.unwrap_or("(undecodable)");
    Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{kind} {id} not found"),
    )
}
