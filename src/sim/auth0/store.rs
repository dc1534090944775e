//! Auth0's users and organizations, indexed for the Management API calls.
//!
//! Members are kept sorted by user id: lookups binary-search them and
//! checkpoint paging walks them in order, with no second copy of a million
//! ids in a hash index. A removed member stays in place as a tombstone so
//! removals cost O(log n) and cursors stay valid. Auth0 applies membership
//! removals eventually, so a removal may first be pending: reads still see
//! the member until its `removal_visible_at`.

use chrono::{DateTime, Utc};

use super::envelope::{inexistent_organization, inexistent_user};
use crate::sim::directory::{
    Auth0Client, Auth0Directory, Auth0Member, Auth0Org, Auth0Role, Auth0User,
};
use crate::sim::problem::Problem;

/// The simulated tenant.
#[derive(Debug, Default)]
pub(crate) struct Auth0Store {
    clients: Vec<Auth0Client>,
    token_lifetime_secs: u64,
    users: Vec<Auth0User>,
    /// Positions in `users`, ordered by user id.
    user_order: Vec<usize>,
    orgs: Vec<OrgStore>,
}

/// One organization and its memberships.
#[derive(Debug)]
pub(crate) struct OrgStore {
    pub id: String,
    pub name: String,
    pub display_name: String,
    roles: Vec<Auth0Role>,
    /// Sorted by user id.
    members: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    member: Auth0Member,
    /// Removed, and the removal is visible.
    gone: bool,
}

impl Slot {
    fn visible(&self, now: DateTime<Utc>) -> bool {
        !self.gone && self.member.removal_visible_at.is_none_or(|at| now < at)
    }
}

impl Auth0Store {
    pub(crate) fn new(directory: Auth0Directory) -> Self {
        let clients = directory.clients;
        let token_lifetime_secs = directory.token_lifetime_secs;
        let users = directory.users;
        let mut user_order: Vec<usize> = (0..users.len()).collect();
        user_order.sort_unstable_by(|&a, &b| users[a].user_id.cmp(&users[b].user_id));
        Auth0Store {
            clients,
            token_lifetime_secs,
            orgs: directory
                .organizations
                .into_iter()
                .map(OrgStore::new)
                .collect(),
            users,
            user_order,
        }
    }

    /// Rebuild the JSON shape, leaving out memberships whose removal is visible.
    pub(crate) fn snapshot(&self) -> Auth0Directory {
        let now = Utc::now();
        Auth0Directory {
            organizations: self.orgs.iter().map(|o| o.snapshot(now)).collect(),
            users: self.users.clone(),
            clients: self.clients.clone(),
            token_lifetime_secs: self.token_lifetime_secs,
        }
    }

    /// The M2M applications and the lifetime of the tokens they get.
    pub(crate) fn clients(&self) -> (&[Auth0Client], u64) {
        let lifetime = if self.token_lifetime_secs == 0 {
            86_400
        } else {
            self.token_lifetime_secs
        };
        (&self.clients, lifetime)
    }

    pub(crate) fn user(&self, user_id: Option<&str>) -> Result<&Auth0User, Problem> {
        self.user_position(user_id).map(|pos| &self.users[pos])
    }

    pub(crate) fn user_mut(&mut self, user_id: Option<&str>) -> Result<&mut Auth0User, Problem> {
        let pos = self.user_position(user_id)?;
        Ok(&mut self.users[pos])
    }

    pub(crate) fn org(&self, id: Option<&str>) -> Result<&OrgStore, Problem> {
        self.orgs
            .iter()
            .find(|o| Some(o.id.as_str()) == id)
            .ok_or_else(inexistent_organization)
    }

    pub(crate) fn org_mut(&mut self, id: Option<&str>) -> Result<&mut OrgStore, Problem> {
        self.orgs
            .iter_mut()
            .find(|o| Some(o.id.as_str()) == id)
            .ok_or_else(inexistent_organization)
    }

    /// The organizations the user is (visibly) a member of, in seed order.
    pub(crate) fn orgs_of(&self, user_id: &str, now: DateTime<Utc>) -> Vec<&OrgStore> {
        self.orgs
            .iter()
            .filter(|org| org.member(Some(user_id), now).is_ok())
            .collect()
    }

    fn user_position(&self, user_id: Option<&str>) -> Result<usize, Problem> {
        let user_id = user_id.ok_or_else(inexistent_user)?;
        self.user_order
            .binary_search_by(|&pos| self.users[pos].user_id.as_str().cmp(user_id))
            .map(|i| self.user_order[i])
            .map_err(|_| inexistent_user())
    }
}

