//! How each Aitronos answer maps to an outcome (`../shared/api-contracts.md`). Status
//! first, then the error code; an unknown code under a known 4xx is never
//! "already done".

use std::time::Duration;

use serde::Deserialize;

use crate::connectors::classify::{ProviderError, classify, clip};
use crate::connectors::http::{Answer, Classified, Verdict};

pub(super) const LAST_OWNER: &str = "LAST_OWNER_CANNOT_BE_REMOVED";
/// Codes that say the user is not (or no longer) a member.
const NOT_A_MEMBER: [&str; 4] = [
    "USER_NOT_FOUND",
    "MEMBER_NOT_FOUND",
    "ORGANIZATION_MEMBER_NOT_FOUND",
    "USER_NOT_IN_ORGANIZATION",
];

#[derive(Deserialize)]
struct Envelope {
    error: Option<ErrorBody>,
    detail: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
    retry_after: Option<f64>,
    details: Option<serde_json::Value>,
}

/// The error envelope, and the two older shapes the API still sends.
pub(super) fn parse_error(body: &[u8]) -> ProviderError {
    let Ok(env) = serde_json::from_slice::<Envelope>(body) else {
        return ProviderError::default();
    };
    if let Some(e) = env.error {
        let hint = e
            .details
            .as_ref()
            .and_then(|d| d.get("retry_after"))
            .and_then(serde_json::Value::as_f64)
            .or(e.retry_after)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)));
        return ProviderError {
            code: e.code.map(|c| clip(&c)),
            message: e.message.map(|m| clip(&m)),
            retry_after: hint,
        };
    }
    let message = match env.detail {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(|i| i.get("msg").and_then(|m| m.as_str()))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => None,
    };
    ProviderError {
        code: None,
        message: message.map(|m| clip(&m)),
        retry_after: None,
    }
}

fn verdict(answer: &Answer, specific: impl Fn(u16, &str) -> Option<Verdict>) -> Classified {
    classify(answer, parse_error(&answer.body), specific)
}

/// Reads of a member (plan, verify): "not a member" is already done.
pub(super) fn read_member(answer: &Answer) -> Classified {
    verdict(answer, |status, code| {
        (status == 404 && NOT_A_MEMBER.contains(&code)).then_some(Verdict::AlreadyDone)
    })
}

/// `DELETE …/roles/{role}/members/{usr}`.
pub(super) fn remove_role(answer: &Answer) -> Classified {
    verdict(answer, |status, code| match (status, code) {
        (404, "ROLE_ASSIGNMENT_NOT_FOUND" | "ROLE_NOT_FOUND") => Some(Verdict::AlreadyDone),
        (404, c) if NOT_A_MEMBER.contains(&c) => Some(Verdict::AlreadyDone),
        (422, LAST_OWNER) => Some(Verdict::NeedsAttention),
        _ => None,
    })
}

/// `DELETE …/users/{usr}`: a 404 naming the member is already done; the
/// verify step reads the member back to confirm.
pub(super) fn remove_member(answer: &Answer) -> Classified {
    verdict(answer, |status, code| match (status, code) {
        (404, c) if NOT_A_MEMBER.contains(&c) => Some(Verdict::AlreadyDone),
        (422, LAST_OWNER) => Some(Verdict::NeedsAttention),
        _ => None,
    })
}

