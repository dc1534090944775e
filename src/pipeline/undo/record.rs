//! What an offboarding request removed, read from its own checkpoints
//! (and those of attempts a retry reopened), for the undo batch to give
//! back.

use super::super::preview::PlanCheckpoint;
use super::super::steps::{MembershipCheckpoint, RevokeCheckpoint, StripCheckpoint};
use crate::connectors::Change;
use crate::domain::{Removal, Step};
use crate::store::{StoreError, UndoSource};

/// The removal `source`'s record shows. An attempt whose role removals
/// were all done but whose membership step left no checkpoint stopped
/// during that step, so its membership removal may have gone through: it
/// counts (the undo gives back only what is missing at the provider).
pub(crate) fn removal(source: &UndoSource) -> Result<Removal, StoreError> {
    let request = &source.request;
    let mut removal = Removal {
        roles: request.roles_removed.clone(),
        department: request
            .target
            .transfer_to_department_id
            .as_ref()
            .map(|d| d.to_string()),
        ..Removal::default()
    };
    let mut first_plan: Option<PlanCheckpoint> = None;
    for attempt in attempts(&source.checkpoints) {
        let mut plan: Option<PlanCheckpoint> = None;
        let mut stripped = false;
        let mut membership: Option<Change> = None;
        for (step, data) in attempt {
            match step {
                Step::Plan => plan = Some(decode(data)?),
                Step::StripRoles => {
                    let strip: StripCheckpoint = decode(data)?;
                    stripped = strip.complete;
                    for role in strip.removed {
                        if !removal.roles.contains(&role) {
                            removal.roles.push(role);
                        }
                    }
                }
                Step::RemoveMembership => {
                    membership = Some(decode::<MembershipCheckpoint>(data)?.change);
                }
                Step::RevokeSessions => {
                    removal.sessions_revoked |= decode::<RevokeCheckpoint>(data)?.revoked;
                }
                _ => {}
            }
        }
        // A preview's plan (of a held batch before a retry made it one
        // again) removed nothing, and may name whom the provider showed
        // before the release: the live attempts say who and what.
        if plan.as_ref().is_some_and(|p| p.preview) {
            continue;
        }
        let member = plan.as_ref().is_some_and(|p| p.plan.is_member);
        removal.membership |= match membership {
            Some(change) => change == Change::Changed,
            None => member && stripped,
        };
        if removal.subject.is_none() {
            removal.subject = plan.as_ref().and_then(|p| p.plan.subject.clone());
        }
        if first_plan.is_none() {
            first_plan = plan;
        }
    }
    // Blocked by this request: not blocked when it first planned, and its
    // membership step (which blocks) ran.
    removal.blocked =
        removal.membership && first_plan.is_some_and(|p| p.plan.blocked == Some(false));
    Ok(removal)
}

