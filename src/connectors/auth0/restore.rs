//! Undo on Auth0 (`../shared/specs`, extended under `tests/specs/`): the
//! membership back (`POST …/members`), exactly the removed roles back
//! (`POST …/members/{user}/roles`), and the user unblocked where the
//! offboarding blocked them (`PATCH /users/{user}`).

use reqwest::Method;
use serde::Deserialize;

use super::{Auth0, classify};
use crate::connectors::http::{Call, Verdict};
use crate::connectors::{CallContext, Change, Connector, StepError, restore};
use crate::domain::{Removal, Restore, RoleId, Target};

#[derive(Deserialize)]
struct UserFlags {
    #[serde(default)]
    blocked: bool,
}

impl Auth0 {
    /// Whether the user is blocked now; `None` when Auth0 has no such user.
    pub(super) async fn blocked(
        &self,
        cx: &CallContext,
        t: &Target,
    ) -> Result<Option<bool>, StepError> {
        let call = Call::new(Method::GET, &["users", t.user_id.as_str()])
            .query("fields", "user_id,blocked")
            .query("include_fields", "true");
        let (answer, verdict) = self.client.send(cx, &call, classify::read_member).await?;
        if matches!(verdict, Verdict::AlreadyDone) {
            return Ok(None);
        }
        let flags: UserFlags = crate::connectors::parse_json(&answer.body)?;
        Ok(Some(flags.blocked))
    }

    pub(super) async fn missing_now(
        &self,
        cx: &CallContext,
        t: &Target,
        removal: &Removal,
    ) -> Result<Restore, StepError> {
        let Some(blocked) = self.blocked(cx, t).await? else {
            return Err(restore::deleted(t, removal));
        };
        let now = self.plan(cx, t).await?;
        let roles = removal.roles_missing(now.role_ids.iter().map(RoleId::as_str));
        Ok(Restore {
            membership: removal.membership && !now.is_member,
            roles,
            unblock: removal.blocked && blocked,
            subject: None,
        })
    }

    pub(super) async fn add_membership(
        &self,
        cx: &CallContext,
        t: &Target,
        wanted: &Restore,
    ) -> Result<Change, StepError> {
        let mut change = Change::Unchanged;
        if wanted.membership {
            let call = Call::new(
                Method::POST,
                &["organizations", t.organization_id.as_str(), "members"],
            )
            .json(serde_json::json!({ "members": [t.user_id.as_str()] }));
            self.client.send(cx, &call, classify::write).await?;
            change = Change::Changed;
        }
        if wanted.unblock {
            let call = Call::new(Method::PATCH, &["users", t.user_id.as_str()])
                .json(serde_json::json!({ "blocked": false }));
            self.client.send(cx, &call, classify::write).await?;
            change = Change::Changed;
        }
        Ok(change)
    }
}
