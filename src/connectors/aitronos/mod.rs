//! Aitronos organization API (`../shared/api-contracts.md`, "Aitronos"): plan from
//! effective permissions, one DELETE per role, removal with resource
//! transfer, verification by reading the member.

mod classify;
mod intake;
mod settings;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;

use super::http::{Call, Verdict};
use super::{
    CallContext, Change, Connector, Member, Note, Plan, Probe, ProviderClient, StepError,
    StripResult, parse_json,
};
use crate::domain::ids::check_prefixed;
use crate::domain::{ProviderName, Removal, Restore, RoleId, Target};

pub use intake::parse_target;
pub use settings::Settings;

/// What this kind can do, for reconciliation and config validation.
/// Aitronos lists members and transfers a leaver's resources on removal; it documents no call that gives access back.
pub const CAPABILITIES: super::Capabilities = super::Capabilities {
    list_members: true,
    transfer_resources: true,
    undo: false,
    find_by_email: false,
    client_credentials: false,
};

/// What the rest of the program reads about this kind.
pub const DECLARATION: super::Declaration = super::Declaration {
    name: "aitronos",
    capabilities: CAPABILITIES,
    id_case: crate::domain::IdCase::Exact,
    default_auth: super::AuthScheme::ApiKey,
    parse_target,
    settings_fields: super::fields::fields_of::<Settings>,
};

/// The Aitronos connector.
#[derive(Debug)]
pub struct Aitronos {
    name: ProviderName,
    client: ProviderClient,
    prune_custom_roles: bool,
}

impl Aitronos {
    pub fn new(client: ProviderClient, settings: &Settings) -> Self {
        Self {
            name: ProviderName::new_unchecked(client.provider()),
            client,
            prune_custom_roles: settings.prune_custom_roles,
        }
    }

    /// Deletes one custom role if it is now empty; a note when it was left.
    async fn prune_role(
        &self,
        cx: &CallContext,
        t: &Target,
        role: &RoleId,
    ) -> Result<Option<String>, StepError> {
        let path = [
            "organizations",
            t.organization_id.as_str(),
            "roles",
            role.as_str(),
        ];
        let (answer, verdict) = self
            .client
            .send(cx, &Call::new(Method::GET, &path), classify::remove_role)
            .await?;
        if matches!(verdict, Verdict::AlreadyDone) {
            return Ok(None); // the role is gone already
        }
        let info: RoleInfo = parse_json(&answer.body)?;
        if !info.is_custom || info.is_system_role {
            return Ok(None); // system roles are never pruned
        }
        if info.member_count.unwrap_or(0) > 0 {
            return Ok(Some(format!(
                "custom role {role} kept: it still has members"
            )));
        }
        match self
            .client
            .send(cx, &Call::new(Method::DELETE, &path), classify::delete_role)
            .await
        {
            Ok(_) => Ok(None),
            Err(e) if e.class == super::ErrorClass::NeedsAttention => Ok(Some(format!(
                "custom role {role} kept: {} ({})",
                e.message, e.code
            ))),
            Err(e) => Err(e),
        }
    }
}

/// `POST …/users` answers in the SDK's shape (`users`, `total_users_count`)
/// or the docs' shape (`members`, `total`). One flat struct rather than an
/// untagged enum: serde buffers a whole page to try an untagged variant,
/// which cost a million-member listing a second copy of every page.
#[derive(Deserialize)]
struct MembersPage {
    #[serde(default)]
    users: Option<Vec<Listed>>,
    #[serde(default)]
    total_users_count: Option<usize>,
    #[serde(default)]
    members: Option<Vec<Listed>>,
    #[serde(default)]
    total: Option<usize>,
}

#[derive(Deserialize)]
struct Listed {
    user_id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    account_state: Option<String>,
}

#[derive(Deserialize)]
struct RoleInfo {
    #[serde(default)]
    is_custom: bool,
    #[serde(default)]
    is_system_role: bool,
    #[serde(default)]
    member_count: Option<u64>,
}

