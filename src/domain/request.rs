//! What one offboarding request is about, and the key that makes a second
//! submission of it a no-op.

use sha2::{Digest, Sha256};

use super::{DepartmentId, OrgId, ProviderName, UserId};

/// The user to offboard: one user in one organization on one provider
/// connection, plus where their resources go.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    pub provider: ProviderName,
    pub organization_id: OrgId,
    pub user_id: UserId,
    pub transfer_to_department_id: Option<DepartmentId>,
}

/// Identity of a request for deduplication across submissions:
/// `(provider, organization_id, user_id, transfer department)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn of(target: &Target) -> Self {
        let mut hasher = Sha256::new();
        // NUL separators: ids never contain NUL, so fields cannot run together.
        for part in [
            target.provider.as_str(),
            target.organization_id.as_str(),
            target.user_id.as_str(),
            target
                .transfer_to_department_id
                .as_ref()
                .map_or("", |d| d.as_str()),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        Self(hex::encode(&hasher.finalize()[..16]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(dept: Option<&str>) -> Target {
        Target {
            provider: ProviderName::new_unchecked("acme"),
            organization_id: OrgId::new_unchecked("org_a"),
            user_id: UserId::new_unchecked("usr_1"),
            transfer_to_department_id: dept.map(DepartmentId::new_unchecked),
        }
    }

    #[test]
    fn key_depends_on_department() {
        assert_eq!(
            IdempotencyKey::of(&target(None)),
            IdempotencyKey::of(&target(None))
        );
        assert_ne!(
            IdempotencyKey::of(&target(None)),
            IdempotencyKey::of(&target(Some("dept_x")))
        );
    }
}

/// Why an input row cannot become a request: a stable snake_case code and a
/// message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
