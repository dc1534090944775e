//! Undo: what an offboarding request's own record says it removed, and
//! what of that an undo finds missing at the provider now.

use super::RoleId;

/// What one offboarding request removed, read from its checkpoints (those
/// of earlier attempts too) when an undo batch is made. Where the record
/// cannot tell whether a call that stopped half-way took effect, it counts
/// as removed: the undo reads the provider and restores only what is
/// missing there now.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Removal {
    /// Roles (SCIM: groups) the request took away, in the order it did.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The membership was removed (SCIM: the account deactivated or
    /// deleted; Aitronos: with the resources moved to `department`).
    #[serde(default)]
    pub membership: bool,
    /// Auth0: this request blocked the user, who was not blocked before.
    #[serde(default)]
    pub blocked: bool,
    /// Sessions and refresh tokens were revoked: not restorable.
    #[serde(default)]
    pub sessions_revoked: bool,
    /// The provider's own id for the person, where the plan resolved one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Where the person's resources went (Aitronos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
}

impl Removal {
    /// Whether there is anything for an undo to give back.
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty() && !self.membership && !self.blocked
    }

    /// The removed roles that `held` (what the provider shows now) lacks:
    /// what an undo gives back, and no more.
    pub fn roles_missing<'a>(
        &self,
        held: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Vec<RoleId> {
        self.roles
            .iter()
            .filter(|r| !held.clone().into_iter().any(|h| h == r.as_str()))
            .map(|r| RoleId::new_unchecked(r.clone()))
            .collect()
    }

    /// What was removed, in words: "the membership, roles a, b".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.membership {
            parts.push("the membership".to_owned());
        }
        if !self.roles.is_empty() {
            parts.push(format!("the roles {}", self.roles.join(", ")));
        }
        if self.blocked {
            parts.push("the unblocked sign-in".to_owned());
        }
        parts.join(", ")
    }
}

/// What an undo finds missing now, out of a [`Removal`]: the calls it will
/// make. Empty when everything is back already.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Restore {
    /// Add the membership back (SCIM: set `active` again).
    #[serde(default)]
    pub membership: bool,
    /// Roles (groups) to give back.
    #[serde(default)]
    pub roles: Vec<RoleId>,
    /// Auth0: unblock the user.
    #[serde(default)]
    pub unblock: bool,
    /// The provider's own id for the person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl Restore {
    pub fn is_empty(&self) -> bool {
        !self.membership && self.roles.is_empty() && !self.unblock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_says_what_it_took() {
        assert!(Removal::default().is_empty());
        let r = Removal {
            roles: vec!["rol_a".into(), "rol_b".into()],
            membership: true,
            ..Removal::default()
        };
        assert!(!r.is_empty());
        assert_eq!(r.describe(), "the membership, the roles rol_a, rol_b");
        let only_revoked = Removal {
            sessions_revoked: true,
            ..Removal::default()
        };
        assert!(only_revoked.is_empty(), "sessions cannot be given back");
    }
}