#[derive(Deserialize)]
struct EffectivePermissions {
    #[serde(default)]
    role_ids: Vec<String>,
}

#[derive(Deserialize)]
struct MemberDetail {
    #[serde(default)]
    account_state: Option<String>,
    #[serde(default)]
    deleted_at: Option<serde_json::Value>,
}

#[async_trait]
impl Connector for Aitronos {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    async fn plan(&self, cx: &CallContext, t: &Target) -> Result<Plan, StepError> {
        let call = Call::new(
            Method::GET,
            &[
                "organizations",
                t.organization_id.as_str(),
                "users",
                t.user_id.as_str(),
                "effective-permissions",
            ],
        );
        let (answer, verdict) = self.client.send(cx, &call, classify::read_member).await?;
        if matches!(verdict, Verdict::AlreadyDone) {
            return Ok(Plan::not_a_member());
        }
        let body: EffectivePermissions = parse_json(&answer.body)?;
        let mut role_ids = Vec::with_capacity(body.role_ids.len());
        for role in body.role_ids {
            // Provider answers are untrusted too: a role id goes into a path.
            check_prefixed(&role, "role_").map_err(|e| {
                StepError::permanent(
                    "invalid_provider_response",
                    format!("the provider returned a role id that {e}"),
                )
            })?;
            if !role_ids.iter().any(|r: &RoleId| r.as_str() == role) {
                role_ids.push(RoleId::new_unchecked(role));
            }
        }
        Ok(Plan::member(role_ids))
    }

    async fn strip_roles(
        &self,
        cx: &CallContext,
        t: &Target,
        _plan: &Plan,
        roles: &[RoleId],
    ) -> StripResult {
        let mut result = StripResult::default();
        for role in roles {
            let call = Call::new(
                Method::DELETE,
                &[
                    "organizations",
                    t.organization_id.as_str(),
                    "roles",
                    role.as_str(),
                    "members",
                    t.user_id.as_str(),
                ],
            );
            match self.client.send(cx, &call, classify::remove_role).await {
                Ok((_, Verdict::Done)) => result.removed.push(role.clone()),
                Ok(_) => {}
                Err(mut e) => {
                    if e.code == classify::LAST_OWNER {
                        e.message = format!(
                            "{} is the last owner of {} (role {}): make another member an owner, then submit this row again; the membership was not removed",
                            t.user_id, t.organization_id, role
                        );
                    }
                    result.error = Some(e);
                    return result;
                }
            }
        }
        result
    }

    async fn remove_membership(
        &self,
        cx: &CallContext,
        t: &Target,
        _plan: &Plan,
    ) -> Result<Change, StepError> {
        let mut body = serde_json::json!({ "confirm": true });
        if let Some(dept) = &t.transfer_to_department_id {
            body["transfer_resources_to_department_id"] = dept.as_str().into();
        }
        let call = Call::new(
            Method::DELETE,
            &[
                "organizations",
                t.organization_id.as_str(),
                "users",
                t.user_id.as_str(),
            ],
        )
        .json(body);
        let (_, verdict) = self
            .client
            .send(cx, &call, classify::remove_member)
            .await
            .map_err(|mut e| {
                if e.code == classify::LAST_OWNER {
                    e.message = format!(
                        "{} is the last owner of {}: make another member an owner, then submit this row again",
                        t.user_id, t.organization_id
                    );
                }
                e
            })?;
        Ok(match verdict {
            Verdict::Done => Change::Changed,
            _ => Change::Unchanged,
        })
    }

    fn policy_steps(&self) -> bool {
        self.prune_custom_roles
    }

    async fn prune(
        &self,
        cx: &CallContext,
        t: &Target,
        plan: &Plan,
    ) -> Result<Option<Vec<String>>, StepError> {
        let mut notes = Vec::new();
        if !self.prune_custom_roles {
            return Ok(None);
        }
        for role in &plan.role_ids {
            if let Some(note) = self.prune_role(cx, t, role).await? {
                notes.push(note);
            }
        }
        Ok(Some(notes))
    }

