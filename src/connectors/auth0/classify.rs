//! How each Auth0 Management API answer maps to an outcome
//! (`../shared/api-contracts.md`, "Auth0").

use serde::Deserialize;

use crate::connectors::classify::{ProviderError, classify, clip};
use crate::connectors::http::{Answer, Classified, Verdict};

/// Auth0's error body (observed, not in the spec); `statusCode` may be a
/// string.
#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "errorCode")]
    error_code: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

pub(super) fn parse_error(body: &[u8]) -> ProviderError {
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => ProviderError {
            code: b.error_code.map(|c| clip(&c)),
            message: b.message.or(b.error).map(|m| clip(&m)),
            retry_after: None,
        },
        Err(_) => ProviderError::default(),
    }
}

fn user_missing(status: u16, code: &str, answer: &Answer) -> bool {
    status == 404
        && (code == "inexistent_user"
            || parse_error(&answer.body)
                .message
                .is_some_and(|m| m.contains("user does not exist")))
}

/// Reads of a member's roles or a user's organizations: a missing user is
/// not a member.
pub(super) fn read_member(answer: &Answer) -> Classified {
    classify(answer, parse_error(&answer.body), |status, code| {
        user_missing(status, code, answer).then_some(Verdict::AlreadyDone)
    })
}

/// Auth0's code for a token without the scope a call needs.
pub(super) const INSUFFICIENT_SCOPE: &str = "insufficient_scope";

/// Revoking sessions or refresh tokens: a missing user has none left, and
/// a missing scope is for a person to grant, not a credential failure
/// (it must not trip the breaker that stops the batch).
pub(super) fn revoke(answer: &Answer) -> Classified {
    classify(answer, parse_error(&answer.body), |status, code| {
        if user_missing(status, code, answer) {
            Some(Verdict::AlreadyDone)
        } else if status == 403 && code == INSUFFICIENT_SCOPE {
            Some(Verdict::NeedsAttention)
        } else {
            None
        }
    })
}

/// Writes: Auth0 documents no 404 on the DELETEs (we delete only what the
/// plan read), so only the common table applies.
pub(super) fn write(answer: &Answer) -> Classified {
    classify(answer, parse_error(&answer.body), |_, _| None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer::for_test(status, body)
    }

    #[test]
    fn mapping() {
        let missing = answer(
            404,
            r#"{"statusCode":404,"error":"Not Found","message":"The user does not exist.","errorCode":"inexistent_user"}"#,
        );
        assert!(matches!(
            read_member(&missing).verdict,
            Verdict::AlreadyDone
        ));
        let no_org = answer(
            404,
            r#"{"statusCode":"404","error":"Not Found","message":"No organization found by that id or name","errorCode":"inexistent_organization"}"#,
        );
        assert!(matches!(read_member(&no_org).verdict, Verdict::Permanent));
        assert!(matches!(write(&answer(204, "")).verdict, Verdict::Done));
        let scope = answer(
            403,
            r#"{"statusCode":403,"error":"Forbidden","message":"Insufficient scope","errorCode":"insufficient_scope"}"#,
        );
        let c = write(&scope);
        assert!(matches!(c.verdict, Verdict::Permanent));
        assert_eq!(c.code.as_deref(), Some("insufficient_scope"));
        assert!(matches!(
            write(&answer(400, r#"{"errorCode":"invalid_body"}"#)).verdict,
            Verdict::Permanent
        ));
        assert!(matches!(
            write(&answer(429, r#"{"errorCode":"too_many_requests"}"#)).verdict,
            Verdict::Transient { .. }
        ));
        assert!(matches!(
            write(&answer(503, "<html>")).verdict,
            Verdict::Transient { .. }
        ));
        // A missing scope on a revocation is for a person to grant: not
        // the credential failure that the same answer is on a removal.
        let c = revoke(&scope);
        assert!(matches!(c.verdict, Verdict::NeedsAttention));
        assert_eq!(c.code.as_deref(), Some(INSUFFICIENT_SCOPE));
        assert!(matches!(revoke(&missing).verdict, Verdict::AlreadyDone));
        assert!(matches!(revoke(&answer(202, "")).verdict, Verdict::Done));
        assert!(matches!(
            revoke(&answer(404, "<html>")).verdict,
            Verdict::Permanent
        ));
    }
}
