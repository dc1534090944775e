//! The classified error of a provider step.

use std::time::Duration;

/// What kind of failure a step met (`../shared/api-contracts.md` outcome classes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry later; `retry_after` is the provider's hint or our backoff.
    Transient { retry_after: Option<Duration> },
    /// Stop this user's pipeline: a person must act.
    NeedsAttention,
    /// Never retry: credentials, ids, or a malformed request.
    Permanent,
}

/// A classified step failure with a stable code and a human message. The
/// message never contains a token or a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct StepError {
    pub class: ErrorClass,
    pub code: String,
    pub message: String,
    /// A transient error that means "a person must look" once the attempt
    /// budget is spent, rather than `dead` (e.g. a removal that stays
    /// visible past the provider's consistency window).
    pub attention_when_exhausted: bool,
}

impl StepError {
    pub fn transient(
        code: impl Into<String>,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        Self {
            class: ErrorClass::Transient { retry_after },
            code: code.into(),
            message: message.into(),
            attention_when_exhausted: false,
        }
    }

    pub fn needs_attention(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::NeedsAttention,
            code: code.into(),
            message: message.into(),
            attention_when_exhausted: false,
        }
    }

    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            code: code.into(),
            message: message.into(),
            attention_when_exhausted: false,
        }
    }

    pub fn needs_attention_when_exhausted(mut self) -> Self {
        self.attention_when_exhausted = true;
        self
    }
}

/// A provider answer that is not the documented shape (untrusted input).
pub fn invalid_response(e: impl std::fmt::Display) -> StepError {
    StepError::permanent(
        "invalid_provider_response",
        format!("the provider's answer is not the documented JSON: {e}"),
    )
}

/// Parses a provider's JSON answer.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, StepError> {
    serde_json::from_slice(body).map_err(invalid_response)
}
