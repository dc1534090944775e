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
    /// How the wait is announced in headers.
    pub retry_form: RetryHint,
    /// Made up by the fault layer rather than decided by the vendor's own
    /// logic, so renderers give it the vendor's generic form for its status.
    pub injected: bool,
}

/// The header forms a provider may use to announce a wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryHint {
    /// `Retry-After: <seconds>` and `retry_after` in the body (Aitronos).
    #[default]
    Seconds,
    /// `Retry-After: <HTTP-date>` (RFC 9110), rounded up to the second.
    HttpDate,
    /// `X-RateLimit-Limit/Remaining/Reset` with Reset in epoch seconds, no
    /// `Retry-After` (Auth0's bucket headers).
    RateLimitReset,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
            retry_form: RetryHint::Seconds,
            injected: false,
        }
    }

    /// Mark the problem as an injected fault.
    pub(crate) fn injected(mut self) -> Self {
        self.injected = true;
        self
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

    /// Ask the client to wait, announced in the given header form. Only the
    /// seconds form repeats the delay in the body.
    pub(crate) fn retry_after_as(self, seconds: u64, form: RetryHint) -> Self {
        let mut p = match form {
            RetryHint::Seconds => self.retry_after(seconds),
            _ => {
                let mut p = self;
                p.details.remove("retry_after");
                p.retry_after = Some(seconds);
                p
            }
        };
        p.retry_form = form;
        p
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
        let Some(seconds) = self.retry_after else {
            return response;
        };
        // Round the announced instant up, so a client that waits for it has
        // waited at least `seconds`. A scripted wait can be absurdly long:
        // saturate instead of overflowing the clock.
        let now = chrono::Utc::now();
        let at_secs = now
            .timestamp()
            .saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX))
            .saturating_add(i64::from(now.timestamp_subsec_nanos() > 0));
        let headers = response.headers_mut();
        match self.retry_form {
            RetryHint::Seconds => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            RetryHint::HttpDate => {
                let date = chrono::DateTime::from_timestamp(at_secs, 0)
                    .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
                    .format("%a, %d %b %Y %H:%M:%S GMT")
                    .to_string();
                if let Ok(v) = HeaderValue::from_str(&date) {
                    headers.insert(header::RETRY_AFTER, v);
                }
            }
            RetryHint::RateLimitReset => {
                headers.insert("x-ratelimit-limit", HeaderValue::from(1u64));
                headers.insert("x-ratelimit-remaining", HeaderValue::from(0u64));
                headers.insert("x-ratelimit-reset", HeaderValue::from(at_secs));
            }
        }
        response
    }
}
