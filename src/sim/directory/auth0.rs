//! Auth0's side of the directory: one tenant's users, and its organizations
//! with their roles and memberships.

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{first_unknown, invalid, sorted_unique, unique};
use crate::sim::SimError;

/// Auth0's side of the directory.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Auth0Directory {
    /// Organizations, each with its own roles and members.
    pub organizations: Vec<Auth0Org>,
    /// The tenant's users; memberships point at them by `user_id`.
    pub users: Vec<Auth0User>,
    /// Machine-to-machine applications allowed the client credentials grant.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<Auth0Client>,
    /// Lifetime of issued access tokens in seconds (0: a day, Auth0's default).
    #[serde(skip_serializing_if = "is_zero")]
    pub token_lifetime_secs: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A machine-to-machine application of the tenant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Auth0Client {
    pub client_id: String,
    pub client_secret: String,
}

/// One Auth0 organization (`org_…`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Auth0Org {
    /// Organization id, e.g. `org_acme`.
    pub id: String,
    /// The organization's name (a slug, e.g. `acme`).
    pub name: String,
    /// Friendly name; left out of answers when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Roles members can hold in this organization.
    pub roles: Vec<Auth0Role>,
    /// Memberships, including removals not yet visible to reads.
    pub members: Vec<Auth0Member>,
}

/// A role (`rol_…`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Auth0Role {
    /// Role id, e.g. `rol_admin`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What the role is for.
    pub description: String,
}

/// One user's membership of one organization.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Auth0Member {
    /// User id, e.g. `auth0|000002`.
    pub user_id: String,
    /// Ids of the organization roles the member holds.
    pub roles: Vec<String>,
    /// Set when the membership was removed but reads still see it (Auth0
    /// applies removals eventually): the instant it disappears.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removal_visible_at: Option<DateTime<Utc>>,
}

/// A user of the tenant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Auth0User {
    /// User id, e.g. `auth0|000002`.
    pub user_id: String,
    /// Email address.
    pub email: String,
    /// Full name.
    pub name: String,
    /// Blocked by an administrator: the user can no longer log in.
    pub blocked: bool,
    /// Live login sessions (the Management API ends them all at once).
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub sessions: u32,
    /// Refresh tokens issued to the user's applications.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub refresh_tokens: u32,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// Mixed into the seed so Auth0's random choices do not mirror Aitronos's.
const SEED_SALT: u64 = 0xa0_7400;

impl Auth0Directory {
    pub(super) fn generate(users: usize, seed: u64) -> Auth0Directory {
        let mut rng = StdRng::seed_from_u64(seed ^ SEED_SALT);
        let mut people = Vec::with_capacity(users + 1);
        let mut members = Vec::with_capacity(users + 1);
        for n in 1..=users {
            let user_id = format!("auth0|{n:06}");
            let mut roles = vec![if n == 1 { "rol_owner" } else { "rol_member" }];
            // One in three holds a second role, so plans differ between users.
            if rng.random_range(0..3) == 0 {
                roles.push(if rng.random_bool(0.5) {
                    "rol_admin"
                } else {
                    "rol_billing"
                });
            }
            members.push(Auth0Member {
                user_id: user_id.clone(),
                roles: roles.into_iter().map(str::to_owned).collect(),
                removal_visible_at: None,
            });
            people.push(Auth0User {
                user_id,
                email: format!("user{n:06}@acme.example"),
                name: format!("User {n:06}"),
                blocked: false,
                // Everyone is signed in somewhere until revoked.
                sessions: 1,
                refresh_tokens: 1,
            });
        }
        people.push(Auth0User {
            user_id: "auth0|breakglass".to_owned(),
            email: "breakglass@acme.example".to_owned(),
            name: "Break Glass".to_owned(),
            blocked: false,
            sessions: 0,
            refresh_tokens: 0,
        });
        members.push(Auth0Member {
            user_id: "auth0|breakglass".to_owned(),
            roles: vec!["rol_admin".to_owned()],
            removal_visible_at: None,
        });
        let role = |id: &str, name: &str, description: &str| Auth0Role {
            id: id.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
        };
        let org = Auth0Org {
            id: "org_acme".to_owned(),
            name: "acme".to_owned(),
            display_name: "Acme".to_owned(),
            roles: vec![
                role("rol_owner", "Owner", "Owns the organization."),
                role("rol_admin", "Admin", "Manages members and settings."),
                role("rol_member", "Member", "Uses the organization's apps."),
                role("rol_billing", "Billing", "Manages invoices and payment."),
            ],
            members,
        };
        Auth0Directory {
            organizations: vec![org],
            users: people,
            ..Auth0Directory::default()
        }
    }

    pub(super) fn validate(&self) -> Result<(), SimError> {
        let users = sorted_unique(
            self.users.iter().map(|u| u.user_id.as_str()),
            "user",
            "auth0",
        )?;
        unique(
            self.organizations.iter().map(|o| o.id.as_str()),
            "organization",
            "auth0",
        )?;
        for org in &self.organizations {
            let roles = unique(org.roles.iter().map(|r| r.id.as_str()), "role", &org.id)?;
            let members = sorted_unique(
                org.members.iter().map(|m| m.user_id.as_str()),
                "member",
                &org.id,
            )?;
            if let Some(stranger) = first_unknown(&members, &users) {
                return Err(invalid(format!(
                    "member {stranger} of {} is not an Auth0 user",
                    org.id
                )));
            }
            for member in &org.members {
                if let Some(role) = member.roles.iter().find(|r| !roles.contains(r.as_str())) {
                    return Err(invalid(format!(
                        "member {} holds unknown role {role} in {}",
                        member.user_id, org.id
                    )));
                }
            }
        }
        Ok(())
    }
}
