//! The simulator's data model: what the simulated providers hold.
//!
//! Its JSON form is both the seed file format (`--seed-file`) and the answer of
//! `GET /_sim/state`, so tests can build a directory in code, load one from a
//! file, and compare the final state with what they expect. Every provider's
//! part defaults to empty, so a seed file written before a provider joined
//! still loads.

mod aitronos;
mod auth0;
mod recoup;
mod scim;

use serde::{Deserialize, Serialize};

use super::SimError;
use super::fasthash::IdSet;

pub(crate) use aitronos::{ACTIVE, DELETED};
pub use aitronos::{
    AitronosDepartment, AitronosDirectory, AitronosMember, AitronosOrg, AitronosResource,
    AitronosRole,
};
pub use auth0::{Auth0Client, Auth0Directory, Auth0Member, Auth0Org, Auth0Role, Auth0User};
pub use recoup::{RecoupDirectory, RecoupOrg};
pub(crate) use recoup::{format_uuid, parse_uuid};
pub use scim::{ScimBehaviour, ScimDirectory, ScimGroup, ScimUser};
pub(crate) use scim::{fold_eq, fold_hash};

/// Everything every simulated provider holds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Directory {
    /// The Aitronos tenant: its organizations.
    pub aitronos: AitronosDirectory,
    /// The Auth0 tenant: its users and organizations.
    pub auth0: Auth0Directory,
    /// The Recoup account the API key belongs to, and the organizations it sees.
    pub recoup: RecoupDirectory,
    /// The SCIM service provider's users and groups, and which optional
    /// parts of RFC 7644 it implements.
    pub scim: ScimDirectory,
}

impl Directory {
    /// Parse a seed file and check that its ids are unique and its references resolve.
    pub fn from_json_str(json: &str) -> Result<Directory, SimError> {
        let directory: Directory = serde_json::from_str(json)?;
        directory.validate()?;
        Ok(directory)
    }

    /// Check what the simulator relies on: unique ids, and members and
    /// resources pointing only at roles, departments and users that exist.
    pub fn validate(&self) -> Result<(), SimError> {
        self.aitronos.validate()?;
        self.auth0.validate()?;
        self.recoup.validate()?;
        self.scim.validate()
    }

    /// A synthetic tenant of `users` users in every provider; the same `seed`
    /// always gives the same directory.
    ///
    /// Ids follow fixed patterns tests can compute, for `i` in `1..=users`:
    /// - Aitronos: organization `org_acme`, members `usr_{i:06}` and
    ///   `usr_breakglass`; `usr_000001` is the only Owner.
    /// - Auth0: organization `org_acme`, users and members `auth0|{i:06}`
    ///   (email `user{i:06}@acme.example`) and `auth0|breakglass`;
    ///   `auth0|000001` is the only holder of `rol_owner`.
    /// - Recoup: organization `00000000-0000-4000-8000-000000000001` with
    ///   members `00000000-0000-4000-9000-{i:012}` and the caller
    ///   `00000000-0000-4000-9000-999999999999`.
    /// - SCIM: users `u-{i:06}` named `user{i:06}@acme.example`; group `g-all`
    ///   holds everyone, `g-eng` every user with an even `i`.
    pub fn generate(users: usize, seed: u64) -> Directory {
        Directory {
            aitronos: AitronosDirectory::generate(users, seed),
            auth0: Auth0Directory::generate(users, seed),
            recoup: RecoupDirectory::generate(users),
            scim: ScimDirectory::generate(users),
        }
    }
}

/// The ids, checked to be unique within `scope`.
fn unique<'a>(
    ids: impl Iterator<Item = &'a str>,
    what: &str,
    scope: &str,
) -> Result<IdSet<&'a str>, SimError> {
    let mut seen = IdSet::with_capacity_and_hasher(ids.size_hint().0, Default::default());
    for id in ids {
        if !seen.insert(id) {
            return Err(invalid(format!("duplicate {what} id {id} in {scope}")));
        }
    }
    Ok(seen)
}

/// The ids, sorted and checked to be unique within `scope`. Sorting borrowed
/// ids costs little for the already-ordered lists seeds usually hold, and
/// lets [`first_unknown`] check references without a hash set.
fn sorted_unique<'a>(
    ids: impl Iterator<Item = &'a str>,
    what: &str,
    scope: &str,
) -> Result<Vec<&'a str>, SimError> {
    let mut ids: Vec<&str> = ids.collect();
    ids.sort_unstable();
    match ids.windows(2).find(|w| w[0] == w[1]) {
        Some(pair) => Err(invalid(format!(
            "duplicate {what} id {} in {scope}",
            pair[0]
        ))),
        None => Ok(ids),
    }
}

/// The first of the sorted `ids` missing from the sorted `known` ones.
fn first_unknown<'a>(ids: &[&'a str], known: &[&str]) -> Option<&'a str> {
    let mut known = known.iter().peekable();
    ids.iter().copied().find(|id| {
        while known.next_if(|k| **k < *id).is_some() {}
        known.peek().is_none_or(|k| *k != id)
    })
}

fn invalid(message: String) -> SimError {
    SimError::InvalidDirectory(message)
}

#[cfg(test)]
mod tests {
    use super::{first_unknown, sorted_unique};

    #[test]
    fn references_are_checked_by_walking_sorted_lists() {
        let known = ["a", "b", "c"];
        assert_eq!(first_unknown(&["a", "c"], &known), None);
        assert_eq!(first_unknown(&["a", "bb", "c"], &known), Some("bb"));
        assert_eq!(first_unknown(&["0"], &known), Some("0"));
        assert_eq!(first_unknown(&["d"], &known), Some("d"));
        assert_eq!(first_unknown(&[], &known), None);
        let ids = sorted_unique(["c", "a", "b"].into_iter(), "user", "t").unwrap();
        assert_eq!(ids, known);
        assert!(sorted_unique(["a", "b", "a"].into_iter(), "user", "t").is_err());
    }
}
