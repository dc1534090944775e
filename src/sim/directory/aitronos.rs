//! Aitronos's side of the directory: organizations with their roles,
//! departments, members (soft-deleted ones kept) and owned resources.

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{invalid, unique};
use crate::sim::SimError;
use crate::sim::fasthash::IdSet;

/// Aitronos's side of the directory.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct AitronosDirectory {
    /// Organizations, each with its own members, roles and departments.
    pub organizations: Vec<AitronosOrg>,
}

/// One Aitronos organization (`org_…`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct AitronosOrg {
    /// Organization id, e.g. `org_acme`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Departments that can receive a leaver's resources.
    pub departments: Vec<AitronosDepartment>,
    /// System and custom roles.
    pub roles: Vec<AitronosRole>,
    /// Members, including soft-deleted ones (the vendor keeps the record).
    pub members: Vec<AitronosMember>,
    /// Resources owned by members or by departments.
    pub resources: Vec<AitronosResource>,
}

/// A department (`dept_…`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct AitronosDepartment {
    /// Department id, e.g. `dept_offboarded`.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// A role (`role_…`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct AitronosRole {
    /// Role id, e.g. `role_owner`.
    pub id: String,
    /// Display name; a role named "Owner" is protected from losing its last holder.
    pub name: String,
    /// Created by the organization rather than shipped by the vendor.
    pub is_custom: bool,
    /// Shipped by the vendor; cannot be deleted.
    pub is_system_role: bool,
}

/// A membership of one user in one organization.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct AitronosMember {
    /// User id, e.g. `usr_000001`.
    pub user_id: String,
    /// Email address.
    pub email: String,
    /// `active`, `deleted` (soft-deleted) or any other state the vendor uses.
    pub account_state: String,
    /// Roles held in this organization.
    pub role_ids: Vec<String>,
    /// Departments the member belongs to.
    pub department_ids: Vec<String>,
    /// When the membership was soft-deleted.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Something a member or a department owns (a file, an assistant, …).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct AitronosResource {
    /// Resource id.
    pub id: String,
    /// Free-form kind, e.g. `file`.
    pub kind: String,
    /// The owning member, if a member owns it.
    pub owner_user_id: Option<String>,
    /// The owning department, if it was transferred to one.
    pub department_id: Option<String>,
}

/// The account state of a soft-deleted member.
pub(crate) const DELETED: &str = "deleted";
/// The account state of a member in good standing.
pub(crate) const ACTIVE: &str = "active";

impl AitronosDirectory {
    /// A synthetic organization `org_acme` with `users` members; the same
    /// `seed` always gives the same directory.
    pub(super) fn generate(users: usize, seed: u64) -> AitronosDirectory {
        let mut rng = StdRng::seed_from_u64(seed);
        let custom = ["role_custom_1", "role_custom_2", "role_custom_3"];
        let mut members = Vec::with_capacity(users + 1);
        let mut resources = Vec::with_capacity(2 * (users + 1));
        for n in 1..=users {
            let user_id = format!("usr_{n:06}");
            let mut role_ids = vec!["role_member".to_owned()];
            if n == 1 {
                role_ids.push("role_owner".to_owned());
            }
            // One in three gets a second role, so plans differ between users.
            if rng.random_range(0..3) == 0 {
                let extra = if rng.random_bool(0.5) {
                    "role_admin"
                } else {
                    custom[rng.random_range(0..custom.len())]
                };
                role_ids.push(extra.to_owned());
            }
            members.push(AitronosMember {
                email: format!("user{n:06}@acme.example"),
                account_state: ACTIVE.to_owned(),
                role_ids,
                department_ids: vec!["dept_engineering".to_owned()],
                deleted_at: None,
                user_id,
            });
        }
        members.push(AitronosMember {
            user_id: "usr_breakglass".to_owned(),
            email: "breakglass@acme.example".to_owned(),
            account_state: ACTIVE.to_owned(),
            role_ids: vec!["role_admin".to_owned()],
            ..AitronosMember::default()
        });
        for member in &members {
            for (suffix, kind) in [(1, "file"), (2, "assistant")] {
                resources.push(AitronosResource {
                    id: format!("res_{}_{suffix}", member.user_id),
                    kind: kind.to_owned(),
                    owner_user_id: Some(member.user_id.clone()),
                    department_id: None,
                });
            }
        }
        let org = AitronosOrg {
            id: "org_acme".to_owned(),
            name: "Acme".to_owned(),
            departments: vec![
                department("dept_offboarded", "Offboarded"),
                department("dept_engineering", "Engineering"),
            ],
            roles: standard_roles(),
            members,
            resources,
        };
        AitronosDirectory {
            organizations: vec![org],
        }
    }

    pub(super) fn validate(&self) -> Result<(), SimError> {
        let mut orgs = IdSet::default();
        for org in &self.organizations {
            if !orgs.insert(org.id.as_str()) {
                return Err(invalid(format!("duplicate organization id {}", org.id)));
            }
            validate_org(org)?;
        }
        Ok(())
    }
}

fn validate_org(org: &AitronosOrg) -> Result<(), SimError> {
    let roles = unique(org.roles.iter().map(|r| r.id.as_str()), "role", &org.id)?;
    let depts = unique(
        org.departments.iter().map(|d| d.id.as_str()),
        "department",
        &org.id,
    )?;
    let users = unique(
        org.members.iter().map(|m| m.user_id.as_str()),
        "member",
        &org.id,
    )?;
    unique(
        org.resources.iter().map(|r| r.id.as_str()),
        "resource",
        &org.id,
    )?;
    for member in &org.members {
        let dangling = member.role_ids.iter().find(|r| !roles.contains(r.as_str()));
        if let Some(role) = dangling {
            return Err(invalid(format!(
                "member {} holds unknown role {role}",
                member.user_id
            )));
        }
        let dangling = member
            .department_ids
            .iter()
            .find(|d| !depts.contains(d.as_str()));
        if let Some(dept) = dangling {
            return Err(invalid(format!(
                "member {} is in unknown department {dept}",
                member.user_id
            )));
        }
    }
    for res in &org.resources {
        if let Some(owner) = res.owner_user_id.as_deref().filter(|u| !users.contains(u)) {
            return Err(invalid(format!(
                "resource {} has unknown owner {owner}",
                res.id
            )));
        }
        if let Some(dept) = res.department_id.as_deref().filter(|d| !depts.contains(d)) {
            return Err(invalid(format!(
                "resource {} is in unknown department {dept}",
                res.id
            )));
        }
    }
    Ok(())
}

fn department(id: &str, name: &str) -> AitronosDepartment {
    AitronosDepartment {
        id: id.to_owned(),
        name: name.to_owned(),
    }
}

fn standard_roles() -> Vec<AitronosRole> {
    let system = |id: &str, name: &str| AitronosRole {
        id: id.to_owned(),
        name: name.to_owned(),
        is_custom: false,
        is_system_role: true,
    };
    let mut roles = vec![
        system("role_owner", "Owner"),
        system("role_admin", "Admin"),
        system("role_member", "Member"),
    ];
    roles.extend((1..=3).map(|n| AitronosRole {
        id: format!("role_custom_{n}"),
        name: format!("Custom {n}"),
        is_custom: true,
        is_system_role: false,
    }));
    roles
}
