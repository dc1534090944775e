//! What one offboarding request is about, and the key that makes a second
//! submission of it a no-op.

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

/// How a request runs (`requests.dry_run`): for real, as a dry run that
/// reports what it would remove, as a held preview that plans, waits
/// for its batch's release and then applies what it previewed, or as the
/// undo of an earlier request, which restores what that one removed. Only
/// live requests take part in deduplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunMode {
    #[default]
    Live,
    DryRun,
    Preview,
    Undo,
}

impl RunMode {
    /// The stored value.
    pub fn as_int(self) -> i64 {
        match self {
            RunMode::Live => 0,
            RunMode::DryRun => 1,
            RunMode::Preview => 2,
            RunMode::Undo => 3,
        }
    }

    pub fn from_int(v: i64) -> Option<RunMode> {
        match v {
            0 => Some(RunMode::Live),
            1 => Some(RunMode::DryRun),
            2 => Some(RunMode::Preview),
            3 => Some(RunMode::Undo),
            _ => None,
        }
    }

    /// Whether each row stands alone: neither linked to other work nor
    /// linked to by it.
    pub fn stands_alone(self) -> bool {
        self != RunMode::Live
    }
}

/// Identity of a request for deduplication across submissions:
/// `(provider, organization_id, user_id, transfer department)`, the ids
/// themselves joined by `/`.
///
/// Not a hash, so the key reads as what it names and sorts as the ids do:
/// a roster sorted by user adds its keys at the open-key index's end
/// rather than all over it (on the 2026-12-03 VM that made no measurable
/// difference to intake speed; BENCHMARKS.md). Intake refuses `/` and `%`
/// in every id, so the parts cannot run together; an id that holds one
/// anyway is escaped rather than trusted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn of(target: &Target) -> Self {
        let parts = [
            target.provider.as_str(),
            target.organization_id.as_str(),
            target.user_id.as_str(),
            target
                .transfer_to_department_id
                .as_ref()
                .map_or("", |d| d.as_str()),
        ];
        let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
        for (i, part) in parts.into_iter().enumerate() {
            if i > 0 {
                key.push('/');
            }
            if part.contains(['/', '%']) {
                key.push_str(&part.replace('%', "%25").replace('/', "%2F"));
            } else {
                key.push_str(part);
            }
        }
        Self(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The key without its department: who is offboarded, wherever their
    /// resources go. A file names each person once: a second row is a
    /// duplicate, or a conflict when it names another department.
    pub fn person(&self) -> &str {
        self.split().0
    }

    /// The department part (escaped as in the key; empty when none).
    pub fn department(&self) -> &str {
        self.split().1
    }

    fn split(&self) -> (&str, &str) {
        // The department is the last part, and no part holds a bare `/`.
        self.0.rsplit_once('/').unwrap_or((&self.0, ""))
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
        assert_eq!(
            IdempotencyKey::of(&target(Some("dept_x"))).as_str(),
            "acme/org_a/usr_1/dept_x"
        );
    }

    #[test]
    fn keys_sort_as_their_users_do() {
        let of = |user: &str| {
            let mut t = target(None);
            t.user_id = UserId::new_unchecked(user);
            IdempotencyKey::of(&t)
        };
        assert!(of("usr_000002").as_str() < of("usr_000010").as_str());
    }

    #[test]
    fn the_person_is_the_key_without_its_department() {
        let moved = IdempotencyKey::of(&target(Some("dept_x")));
        let kept = IdempotencyKey::of(&target(None));
        assert_eq!(moved.person(), kept.person());
        assert_eq!(moved.department(), "dept_x");
        assert_eq!(kept.department(), "");
        let mut other = target(Some("dept_x"));
        other.user_id = UserId::new_unchecked("usr_2");
        assert_ne!(IdempotencyKey::of(&other).person(), moved.person());
    }

    #[test]
    fn a_separator_inside_an_id_cannot_forge_another_key() {
        let mut slashed = target(None);
        slashed.user_id = UserId::new_unchecked("usr_1/dept_x");
        let mut escaped = target(None);
        escaped.user_id = UserId::new_unchecked("usr_1%2Fdept_x");
        let keys = [
            IdempotencyKey::of(&target(Some("dept_x"))),
            IdempotencyKey::of(&slashed),
            IdempotencyKey::of(&escaped),
        ];
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[1], keys[2]);
        assert_ne!(keys[0], keys[2]);
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

    /// A row that repeats an earlier row of the same file.
    pub fn duplicate_of(first_line: u64) -> Self {
        Self::new("duplicate_row", format!("duplicate of line {first_line}"))
    }

    /// A row that offboards the person of an earlier row of the same file
    /// to another department: which one is meant is not ours to guess.
    pub fn conflicting_with(first_line: u64) -> Self {
        Self::new(
            "conflicting_row",
            format!(
                "line {first_line} already offboards this user with a different transfer department"
            ),
        )
    }
}
