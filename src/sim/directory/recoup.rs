//! Recoup's side of the directory: the account the API key belongs to, and
//! the organizations (themselves accounts) with their member accounts.

use serde::{Deserialize, Serialize};

use super::invalid;
use crate::sim::SimError;
use crate::sim::fasthash::IdSet;

/// Recoup's side of the directory. Every id is a UUID.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct RecoupDirectory {
    /// The account the simulator's token authenticates as: Recoup answers
    /// according to what that account may see.
    pub caller_account_id: String,
    /// Organizations and their member accounts.
    pub organizations: Vec<RecoupOrg>,
}

/// One Recoup organization.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct RecoupOrg {
    /// The organization's account id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Accounts that are members.
    pub member_account_ids: Vec<String>,
}

/// The generated organization's id.
const ORG_ID: &str = "00000000-0000-4000-8000-000000000001";
/// The generated caller's account id.
const CALLER_ID: &str = "00000000-0000-4000-9000-999999999999";

impl RecoupDirectory {
    pub(super) fn generate(users: usize) -> RecoupDirectory {
        let mut members: Vec<String> = (1..=users)
            .map(|n| format!("00000000-0000-4000-9000-{n:012}"))
            .collect();
        members.push(CALLER_ID.to_owned());
        RecoupDirectory {
            caller_account_id: CALLER_ID.to_owned(),
            organizations: vec![RecoupOrg {
                id: ORG_ID.to_owned(),
                name: "Acme".to_owned(),
                member_account_ids: members,
            }],
        }
    }

    /// Ids must be UUIDs (Recoup's are Postgres `uuid`s, so case does not
    /// matter) and unique once case is ignored.
    pub(super) fn validate(&self) -> Result<(), SimError> {
        let uuid = |id: &str, what: &str| {
            parse_uuid(id).ok_or_else(|| invalid(format!("recoup {what} {id:?} is not a UUID")))
        };
        if !(self.caller_account_id.is_empty() && self.organizations.is_empty()) {
            uuid(&self.caller_account_id, "caller_account_id")?;
        }
        let mut orgs = IdSet::default();
        for org in &self.organizations {
            if !orgs.insert(uuid(&org.id, "organization id")?) {
                return Err(invalid(format!(
                    "duplicate recoup organization id {}",
                    org.id
                )));
            }
            let mut members = IdSet::default();
            for member in &org.member_account_ids {
                if !members.insert(uuid(member, "account id")?) {
                    return Err(invalid(format!(
                        "duplicate member {member} in recoup organization {}",
                        org.id
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A UUID in its canonical 8-4-4-4-12 hex form, any case, as a number; the
/// version and variant digits are not checked, as JSON Schema's `uuid` does not.
pub(crate) fn parse_uuid(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut value = 0u128;
    for (i, &byte) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if byte != b'-' {
                return None;
            }
            continue;
        }
        let digit = char::from(byte).to_digit(16)?;
        value = value << 4 | u128::from(digit);
    }
    Some(value)
}

/// The canonical lower-case text of a UUID.
pub(crate) fn format_uuid(value: u128) -> String {
    let hex = format!("{value:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::{format_uuid, parse_uuid};

    #[test]
    fn uuids_parse_in_any_case_and_print_canonically() {
        let id = "00000000-0000-4000-9000-00000000000A";
        let value = parse_uuid(id).unwrap();
        assert_eq!(format_uuid(value), id.to_ascii_lowercase());
        for bad in [
            "",
            "00000000000040009000000000000001",
            "00000000-0000-4000-9000-00000000000g",
            "00000000-0000-4000-9000_000000000001",
            "+0000000-0000-4000-9000-000000000001",
            "00000000-0000-4000-9000-0000000000011",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }
}
