//! Aitronos ids at intake: `usr_`, `org_`, `dept_` prefixes, nothing that
//! could change a URL.

use crate::domain::RowFields;
use crate::domain::ids::check_prefixed;
use crate::domain::truncate;
use crate::domain::{DepartmentId, OrgId, ProviderName, Rejection, Target, UserId};

pub fn parse_target(provider: ProviderName, f: &RowFields<'_>) -> Result<Target, Rejection> {
    let user = match (f.user_id, f.email) {
        (Some(u), _) => u,
        (None, Some(_)) => {
            return Err(Rejection::new(
                "email_not_supported",
                "aitronos cannot look users up by email: give user_id",
            ));
        }
        (None, None) => return Err(Rejection::new("missing_user_id", "user_id is empty")),
    };
    check_prefixed(user, "usr_").map_err(|e| {
        Rejection::new(
            "invalid_user_id",
            format!("user_id {:?} {e}", truncate(user)),
        )
    })?;
    let org = f
        .organization_id
        .ok_or_else(|| Rejection::new("missing_organization_id", "organization_id is empty"))?;
    check_prefixed(org, "org_").map_err(|e| {
        Rejection::new(
            "invalid_organization_id",
            format!("organization_id {:?} {e}", truncate(org)),
        )
    })?;
    let dept = f
        .transfer_to_department_id
        .map(|d| {
            check_prefixed(d, "dept_")
                .map(|_| DepartmentId::new_unchecked(d))
                .map_err(|e| {
                    Rejection::new(
                        "invalid_department_id",
                        format!("transfer_to_department_id {:?} {e}", truncate(d)),
                    )
                })
        })
        .transpose()?;
    Ok(Target {
        provider,
        organization_id: OrgId::new_unchecked(org),
        user_id: UserId::new_unchecked(user),
        transfer_to_department_id: dept,
    })
}