/// The checkpoints split into attempts: each starts with its plan.
fn attempts(
    checkpoints: &[(Step, serde_json::Value)],
) -> impl Iterator<Item = &[(Step, serde_json::Value)]> {
    let starts: Vec<usize> = checkpoints
        .iter()
        .enumerate()
        .filter(|(i, (step, _))| *i == 0 || *step == Step::Plan)
        .map(|(i, _)| i)
        .collect();
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .copied()
        .chain(std::iter::once(checkpoints.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .map(move |(a, b)| &checkpoints[a..b])
}

fn decode<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, StoreError> {
    serde_json::from_value(value.clone())
        .map_err(|e| StoreError::Corrupt(format!("checkpoint does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::{OrgId, Outcome, ProviderName, RunMode, Target, UserId};
    use crate::store::RequestRow;

    fn source(roles_removed: &[&str], checkpoints: Vec<(Step, serde_json::Value)>) -> UndoSource {
        UndoSource {
            request: RequestRow {
                id: "r1".into(),
                batch_id: "b1".into(),
                target: Target {
                    provider: ProviderName::new_unchecked("a0"),
                    organization_id: OrgId::new_unchecked("org_acme"),
                    user_id: UserId::new_unchecked("auth0|1"),
                    transfer_to_department_id: None,
                },
                reason: None,
                effective_at: None,
                mode: RunMode::Live,
                outcome: Some(Outcome::Succeeded),
                attempts: 1,
                roles_removed: roles_removed.iter().map(|r| (*r).to_owned()).collect(),
                roles_removed_earlier: Vec::new(),
                error_code: None,
                error_message: None,
                finished_at: Some(1),
                claim: String::new(),
            },
            line: 2,
            checkpoints,
        }
    }

    fn plan(member: bool, blocked: Option<bool>) -> (Step, serde_json::Value) {
        let mut p = json!({"is_member": member, "role_ids": ["rol_a"]});
        if let Some(b) = blocked {
            p["blocked"] = json!(b);
        }
        (Step::Plan, p)
    }

    #[test]
    fn a_clean_run_gave_up_its_roles_membership_and_sign_in() {
        let r = removal(&source(
            &["rol_a"],
            vec![
                plan(true, Some(false)),
                (
                    Step::StripRoles,
                    json!({"removed": ["rol_a"], "complete": true}),
                ),
                (Step::RemoveMembership, json!({"change": "changed"})),
                (Step::RevokeSessions, json!({"revoked": true})),
            ],
        ))
        .unwrap();
        assert_eq!(r.roles, ["rol_a"]);
        assert!(r.membership && r.blocked && r.sessions_revoked);
    }

    #[test]
    fn a_user_blocked_before_is_not_ours_to_unblock() {
        let r = removal(&source(
            &[],
            vec![
                plan(true, Some(true)),
                (Step::StripRoles, json!({"removed": [], "complete": true})),
                (Step::RemoveMembership, json!({"change": "changed"})),
            ],
        ))
        .unwrap();
        assert!(r.membership && !r.blocked);
    }

    #[test]
    fn an_attempt_a_retry_reopened_still_counts() {
        // The first attempt removed the membership and then died; the
        // retry planned again, found no membership, and removed nothing.
        let r = removal(&source(
            &["rol_a"],
            vec![
                plan(true, Some(false)),
                (
                    Step::StripRoles,
                    json!({"removed": ["rol_a"], "complete": true}),
                ),
                (Step::RemoveMembership, json!({"change": "changed"})),
                (
                    Step::Plan,
                    json!({"is_member": false, "role_ids": [], "blocked": true}),
                ),
                (Step::StripRoles, json!({"removed": [], "complete": true})),
                (Step::RemoveMembership, json!({"change": "unchanged"})),
            ],
        ))
        .unwrap();
        assert!(r.membership, "the first attempt's removal is on record");
        assert!(r.blocked, "judged by the first plan, before we blocked");
    }

    #[test]
    fn a_preview_before_the_release_is_not_the_person_undone() {
        // Previewed as one account (already blocked), released as another
        // after a retry previewed it again: the live attempt decides.
        let r = removal(&source(
            &["rol_a"],
            vec![
                (
                    Step::Plan,
                    json!({"is_member": true, "role_ids": ["rol_a"], "subject": "acct_old",
                           "blocked": true, "preview": true}),
                ),
                (
                    Step::Plan,
                    json!({"is_member": true, "role_ids": ["rol_a"], "subject": "acct_new",
                           "blocked": false}),
                ),
                (
                    Step::StripRoles,
                    json!({"removed": ["rol_a"], "complete": true}),
                ),
                (Step::RemoveMembership, json!({"change": "changed"})),
            ],
        ))
        .unwrap();
        assert_eq!(r.subject.as_deref(), Some("acct_new"));
        assert!(r.membership && r.blocked, "{r:?}");
    }

    #[test]
    fn a_membership_step_that_stopped_half_way_may_have_removed_it() {
        let stopped = removal(&source(
            &["rol_a"],
            vec![
                plan(true, None),
                (
                    Step::StripRoles,
                    json!({"removed": ["rol_a"], "complete": true}),
                ),
            ],
        ))
        .unwrap();
        assert!(stopped.membership);
        let in_strip = removal(&source(
            &[],
            vec![
                plan(true, None),
                (Step::StripRoles, json!({"removed": [], "complete": false})),
            ],
        ))
        .unwrap();
        assert!(!in_strip.membership, "the membership step never started");
        let nothing = removal(&source(&[], vec![plan(false, None)])).unwrap();
        assert!(nothing.is_empty());
    }
}