impl OrgStore {
    fn new(org: Auth0Org) -> Self {
        let mut members: Vec<Slot> = org
            .members
            .into_iter()
            .map(|member| Slot {
                member,
                gone: false,
            })
            .collect();
        if !members.is_sorted_by(|a, b| a.member.user_id <= b.member.user_id) {
            members.sort_unstable_by(|a, b| a.member.user_id.cmp(&b.member.user_id));
        }
        OrgStore {
            id: org.id,
            name: org.name,
            display_name: org.display_name,
            roles: org.roles,
            members,
        }
    }

    fn snapshot(&self, now: DateTime<Utc>) -> Auth0Org {
        Auth0Org {
            id: self.id.clone(),
            name: self.name.clone(),
            display_name: self.display_name.clone(),
            roles: self.roles.clone(),
            members: self
                .members
                .iter()
                .filter(|slot| slot.visible(now))
                .map(|slot| slot.member.clone())
                .collect(),
        }
    }

    /// A membership reads can see.
    pub(crate) fn member(
        &self,
        user_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<&Auth0Member, Problem> {
        self.visible_position(user_id, now)
            .map(|pos| &self.members[pos].member)
    }

    /// The member's roles, in the order they were granted.
    pub(crate) fn roles_of(&self, member: &Auth0Member) -> Vec<&Auth0Role> {
        member
            .roles
            .iter()
            .filter_map(|id| self.roles.iter().find(|r| &r.id == id))
            .collect()
    }

    /// Visible members in user-id order, from position `first` on.
    pub(crate) fn members_from(
        &self,
        first: usize,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = &Auth0Member> {
        self.members
            .get(first..)
            .unwrap_or_default()
            .iter()
            .filter(move |slot| slot.visible(now))
            .map(|slot| &slot.member)
    }

    /// Where the first member whose id is at least `user_id` sits.
    pub(crate) fn position_from(&self, user_id: &str) -> usize {
        self.members
            .partition_point(|slot| slot.member.user_id.as_str() < user_id)
    }

    /// Take roles away from a member; ids the member does not hold are ignored.
    pub(crate) fn remove_roles(
        &mut self,
        user_id: Option<&str>,
        role_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), Problem> {
        let pos = self.visible_position(user_id, now)?;
        self.members[pos]
            .member
            .roles
            .retain(|held| !role_ids.contains(held));
        Ok(())
    }

    /// Remove memberships, visibly at `visible_at`; ids that are not
    /// members are ignored, and a pending removal keeps its first instant.
    pub(crate) fn remove_members(
        &mut self,
        user_ids: &[String],
        visible_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        for user_id in user_ids {
            let Ok(pos) = self.visible_position(Some(user_id), now) else {
                continue;
            };
            let slot = &mut self.members[pos];
            if visible_at <= now {
                slot.gone = true;
                slot.member.removal_visible_at = None;
            } else if slot.member.removal_visible_at.is_none() {
                slot.member.removal_visible_at = Some(visible_at);
            }
        }
    }

    /// Add members back (or anew): a removed membership comes back
    /// without the roles it had, as Auth0 drops them with it; a pending
    /// removal is called off; a visible member is left as is.
    pub(crate) fn add_members(&mut self, user_ids: &[String], now: DateTime<Utc>) {
        for user_id in user_ids {
            let at = self
                .members
                .binary_search_by(|slot| slot.member.user_id.as_str().cmp(user_id));
            match at {
                Ok(pos) if self.members[pos].visible(now) => {
                    self.members[pos].member.removal_visible_at = None;
                }
                Ok(pos) => {
                    let slot = &mut self.members[pos];
                    slot.gone = false;
                    slot.member.removal_visible_at = None;
                    slot.member.roles.clear();
                }
                Err(pos) => self.members.insert(
                    pos,
                    Slot {
                        member: Auth0Member {
                            user_id: user_id.clone(),
                            roles: Vec::new(),
                            removal_visible_at: None,
                        },
                        gone: false,
                    },
                ),
            }
        }
    }

    /// Give a member roles; those already held are left as they are.
    pub(crate) fn assign_roles(
        &mut self,
        user_id: Option<&str>,
        role_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), Problem> {
        if let Some(unknown) = role_ids
            .iter()
            .find(|r| !self.roles.iter().any(|o| &o.id == *r))
        {
            return Err(super::envelope::invalid_body(format!(
                "One or more of the specified roles do not exist: {unknown}"
            )));
        }
        let pos = self.visible_position(user_id, now)?;
        let held = &mut self.members[pos].member.roles;
        for role in role_ids {
            if !held.contains(role) {
                held.push(role.clone());
            }
        }
        Ok(())
    }

    fn visible_position(
        &self,
        user_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<usize, Problem> {
        let user_id = user_id.ok_or_else(inexistent_user)?;
        self.members
            .binary_search_by(|slot| slot.member.user_id.as_str().cmp(user_id))
            .ok()
            .filter(|&pos| self.members[pos].visible(now))
            .ok_or_else(inexistent_user)
    }
}
