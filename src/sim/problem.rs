//! A provider-neutral description of an error answer.
//!
//! Handlers and the fault injector decide *what* went wrong; each provider
//! module renders it in that vendor's own envelope, so injected faults look
//! exactly like the vendor's real errors.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value};

/// An error answer before it is given a provider's shape.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// The vendor's stable error code, e.g. `ROLE_NOT_FOUND`.
    pub code: &'static str,
    /// A sentence for humans.
    pub message: String,
    /// Extra machine-readable fields (`retry_after`, the offending id, …).
    pub details: Map<String, Value>,
    /// Seconds a client should wait; also sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
        }
    }

    /// Add one field to `details`.
    pub(crate) fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// Ask the client to wait, in the header and in the body, as the vendor does.
    pub(crate) fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self.detail("retry_after", seconds)
    }

    /// A 4xx is the client's fault, anything else the server's.
    pub(crate) fn is_client_error(&self) -> bool {
        self.status.is_client_error()
    }

    /// The generic problem for an injected status that has no better code.
    pub(crate) fn for_status(status: StatusCode) -> Self {
        let code = match status.as_u16() {
            400 => "BAD_REQUEST",
            401 => "UNAUTHORIZED",
            403 => "FORBIDDEN",
            404 => "NOT_FOUND",
            409 => "CONFLICT",
            422 => "VALIDATION_ERROR",
            429 => "RATE_LIMIT_EXCEEDED",
            500 => "INTERNAL_SERVER_ERROR",
            502 => "BAD_GATEWAY",
            503 => "SERVICE_UNAVAILABLE",
            504 => "GATEWAY_TIMEOUT",
            _ => "INJECTED_FAULT",
        };
        let reason = status.canonical_reason().unwrap_or("Injected fault");
        let problem = Problem::new(status, code, reason);
        // A bare 429 without a delay would leave clients guessing.
        if status == StatusCode::TOO_MANY_REQUESTS {
            problem.retry_after(1)
        } else {
            problem
        }
    }

    /// Put the `Retry-After` header on a rendered answer when there is a delay.
    pub(crate) fn finish(&self, mut response: Response) -> Response {
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
