//! Auth0 Management API v2 (`../shared/api-contracts.md`, "Auth0"): plan from the
//! member's organization roles (both response shapes, paged), one bulk role
//! DELETE of exactly what is held, membership DELETE, optional block, and a
//! read-back that allows for Auth0's few seconds of eventual consistency.

mod classify;
mod intake;
mod restore;
mod settings;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;

use super::http::{Call, Verdict};
use super::{
    CallContext, Change, Connector, Member, Note, Plan, Probe, ProviderClient, StepError,
    StripResult,
};
use crate::domain::ids::check_safe;
use crate::domain::{ProviderName, Removal, Restore, RoleId, Target};

pub use intake::{check_user_id, parse_target};
pub use settings::Settings;

/// What this kind can do, for reconciliation and config validation.
/// Auth0 lists an organization's members and gives a membership, roles and a blocked user back.
pub const CAPABILITIES: super::Capabilities = super::Capabilities {
    list_members: true,
    transfer_resources: false,
    undo: true,
    find_by_email: false,
    client_credentials: true,
};

/// What the rest of the program reads about this kind.
pub const DECLARATION: super::Declaration = super::Declaration {
    name: "auth0",
    capabilities: CAPABILITIES,
    id_case: crate::domain::IdCase::Exact,
    default_auth: super::AuthScheme::Bearer,
    parse_target,
    settings_fields: super::fields::fields_of::<Settings>,
};

/// Roles per page when reading, and per bulk DELETE (or POST, in an undo).
const PAGE: usize = 100;
const ROLES_CHUNK: usize = 20;
/// Auth0 applies a membership removal within ~5–10 s.
const CONSISTENCY_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub struct Auth0 {
    name: ProviderName,
    client: ProviderClient,
    policy: Settings,
}

impl Auth0 {
    pub fn new(client: ProviderClient, policy: &Settings) -> Self {
        Self {
            name: ProviderName::new_unchecked(client.provider()),
            client,
            policy: *policy,
        }
    }
}

impl Auth0 {
    /// Removes (`DELETE`) or assigns (`POST`, in an undo) a member's
    /// organization roles in bulk, a chunk per call; never an empty list,
    /// so no roles cause no call.
    async fn member_roles(
        &self,
        cx: &CallContext,
        t: &Target,
        method: Method,
        roles: &[RoleId],
    ) -> StripResult {
        let mut result = StripResult::default();
        for chunk in roles.chunks(ROLES_CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(RoleId::as_str).collect();
            let call = Call::new(
                method.clone(),
                &[
                    "organizations",
                    t.organization_id.as_str(),
                    "members",
                    t.user_id.as_str(),
                    "roles",
                ],
            )
            .json(serde_json::json!({ "roles": ids }));
            match self.client.send(cx, &call, classify::write).await {
                Ok(_) => result.removed.extend(chunk.iter().cloned()),
                Err(e) => {
                    result.error = Some(e);
                    return result;
                }
            }
        }
        result
    }
}

/// The tenant-wide revocations, each with the scope it needs.
const REVOCATIONS: [(&str, &str); 2] = [
    ("sessions", "delete:sessions"),
    ("refresh-tokens", "delete:refresh_tokens"),
];

#[derive(Deserialize)]
struct Role {
    id: String,
}

/// `GET …/roles` answers a bare array, or `{start, limit, total, roles}`
/// with `include_totals=true`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RolesPage {
    Bare(Vec<Role>),
    Totals {
        roles: Vec<Role>,
        total: Option<usize>,
    },
}

