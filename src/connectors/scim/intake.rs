//! SCIM ids at intake: any safe id, or an email (in `email`, or as the
//! user id) that the connector resolves through a `userName` filter. SCIM
//! has no organizations: `organization_id` names the tenant for the report.

use crate::connectors::intake::{checked, no_transfer, required, target};
use crate::domain::RowFields;
use crate::domain::ids::check_safe;
use crate::domain::{ProviderName, Rejection, Target};

/// Characters SCIM ids and userNames may use besides letters, digits, `_`, `-`.
pub(super) const ID_EXTRA: &[char] = &['.', '@', '+', ':'];

pub fn parse_target(provider: ProviderName, f: &RowFields<'_>) -> Result<Target, Rejection> {
    let user = match (f.user_id, f.email) {
        (Some(u), _) => u,
        (None, Some(e)) => e,
        (None, None) => required(None, "user_id")?,
    };
    checked("user_id", user, |v| check_safe(v, ID_EXTRA))?;
    let org = required(f.organization_id, "organization_id")?;
    checked("organization_id", org, |v| check_safe(v, ID_EXTRA))?;
    no_transfer("scim", f)?;
    Ok(target(provider, org, user))
}
