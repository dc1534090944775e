//! SCIM 2.0 service providers (RFC 7643/7644; `../shared/api-contracts.md`, "SCIM"):
//! find the user (by id, or by `userName` for an email), remove them from
//! each group with the RFC PATCH (falling back to the `members` list form
//! when the server rejects value filters), then deactivate or delete.

mod classify;
mod intake;
mod restore;
mod settings;

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;

use super::http::{Answer, Call, Classified, Verdict};
use super::{
    CallContext, Change, Connector, Member, Note, Plan, Probe, ProviderClient, StepError,
    StripResult,
};
use crate::domain::ids::check_safe;
use crate::domain::{ProviderName, Removal, Restore, RoleId, Target};

pub use intake::parse_target;
pub use settings::{Deprovision, Settings};

/// What this kind can do, for reconciliation and config validation.
/// SCIM lists members through groups and gives group memberships and an account back.
pub const CAPABILITIES: super::Capabilities = super::Capabilities {
    list_members: true,
    transfer_resources: false,
    undo: true,
    find_by_email: true,
    client_credentials: false,
};

/// What the rest of the program reads about this kind.
pub const DECLARATION: super::Declaration = super::Declaration {
    name: "scim",
    capabilities: CAPABILITIES,
    id_case: crate::domain::IdCase::Exact,
    default_auth: super::AuthScheme::Bearer,
    parse_target,
    settings_fields: super::fields::fields_of::<Settings>,
};

const SCIM_JSON: &str = "application/scim+json";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const PAGE: usize = 100;
/// Re-reads after a 412 before giving the wait back to the queue.
const ETAG_RETRIES: usize = 3;

#[derive(Debug)]
pub struct Scim {
    name: ProviderName,
    client: ProviderClient,
    deprovision: Deprovision,
    /// Set once the server refused a `members[value eq …]` path: from then
    /// on this connection uses the `members` + `value` list form.
    list_form: AtomicBool,
}

#[derive(Deserialize)]
struct User {
    id: String,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    groups: Vec<Ref>,
    #[serde(default, rename = "userName")]
    user_name: Option<String>,
    #[serde(default)]
    emails: Vec<Email>,
}

#[derive(Deserialize)]
struct Email {
    #[serde(default)]
    value: Option<String>,
}

impl User {
    /// Every email the provider holds for the user: a `userName` that is
    /// one, and the `emails` values.
    fn emails(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        let names = self.user_name.iter().filter(|n| n.contains('@'));
        for e in names.chain(self.emails.iter().filter_map(|e| e.value.as_ref())) {
            if !all.iter().any(|a| a.eq_ignore_ascii_case(e)) {
                all.push(e.clone());
            }
        }
        all
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct Ref {
    value: String,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "T: serde::de::DeserializeOwned"))]
struct ListResponse<T> {
    #[serde(default, rename = "totalResults")]
    total_results: Option<usize>,
    #[serde(default = "Vec::new", rename = "Resources")]
    resources: Vec<T>,
}

use super::invalid_response as invalid;

