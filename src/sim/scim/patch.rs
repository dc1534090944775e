//! The body of a SCIM PATCH (RFC 7644 §3.5.2): a `PatchOp` message whose
//! `Operations` each name an `op`, an optional `path` and a `value`.
//!
//! Only the message's syntax is checked here (`invalidSyntax`); what an
//! operation means for a User or a Group is the store's business.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde_json::Value;

use super::PATCH_SCHEMA;
use super::envelope::bad_request;
use super::filter::{PatchPath, parse_path};
use crate::sim::problem::Problem;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpKind {
    Add,
    Remove,
    Replace,
}

/// One operation of a PATCH request.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Operation {
    pub op: OpKind,
    /// `None` when the operation names no path.
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// Parse a PatchOp message; a path that is present but unparseable is
/// `invalidPath`, anything else malformed is `invalidSyntax`.
pub(super) fn parse(body: Result<Bytes, BytesRejection>) -> Result<Vec<Operation>, Problem> {
    let syntax = |detail: &str| bad_request("invalidSyntax", detail.to_owned());
    let bytes = body.map_err(|e| bad_request("invalidSyntax", e.body_text()))?;
    let message: Value = serde_json::from_slice(&bytes).map_err(|e| {
        bad_request(
            "invalidSyntax",
            format!("The request body is not JSON: {e}"),
        )
    })?;
    let schemas_ok = message
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(PATCH_SCHEMA)));
    if !schemas_ok {
        return Err(syntax(&format!("schemas must contain {PATCH_SCHEMA}")));
    }
    let operations = message
        .get("Operations")
        .and_then(Value::as_array)
        .filter(|ops| !ops.is_empty())
        .ok_or_else(|| syntax("Operations must be a non-empty array"))?;
    operations.iter().map(operation).collect()
}

fn operation(value: &Value) -> Result<Operation, Problem> {
    let syntax = |detail: &str| bad_request("invalidSyntax", detail.to_owned());
    let object = value
        .as_object()
        .ok_or_else(|| syntax("each operation must be an object"))?;
    // Some clients capitalise the op ("Remove"); RFC 7644 servers accept it.
    let op = match object
        .get("op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
    {
        Some(op) if op == "add" => OpKind::Add,
        Some(op) if op == "remove" => OpKind::Remove,
        Some(op) if op == "replace" => OpKind::Replace,
        _ => return Err(syntax("op must be one of add, remove, replace")),
    };
    let path = match object.get("path") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(parse_path(text).ok_or_else(|| {
            bad_request(
                "invalidPath",
                format!("The path {text:?} is not a valid path"),
            )
        })?),
        Some(_) => return Err(syntax("path must be a string")),
    };
    Ok(Operation {
        op,
        path,
        value: object.get("value").cloned(),
    })
}