    async fn verify(
        &self,
        cx: &CallContext,
        t: &Target,
        _plan: &Plan,
    ) -> Result<Option<Note>, StepError> {
        let call = Call::new(
            Method::GET,
            &[
                "organizations",
                t.organization_id.as_str(),
                "users",
                t.user_id.as_str(),
            ],
        );
        let (answer, verdict) = self.client.send(cx, &call, classify::read_member).await?;
        if matches!(verdict, Verdict::AlreadyDone) {
            return Ok(None); // no such member: nothing left
        }
        let member: MemberDetail = parse_json(&answer.body)?;
        let state = member
            .account_state
            .unwrap_or_default()
            .to_ascii_lowercase();
        let deleted = member.deleted_at.is_some_and(|v| !v.is_null());
        match state.as_str() {
            _ if deleted => Ok(None),
            "deleted" | "removed" | "inactive" | "deactivated" | "disabled" => Ok(None),
            "active" | "invited" | "pending" | "suspended" => Err(StepError::needs_attention(
                "membership_still_present",
                format!(
                    "{} is still a member of {} (account_state {state}) after removal",
                    t.user_id, t.organization_id
                ),
            )),
            other => Err(StepError::needs_attention(
                "unexpected_account_state",
                format!(
                    "cannot tell whether {} left {}: account_state is {:?}",
                    t.user_id,
                    t.organization_id,
                    crate::domain::truncate(other)
                ),
            )),
        }
    }

    async fn list_members(
        &self,
        cx: &CallContext,
        org: &crate::domain::OrgId,
    ) -> Result<Vec<Member>, StepError> {
        const TAKE: usize = 1000;
        let mut members = Vec::new();
        let mut skip = 0;
        loop {
            let call = Call::new(Method::POST, &["organizations", org.as_str(), "users"])
                .json(serde_json::json!({"skip": skip, "take": TAKE, "include_inactive": false}));
            let (answer, _) = self.client.send(cx, &call, classify::read_member).await?;
            let page: MembersPage = parse_json(&answer.body)?;
            let (batch, total) = match page {
                MembersPage {
                    users: Some(users),
                    total_users_count,
                    ..
                } => (users, total_users_count),
                MembersPage {
                    members: Some(members),
                    total,
                    ..
                } => (members, total),
                _ => {
                    return Err(StepError::permanent(
                        "invalid_provider_response",
                        "the member listing has neither `users` nor `members`",
                    ));
                }
            };
            let got = batch.len();
            for m in batch {
                let active = m
                    .account_state
                    .as_deref()
                    .is_none_or(|s| s.eq_ignore_ascii_case("active"));
                if !active {
                    continue;
                }
                check_prefixed(&m.user_id, "usr_").map_err(|e| {
                    StepError::permanent(
                        "invalid_provider_response",
                        format!("a listed user id {e}"),
                    )
                })?;
                members.push(Member {
                    user_id: m.user_id,
                    email: m.email,
                });
            }
            skip += got;
            if got == 0 || total.is_some_and(|t| skip >= t) {
                break;
            }
        }
        Ok(members)
    }

    async fn restore_plan(
        &self,
        _cx: &CallContext,
        t: &Target,
        removal: &Removal,
    ) -> Result<Restore, StepError> {
        Err(super::restore::manual(
            "Aitronos documents no call that gives a removed member back",
            t,
            removal,
        ))
    }

    async fn probe(&self) -> Result<Probe, StepError> {
        // No documented health route: a documented read of a role that does
        // not exist is harmless, and its 404 (or 401) tells reachability and
        // credentials apart.
        let call = Call::new(
            Method::GET,
            &[
                "organizations",
                "org_offboard_probe",
                "roles",
                "role_offboard_probe",
            ],
        );
        super::probe_with(&self.client, call, |body| {
            classify::parse_error(body).code.is_some()
        })
        .await
    }
}
