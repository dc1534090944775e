//! The Aitronos writes an offboarding makes, with the vendor's guards:
//! soft-deleted members cannot change, the last Owner stays, system roles
//! and roles still in use cannot be deleted.

use axum::http::StatusCode;
use chrono::Utc;

use super::{OrgStore, index};
use crate::sim::directory::{ACTIVE, AitronosRole, DELETED};
use crate::sim::problem::Problem;

impl OrgStore {
    /// Take one role away from a current member.
    pub(crate) fn remove_role(&mut self, role_id: &str, user_id: &str) -> Result<(), Problem> {
        let role = self.role(role_id)?;
        let is_owner_role = is_owner(role);
        let pos = self
            .current_position(user_id)
            .ok()
            .filter(|pos| self.holders.get(role_id).is_some_and(|h| h.contains(pos)))
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    "ROLE_ASSIGNMENT_NOT_FOUND",
                    format!("User {user_id} does not hold role {role_id}."),
                )
                .detail("role_id", role_id)
                .detail("user_id", user_id)
            })?;
        if is_owner_role && self.member_count(role_id) == 1 {
            return Err(last_owner(user_id));
        }
        self.members[pos].role_ids.retain(|r| r != role_id);
        if let Some(holders) = self.holders.get_mut(role_id) {
            holders.remove(&pos);
        }
        Ok(())
    }

    /// Give a current member a role, as an admin in the vendor's console
    /// would: no API call of an offboarding does this, but tests need a
    /// directory that changes under a held plan.
    pub(crate) fn grant_role(&mut self, role_id: &str, user_id: &str) -> Result<(), Problem> {
        self.role(role_id)?;
        let pos = self.current_position(user_id)?;
        if !self.members[pos].role_ids.iter().any(|r| r == role_id) {
            self.members[pos].role_ids.push(role_id.to_owned());
        }
        if let Some(holders) = self.holders.get_mut(role_id) {
            holders.insert(pos);
        }
        Ok(())
    }

    /// Soft-delete a membership, optionally handing the member's resources to a department.
    pub(crate) fn remove_member(
        &mut self,
        user_id: &str,
        department: Option<&str>,
    ) -> Result<(), Problem> {
        let pos = self.current_position(user_id)?;
        if let Some(dept) = department.filter(|d| !self.department_ids.contains_key(*d)) {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "DEPARTMENT_NOT_FOUND",
                format!("Department {dept} was not found."),
            )
            .detail("department_id", dept));
        }
        let sole_owner = self.members[pos].role_ids.iter().any(|role_id| {
            let owner_role = self.role(role_id).is_ok_and(is_owner);
            owner_role && self.member_count(role_id) == 1
        });
        if sole_owner {
            return Err(last_owner(user_id));
        }
        let member = &mut self.members[pos];
        if member.account_state == ACTIVE {
            self.active.hide(pos);
        }
        for role_id in std::mem::take(&mut member.role_ids) {
            if let Some(holders) = self.holders.get_mut(&role_id) {
                holders.remove(&pos);
            }
        }
        member.department_ids.clear();
        member.account_state = DELETED.to_owned();
        member.deleted_at = Some(Utc::now());
        if let Some(dept) = department {
            let owned = &self.owned[self.owned_from[pos]..self.owned_from[pos + 1]];
            for &res in owned {
                let res = &mut self.resources[res];
                // The grouping dates from load time; move only what the member still owns.
                if res.owner_user_id.as_deref() == Some(user_id) {
                    res.owner_user_id = None;
                    res.department_id = Some(dept.to_owned());
                }
            }
        }
        Ok(())
    }

    /// Delete a custom role nobody holds any more.
    pub(crate) fn delete_role(&mut self, role_id: &str) -> Result<(), Problem> {
        let role = self.role(role_id)?;
        if role.is_system_role {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "SYSTEM_ROLE_IMMUTABLE",
                format!("Role {role_id} is a system role and cannot be deleted."),
            )
            .detail("role_id", role_id));
        }
        let members = self.member_count(role_id);
        if members > 0 {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "ROLE_HAS_MEMBERS",
                format!("Role {role_id} still has {members} member(s)."),
            )
            .detail("role_id", role_id)
            .detail("member_count", members));
        }
        self.roles.retain(|r| r.id != role_id);
        self.role_ids = index(&self.roles, |r| &r.id);
        self.holders.remove(role_id);
        Ok(())
    }
}

/// The vendor protects its Owner role by name, whatever its id.
fn is_owner(role: &AitronosRole) -> bool {
    role.name.trim().eq_ignore_ascii_case("owner")
}

fn last_owner(user_id: &str) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "LAST_OWNER_CANNOT_BE_REMOVED",
        format!("User {user_id} is the last owner of the organization."),
    )
    .detail("user_id", user_id)
}
