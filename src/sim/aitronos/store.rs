//! Aitronos organizations, indexed so every API call costs O(1) or O(roles).
//!
//! The JSON shape ([`AitronosDirectory`]) is convenient to seed and inspect but
//! slow to query; this keeps the same records plus the indexes the handlers
//! need, and can turn itself back into the JSON shape for `/_sim/state`.

use axum::http::StatusCode;
use std::collections::BTreeSet;

use crate::sim::directory::{
    ACTIVE, AitronosDepartment, AitronosDirectory, AitronosMember, AitronosOrg, AitronosResource,
    AitronosRole, DELETED,
};
use crate::sim::fasthash::IdMap;
use crate::sim::problem::Problem;
use crate::sim::rank::RankIndex;

mod writes;

/// All organizations of the simulated Aitronos tenant.
#[derive(Debug, Default)]
pub(crate) struct AitronosStore {
    orgs: Vec<OrgStore>,
    by_id: IdMap<String, usize>,
}

/// One organization and its indexes.
#[derive(Debug)]
pub(crate) struct OrgStore {
    id: String,
    name: String,
    departments: Vec<AitronosDepartment>,
    department_ids: IdMap<String, usize>,
    roles: Vec<AitronosRole>,
    role_ids: IdMap<String, usize>,
    /// Sorted by user id, so member positions give the vendor's stable listing order.
    members: Vec<AitronosMember>,
    member_ids: IdMap<String, usize>,
    /// Positions of the current (not soft-deleted) members holding each role.
    holders: IdMap<String, BTreeSet<usize>>,
    /// Which members are active, for offset paging without a scan.
    active: RankIndex,
    resources: Vec<AitronosResource>,
    /// Resources by owner, grouped: the member at position `p` owned
    /// `owned[owned_from[p]..owned_from[p + 1]]`. Built once, since no API
    /// call gives a member new resources; one flat list keeps a million
    /// owners cheap.
    owned_from: Vec<usize>,
    owned: Vec<usize>,
}

impl AitronosStore {
    pub(crate) fn new(directory: AitronosDirectory) -> Self {
        let orgs: Vec<OrgStore> = directory
            .organizations
            .into_iter()
            .map(OrgStore::new)
            .collect();
        let by_id = orgs
            .iter()
            .enumerate()
            .map(|(i, o)| (o.id.clone(), i))
            .collect();
        AitronosStore { orgs, by_id }
    }

    /// Rebuild the JSON shape; costs a full copy, so only inspection uses it.
    pub(crate) fn snapshot(&self) -> AitronosDirectory {
        AitronosDirectory {
            organizations: self.orgs.iter().map(OrgStore::snapshot).collect(),
        }
    }

    pub(crate) fn org(&self, id: &str) -> Result<&OrgStore, Problem> {
        self.by_id
            .get(id)
            .map(|&i| &self.orgs[i])
            .ok_or_else(|| org_not_found(id))
    }

    pub(crate) fn org_mut(&mut self, id: &str) -> Result<&mut OrgStore, Problem> {
        match self.by_id.get(id) {
            Some(&i) => Ok(&mut self.orgs[i]),
            None => Err(org_not_found(id)),
        }
    }
}

impl OrgStore {
    fn new(org: AitronosOrg) -> Self {
        let mut members = org.members;
        // Generated and exported directories are already in order; sorting them would cost a copy.
        if !members.is_sorted_by(|a, b| a.user_id <= b.user_id) {
            members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        }
        let member_ids = index(&members, |m| &m.user_id);
        let role_ids = index(&org.roles, |r| &r.id);
        let mut holders: IdMap<String, BTreeSet<usize>> = role_ids
            .keys()
            .map(|role| (role.clone(), BTreeSet::new()))
            .collect();
        for (pos, member) in members.iter().enumerate() {
            if member.account_state == DELETED {
                continue;
            }
            for role in &member.role_ids {
                // A dangling role id (only in an unvalidated directory) simply has no holder set.
                if let Some(set) = holders.get_mut(role) {
                    set.insert(pos);
                }
            }
        }
        let (owned_from, owned) = index_owners(&member_ids, &org.resources, members.len());
        OrgStore {
            department_ids: index(&org.departments, |d| &d.id),
            role_ids,
            active: RankIndex::new(members.iter().map(|m| m.account_state == ACTIVE)),
            member_ids,
            holders,
            owned_from,
            owned,
            id: org.id,
            name: org.name,
            departments: org.departments,
            roles: org.roles,
            members,
            resources: org.resources,
        }
    }