/// A string inside a SCIM filter: quotes and backslashes escaped, so no
/// cell can close the string and add a clause.
fn filter_string(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

fn checked_id(id: String, what: &str) -> Result<String, StepError> {
    check_safe(&id, intake::ID_EXTRA).map_err(|e| invalid(format!("{what} id {e}")))?;
    Ok(id)
}

impl Scim {
    pub fn new(client: ProviderClient, settings: &Settings) -> Self {
        Self {
            name: ProviderName::new_unchecked(client.provider()),
            client,
            deprovision: settings.deprovision,
            list_form: AtomicBool::new(false),
        }
    }

    /// The user, or `None` when there is none (already gone).
    async fn find_user(&self, cx: &CallContext, t: &Target) -> Result<Option<User>, StepError> {
        let user = t.user_id.as_str();
        if user.contains('@') {
            let call = Call::new(Method::GET, &["Users"])
                .query("filter", format!("userName eq {}", filter_string(user)));
            let (answer, _) = self.client.send(cx, &call, classify::read).await?;
            let list: ListResponse<User> = serde_json::from_slice(&answer.body).map_err(invalid)?;
            return match list.resources.len() {
                0 => Ok(None),
                1 => Ok(list.resources.into_iter().next()),
                n => Err(StepError::needs_attention(
                    "ambiguous_user",
                    format!("{n} SCIM users have userName {user}: give the user's id instead"),
                )),
            };
        }
        self.read_user(cx, user).await
    }

    async fn read_user(&self, cx: &CallContext, id: &str) -> Result<Option<User>, StepError> {
        let call = Call::new(Method::GET, &["Users", id]);
        let (answer, verdict) = self.client.send(cx, &call, classify::gone_is_done).await?;
        if matches!(verdict, Verdict::AlreadyDone) {
            return Ok(None);
        }
        serde_json::from_slice(&answer.body)
            .map(Some)
            .map_err(invalid)
    }

    /// Groups holding the user: the RFC filter, or the user's own `groups`
    /// attribute where the server does not support that filter.
    async fn groups_of(&self, cx: &CallContext, user: &User) -> Result<Vec<String>, StepError> {
        let mut groups = Vec::new();
        let mut start = 1;
        loop {
            let call = Call::new(Method::GET, &["Groups"])
                .query(
                    "filter",
                    format!("members[value eq {}]", filter_string(&user.id)),
                )
                .query("attributes", "id,displayName")
                .query("startIndex", start.to_string())
                .query("count", PAGE.to_string());
            let answer = match self.client.send(cx, &call, classify::read).await {
                Ok((a, _)) => a,
                Err(e)
                    if matches!(
                        e.code.as_str(),
                        "invalidFilter" | "http_501" | "invalidPath"
                    ) || e.code == "http_400" =>
                {
                    return Ok(user.groups.iter().map(|g| g.value.clone()).collect());
                }
                Err(e) => return Err(e),
            };
            let list: ListResponse<Ref> = serde_json::from_slice(&answer.body)
                .or_else(|_| {
                    // Some servers return full groups with `id` instead of `value`.
                    #[derive(Deserialize)]
                    struct G {
                        id: String,
                    }
                    serde_json::from_slice::<ListResponse<G>>(&answer.body).map(|l| ListResponse {
                        total_results: l.total_results,
                        resources: l
                            .resources
                            .into_iter()
                            .map(|g| Ref { value: g.id })
                            .collect(),
                    })
                })
                .map_err(invalid)?;
            let got = list.resources.len();
            groups.extend(list.resources.into_iter().map(|r| r.value));
            let total = list.total_results.unwrap_or(groups.len());
            if got == 0 || groups.len() >= total || start > 100_000 {
                break;
            }
            start += got;
        }
        Ok(groups)
    }

    fn removal(&self, group: &str, user: &str, list_form: bool) -> Call {
        let op = if list_form {
            serde_json::json!({"op": "remove", "path": "members", "value": [{"value": user}]})
        } else {
            serde_json::json!({"op": "remove", "path": format!("members[value eq {}]", filter_string(user))})
        };
        Call::new(Method::PATCH, &["Groups", group])
            .content_type(SCIM_JSON)
            .json(serde_json::json!({"schemas": [PATCH_OP], "Operations": [op]}))
    }

    /// Removes one membership; true when it changed something.
    async fn remove_from_group(
        &self,
        cx: &CallContext,
        group: &str,
        user: &str,
    ) -> Result<bool, StepError> {
        // The form each attempt used: another request may switch the
        // connection to the list form while this one's call is out.
        let used_list_form = AtomicBool::new(false);
        let verdict = self
            .patch_group(
                cx,
                group,
                user,
                || {
                    let list_form = self.list_form.load(Ordering::Relaxed);
                    used_list_form.store(list_form, Ordering::Relaxed);
                    self.removal(group, user, list_form)
                },
                classify::remove_member,
                |e| {
                    // A server that refuses value filters: the list form from
                    // now on, at once.
                    let refused = !used_list_form.load(Ordering::Relaxed)
                        && matches!(e.code.as_str(), "invalidPath" | "invalidFilter");
                    if refused {
                        self.list_form.store(true, Ordering::Relaxed);
                    }
                    refused
                },
            )
            .await?;
        Ok(matches!(verdict, Verdict::Done))
    }

    /// Sends a PATCH of `group`'s members built by `call`, again at once
    /// when `again` says so, and after a 412 with the group's fresh ETag in
    /// `If-Match`, a few times.
    async fn patch_group(
        &self,
        cx: &CallContext,
        group: &str,
        user: &str,
        call: impl Fn() -> Call,
        classify: fn(&Answer) -> Classified,
        again: impl Fn(&StepError) -> bool,
    ) -> Result<Verdict, StepError> {
        let mut etag: Option<String> = None;
        for _ in 0..=ETAG_RETRIES {
            let mut call = call();
            if let Some(tag) = &etag {
                call = call.header("if-match", tag.clone());
            }
            match self.client.send(cx, &call, classify).await {
                Ok((_, verdict)) => return Ok(verdict),
                Err(e) if again(&e) => {}
                Err(e) if e.code == "http_412" => {
                    etag = self.group_etag(cx, group).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StepError::transient(
            "etag_conflict",
            format!("group {group} kept changing while we changed {user}'s membership"),
            None,
        ))
    }

    /// `PATCH /Users/{id}` replacing `active`.
    fn set_active(user: &str, active: bool) -> Call {
        Call::new(Method::PATCH, &["Users", user])
            .content_type(SCIM_JSON)
            .json(serde_json::json!({
                "schemas": [PATCH_OP],
                "Operations": [{"op": "replace", "path": "active", "value": active}]
            }))
    }

    async fn group_etag(&self, cx: &CallContext, group: &str) -> Result<Option<String>, StepError> {
        let call = Call::new(Method::GET, &["Groups", group]).query("attributes", "id");
        let (answer, _) = self.client.send(cx, &call, classify::gone_is_done).await?;
        Ok(etag_of(&answer))
    }
}

fn etag_of(answer: &Answer) -> Option<String> {
    answer
        .headers
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[async_trait]
impl Connector for Scim {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    /// No session revocation and no pruning here.
    fn policy_steps(&self) -> bool {
        false
    }

    async fn plan(&self, cx: &CallContext, t: &Target) -> Result<Plan, StepError> {
        let Some(user) = self.find_user(cx, t).await? else {
            return Ok(Plan::not_a_member());
        };
        let id = checked_id(user.id.clone(), "user")?;
        let mut roles = Vec::new();
        for g in self.groups_of(cx, &user).await? {
            let g = checked_id(g, "group")?;
            if !roles.iter().any(|r: &RoleId| r.as_str() == g) {
                roles.push(RoleId::new_unchecked(g));
            }
        }
        let present = match self.deprovision {
            Deprovision::Deactivate => user.active,
            Deprovision::Delete => true,
        };
        Ok(Plan {
            is_member: present,
            role_ids: roles,
            subject: Some(id),
            emails: user.emails(),
            blocked: None,
        })
    }

    async fn strip_roles(
        &self,
        cx: &CallContext,
        t: &Target,
        plan: &Plan,
        groups: &[RoleId],
    ) -> StripResult {
        let user = plan.subject.as_deref().unwrap_or(t.user_id.as_str());
        let mut result = StripResult::default();
        for g in groups {
            match self.remove_from_group(cx, g.as_str(), user).await {
                Ok(true) => result.removed.push(g.clone()),
                Ok(false) => {}
                Err(e) => {
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
        plan: &Plan,
    ) -> Result<Change, StepError> {
        let user = plan.subject.as_deref().unwrap_or(t.user_id.as_str());
        let call = match self.deprovision {
            Deprovision::Deactivate => Self::set_active(user, false),
            Deprovision::Delete => Call::new(Method::DELETE, &["Users", user]),
        };
        let (_, verdict) = self.client.send(cx, &call, classify::gone_is_done).await?;
        Ok(match verdict {
            Verdict::Done => Change::Changed,
            _ => Change::Unchanged,
        })
    }

    async fn verify(
        &self,
        cx: &CallContext,
        t: &Target,
        plan: &Plan,
    ) -> Result<Option<Note>, StepError> {
        let Some(id) = plan.subject.as_deref() else {
            return Ok(None); // no such user at planning time
        };
        match self.read_user(cx, id).await? {
            None => Ok(None),
            Some(u) if !u.active && self.deprovision == Deprovision::Deactivate => Ok(None),
            Some(_) => Err(StepError::needs_attention(
                "account_still_active",
                format!(
                    "SCIM user {} ({}) is still {} after deprovisioning",
                    id,
                    t.user_id,
                    if self.deprovision == Deprovision::Delete {
                        "present"
                    } else {
                        "active"
                    }
                ),
            )),
        }
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
        self.reactivate(cx, t, wanted).await
    }

    async fn restore_roles(
        &self,
        cx: &CallContext,
        t: &Target,
        wanted: &Restore,
        groups: &[RoleId],
    ) -> StripResult {
        self.add_to_groups(cx, t, wanted, groups).await
    }

    async fn list_members(
        &self,
        cx: &CallContext,
        _org: &crate::domain::OrgId,
    ) -> Result<Vec<Member>, StepError> {
        #[derive(Deserialize)]
        struct Listed {
            id: String,
            #[serde(default, rename = "userName")]
            user_name: Option<String>,
            #[serde(default = "yes")]
            active: bool,
        }
        let mut members = Vec::new();
        let mut start = 1;
        loop {
            let call = Call::new(Method::GET, &["Users"])
                .query("startIndex", start.to_string())
                .query("count", PAGE.to_string());
            let (answer, _) = self.client.send(cx, &call, classify::read).await?;
            let list: ListResponse<Listed> =
                serde_json::from_slice(&answer.body).map_err(invalid)?;
            let got = list.resources.len();
            for u in list.resources.into_iter().filter(|u| u.active) {
                members.push(Member {
                    user_id: checked_id(u.id, "user")?,
                    email: u.user_name,
                });
            }
            start += got;
            if got == 0 || list.total_results.is_some_and(|t| start > t) || start > 10_000_000 {
                break;
            }
        }
        Ok(members)
    }

    async fn probe(&self) -> Result<Probe, StepError> {
        super::probe_with(
            &self.client,
            Call::new(Method::GET, &["Users"]).query("count", "1"),
            classify::is_scim_error,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::filter_string;

    #[test]
    fn filter_strings_cannot_be_escaped() {
        assert_eq!(filter_string("a@b.c"), "\"a@b.c\"");
        assert_eq!(
            filter_string("x\" or userName pr \""),
            "\"x\\\" or userName pr \\\"\""
        );
        assert_eq!(filter_string("a\\"), "\"a\\\\\"");
    }
}
