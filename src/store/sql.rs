//! Building the parameter lists of statements whose size depends on the
//! data (multi-row `VALUES` and `IN` lists), and the one list a column
//! holds (a request's roles).
//!
//! Fixed statements use `$N`, which both engines read. Generated ones
//! number their parameters through [`Params`]: `$N` on PostgreSQL, plain
//! `?` on SQLite, because binding a named parameter costs SQLite a scan of
//! every name before it — quadratic in a 5,000-parameter insert, where it
//! took 60% of an intake's time.

use super::Backend;

/// Hands out the placeholders of one statement, in the order they appear
/// in its text (which must be the order they are bound in).
pub(crate) struct Params {
    backend: Backend,
    next: usize,
}

impl Params {
    pub(crate) fn new(backend: Backend) -> Params {
        Params { backend, next: 1 }
    }

    /// The next placeholder.
    pub(crate) fn one(&mut self) -> String {
        let n = self.next;
        self.next += 1;
        match self.backend {
            Backend::Sqlite => "?".to_owned(),
            Backend::Postgres => format!("${n}"),
        }
    }

    /// `p, p, …`: an `IN` list of `n` placeholders.
    pub(crate) fn list(&mut self, n: usize) -> String {
        (0..n).map(|_| self.one()).collect::<Vec<_>>().join(", ")
    }

    /// `(p, p), (p, p), …`: `rows` tuples of `columns` placeholders.
    pub(crate) fn tuples(&mut self, rows: usize, columns: usize) -> String {
        (0..rows)
            .map(|_| format!("({})", self.list(columns)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `id IN (<ids>)` for an `UPDATE requests`, where `ids` is a list or a
/// subquery of request ids. On PostgreSQL the rows are first locked in id
/// order, the order the group commit takes them in, so two writers of many
/// requests never wait on each other in a cycle. `NO KEY UPDATE` is the
/// lock a plain `UPDATE` of these rows takes anyway; `FOR UPDATE` would also
/// block the key-share locks that an intake's `batch_entries` insert takes
/// on the requests it links to. SQLite has one writer at a time and needs
/// no order.
pub(crate) fn requests_in_id_order(backend: Backend, ids: &str) -> String {
    match backend {
        Backend::Sqlite => format!("id IN ({ids})"),
        Backend::Postgres => {
            format!(
                "id IN (SELECT id FROM requests WHERE id IN ({ids}) ORDER BY id FOR NO KEY UPDATE)"
            )
        }
    }
}

/// The roles a `requests` row lists (`roles_removed` and
/// `roles_removed_earlier`), as stored: `;`-separated (a role id passes
/// `check_safe`, which lets no `;` through).
pub(crate) fn roles_text(roles: &[String]) -> String {
    roles.join(";")
}

/// The roles of a column [`roles_text`] wrote.
pub(crate) fn roles_of_text(stored: &str) -> Vec<String> {
    stored
        .split(';')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_engine_and_count_on() {
        let mut pg = Params::new(Backend::Postgres);
        assert_eq!(pg.one(), "$1");
        assert_eq!(pg.tuples(2, 2), "($2, $3), ($4, $5)");
        assert_eq!(pg.list(2), "$6, $7");
        let mut lite = Params::new(Backend::Sqlite);
        assert_eq!(lite.one(), "?");
        assert_eq!(lite.tuples(1, 3), "(?, ?, ?)");
        assert_eq!(lite.list(0), "");
    }
}
