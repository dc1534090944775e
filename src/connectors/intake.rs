//! Intake checks shared by every provider kind: required cells, id shapes
//! with the field named in the message, and refusing what a provider cannot do.

use crate::domain::RowFields;
use crate::domain::ids::IdError;
use crate::domain::truncate;
use crate::domain::{OrgId, ProviderName, Rejection, Target, UserId};

/// A required cell, or `missing_<field>`.
pub fn required<'a>(value: Option<&'a str>, field: &'static str) -> Result<&'a str, Rejection> {
    value.ok_or_else(|| {
        Rejection::new(
            match field {
                "user_id" => "missing_user_id",
                _ => "missing_organization_id",
            },
            format!("{field} is empty"),
        )
    })
}

/// Applies an id check, reporting `invalid_<field>` with the cell quoted.
pub fn checked(
    field: &'static str,
    value: &str,
    check: impl Fn(&str) -> Result<(), IdError>,
) -> Result<(), Rejection> {
    check(value).map_err(|e| {
        let code = match field {
            "user_id" => "invalid_user_id",
            "organization_id" => "invalid_organization_id",
            _ => "invalid_department_id",
        };
        Rejection::new(code, format!("{field} {:?} {e}", truncate(value)))
    })
}

/// Providers that cannot hand resources over refuse a transfer at intake.
pub fn no_transfer(kind: &str, f: &RowFields<'_>) -> Result<(), Rejection> {
    match f.transfer_to_department_id {
        Some(_) => Err(Rejection::new(
            "transfer_not_supported",
            format!("{kind} cannot transfer resources: leave transfer_to_department_id empty"),
        )),
        None => Ok(()),
    }
}

/// A row that names only an email, for providers that cannot look one up.
pub fn user_id_required(kind: &str, f: &RowFields<'_>) -> Result<(), Rejection> {
    if f.user_id.is_none() && f.email.is_some() {
        return Err(Rejection::new(
            "email_not_supported",
            format!("{kind} cannot look users up by email: give user_id"),
        ));
    }
    Ok(())
}

pub fn target(provider: ProviderName, org: &str, user: &str) -> Target {
    Target {
        provider,
        organization_id: OrgId::new_unchecked(org),
        user_id: UserId::new_unchecked(user),
        transfer_to_department_id: None,
    }
}
