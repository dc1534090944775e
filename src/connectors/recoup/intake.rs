//! Recoup ids at intake: organization and account are UUIDs; no roles, no
//! transfer.

use crate::connectors::intake::{checked, no_transfer, required, target, user_id_required};
use crate::domain::RowFields;
use crate::domain::ids::IdError;
use crate::domain::{ProviderName, Rejection, Target};

/// A canonical UUID: 8-4-4-4-12 hex digits.
pub fn check_uuid(value: &str) -> Result<(), IdError> {
    let groups: Vec<&str> = value.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        match value.chars().find(|c| !c.is_ascii_hexdigit() && *c != '-') {
            Some(found) => Err(IdError::ForbiddenChar { found }),
            None => Err(IdError::MissingPrefix {
                prefix: "a UUID (8-4-4-4-12 hex digits); it",
            }),
        }
    }
}

pub fn parse_target(provider: ProviderName, f: &RowFields<'_>) -> Result<Target, Rejection> {
    user_id_required("recoup", f)?;
    let user = required(f.user_id, "user_id")?;
    checked("user_id", user, check_uuid)?;
    let org = required(f.organization_id, "organization_id")?;
    checked("organization_id", org, check_uuid)?;
    no_transfer("recoup", f)?;
    Ok(target(
        provider,
        &org.to_ascii_lowercase(),
        &user.to_ascii_lowercase(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        assert!(check_uuid("00000000-0000-4000-8000-000000000001").is_ok());
        assert!(check_uuid("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11").is_ok());
        for bad in [
            "",
            "1234",
            "00000000-0000-4000-8000-00000000000g",
            "00000000-0000-4000-8000-0000000000011",
            "../x",
        ] {
            assert!(check_uuid(bad).is_err(), "{bad}");
        }
    }
}
