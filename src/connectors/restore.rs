//! The answers an undo gives where a provider cannot give access back:
//! what a person must restore by hand, or an account that is gone.

use super::StepError;
use crate::domain::{Removal, Target};

/// A provider with no documented call to restore access: the request ends
/// `needs_attention` / `manual_restore_required`, naming what to restore.
pub fn manual(why: &str, target: &Target, removal: &Removal) -> StepError {
    let mut what = format!(
        "{} for {} in {}",
        removal.describe(),
        target.user_id,
        target.organization_id
    );
    if let Some(dept) = &removal.department {
        what.push_str(&format!("; the resources were moved to department {dept}"));
    }
    StepError::needs_attention(
        "manual_restore_required",
        format!("{why}: restore by hand {what}"),
    )
}

/// An account the provider no longer has (SCIM `deprovision = "delete"`,
/// or a user deleted since): nothing can be given back to it.
pub fn deleted(target: &Target, removal: &Removal) -> StepError {
    StepError::needs_attention(
        "cannot_restore_deleted",
        format!(
            "{} no longer exists at the provider (deleted), so {} cannot be given back; create the account again and restore it by hand",
            target.user_id,
            removal.describe()
        ),
    )
}

/// A connector without the calls an undo needs (never reached for the
/// four providers, whose `restore_plan` stops the undo first).
pub fn unsupported(provider: &crate::domain::ProviderName) -> StepError {
    StepError::permanent(
        "restore_not_supported",
        format!("{provider} has no call that gives access back"),
    )
}
