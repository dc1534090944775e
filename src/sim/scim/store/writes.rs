//! The SCIM writes an offboarding makes: PATCH of a group's members or a
//! user's `active`, and DELETE of a user.
//!
//! A PATCH applies all its operations or none (RFC 7644 §3.5.2), so each one
//! is first worked out on a draft. A write that changes the resource bumps
//! its version (its ETag); one that changes nothing leaves it alone.

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

use super::{GroupStore, ScimStore};
use crate::sim::problem::Problem;
use crate::sim::scim::envelope::bad_request;
use crate::sim::scim::filter::PatchPath;
use crate::sim::scim::patch::{OpKind, Operation};

/// A group's membership as the operations so far leave it.
#[derive(Default)]
struct MemberDraft {
    /// Every earlier member was removed; only `changes` count.
    cleared: bool,
    changes: HashMap<usize, bool>,
}

impl MemberDraft {
    fn has(&self, group: &GroupStore, user: usize) -> bool {
        self.changes
            .get(&user)
            .copied()
            .unwrap_or_else(|| !self.cleared && group.has_member(user))
    }

    fn clear(&mut self) {
        self.cleared = true;
        self.changes.clear();
    }
}

impl ScimStore {
    /// Apply a PATCH to the group at `group`. `precondition` sees the
    /// current version once the operations are known to apply, since a
    /// request that would fail anyway must fail the same way with or
    /// without `If-Match` (RFC 9110 §13.2.1).
    pub(in crate::sim::scim) fn patch_group(
        &mut self,
        group: usize,
        ops: &[Operation],
        precondition: impl FnOnce(u64) -> Result<(), Problem>,
    ) -> Result<(), Problem> {
        let mut draft = MemberDraft::default();
        let mut display_name = None;
        for op in ops {
            let current = &self.groups[group];
            match (op.op, &op.path) {
                (OpKind::Remove, None) => {
                    return Err(bad_request("noTarget", "A remove operation needs a path."));
                }
                (_, Some(PatchPath::Filtered { .. }))
                    if !self.behaviour.patch_value_filter_supported =>
                {
                    return Err(bad_request(
                        "invalidPath",
                        "This service provider does not support value filters in PATCH paths.",
                    ));
                }
                (
                    OpKind::Remove,
                    Some(PatchPath::Filtered {
                        attribute,
                        sub,
                        value,
                    }),
                ) if attribute == "members" && sub == "value" => {
                    let user = self.user_position(Some(value)).ok();
                    match user.filter(|&u| draft.has(current, u)) {
                        Some(user) => {
                            draft.changes.insert(user, false);
                        }
                        None => {
                            return Err(bad_request(
                                "noTarget",
                                format!("No member matches value {value:?}."),
                            ));
                        }
                    }
                }
                (kind, Some(PatchPath::Attribute(attribute))) if attribute == "members" => {
                    if kind == OpKind::Replace || (kind == OpKind::Remove && op.value.is_none()) {
                        draft.clear();
                    }
                    let Some(value) = &op.value else {
                        if kind == OpKind::Add {
                            return Err(bad_request("invalidValue", "add needs a value."));
                        }
                        continue;
                    };
                    for id in member_ids(value)? {
                        match (kind, self.user_position(Some(id))) {
                            // Removing someone who is not there is already done.
                            (OpKind::Remove, Ok(user)) => {
                                draft.changes.insert(user, false);
                            }
                            (OpKind::Remove, Err(_)) => {}
                            (_, Ok(user)) => {
                                draft.changes.insert(user, true);
                            }
                            (_, Err(_)) => {
                                return Err(bad_request(
                                    "invalidValue",
                                    format!("No user has id {id:?}."),
                                ));
                            }
                        }
                    }
                }
                (OpKind::Add | OpKind::Replace, Some(PatchPath::Attribute(attribute)))
                    if attribute == "displayname" =>
                {
                    let name = op.value.as_ref().and_then(Value::as_str).ok_or_else(|| {
                        bad_request("invalidValue", "displayName must be a string.")
                    })?;
                    display_name = Some(name.to_owned());
                }
                _ => {
                    return Err(bad_request(
                        "invalidPath",
                        "This service provider supports only members and displayName on groups.",
                    ));
                }
            }
        }
        precondition(self.groups[group].version)?;
        let group = &mut self.groups[group];
        let mut changed = false;
        if draft.cleared {
            let members: BTreeSet<usize> = draft
                .changes
                .into_iter()
                .filter_map(|(user, present)| present.then_some(user))
                .collect();
            changed |= members != group.members;
            group.members = members;
        } else {
            for (user, present) in draft.changes {
                changed |= if present {
                    group.members.insert(user)
                } else {
                    group.members.remove(&user)
                };
            }
        }
        if let Some(name) = display_name.filter(|n| *n != group.display_name) {
            group.display_name = name;
            changed = true;
        }
        if changed {
            group.version += 1;
        }
        Ok(())
    }

