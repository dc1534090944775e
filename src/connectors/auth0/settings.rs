//! The options of a `kind = "auth0"` connection.

use serde::Deserialize;

/// `[providers.NAME]` keys that only Auth0 reads: what a connection does
/// beyond removing roles and the membership.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Also block the user (`PATCH /users/{id}`) after removal.
    #[serde(default)]
    pub block_user: bool,
    /// After removal, revoke the user's sessions and refresh tokens
    /// (tenant-wide, not per organization).
    #[serde(default)]
    pub revoke_sessions: bool,
}
