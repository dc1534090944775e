//! The options of a `kind = "aitronos"` connection.

use serde::Deserialize;

/// `[providers.NAME]` keys that only Aitronos reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Delete custom roles the leaver held that are now empty.
    #[serde(default)]
    pub prune_custom_roles: bool,
}
