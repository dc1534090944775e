//! What a person may do through the API: each role includes the one
//! before it.

use std::fmt;
use std::str::FromStr;

/// A person's role: `viewer` < `operator` < `approver` < `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads batches, requests, reports and the audit trail.
    Viewer,
    /// Also submits, releases their own hold, cancels, retries, undoes,
    /// and runs a reconciliation as a dry run.
    Operator,
    /// Also approves halted batches (never their own).
    Approver,
    /// Also manages tokens and purges.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: use viewer, operator, approver or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Why a name cannot name a personal token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenNameError {
    #[error("token names are 1 to 64 of a-z, 0-9, '.', '_' and '-'")]
    Shape,
    #[error("{0:?} is reserved")]
    Reserved(String),
}

/// Checks a personal token's name: it becomes the actor of every decision
/// taken with the token, so it must not pass for another kind of actor.
pub fn check_token_name(name: &str) -> Result<(), TokenNameError> {
    let shaped = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !shaped {
        return Err(TokenNameError::Shape);
    }
    if matches!(name, "bootstrap" | "system") {
        return Err(TokenNameError::Reserved(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_before() {
        assert!(Role::Admin.allows(Role::Approver));
        assert!(Role::Approver.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Approver));
        assert!(!Role::Viewer.allows(Role::Operator));
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn token_names() {
        assert!(check_token_name("alice").is_ok());
        assert!(check_token_name("hr.bot-2_x").is_ok());
        for bad in ["", "Alice", "a b", "cli:me@host", "a@b", &"a".repeat(65)] {
            assert_eq!(check_token_name(bad), Err(TokenNameError::Shape), "{bad}");
        }
        assert!(matches!(
            check_token_name("bootstrap"),
            Err(TokenNameError::Reserved(_))
        ));
        assert!(matches!(
            check_token_name("system"),
            Err(TokenNameError::Reserved(_))
        ));
    }
}
