//! Recoup (`../shared/api-contracts.md`, "Recoup"): membership removal by
//! query parameters, idempotent by contract; no roles, no transfer, no
//! member listing. Plan and verify read the account's organizations where
//! the server has that read; Recoup's published API document has only the
//! removal (`../shared/specs/recoup-members.openapi.yaml`), so without the
//! read a request removes and says it could not verify.

mod intake;
mod settings;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;

use super::classify::{ProviderError, classify, clip};
use super::http::{Answer, Call, Classified, Verdict};
use super::{
    CallContext, Change, Connector, Note, Plan, Probe, ProviderClient, StepError, StripResult,
};
use crate::domain::{ProviderName, Removal, Restore, RoleId, Target};

pub use intake::{check_uuid, parse_target};
pub use settings::Settings;

/// What this kind can do, for reconciliation and config validation.
/// Recoup documents no member listing, no transfer and no call that gives access back.
pub const CAPABILITIES: super::Capabilities = super::Capabilities {
    list_members: false,
    transfer_resources: false,
    undo: false,
    find_by_email: false,
    client_credentials: false,
};

/// What the rest of the program reads about this kind.
pub const DECLARATION: super::Declaration = super::Declaration {
    name: "recoup",
    capabilities: CAPABILITIES,
    id_case: crate::domain::IdCase::Insensitive,
    default_auth: super::AuthScheme::ApiKey,
    parse_target,
    settings_fields: super::fields::fields_of::<Settings>,
};

/// The note code of a removal that could not be read back.
pub const UNVERIFIED: &str = "membership_unverified";

#[derive(Debug)]
pub struct Recoup {
    name: ProviderName,
    client: ProviderClient,
    /// `membership_read = false`: never call the organizations read.
    membership_read: bool,
}

/// What the organizations read says of the account in the target org.
enum Membership {
    Listed,
    NotListed,
    /// The read is switched off, or the server does not have the route.
    Unreadable {
        why: &'static str,
    },
}

impl Recoup {
    pub fn new(client: ProviderClient, settings: &Settings) -> Self {
        Self {
            name: ProviderName::new_unchecked(client.provider()),
            client,
            membership_read: settings.membership_read,
        }
    }

    fn organizations(t: &Target) -> Call {
        Call::new(Method::GET, &["api", "organizations"]).query("account_id", t.user_id.as_str())
    }

    /// Whether the account is listed in the target organization. A 403
    /// (the caller shares no organization with it) is "not listed".
    async fn membership(&self, cx: &CallContext, t: &Target) -> Result<Membership, StepError> {
        if !self.membership_read {
            return Ok(Membership::Unreadable {
                why: "membership_read = false",
            });
        }
        let (answer, verdict) = self
            .client
            .send(cx, &Self::organizations(t), read_orgs)
            .await?;
        if matches!(verdict, Verdict::AlreadyDone) {
            return Ok(if answer.status == 404 {
                Membership::Unreadable {
                    why: "the server has no GET /api/organizations (it is not in Recoup's published API)",
                }
            } else {
                Membership::NotListed
            });
        }
        let body: Orgs = super::parse_json(&answer.body)?;
        let target = t.organization_id.as_str();
        let listed = body.organizations.iter().any(|o| {
            // Documented as the organization id in older answers: accept both.
            o.organization_id
                .as_deref()
                .or(o.id.as_deref().filter(|_| o.organization_id.is_none()))
                .is_some_and(|id| id.eq_ignore_ascii_case(target))
        });
        Ok(if listed {
            Membership::Listed
        } else {
            Membership::NotListed
        })
    }
}

#[derive(Deserialize)]
struct Orgs {
    #[serde(default)]
    organizations: Vec<Org>,
}

/// One of the account's memberships: Recoup's server answers the
/// membership row's `id` and the organization as `organization_id`.
#[derive(Deserialize)]
struct Org {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    organization_id: Option<String>,
}

#[derive(Deserialize)]
struct Body {
    error: Option<String>,
    message: Option<String>,
}

/// `{"status":"error","error":"…"}`, some 401s `{"message":"…"}`, and
/// non-JSON pages from the host in front of it.
fn parse_error(body: &[u8]) -> ProviderError {
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => ProviderError {
            code: None,
            message: b.error.or(b.message).map(|m| clip(&m)),
            retry_after: None,
        },
        Err(_) => ProviderError::default(),
    }
}

/// Whether the body is Recoup's own error envelope: a 404 in any other
/// shape is the host saying the route does not exist.
fn is_envelope(body: &[u8]) -> bool {
    parse_error(body).message.is_some()
}

/// The organizations read: Recoup's 403 "Access denied to specified
/// account_id" means the account shares no organization with us (after a
/// removal, the expected answer). Any other 403 is a credential problem and
/// counts as one, so a wrong key never reads as "already removed". A 404
/// outside the envelope is a server without this read.
fn read_orgs(answer: &Answer) -> Classified {
    let err = parse_error(&answer.body);
    let no_shared_org = err.message.as_deref().is_some_and(|m| {
        m.to_ascii_lowercase()
            .contains("access denied to specified account")
    });
    let no_route = answer.status == 404 && err.message.is_none();
    classify(answer, err, |status, _| {
        ((status == 403 && no_shared_org) || no_route).then_some(Verdict::AlreadyDone)
    })
}

