//! Undo on SCIM (RFC 7644 §3.5.2): the account active again and back in
//! every group the offboarding took it out of. A deleted account cannot
//! be given back.

use reqwest::Method;

use super::{PATCH_OP, SCIM_JSON, Scim, classify};
use crate::connectors::http::Call;
use crate::connectors::{CallContext, Change, StepError, StripResult, restore};
use crate::domain::{Removal, Restore, RoleId, Target};

impl Scim {
    pub(super) async fn missing_now(
        &self,
        cx: &CallContext,
        t: &Target,
        removal: &Removal,
    ) -> Result<Restore, StepError> {
        let user = match removal.subject.as_deref() {
            Some(id) => self.read_user(cx, id).await?,
            None => self.find_user(cx, t).await?,
        };
        let Some(user) = user else {
            return Err(restore::deleted(t, removal));
        };
        let id = super::checked_id(user.id.clone(), "user")?;
        let held = self.groups_of(cx, &user).await?;
        let roles = removal.roles_missing(held.iter().map(String::as_str));
        Ok(Restore {
            membership: removal.membership && !user.active,
            roles,
            unblock: false,
            subject: Some(id),
        })
    }

    pub(super) async fn reactivate(
        &self,
        cx: &CallContext,
        t: &Target,
        wanted: &Restore,
    ) -> Result<Change, StepError> {
        if !wanted.membership {
            return Ok(Change::Unchanged);
        }
        let user = wanted.subject.as_deref().unwrap_or(t.user_id.as_str());
        let call = Self::set_active(user, true);
        self.client.send(cx, &call, classify::add).await?;
        Ok(Change::Changed)
    }

    pub(super) async fn add_to_groups(
        &self,
        cx: &CallContext,
        t: &Target,
        wanted: &Restore,
        groups: &[RoleId],
    ) -> StripResult {
        let user = wanted.subject.as_deref().unwrap_or(t.user_id.as_str());
        let mut result = StripResult::default();
        for g in groups {
            match self.add_to_group(cx, g.as_str(), user).await {
                Ok(()) => result.removed.push(g.clone()),
                Err(e) => {
                    result.error = Some(e);
                    return result;
                }
            }
        }
        result
    }

    /// One group membership back (the RFC's `members` add, which every
    /// server takes).
    async fn add_to_group(
        &self,
        cx: &CallContext,
        group: &str,
        user: &str,
    ) -> Result<(), StepError> {
        let call = || {
            Call::new(Method::PATCH, &["Groups", group])
                .content_type(SCIM_JSON)
                .json(serde_json::json!({
                    "schemas": [PATCH_OP],
                    "Operations": [{"op": "add", "path": "members", "value": [{"value": user}]}]
                }))
        };
        self.patch_group(cx, group, user, call, classify::add, |_| false)
            .await
            .map(|_| ())
    }
}
