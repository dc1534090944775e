//! The checkpointed steps of the offboarding pipeline, in order.

use std::fmt;
use std::str::FromStr;

/// One checkpointed part of the pipeline. A resumed request starts at the
/// first step without a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    Plan,
    StripRoles,
    RemoveMembership,
    /// Auth0 `revoke_sessions`: the user's sessions and refresh tokens.
    RevokeSessions,
    PruneCustomRoles,
    Verify,
    /// Undo: what of the removal is missing at the provider now.
    UndoPlan,
    /// Undo: the membership back (and the user unblocked or reactivated).
    RestoreMembership,
    /// Undo: the removed roles or groups back.
    RestoreRoles,
}

impl Step {
    /// Every step in pipeline order. Resource transfer happens inside
    /// `RemoveMembership` for Aitronos, which does both in one call.
    pub const ORDER: [Step; 6] = [
        Step::Plan,
        Step::StripRoles,
        Step::RemoveMembership,
        Step::RevokeSessions,
        Step::PruneCustomRoles,
        Step::Verify,
    ];

    /// The steps of an undo request, in order.
    pub const UNDO: [Step; 3] = [Step::UndoPlan, Step::RestoreMembership, Step::RestoreRoles];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Plan => "plan",
            Step::StripRoles => "strip_roles",
            Step::RemoveMembership => "remove_membership",
            Step::RevokeSessions => "revoke_sessions",
            Step::PruneCustomRoles => "prune_custom_roles",
            Step::Verify => "verify",
            Step::UndoPlan => "undo_plan",
            Step::RestoreMembership => "restore_membership",
            Step::RestoreRoles => "restore_roles",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Step {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Step::ORDER
            .into_iter()
            .chain(Step::UNDO)
            .find(|step| step.as_str() == s)
            .ok_or_else(|| format!("unknown step {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_name_round_trips() {
        for step in Step::ORDER.into_iter().chain(Step::UNDO) {
            assert_eq!(step.as_str().parse::<Step>(), Ok(step));
        }
        assert!("restore".parse::<Step>().is_err());
    }
}
