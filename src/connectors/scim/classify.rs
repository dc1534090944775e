//! How SCIM 2.0 answers map to outcomes (RFC 7644 §3.12; `../shared/api-contracts.md`).

use serde::Deserialize;

use crate::connectors::classify::{ProviderError, classify, clip};
use crate::connectors::http::{Answer, Classified, Verdict};

/// The URN every SCIM error body lists in its `schemas` (RFC 7644 §3.12).
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

#[derive(Deserialize)]
struct Body {
    #[serde(default, rename = "scimType")]
    scim_type: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    schemas: Vec<String>,
}

/// Whether the body is a SCIM error: only then does a 404 speak of the
/// resource, rather than of a path no SCIM server lives at.
pub(super) fn is_scim_error(body: &[u8]) -> bool {
    serde_json::from_slice::<Body>(body).is_ok_and(|b| b.schemas.iter().any(|s| s == ERROR_SCHEMA))
}

/// A 404 that says the user or group is gone: in the SCIM error schema.
fn gone(answer: &Answer) -> bool {
    answer.status == 404 && is_scim_error(&answer.body)
}

/// The RFC error schema; `status` is a string and is not needed here.
pub(super) fn parse_error(body: &[u8]) -> ProviderError {
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => ProviderError {
            code: b.scim_type.map(|c| clip(&c)),
            message: b.detail.map(|m| clip(&m)),
            retry_after: None,
        },
        Err(_) => ProviderError::default(),
    }
}

fn common(status: u16, _code: &str) -> Option<Verdict> {
    match status {
        // No SCIM server answered (a wrong base path): a configuration
        // problem, never "already gone".
        404 => Some(Verdict::Permanent),
        // Not implemented: the server cannot do this, ever.
        501 => Some(Verdict::Permanent),
        // Uniqueness conflicts need a person.
        409 => Some(Verdict::NeedsAttention),
        _ => None,
    }
}

/// Reads and writes where 404 means the user (or group) is gone.
pub(super) fn gone_is_done(answer: &Answer) -> Classified {
    let gone = gone(answer);
    classify(answer, parse_error(&answer.body), |status, code| {
        if gone {
            Some(Verdict::AlreadyDone)
        } else {
            common(status, code)
        }
    })
}

/// Group member removal: `noTarget` and 404 are already done; 412 is
/// handled by the caller (re-read, then retry with the fresh ETag).
pub(super) fn remove_member(answer: &Answer) -> Classified {
    let gone = gone(answer);
    classify(answer, parse_error(&answer.body), |status, code| {
        match (status, code) {
            _ if gone => Some(Verdict::AlreadyDone),
            (400, "noTarget") => Some(Verdict::AlreadyDone),
            (412, _) => Some(Verdict::Permanent),
            _ => common(status, code),
        }
    })
}

/// Giving access back (undo): a group or user that is gone is no success;
/// 412 is handled by the caller (re-read, then retry with the fresh ETag).
pub(super) fn add(answer: &Answer) -> Classified {
    classify(answer, parse_error(&answer.body), common)
}

/// Plain reads (filters may be unsupported: the caller falls back).
pub(super) fn read(answer: &Answer) -> Classified {
    classify(answer, parse_error(&answer.body), common)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn answer(status: u16, scim_type: Option<&str>) -> Answer {
        let body = match scim_type {
            Some(t) => format!(
                r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"{status}","scimType":"{t}","detail":"d"}}"#
            ),
            None => format!(
                r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"{status}","detail":"d"}}"#
            ),
        };
        Answer {
            status,
            headers: HeaderMap::new(),
            body: body.into_bytes(),
        }
    }

    #[test]
    fn mapping() {
        assert!(matches!(
            remove_member(&answer(204, None)).verdict,
            Verdict::Done
        ));
        assert!(matches!(
            remove_member(&answer(400, Some("noTarget"))).verdict,
            Verdict::AlreadyDone
        ));
        assert!(matches!(
            remove_member(&answer(404, None)).verdict,
            Verdict::AlreadyDone
        ));
        let path = remove_member(&answer(400, Some("invalidPath")));
        assert!(matches!(path.verdict, Verdict::Permanent));
        assert_eq!(path.code.as_deref(), Some("invalidPath"));
        assert!(matches!(
            gone_is_done(&answer(404, None)).verdict,
            Verdict::AlreadyDone
        ));
        assert!(matches!(
            read(&answer(501, None)).verdict,
            Verdict::Permanent
        ));
        assert!(matches!(
            read(&answer(409, Some("uniqueness"))).verdict,
            Verdict::NeedsAttention
        ));
        // Another server's 404 (a wrong base path) is not "gone".
        let elsewhere = Answer {
            status: 404,
            headers: HeaderMap::new(),
            body: b"<html>Not Found</html>".to_vec(),
        };
        for c in [
            gone_is_done(&elsewhere),
            remove_member(&elsewhere),
            read(&elsewhere),
        ] {
            assert!(matches!(c.verdict, Verdict::Permanent), "{c:?}");
        }
        let detail_only = Answer {
            status: 404,
            headers: HeaderMap::new(),
            body: br#"{"detail":"no route"}"#.to_vec(),
        };
        assert!(matches!(
            gone_is_done(&detail_only).verdict,
            Verdict::Permanent
        ));
        assert!(matches!(
            read(&answer(429, None)).verdict,
            Verdict::Transient { .. }
        ));
        assert!(matches!(
            read(&answer(503, None)).verdict,
            Verdict::Transient { .. }
        ));
    }
}
