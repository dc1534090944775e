//! The classification every provider shares: status first, then the
//! provider's error code (`../shared/api-contracts.md`). A connector supplies how to read
//! its error body and its own table of exceptions; what is left is common:
//! 2xx done, 408/425/429/5xx transient, any other status permanent.

use std::time::Duration;

use super::http::{Answer, Classified, Verdict};

/// A provider's error body, read into common terms.
#[derive(Debug, Default, PartialEq)]
pub struct ProviderError {
    pub code: Option<String>,
    pub message: Option<String>,
    /// A delay the body asks for (Aitronos documents one).
    pub retry_after: Option<Duration>,
}

/// Classifies `answer` with `specific` consulted first for non-2xx answers.
pub fn classify(
    answer: &Answer,
    err: ProviderError,
    specific: impl Fn(u16, &str) -> Option<Verdict>,
) -> Classified {
    let status = answer.status;
    let success = (200..300).contains(&status);
    let code = err.code.clone().unwrap_or_default();
    let verdict = if success {
        Verdict::Done
    } else if let Some(v) = specific(status, &code) {
        v
    } else {
        match status {
            408 | 425 | 429 | 500..=599 => Verdict::Transient {
                hint: err.retry_after,
            },
            _ => Verdict::Permanent,
        }
    };
    let message = err
        .message
        .filter(|m| !m.is_empty())
        .or_else(|| (!success).then(|| format!("the provider answered HTTP {status}")));
    Classified {
        verdict,
        code: (!code.is_empty())
            .then_some(code)
            .or_else(|| (!success).then(|| format!("http_{status}"))),
        message,
    }
}

/// Provider text is untrusted: keep it short and on one line.
pub fn clip(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

/// Reachability checks: a 2xx answer, or a 404 in the provider's own
/// error envelope, means the base URL and the credentials work; a 404 in
/// any other shape is some other server's (a wrong base path).
pub fn probe(answer: &Answer, own_error: fn(&[u8]) -> bool) -> Classified {
    let own_404 = answer.status == 404 && own_error(&answer.body);
    let mut c = classify(answer, ProviderError::default(), |status, _| {
        (status == 404 && own_404).then_some(Verdict::Done)
    });
    if answer.status == 404 && !own_404 {
        c.code = Some("not_the_provider_api".into());
        c.message = Some(
            "HTTP 404 without the provider's error format: check base_url (its path too)".into(),
        );
    }
    c
}