#[derive(Deserialize)]
struct MembersPage {
    #[serde(default)]
    members: Vec<Listed>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Listed {
    user_id: String,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct Org {
    id: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OrgsPage {
    Bare(Vec<Org>),
    Totals { organizations: Vec<Org> },
}

use super::invalid_response as invalid;

#[async_trait]
impl Connector for Auth0 {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    async fn plan(&self, cx: &CallContext, t: &Target) -> Result<Plan, StepError> {
        let mut roles: Vec<RoleId> = Vec::new();
        for page in 0.. {
            let call = Call::new(
                Method::GET,
                &[
                    "organizations",
                    t.organization_id.as_str(),
                    "members",
                    t.user_id.as_str(),
                    "roles",
                ],
            )
            .query("page", page.to_string())
            .query("per_page", PAGE.to_string())
            .query("include_totals", "true");
            let (answer, verdict) = self.client.send(cx, &call, classify::read_member).await?;
            if matches!(verdict, Verdict::AlreadyDone) {
                return Ok(Plan::not_a_member());
            }
            let parsed: RolesPage = serde_json::from_slice(&answer.body).map_err(invalid)?;
            let (batch, total) = match parsed {
                RolesPage::Bare(r) => (r, None),
                RolesPage::Totals { roles, total } => (roles, total),
            };
            let got = batch.len();
            for r in batch {
                check_safe(&r.id, &[]).map_err(|e| invalid(format!("role id {e}")))?;
                if !roles.iter().any(|x| x.as_str() == r.id) {
                    roles.push(RoleId::new_unchecked(r.id));
                }
            }
            let done = got < PAGE || total.is_some_and(|n| roles.len() >= n) || page >= 100;
            if done {
                break;
            }
        }
        let mut plan = Plan::member(roles);
        if self.policy.block_user {
            // What an undo may unblock: only a user this request blocks.
            plan.blocked = self.blocked(cx, t).await?;
        }
        Ok(plan)
    }

    async fn strip_roles(
        &self,
        cx: &CallContext,
        t: &Target,
        _plan: &Plan,
        roles: &[RoleId],
    ) -> StripResult {
        self.member_roles(cx, t, Method::DELETE, roles).await
    }

    async fn remove_membership(
        &self,
        cx: &CallContext,
        t: &Target,
        _plan: &Plan,
    ) -> Result<Change, StepError> {
        let call = Call::new(
            Method::DELETE,
            &["organizations", t.organization_id.as_str(), "members"],
        )
        .json(serde_json::json!({ "members": [t.user_id.as_str()] }));
        self.client.send(cx, &call, classify::write).await?;
        if self.policy.block_user {
            let call = Call::new(Method::PATCH, &["users", t.user_id.as_str()])
                .json(serde_json::json!({ "blocked": true }));
            self.client.send(cx, &call, classify::write).await?;
        }
        Ok(Change::Changed)
    }

    fn policy_steps(&self) -> bool {
        self.policy.revoke_sessions
    }

    async fn revoke_sessions(
        &self,
        cx: &CallContext,
        t: &Target,
    ) -> Result<Option<bool>, StepError> {
        if !self.policy.revoke_sessions {
            return Ok(None);
        }
        let mut revoked = false;
        for (what, scope) in REVOCATIONS {
            let call = Call::new(Method::DELETE, &["users", t.user_id.as_str(), what]);
            match self.client.send(cx, &call, classify::revoke).await {
                Ok((_, verdict)) => revoked |= matches!(verdict, Verdict::Done),
                Err(e) if e.code == classify::INSUFFICIENT_SCOPE => {
                    return Err(StepError::needs_attention(
                        "revoke_scope_missing",
                        format!(
                            "the Management API token lacks the scope {scope}, so the {} of {} were not revoked (their roles and membership are removed); grant {scope} to the application, then retry this request",
                            what.replace('-', " "),
                            t.user_id
                        ),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Some(revoked))
    }

    async fn verify(
        &self,
        cx: &CallContext,
        t: &Target,
        _plan: &Plan,
    ) -> Result<Option<Note>, StepError> {
        for page in 0..100 {
            let call = Call::new(Method::GET, &["users", t.user_id.as_str(), "organizations"])
                .query("page", page.to_string())
                .query("per_page", PAGE.to_string());
            let (answer, verdict) = self.client.send(cx, &call, classify::read_member).await?;
            if matches!(verdict, Verdict::AlreadyDone) {
                return Ok(None);
            }
            let orgs = match serde_json::from_slice::<OrgsPage>(&answer.body).map_err(invalid)? {
                OrgsPage::Bare(o) => o,
                OrgsPage::Totals { organizations } => organizations,
            };
            if orgs.iter().any(|o| o.id == t.organization_id.as_str()) {
                return Err(StepError::transient(
                    "membership_still_visible",
                    format!(
                        "{} is still listed in {} after removal (Auth0 applies removals within seconds)",
                        t.user_id, t.organization_id
                    ),
                    Some(CONSISTENCY_WAIT),
                )
                .needs_attention_when_exhausted());
            }
            if orgs.len() < PAGE {
                break;
            }
        }
        Ok(None)
    }

    async fn restore_plan(
        &self,
        cx: &CallContext,
        t: &Target,
        removal: &Removal,
    ) -> Result<Restore, StepError> {
        self.missing_now(cx, t, removal).await
    }

    async fn restore_membership(
        &self,
        cx: &CallContext,
        t: &Target,
        wanted: &Restore,
    ) -> Result<Change, StepError> {
        self.add_membership(cx, t, wanted).await
    }

    async fn restore_roles(
        &self,
        cx: &CallContext,
        t: &Target,
        _wanted: &Restore,
        roles: &[RoleId],
    ) -> StripResult {
        self.member_roles(cx, t, Method::POST, roles).await
    }

    async fn list_members(
        &self,
        cx: &CallContext,
        org: &crate::domain::OrgId,
    ) -> Result<Vec<Member>, StepError> {
        // Checkpoint paging: offset paging stops at 1,000 records.
        let mut members = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let mut call = Call::new(Method::GET, &["organizations", org.as_str(), "members"])
                .query("take", PAGE.to_string());
            if let Some(cursor) = &from {
                call = call.query("from", cursor.clone());
            }
            let (answer, _) = self.client.send(cx, &call, classify::write).await?;
            let page: MembersPage = serde_json::from_slice(&answer.body).map_err(invalid)?;
            for m in page.members {
                check_user_id(&m.user_id).map_err(|e| invalid(format!("a listed user id {e}")))?;
                members.push(Member {
                    user_id: m.user_id,
                    email: m.email,
                });
            }
            match page.next.filter(|n| !n.is_empty()) {
                Some(next) if from.as_deref() != Some(next.as_str()) => from = Some(next),
                _ => break,
            }
        }
        Ok(members)
    }

    async fn probe(&self) -> Result<Probe, StepError> {
        super::probe_with(
            &self.client,
            Call::new(Method::GET, &["organizations"]).query("per_page", "1"),
            |body| classify::parse_error(body) != Default::default(),
        )
        .await
    }
}
