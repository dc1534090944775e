//! SCIM users and groups, indexed for the calls RFC 7644 defines.
//!
//! Users keep their seed order (which listing follows) and are found by
//! binary search, by id over a sorted permutation and by `userName` over
//! sorted hashes of the case-folded names, so a million users need no hash
//! index of copied strings.
//! A deleted user stays in place, marked, so positions held by groups and
//! permutations stay valid. Group memberships are sets of user positions.

mod writes;

use std::collections::BTreeSet;

use super::envelope::not_found;
use crate::sim::directory::{
    ScimBehaviour, ScimDirectory, ScimGroup, ScimUser, fold_eq, fold_hash,
};
use crate::sim::fasthash::IdMap;
use crate::sim::problem::Problem;

/// The simulated SCIM service provider.
#[derive(Debug, Default)]
pub(crate) struct ScimStore {
    users: Vec<UserSlot>,
    /// Positions in `users`, ordered by id.
    by_id: Vec<usize>,
    /// `(fold_hash(userName), position)`, ordered by hash.
    by_name: Vec<(u64, usize)>,
    live_users: usize,
    groups: Vec<GroupStore>,
    group_index: IdMap<String, usize>,
    behaviour: ScimBehaviour,
}

#[derive(Debug)]
struct UserSlot {
    user: ScimUser,
    deleted: bool,
}

/// One group; its members are positions in the user list.
#[derive(Debug)]
pub(crate) struct GroupStore {
    pub id: String,
    pub display_name: String,
    members: BTreeSet<usize>,
    pub version: u64,
}

impl GroupStore {
    /// Member positions, in user order.
    pub(crate) fn members(&self) -> impl Iterator<Item = usize> + '_ {
        self.members.iter().copied()
    }

    pub(crate) fn has_member(&self, user: usize) -> bool {
        self.members.contains(&user)
    }
}

impl ScimStore {
    pub(crate) fn new(directory: ScimDirectory) -> Self {
        let users: Vec<UserSlot> = directory
            .users
            .into_iter()
            .map(|user| UserSlot {
                user,
                deleted: false,
            })
            .collect();
        let mut by_id: Vec<usize> = (0..users.len()).collect();
        by_id.sort_unstable_by(|&a, &b| users[a].user.id.cmp(&users[b].user.id));
        let mut by_name: Vec<(u64, usize)> = users
            .iter()
            .enumerate()
            .map(|(pos, slot)| (fold_hash(&slot.user.user_name), pos))
            .collect();
        by_name.sort_unstable_by_key(|&(hash, _)| hash);
        let mut store = ScimStore {
            live_users: users.len(),
            users,
            by_id,
            by_name,
            groups: Vec::with_capacity(directory.groups.len()),
            group_index: IdMap::default(),
            behaviour: directory.behaviour,
        };
        for group in directory.groups {
            let members = store.positions_of(&group.members);
            store
                .group_index
                .insert(group.id.clone(), store.groups.len());
            store.groups.push(GroupStore {
                id: group.id,
                display_name: group.display_name,
                members,
                version: group.version,
            });
        }
        store
    }

    /// The positions of the users with these ids. Walking the sorted ids
    /// along `by_id` resolves a million members without a million binary
    /// searches; an unknown id (only in an unvalidated directory) is dropped.
    fn positions_of(&self, ids: &[String]) -> BTreeSet<usize> {
        let mut ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        ids.sort_unstable();
        let id_at = |pos: usize| self.users[pos].user.id.as_str();
        let mut order = self.by_id.iter().copied().peekable();
        ids.into_iter()
            .filter_map(|id| {
                while order.next_if(|&pos| id_at(pos) < id).is_some() {}
                order.peek().copied().filter(|&pos| id_at(pos) == id)
            })
            .collect()
    }

    /// Rebuild the JSON shape, without deleted users.
    pub(crate) fn snapshot(&self) -> ScimDirectory {
        ScimDirectory {
            users: self
                .users
                .iter()
                .filter(|slot| !slot.deleted)
                .map(|slot| slot.user.clone())
                .collect(),
            groups: self
                .groups
                .iter()
                .map(|g| ScimGroup {
                    id: g.id.clone(),
                    display_name: g.display_name.clone(),
                    members: g.members().map(|u| self.users[u].user.id.clone()).collect(),
                    version: g.version,
                })
                .collect(),
            behaviour: self.behaviour.clone(),
        }
    }

    pub(crate) fn behaviour(&self) -> &ScimBehaviour {
        &self.behaviour
    }

    /// The position of a user that exists (and was not deleted).
    pub(crate) fn user_position(&self, id: Option<&str>) -> Result<usize, Problem> {
        id.and_then(|id| {
            self.by_id
                .binary_search_by(|&pos| self.users[pos].user.id.as_str().cmp(id))
                .ok()
        })
        .map(|i| self.by_id[i])
        .filter(|&pos| !self.users[pos].deleted)
        .ok_or_else(|| not_found("User", id))
    }

    pub(crate) fn user(&self, pos: usize) -> &ScimUser {
        &self.users[pos].user
    }

    /// Live users whose `userName` equals `name`, ignoring case.
    pub(crate) fn users_named(&self, name: &str) -> Vec<usize> {
        let hash = fold_hash(name);
        let start = self.by_name.partition_point(|&(h, _)| h < hash);
        self.by_name[start..]
            .iter()
            .take_while(|&&(h, _)| h == hash)
            .map(|&(_, pos)| pos)
            .filter(|&pos| {
                let slot = &self.users[pos];
                !slot.deleted && fold_eq(&slot.user.user_name, name)
            })
            .collect()
    }

    /// Live users in seed order.
    pub(crate) fn live_users(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.users.len()).filter(|&pos| !self.users[pos].deleted)
    }

    pub(crate) fn live_user_count(&self) -> usize {
        self.live_users
    }

    pub(crate) fn group_position(&self, id: Option<&str>) -> Result<usize, Problem> {
        id.and_then(|id| self.group_index.get(id).copied())
            .ok_or_else(|| not_found("Group", id))
    }

    pub(crate) fn group(&self, pos: usize) -> &GroupStore {
        &self.groups[pos]
    }

    pub(crate) fn groups(&self) -> &[GroupStore] {
        &self.groups
    }

    /// The groups a user belongs to, in seed order.
    pub(crate) fn groups_of(&self, user: usize) -> impl Iterator<Item = &GroupStore> {
        self.groups.iter().filter(move |g| g.has_member(user))
    }
}
