//! Who a provider connection must never offboard, compared by identity
//! rather than by spelling: a protected person is recognised by the id the
//! provider resolved, by any email the provider holds for them, and with
//! each kind's own case rules.

use std::collections::HashSet;

/// How a kind compares its user ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdCase {
    /// Ids are case-sensitive (Aitronos `usr_…`, Auth0 `connection|id`,
    /// SCIM ids, which RFC 7643 makes case-exact).
    Exact,
    /// Ids are the same whatever their case (Recoup's UUIDs).
    Insensitive,
}

/// Whether a configured entry names a person by email rather than by id.
/// An Auth0 id may hold an `@` after its connection (`samlp|acme|jane@…`),
/// so only an entry with an `@` and no `|` is an email.
pub fn is_email(entry: &str) -> bool {
    entry.contains('@') && !entry.contains('|')
}

/// The protected people of one connection.
#[derive(Debug, Clone)]
pub struct Protection {
    case: IdCase,
    ids: HashSet<String>,
    /// Lower-cased: emails compare without regard to case.
    emails: HashSet<String>,
}

impl Protection {
    /// The entries of `protected_users` and `service_account_id`. An email
    /// entry protects whoever the provider knows by that email; since an id
    /// may itself look like an email (SCIM), it also protects that id.
    pub fn new<'a>(case: IdCase, entries: impl IntoIterator<Item = &'a str>) -> Self {
        let mut protection = Protection {
            case,
            ids: HashSet::new(),
            emails: HashSet::new(),
        };
        for entry in entries {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            if is_email(entry) {
                protection.emails.insert(entry.to_lowercase());
            }
            let id = protection.id(entry);
            protection.ids.insert(id);
        }
        protection
    }

    fn id(&self, value: &str) -> String {
        match self.case {
            IdCase::Exact => value.to_owned(),
            IdCase::Insensitive => value.to_lowercase(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.emails.is_empty()
    }

    /// Whether the person named `user` (an id, or for SCIM an email), and
    /// known to the provider by `emails`, is protected.
    pub fn covers<'a>(&self, user: &str, emails: impl IntoIterator<Item = &'a str>) -> bool {
        if self.is_empty() {
            return false;
        }
        if self.ids.contains(&self.id(user)) {
            return true;
        }
        let email_hit = |e: &str| !e.is_empty() && self.emails.contains(&e.to_lowercase());
        (is_email(user) && email_hit(user)) || emails.into_iter().any(email_hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_kind_s_case_rule() {
        let exact = Protection::new(IdCase::Exact, ["usr_breakglass"]);
        assert!(exact.covers("usr_breakglass", []));
        assert!(!exact.covers("USR_BREAKGLASS", []));
        let uuid = "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11";
        let recoup = Protection::new(IdCase::Insensitive, [uuid]);
        assert!(recoup.covers(&uuid.to_lowercase(), []));
    }

    #[test]
    fn emails_match_any_spelling_and_the_provider_s_own_emails() {
        let p = Protection::new(IdCase::Exact, ["Admin@Acme.example", "u-000002"]);
        assert!(p.covers("admin@ACME.example", []), "the row's own email");
        assert!(
            p.covers("u-000009", ["ADMIN@acme.example"]),
            "the provider's"
        );
        assert!(p.covers("u-000002", []));
        assert!(!p.covers("u-000003", ["someone@acme.example"]));
        assert!(!p.covers("U-000002", []), "SCIM ids are case-exact");
    }

    #[test]
    fn auth0_ids_with_an_at_are_ids() {
        assert!(!is_email("samlp|acme|jane@acme.example"));
        assert!(is_email("jane@acme.example"));
        let p = Protection::new(IdCase::Exact, ["samlp|acme|jane@acme.example"]);
        assert!(p.covers("samlp|acme|jane@acme.example", []));
        assert!(!p.covers("x|y", ["jane@acme.example"]));
    }
}
