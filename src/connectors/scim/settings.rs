//! The options of a `kind = "scim"` connection.

use serde::Deserialize;

/// `[providers.NAME]` keys that only SCIM reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Deactivate (default) or delete the account.
    #[serde(default)]
    pub deprovision: Deprovision,
}

/// What the SCIM connector does to a leaver's account after removing them
/// from their groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deprovision {
    /// `active = false` (soft; the default).
    #[default]
    Deactivate,
    /// `DELETE /Users/{id}` (hard).
    Delete,
}