    fn snapshot(&self) -> AitronosOrg {
        AitronosOrg {
            id: self.id.clone(),
            name: self.name.clone(),
            departments: self.departments.clone(),
            roles: self.roles.clone(),
            members: self.members.clone(),
            resources: self.resources.clone(),
        }
    }

    /// Any member record, soft-deleted ones included.
    pub(crate) fn member(&self, user_id: &str) -> Result<&AitronosMember, Problem> {
        self.position(user_id).map(|pos| &self.members[pos])
    }

    /// A member that has not been soft-deleted: the only kind that can be changed.
    pub(crate) fn current_member(&self, user_id: &str) -> Result<&AitronosMember, Problem> {
        self.current_position(user_id).map(|pos| &self.members[pos])
    }

    pub(crate) fn role(&self, role_id: &str) -> Result<&AitronosRole, Problem> {
        match self.role_ids.get(role_id) {
            Some(&i) => Ok(&self.roles[i]),
            None => Err(Problem::new(
                StatusCode::NOT_FOUND,
                "ROLE_NOT_FOUND",
                format!("Role {role_id} was not found."),
            )
            .detail("role_id", role_id)),
        }
    }

    /// Current members holding the role.
    pub(crate) fn member_count(&self, role_id: &str) -> usize {
        self.holders.get(role_id).map_or(0, BTreeSet::len)
    }

    /// One page of the role's current holders, in user-id order, and their total.
    pub(crate) fn role_members(
        &self,
        role_id: &str,
        skip: usize,
        limit: usize,
    ) -> (Vec<&AitronosMember>, usize) {
        let Some(holders) = self.holders.get(role_id) else {
            return (Vec::new(), 0);
        };
        let page = holders
            .iter()
            .skip(skip)
            .take(limit)
            .map(|&pos| &self.members[pos])
            .collect();
        (page, holders.len())
    }

    /// One page of members in user-id order, and how many there are in all.
    pub(crate) fn list_members(
        &self,
        skip: usize,
        take: usize,
        include_inactive: bool,
    ) -> (Vec<&AitronosMember>, usize) {
        if include_inactive {
            let page = self.members.iter().skip(skip).take(take).collect();
            return (page, self.members.len());
        }
        let page = match self.active.nth_shown(skip) {
            Some(first) => self.members[first..]
                .iter()
                .filter(|m| m.account_state == ACTIVE)
                .take(take)
                .collect(),
            None => Vec::new(),
        };
        (page, self.active.shown())
    }

    fn position(&self, user_id: &str) -> Result<usize, Problem> {
        self.member_ids.get(user_id).copied().ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "USER_NOT_FOUND",
                format!("User {user_id} was not found."),
            )
            .detail("user_id", user_id)
        })
    }

    fn current_position(&self, user_id: &str) -> Result<usize, Problem> {
        let pos = self.position(user_id)?;
        if self.members[pos].account_state == DELETED {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "MEMBER_NOT_FOUND",
                format!(
                    "User {user_id} is not a member of organization {}.",
                    self.id
                ),
            )
            .detail("user_id", user_id));
        }
        Ok(pos)
    }
}

fn org_not_found(id: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "ORGANIZATION_NOT_FOUND",
        format!("Organization {id} was not found."),
    )
    .detail("organization_id", id)
}

fn index<T>(items: &[T], key: impl Fn(&T) -> &String) -> IdMap<String, usize> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| (key(item).clone(), i))
        .collect()
}

/// Group resource positions by owning member position (a counting sort).
fn index_owners(
    member_ids: &IdMap<String, usize>,
    resources: &[AitronosResource],
    members: usize,
) -> (Vec<usize>, Vec<usize>) {
    let owners: Vec<Option<usize>> = resources
        .iter()
        .map(|r| {
            r.owner_user_id
                .as_ref()
                .and_then(|o| member_ids.get(o).copied())
        })
        .collect();
    let mut owned_from = vec![0; members + 1];
    for &pos in owners.iter().flatten() {
        owned_from[pos + 1] += 1;
    }
    let mut total = 0;
    for slot in &mut owned_from {
        total += *slot;
        *slot = total;
    }
    let mut cursor = owned_from.clone();
    let mut owned = vec![0; total];
    for (res, owner) in owners.into_iter().enumerate() {
        if let Some(pos) = owner {
            owned[cursor[pos]] = res;
            cursor[pos] += 1;
        }
    }
    (owned_from, owned)
}
