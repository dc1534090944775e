//! How Auth0 speaks errors: `{statusCode, error, message, errorCode}`.
//!
//! Every failure (a handler's, the auth check's, an injected fault's) goes
//! through [`render`]. Auth0 announces waits only through its
//! `X-RateLimit-*` headers, never `Retry-After`, so any delay a problem
//! carries is turned into that form.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::sim::problem::{Problem, RetryHint};

/// A handler's failure, answered in Auth0's error body.
#[derive(Debug)]
pub(super) struct Auth0Error(pub Problem);

impl From<Problem> for Auth0Error {
    fn from(problem: Problem) -> Self {
        Auth0Error(problem)
    }
}

impl IntoResponse for Auth0Error {
    fn into_response(self) -> Response {
        render(self.0)
    }
}

/// What every Auth0 handler returns.
pub(super) type Answer = Result<Response, Auth0Error>;

/// Render a problem as Auth0's error body.
pub(crate) fn render(problem: Problem) -> Response {
    let problem = match problem.retry_after {
        Some(seconds) => problem.retry_after_as(seconds, RetryHint::RateLimitReset),
        None => problem,
    };
    let status = problem.status;
    let body = json!({
        "statusCode": status.as_u16(),
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": problem.message,
        "errorCode": error_code(&problem),
    });
    problem.finish((status, Json(body)).into_response())
}

/// A handler's code as it is; an injected fault gets the code Auth0 uses
/// for that status, so it looks like the vendor's own answer.
fn error_code(problem: &Problem) -> String {
    if !problem.injected {
        return problem.code.to_owned();
    }
    match problem.status.as_u16() {
        401 => "invalid_token".to_owned(),
        403 => "insufficient_scope".to_owned(),
        429 => "too_many_requests".to_owned(),
        _ => problem
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
            .replace([' ', '-'], "_"),
    }
}

pub(super) fn inexistent_user() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "inexistent_user",
        "The user does not exist.",
    )
}

pub(super) fn inexistent_organization() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "inexistent_organization",
        "The organization does not exist.",
    )
}

/// Refuses a call whose scope the token lacks
/// (`FaultConfig::auth0_missing_scopes`); checked first, as the vendor
/// authorises before it reads anything.
pub(super) fn require_scope(
    state: &crate::sim::state::SimState,
    scope: &str,
) -> Result<(), Problem> {
    if state.faults.auth0_lacks_scope(scope) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("Insufficient scope; expected: {scope}"),
        ));
    }
    Ok(())
}

pub(super) fn invalid_body(message: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "invalid_body", message)
}

pub(super) fn invalid_query(message: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "invalid_query_string", message)
}

/// The request body as a JSON object; anything else is Auth0's `invalid_body`.
pub(super) fn object_body(
    body: Result<Bytes, BytesRejection>,
) -> Result<Map<String, Value>, Problem> {
    let bytes = body.map_err(|e| invalid_body(format!("Payload validation error: {e}")))?;
    let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| invalid_body(format!("Payload validation error: invalid JSON ({e}).")))?
    };
    match value {
        Value::Object(map) => Ok(map),
        other => Err(invalid_body(format!(
            "Payload validation error: 'Expected type object but found type {}'.",
            type_name(&other)
        ))),
    }
}

/// A required array of 1..=`max` strings under `key`, as the vendor's
/// schema describes its id lists.
pub(super) fn id_list(
    body: &Map<String, Value>,
    key: &str,
    max: usize,
) -> Result<Vec<String>, Problem> {
    let Some(value) = body.get(key) else {
        return Err(invalid_body(format!(
            "Payload validation error: 'Missing required property: {key}'."
        )));
    };
    let Value::Array(items) = value else {
        return Err(invalid_body(format!(
            "Payload validation error: 'Expected type array but found type {}' on property {key}.",
            type_name(value)
        )));
    };
    if items.is_empty() || items.len() > max {
        return Err(invalid_body(format!(
            "Payload validation error: 'Array must have between 1 and {max} items, found {}' on property {key}.",
            items.len()
        )));
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(id) if !id.is_empty() => Ok(id.clone()),
            other => Err(invalid_body(format!(
                "Payload validation error: 'Expected a non-empty string but found type {}' on property {key}.",
                type_name(other)
            ))),
        })
        .collect()
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