/// The removal: 200 also when the account was not a member.
fn remove(answer: &Answer) -> Classified {
    let mut c = classify(answer, parse_error(&answer.body), |_, _| None);
    if answer.status == 403 && c.code.as_deref() == Some("http_403") {
        c.code = Some("caller_not_member".into());
    }
    c
}

#[async_trait]
impl Connector for Recoup {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    /// No session revocation and no pruning here.
    fn policy_steps(&self) -> bool {
        false
    }

    async fn plan(&self, cx: &CallContext, t: &Target) -> Result<Plan, StepError> {
        Ok(match self.membership(cx, t).await? {
            // Unread, the idempotent removal is sent anyway.
            Membership::Listed | Membership::Unreadable { .. } => Plan::member(Vec::new()),
            // Not listed, or a 403 (the account shares no organization with
            // us, so it is not in ours): nothing to remove.
            Membership::NotListed => Plan::not_a_member(),
        })
    }

    async fn strip_roles(
        &self,
        _: &CallContext,
        _: &Target,
        _: &Plan,
        _: &[RoleId],
    ) -> StripResult {
        StripResult::default()
    }

    async fn remove_membership(
        &self,
        cx: &CallContext,
        t: &Target,
        _: &Plan,
    ) -> Result<Change, StepError> {
        let call = Call::new(Method::DELETE, &["api", "organizations", "members"])
            .query("organization_id", t.organization_id.as_str())
            .query("account_id", t.user_id.as_str());
        self.client.send(cx, &call, remove).await?;
        Ok(Change::Changed)
    }

    async fn verify(
        &self,
        cx: &CallContext,
        t: &Target,
        _: &Plan,
    ) -> Result<Option<Note>, StepError> {
        match self.membership(cx, t).await? {
            Membership::Listed => Err(StepError::needs_attention(
                "membership_still_present",
                format!(
                    "{} is still a member of {} after removal",
                    t.user_id, t.organization_id
                ),
            )),
            Membership::NotListed => Ok(None),
            Membership::Unreadable { why } => Ok(Some(Note {
                code: UNVERIFIED,
                message: format!(
                    "the removal was sent and answered 200 (Recoup answers so whether or not the account was a member), but not read back: {why}"
                ),
            })),
        }
    }

    async fn restore_plan(
        &self,
        _cx: &CallContext,
        t: &Target,
        removal: &Removal,
    ) -> Result<Restore, StepError> {
        Err(super::restore::manual(
            "Recoup documents no call that adds a member to an organization",
            t,
            removal,
        ))
    }

    async fn probe(&self) -> Result<Probe, StepError> {
        if !self.membership_read {
            return Ok(Probe::Warning(
                "not checked: membership_read = false, and Recoup documents no read to check the key with".into(),
            ));
        }
        // Without account_id, Recoup lists the caller's own organizations;
        // the route is not in its published API, so its absence is no
        // failure, but then nothing proves the key.
        let cx = CallContext::default();
        let call = Call::new(Method::GET, &["api", "organizations"]);
        let (answer, _) = self
            .client
            .send(&cx, &call, |a| {
                super::classify::probe(a, |body| !is_envelope(body))
            })
            .await?;
        Ok(if answer.status == 404 {
            Probe::Warning(
                "reachable, but the key is not checked: the server has no GET /api/organizations (not in Recoup's published API), so removals will be noted membership_unverified".into(),
            )
        } else {
            Probe::Passed(format!(
                "reachable, credentials accepted (HTTP {})",
                answer.status
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer::for_test(status, body)
    }

    #[test]
    fn mapping() {
        assert!(matches!(
            remove(&answer(200, r#"{"status":"success"}"#)).verdict,
            Verdict::Done
        ));
        let bad = remove(&answer(400, r#"{"status":"error","error":"Invalid UUID"}"#));
        assert!(matches!(bad.verdict, Verdict::Permanent));
        assert_eq!(bad.message.as_deref(), Some("Invalid UUID"));
        let caller = remove(&answer(
            403,
            r#"{"status":"error","error":"Caller is not a member of the organization"}"#,
        ));
        assert!(matches!(caller.verdict, Verdict::Permanent));
        assert_eq!(caller.code.as_deref(), Some("caller_not_member"));
        assert!(matches!(
            remove(&answer(401, r#"{"message":"Unauthorized"}"#)).verdict,
            Verdict::Permanent
        ));
        for s in [429, 500, 502, 503, 504] {
            assert!(matches!(
                remove(&answer(s, "<html>bad gateway</html>")).verdict,
                Verdict::Transient { .. }
            ));
        }
        let no_shared = answer(
            403,
            r#"{"status":"error","error":"Access denied to specified account_id"}"#,
        );
        assert!(matches!(
            read_orgs(&no_shared).verdict,
            Verdict::AlreadyDone
        ));
        let wrong_key = answer(403, r#"{"status":"error","error":"Forbidden"}"#);
        assert!(matches!(read_orgs(&wrong_key).verdict, Verdict::Permanent));
        // A host without the read answers its own 404 page.
        let no_route = answer(
            404,
            "<!DOCTYPE html><title>404: This page could not be found.</title>",
        );
        assert!(matches!(read_orgs(&no_route).verdict, Verdict::AlreadyDone));
        let in_envelope = answer(404, r#"{"status":"error","error":"Account not found"}"#);
        assert!(matches!(
            read_orgs(&in_envelope).verdict,
            Verdict::Permanent
        ));
    }
}
