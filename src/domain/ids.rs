//! Identifiers that end up inside provider URLs. Every one of them is parsed
//! once, at the edge (CSV cell, config value, provider answer), so that nothing
//! a user or a provider sends can change a request's path or query.

use std::fmt;

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {max} characters")]
    TooLong { max: usize },
    #[error("contains {found:?}, which is not allowed in an id")]
    ForbiddenChar { found: char },
    #[error("must start with {prefix:?}")]
    MissingPrefix { prefix: &'static str },
    #[error("is a path segment ({0:?}), not an id")]
    DotSegment(String),
}

/// Longest id we accept; real providers use far shorter ones.
pub const MAX_ID_LEN: usize = 128;

/// Checks the characters every provider id may use. Path and query
/// delimiters, percent signs, whitespace and control characters are refused
/// outright, so an id can never be read as more than one path segment even
/// by a server that decodes before routing.
pub fn check_safe(value: &str, extra: &[char]) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    if value.chars().count() > MAX_ID_LEN {
        return Err(IdError::TooLong { max: MAX_ID_LEN });
    }
    if value == "." || value == ".." {
        return Err(IdError::DotSegment(value.to_owned()));
    }
    for c in value.chars() {
        let allowed = c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c);
        if !allowed {
            return Err(IdError::ForbiddenChar { found: c });
        }
    }
    Ok(())
}

/// Checks an id of the form `<prefix><[A-Za-z0-9_-]+>`.
pub fn check_prefixed(value: &str, prefix: &'static str) -> Result<(), IdError> {
    check_safe(value, &[])?;
    match value.strip_prefix(prefix) {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(IdError::MissingPrefix { prefix }),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value that a provider-specific check has already accepted.
            pub fn new_unchecked(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A user (or account) at a provider.
    UserId
);
id_type!(
    /// An organization (tenant) at a provider.
    OrgId
);
id_type!(
    /// The department that receives a leaver's resources.
    DepartmentId
);
id_type!(
    /// A role assignment target at a provider.
    RoleId
);
id_type!(
    /// The name of a configured provider connection (`[providers.NAME]`).
    ProviderName
);

impl ProviderName {
    /// Connection names appear in reports, logs and metrics labels.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check_safe(value, &[])?;
        Ok(Self(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_path_and_query_delimiters() {
        for bad in [
            "usr_a/b",
            "usr_a?x=1",
            "usr_a#f",
            "usr_%2e",
            "usr_ a",
            "usr_a\n",
            "..",
            ".",
        ] {
            assert!(check_prefixed(bad, "usr_").is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn accepts_plain_prefixed_ids() {
        assert_eq!(check_prefixed("usr_000123", "usr_"), Ok(()));
        assert_eq!(check_prefixed("dept_a-b_C", "dept_"), Ok(()));
    }

    #[test]
    fn prefix_alone_is_not_an_id() {
        assert_eq!(
            check_prefixed("usr_", "usr_"),
            Err(IdError::MissingPrefix { prefix: "usr_" })
        );
        assert_eq!(
            check_prefixed("org_1", "usr_"),
            Err(IdError::MissingPrefix { prefix: "usr_" })
        );
    }

    #[test]
    fn extra_characters_are_opt_in() {
        assert!(check_safe("auth0|abc", &[]).is_err());
        assert!(check_safe("auth0|abc", &['|']).is_ok());
        assert!(check_safe(&"a".repeat(MAX_ID_LEN + 1), &[]).is_err());
    }
}