/// `DELETE …/roles/{role}` (pruning): a system role or a role that still
/// has members is left for a person, never retried.
pub(super) fn delete_role(answer: &Answer) -> Classified {
    verdict(answer, |status, code| match (status, code) {
        (403, "SYSTEM_ROLE_IMMUTABLE") | (409, "ROLE_HAS_MEMBERS") => Some(Verdict::NeedsAttention),
        (404, "ROLE_NOT_FOUND") => Some(Verdict::AlreadyDone),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer::for_test(status, body)
    }

    fn envelope(status: u16, code: &str) -> Answer {
        answer(
            status,
            &format!(
                r#"{{"success":false,"error":{{"code":"{code}","message":"m","type":"client_error","status":{status},"details":{{}}}}}}"#
            ),
        )
    }

    #[test]
    fn role_removal_mapping() {
        assert!(matches!(
            remove_role(&answer(204, "")).verdict,
            Verdict::Done
        ));
        assert!(matches!(
            remove_role(&envelope(404, "ROLE_ASSIGNMENT_NOT_FOUND")).verdict,
            Verdict::AlreadyDone
        ));
        assert!(matches!(
            remove_role(&envelope(404, "ROLE_NOT_FOUND")).verdict,
            Verdict::AlreadyDone
        ));
        assert!(matches!(
            remove_role(&envelope(422, LAST_OWNER)).verdict,
            Verdict::NeedsAttention
        ));
        // Unknown code under a known 4xx is never already done.
        assert!(matches!(
            remove_role(&envelope(404, "ORGANIZATION_NOT_FOUND")).verdict,
            Verdict::Permanent
        ));
        assert!(matches!(
            remove_role(&answer(404, "")).verdict,
            Verdict::Permanent
        ));
    }

    #[test]
    fn member_removal_mapping() {
        assert!(matches!(
            remove_member(&envelope(422, "CONFIRMATION_REQUIRED")).verdict,
            Verdict::Permanent
        ));
        assert!(matches!(
            remove_member(&envelope(404, "MEMBER_NOT_FOUND")).verdict,
            Verdict::AlreadyDone
        ));
        assert!(matches!(
            remove_member(&envelope(404, "DEPARTMENT_NOT_FOUND")).verdict,
            Verdict::Permanent
        ));
    }

    #[test]
    fn role_deletion_mapping() {
        assert!(matches!(
            delete_role(&answer(204, "")).verdict,
            Verdict::Done
        ));
        assert!(matches!(
            delete_role(&envelope(403, "SYSTEM_ROLE_IMMUTABLE")).verdict,
            Verdict::NeedsAttention
        ));
        assert!(matches!(
            delete_role(&envelope(409, "ROLE_HAS_MEMBERS")).verdict,
            Verdict::NeedsAttention
        ));
        assert!(matches!(
            delete_role(&envelope(404, "ROLE_NOT_FOUND")).verdict,
            Verdict::AlreadyDone
        ));
        // 403 of another kind is a credential problem.
        assert!(matches!(
            delete_role(&envelope(403, "FORBIDDEN")).verdict,
            Verdict::Permanent
        ));
    }

    #[test]
    fn transient_and_permanent_statuses() {
        for s in [429, 500, 502, 503, 504, 408] {
            assert!(
                matches!(
                    remove_role(&answer(s, "oops")).verdict,
                    Verdict::Transient { .. }
                ),
                "{s}"
            );
        }
        for s in [400, 401, 403] {
            assert!(
                matches!(remove_role(&envelope(s, "X")).verdict, Verdict::Permanent),
                "{s}"
            );
        }
    }

    #[test]
    fn retry_hint_from_body() {
        let a = answer(
            429,
            r#"{"success":false,"error":{"code":"RATE_LIMIT_EXCEEDED","message":"slow","details":{"retry_after":3}}}"#,
        );
        match remove_role(&a).verdict {
            Verdict::Transient { hint } => assert_eq!(hint, Some(Duration::from_secs(3))),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn older_error_shapes() {
        assert_eq!(
            parse_error(br#"{"detail":"Not found"}"#).message.as_deref(),
            Some("Not found")
        );
        let fastapi = br#"{"detail":[{"loc":["body","confirm"],"msg":"field required","type":"value_error"}]}"#;
        assert_eq!(
            parse_error(fastapi).message.as_deref(),
            Some("field required")
        );
        assert_eq!(parse_error(b"<html>").code, None);
    }
}