    /// Apply a PATCH to the user at `user`; only `active` can change.
    /// `precondition` is checked as for [`ScimStore::patch_group`].
    pub(in crate::sim::scim) fn patch_user(
        &mut self,
        user: usize,
        ops: &[Operation],
        precondition: impl FnOnce(u64) -> Result<(), Problem>,
    ) -> Result<(), Problem> {
        let mut active = None;
        for op in ops {
            match (op.op, &op.path) {
                (OpKind::Remove, None) => {
                    return Err(bad_request("noTarget", "A remove operation needs a path."));
                }
                (OpKind::Add | OpKind::Replace, Some(PatchPath::Attribute(attribute)))
                    if attribute == "active" =>
                {
                    active = Some(boolean(op.value.as_ref())?);
                }
                (OpKind::Add | OpKind::Replace, None) => {
                    let Some(Value::Object(values)) = &op.value else {
                        return Err(bad_request(
                            "invalidValue",
                            "Without a path, value must be an object of attributes.",
                        ));
                    };
                    for (name, value) in values {
                        if !name.eq_ignore_ascii_case("active") {
                            return Err(unsupported_user_attribute(name));
                        }
                        active = Some(boolean(Some(value))?);
                    }
                }
                (_, Some(PatchPath::Attribute(attribute))) => {
                    return Err(unsupported_user_attribute(attribute));
                }
                (_, Some(PatchPath::Filtered { attribute, .. })) => {
                    return Err(unsupported_user_attribute(attribute));
                }
            }
        }
        precondition(self.users[user].user.version)?;
        let user = &mut self.users[user].user;
        if let Some(active) = active.filter(|a| *a != user.active) {
            user.active = active;
            user.version += 1;
        }
        Ok(())
    }

    /// Delete a user: later calls on the id answer 404, and the user leaves
    /// every group it was in.
    pub(crate) fn delete_user(&mut self, user: usize) {
        let slot = &mut self.users[user];
        if slot.deleted {
            return;
        }
        slot.deleted = true;
        self.live_users -= 1;
        for group in &mut self.groups {
            if group.members.remove(&user) {
                group.version += 1;
            }
        }
    }
}

/// The ids in a `members` value: `[{"value": "<id>"}, …]`.
fn member_ids(value: &Value) -> Result<Vec<&str>, Problem> {
    let invalid = || bad_request("invalidValue", "members must be a list of {\"value\": id}.");
    value
        .as_array()
        .ok_or_else(invalid)?
        .iter()
        .map(|member| {
            member
                .get("value")
                .and_then(Value::as_str)
                .ok_or_else(invalid)
        })
        .collect()
}

/// A boolean, also in the string form some clients send (`"False"`).
fn boolean(value: Option<&Value>) -> Result<bool, Problem> {
    match value {
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(bad_request("invalidValue", "active must be a boolean.")),
    }
}

fn unsupported_user_attribute(name: &str) -> Problem {
    bad_request(
        "invalidPath",
        format!("This service provider cannot change {name:?} on users; only active."),
    )
}
