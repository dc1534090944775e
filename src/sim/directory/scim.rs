//! The SCIM service provider's side of the directory: users, groups, and
//! which optional parts of RFC 7644 this provider implements (support
//! varies between real SCIM servers, so tests must be able to choose).

use serde::{Deserialize, Serialize};
use std::hash::Hasher;

use super::{first_unknown, invalid, sorted_unique, unique};
use crate::sim::SimError;
use crate::sim::fasthash::FxHasher;

/// The SCIM side of the directory.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct ScimDirectory {
    /// Users; deleted ones are gone (RFC 7644 §3.6).
    pub users: Vec<ScimUser>,
    /// Groups of users.
    pub groups: Vec<ScimGroup>,
    /// Optional features this provider implements.
    pub behaviour: ScimBehaviour,
}

/// A SCIM User resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct ScimUser {
    /// Resource id, e.g. `u-000002`.
    pub id: String,
    /// Unique, compared without regard to case (RFC 7643 §4.1.1).
    #[serde(rename = "userName")]
    pub user_name: String,
    /// Whether the user may log in.
    pub active: bool,
    /// Bumped by every change; the ETag is `W/"<version>"`.
    pub version: u64,
}

/// A SCIM Group resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct ScimGroup {
    /// Resource id, e.g. `g-eng`.
    pub id: String,
    /// Display name.
    #[serde(rename = "displayName")]
    pub display_name: String,
    /// Ids of the member users.
    pub members: Vec<String>,
    /// Bumped by every change; the ETag is `W/"<version>"`.
    pub version: u64,
}

/// The parts of RFC 7644 that real providers implement or leave out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct ScimBehaviour {
    /// `GET /Groups?filter=…` works; when false it answers 400 `invalidFilter`.
    pub group_filter_supported: bool,
    /// PATCH paths may carry a value filter (`members[value eq "…"]`); when
    /// false they answer 400 `invalidPath` and only the list form works.
    pub patch_value_filter_supported: bool,
    /// Kept so seed files that set it still load. It changes nothing: RFC
    /// 7644 defines no answer for a write without `If-Match`, so the
    /// simulator honours `If-Match` when present and never demands it.
    pub require_if_match: bool,
}

impl Default for ScimBehaviour {
    fn default() -> Self {
        ScimBehaviour {
            group_filter_supported: true,
            patch_value_filter_supported: true,
            require_if_match: false,
        }
    }
}

impl ScimDirectory {
    pub(super) fn generate(users: usize) -> ScimDirectory {
        let id = |n: usize| format!("u-{n:06}");
        let all = ScimGroup {
            id: "g-all".to_owned(),
            display_name: "Everyone".to_owned(),
            members: (1..=users).map(id).collect(),
            version: 1,
        };
        let eng = ScimGroup {
            id: "g-eng".to_owned(),
            display_name: "Engineering".to_owned(),
            members: (2..=users).step_by(2).map(id).collect(),
            version: 1,
        };
        ScimDirectory {
            users: (1..=users)
                .map(|n| ScimUser {
                    id: id(n),
                    user_name: format!("user{n:06}@acme.example"),
                    active: true,
                    version: 1,
                })
                .collect(),
            groups: vec![all, eng],
            behaviour: ScimBehaviour::default(),
        }
    }

    pub(super) fn validate(&self) -> Result<(), SimError> {
        let users = sorted_unique(self.users.iter().map(|u| u.id.as_str()), "user", "scim")?;
        // Hashes of the folded names find clashes without copying a million
        // strings into a set; only names with equal hashes are compared.
        let mut names: Vec<(u64, usize)> = self
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| (fold_hash(&u.user_name), i))
            .collect();
        names.sort_unstable_by_key(|&(hash, _)| hash);
        let name = |i: usize| self.users[i].user_name.as_str();
        for run in names
            .chunk_by(|a, b| a.0 == b.0)
            .filter(|run| run.len() > 1)
        {
            for (n, &(_, a)) in run.iter().enumerate() {
                if let Some(&(_, b)) = run[n + 1..]
                    .iter()
                    .find(|(_, b)| fold_eq(name(a), name(*b)))
                {
                    return Err(invalid(format!(
                        "scim userName {} clashes with {}",
                        name(a),
                        name(b)
                    )));
                }
            }
        }
        unique(self.groups.iter().map(|g| g.id.as_str()), "group", "scim")?;
        for group in &self.groups {
            let members = sorted_unique(
                group.members.iter().map(String::as_str),
                "member",
                &group.id,
            )?;
            if let Some(stranger) = first_unknown(&members, &users) {
                return Err(invalid(format!(
                    "scim group {} lists unknown user {stranger}",
                    group.id
                )));
            }
        }
        Ok(())
    }
}

/// Whether two texts are equal the way SCIM compares `caseExact: false`
/// attributes: after lower-casing.
pub(crate) fn fold_eq(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// A hash that agrees with [`fold_eq`]: equal texts hash equally.
pub(crate) fn fold_hash(text: &str) -> u64 {
    let mut hasher = FxHasher::default();
    // ASCII text (nearly every userName) skips the Unicode tables; both
    // paths feed the same values for the same lower-cased characters.
    if text.is_ascii() {
        for byte in text.bytes() {
            hasher.write_u64(u64::from(byte.to_ascii_lowercase()));
        }
    } else {
        for c in text.chars().flat_map(char::to_lowercase) {
            hasher.write_u64(u64::from(c));
        }
    }
    hasher.finish()
}
