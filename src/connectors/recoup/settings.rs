//! The options of a `kind = "recoup"` connection.

use serde::Deserialize;

/// `[providers.NAME]` keys that only Recoup reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Read the account's organizations in plan and verify (the default).
    /// `false` sends the documented removal alone, for a server without
    /// that read; the request then succeeds with the note
    /// `membership_unverified`.
    #[serde(default = "yes")]
    pub membership_read: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            membership_read: true,
        }
    }
}

fn yes() -> bool {
    true
}
