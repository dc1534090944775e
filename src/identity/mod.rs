//! Who is asking: a personal API token, the `[http] token_env` token (the
//! built-in admin `bootstrap`), or a person a trusted single-sign-on proxy
//! vouches for. Every decision taken through the API is recorded with the
//! actor found here, and allowed only to the roles that may take it.

mod proxy;
mod tokens;

pub use proxy::{Cidr, TrustedProxy, TrustedProxyError};
pub use tokens::{IssuedToken, TOKEN_PREFIX, hash_token, issue_token};

use crate::domain::{Actor, Role};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub actor: Actor,
    pub role: Role,
}

impl Identity {
    /// The `[http] token_env` token.
    pub fn bootstrap() -> Self {
        Identity {
            actor: Actor::bootstrap(),
            role: Role::Admin,
        }
    }

    pub fn allows(&self, needed: Role) -> bool {
        self.role.allows(needed)
    }
}
