//! Auth0 ids at intake: users are `connection|id` (e.g. `auth0|abc`,
//! `google-oauth2|123`), organizations `org_…`; no resource transfer.

use crate::connectors::intake::{checked, no_transfer, required, target, user_id_required};
use crate::domain::RowFields;
use crate::domain::ids::{IdError, check_prefixed, check_safe};
use crate::domain::{ProviderName, Rejection, Target};

/// Characters Auth0 user ids use besides letters, digits, `_` and `-`.
/// `|` separates the connection; the path encoding turns it into `%7C`.
pub(super) const USER_ID_EXTRA: &[char] = &['|', '.', '@', '+', ':'];

pub fn check_user_id(value: &str) -> Result<(), IdError> {
    check_safe(value, USER_ID_EXTRA)?;
    match value.split_once('|') {
        Some((conn, id)) if !conn.is_empty() && !id.is_empty() => Ok(()),
        _ => Err(IdError::MissingPrefix {
            prefix: "<connection>|",
        }),
    }
}

pub fn parse_target(provider: ProviderName, f: &RowFields<'_>) -> Result<Target, Rejection> {
    user_id_required("auth0", f)?;
    let user = required(f.user_id, "user_id")?;
    checked("user_id", user, check_user_id)?;
    let org = required(f.organization_id, "organization_id")?;
    checked("organization_id", org, |v| check_prefixed(v, "org_"))?;
    no_transfer("auth0", f)?;
    Ok(target(provider, org, user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids() {
        assert!(check_user_id("auth0|abc").is_ok());
        assert!(check_user_id("google-oauth2|1234").is_ok());
        assert!(check_user_id("samlp|acme|jane@acme.example").is_ok());
        for bad in [
            "abc",
            "|abc",
            "auth0|",
            "auth0|a/b",
            "auth0|a?b",
            "auth0|a%2F",
            "auth0|a b",
        ] {
            assert!(check_user_id(bad).is_err(), "{bad}");
        }
    }
}
