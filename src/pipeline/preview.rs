//! A held preview and the plan applied after its release: the plan step's
//! checkpoint says whether it is a preview, and a released preview reads
//! the provider again and removes only what was looked at.

use serde::{Deserialize, Serialize};

use crate::connectors::Plan;
use crate::domain::RoleId;

/// The plan step's checkpoint. Older checkpoints are a bare [`Plan`], which
/// reads as one that is neither a preview nor changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PlanCheckpoint {
    #[serde(flatten)]
    pub plan: Plan,
    /// Planned for a held batch: nothing may be removed until it is
    /// released, and then only what this plan shows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preview: bool,
    /// What the provider showed at release beyond the preview.
    #[serde(default, skip_serializing_if = "Left::is_empty")]
    pub left: Left,
}

/// Access found at release that the preview did not show: left in place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Left {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleId>,
    /// The membership stays: the preview did not find it, or removing it
    /// would take the roles that appeared since with it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub membership: bool,
    /// The row now resolves to another account than the one previewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_account: Option<String>,
}

impl Left {
    pub(super) fn is_empty(&self) -> bool {
        self.roles.is_empty() && !self.membership && self.other_account.is_none()
    }

    /// Whether the membership stays, so a read-back of it must not fail
    /// the request.
    pub(super) fn keeps_membership(&self) -> bool {
        self.membership || self.other_account.is_some()
    }

    /// What a person must look at, for the report.
    pub(super) fn describe(&self) -> String {
        if let Some(other) = &self.other_account {
            return format!(
                "the row now names another account ({other}) than the one previewed; nothing was removed"
            );
        }
        let appeared = if self.roles.is_empty() {
            "the membership".to_owned()
        } else {
            let roles: Vec<&str> = self.roles.iter().map(RoleId::as_str).collect();
            format!("role(s) {}", roles.join(", "))
        };
        let kept = if self.membership && !self.roles.is_empty() {
            ", with the membership,"
        } else {
            ""
        };
        format!(
            "removed only what was previewed; {appeared} appeared after the preview and{kept} stayed in place: review this person and submit them again"
        )
    }
}

/// The plan a released preview applies: what was previewed and is still
/// there, and what appeared since (left alone).
pub(super) fn applied(previewed: &Plan, current: Plan) -> (Plan, Left) {
    if let (Some(was), Some(now)) = (&previewed.subject, &current.subject)
        && was != now
    {
        let left = Left {
            other_account: Some(now.clone()),
            ..Left::default()
        };
        let nothing = Plan {
            subject: current.subject,
            emails: current.emails,
            ..Plan::not_a_member()
        };
        return (nothing, left);
    }
    let (roles, extra): (Vec<RoleId>, Vec<RoleId>) = current
        .role_ids
        .iter()
        .cloned()
        .partition(|r| previewed.role_ids.contains(r));
    // Removing the membership would take what appeared with it.
    let remove_membership = current.is_member && previewed.is_member && extra.is_empty();
    let left = Left {
        membership: current.is_member && !remove_membership,
        roles: extra,
        other_account: None,
    };
    let plan = Plan {
        is_member: remove_membership,
        role_ids: roles,
        subject: current.subject,
        emails: current.emails,
        blocked: current.blocked,
    };
    (plan, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(ids: &[&str]) -> Vec<RoleId> {
        ids.iter().map(|r| RoleId::new_unchecked(*r)).collect()
    }

    #[test]
    fn a_role_added_after_the_preview_is_left() {
        let previewed = Plan::member(roles(&["role_a", "role_b"]));
        let current = Plan::member(roles(&["role_b", "role_c"]));
        let (plan, left) = applied(&previewed, current);
        assert_eq!(plan.role_ids, roles(&["role_b"]));
        assert!(!plan.is_member, "the membership would take role_c with it");
        assert_eq!(left.roles, roles(&["role_c"]));
        assert!(left.keeps_membership());
        assert!(left.describe().contains("role_c"), "{}", left.describe());
    }

    #[test]
    fn nothing_new_leaves_nothing() {
        let previewed = Plan::member(roles(&["role_a"]));
        let (plan, left) = applied(&previewed, Plan::member(roles(&["role_a"])));
        assert_eq!(plan, previewed);
        assert!(left.is_empty());
        let (plan, left) = applied(&Plan::not_a_member(), Plan::member(Vec::new()));
        assert!(!plan.is_member, "a membership not previewed stays");
        assert!(left.keeps_membership());
    }

    #[test]
    fn another_account_removes_nothing() {
        let mut previewed = Plan::member(roles(&["g1"]));
        previewed.subject = Some("u-1".into());
        let mut current = Plan::member(roles(&["g1"]));
        current.subject = Some("u-2".into());
        let (plan, left) = applied(&previewed, current);
        assert!(!plan.is_member && plan.role_ids.is_empty());
        assert_eq!(left.other_account.as_deref(), Some("u-2"));
    }

    #[test]
    fn a_bare_plan_reads_as_a_checkpoint() {
        let bare = serde_json::json!({"is_member": true, "role_ids": ["role_a"]});
        let cp: PlanCheckpoint = serde_json::from_value(bare.clone()).unwrap();
        assert!(!cp.preview && cp.left.is_empty());
        assert_eq!(serde_json::to_value(&cp).unwrap(), bare);
    }
}
