//! Recoup's organizations, with member accounts held as numbers.
//!
//! Recoup's ids are Postgres UUIDs, compared without regard to case, so the
//! store keeps them as `u128`: a million members cost a few tens of
//! megabytes instead of a string each, and removal is O(log n).

use std::collections::BTreeSet;

use crate::sim::directory::{RecoupDirectory, RecoupOrg, format_uuid, parse_uuid};

/// The organizations the simulated API key's account can see.
#[derive(Debug, Default)]
pub(crate) struct RecoupStore {
    /// As the seed spelled it, for the snapshot.
    caller_text: String,
    caller: Option<u128>,
    orgs: Vec<OrgStore>,
}

/// One organization and its member accounts.
#[derive(Debug)]
pub(crate) struct OrgStore {
    pub id: u128,
    /// As the seed spelled it.
    pub id_text: String,
    pub name: String,
    members: BTreeSet<u128>,
}

impl RecoupStore {
    /// Build from a validated directory; ids that are not UUIDs (possible
    /// only in an unvalidated one) are dropped rather than trusted.
    pub(crate) fn new(directory: RecoupDirectory) -> Self {
        let orgs = directory
            .organizations
            .into_iter()
            .filter_map(|org| {
                Some(OrgStore {
                    id: parse_uuid(&org.id)?,
                    members: org
                        .member_account_ids
                        .iter()
                        .filter_map(|m| parse_uuid(m))
                        .collect(),
                    id_text: org.id,
                    name: org.name,
                })
            })
            .collect();
        RecoupStore {
            caller: parse_uuid(&directory.caller_account_id),
            caller_text: directory.caller_account_id,
            orgs,
        }
    }

    /// Rebuild the JSON shape; member ids come back in canonical lower case.
    pub(crate) fn snapshot(&self) -> RecoupDirectory {
        RecoupDirectory {
            caller_account_id: self.caller_text.clone(),
            organizations: self
                .orgs
                .iter()
                .map(|org| RecoupOrg {
                    id: org.id_text.clone(),
                    name: org.name.clone(),
                    member_account_ids: org.members.iter().map(|&m| format_uuid(m)).collect(),
                })
                .collect(),
        }
    }

    /// The account the API key belongs to.
    pub(crate) fn caller(&self) -> Option<u128> {
        self.caller
    }

    /// The vendor lets an organization's members manage it, and an
    /// organization's own account too.
    pub(crate) fn caller_can_manage(&self, org: u128) -> bool {
        let Some(caller) = self.caller else {
            return false;
        };
        caller == org
            || self
                .orgs
                .iter()
                .any(|o| o.id == org && o.members.contains(&caller))
    }

    /// Whether the caller and `account` are members of a common organization.
    pub(crate) fn caller_shares_org_with(&self, account: u128) -> bool {
        self.caller.is_some_and(|caller| {
            self.orgs
                .iter()
                .any(|o| o.members.contains(&caller) && o.members.contains(&account))
        })
    }

    /// The organizations `account` is a member of, in seed order.
    pub(crate) fn orgs_of(&self, account: u128) -> Vec<&OrgStore> {
        self.orgs
            .iter()
            .filter(|o| o.members.contains(&account))
            .collect()
    }

    /// Remove a membership; removing one that does not exist changes nothing.
    pub(crate) fn remove_member(&mut self, org: u128, account: u128) {
        if let Some(org) = self.orgs.iter_mut().find(|o| o.id == org) {
            org.members.remove(&account);
        }
    }
}
