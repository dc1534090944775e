//! The people a CSV file has named so far, so a row that names one of them
//! again is refused with the first row's line.
//!
//! They live in a private temporary SQLite database, not in a map: the map
//! took about 44 MB at a million rows, the one part of an intake's memory
//! that grew with the file (BENCHMARKS.md). SQLite keeps a small page cache
//! of it in memory and the rest in a scratch file that it unlinks at once,
//! so nothing is left behind, even by a crash. It is the intake's own, not
//! the store's: the reader checks its rows while the store's writer thread
//! writes the chunk before, on the other core. Rows arrive in file order,
//! so a file sorted by user (within one provider and organization) appends
//! to the table.

use rusqlite::{Connection, params};

use crate::domain::{IdempotencyKey, Rejection, Target};

/// The scratch database's page cache, in KiB.
const CACHE_KIB: i64 = 2_048;

const SETUP_SQL: &str = "
    PRAGMA journal_mode = OFF;
    PRAGMA synchronous = OFF;
    CREATE TABLE people (
        who         TEXT PRIMARY KEY,   -- the idempotency key without its department
        line        INTEGER NOT NULL,
        department  TEXT NOT NULL       -- '' when the row names none
    ) WITHOUT ROWID;
    BEGIN;";
const RECORD_SQL: &str =
    "INSERT INTO people (who, line, department) VALUES (?1, ?2, ?3) ON CONFLICT (who) DO NOTHING";
const FIRST_SQL: &str = "SELECT line, department FROM people WHERE who = ?1";

/// The scratch database failed (its disk is full, say).
#[derive(Debug, thiserror::Error)]
#[error("cannot keep track of the rows read so far: {0}")]
pub struct PeopleError(#[from] rusqlite::Error);

/// Everyone the accepted rows of one file offboard, with their first line.
pub(super) struct SeenPeople {
    db: Connection,
}

impl SeenPeople {
    pub(super) fn new() -> Result<SeenPeople, PeopleError> {
        // An empty name opens a private database in a temporary file.
        let db = Connection::open("")?;
        db.pragma_update(None, "cache_size", -CACHE_KIB)?;
        // One transaction for the whole file, never committed: nothing of
        // it needs to last, and each row is then a plain B-tree insert.
        db.execute_batch(SETUP_SQL)?;
        Ok(SeenPeople { db })
    }

    /// Records the person `target` offboards at `line`; when an earlier row
    /// already named them, why this row is refused instead: `duplicate_row`
    /// for the same transfer department, else `conflicting_row`.
    pub(super) fn refusal(
        &self,
        target: &Target,
        line: u64,
    ) -> Result<Option<Rejection>, PeopleError> {
        let key = IdempotencyKey::of(target);
        let (who, department) = (key.person(), key.department());
        let line = i64::try_from(line).unwrap_or(i64::MAX);
        let mut record = self.db.prepare_cached(RECORD_SQL)?;
        if record.execute(params![who, line, department])? == 1 {
            return Ok(None);
        }
        // The insert found the row, so it is there: no row is an error,
        // never a row let through.
        let (first_line, first_department): (i64, String) = self
            .db
            .prepare_cached(FIRST_SQL)?
            .query_row(params![who], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let first_line = u64::try_from(first_line).unwrap_or_default();
        Ok(Some(if first_department == department {
            Rejection::duplicate_of(first_line)
        } else {
            Rejection::conflicting_with(first_line)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DepartmentId, OrgId, ProviderName, UserId};

    fn target(user: &str, department: Option<&str>) -> Target {
        Target {
            provider: ProviderName::new_unchecked("acme"),
            organization_id: OrgId::new_unchecked("org_a"),
            user_id: UserId::new_unchecked(user),
            transfer_to_department_id: department.map(DepartmentId::new_unchecked),
        }
    }

    #[test]
    fn a_repeat_names_the_first_line_and_a_new_department_conflicts() {
        let seen = SeenPeople::new().unwrap();
        assert_eq!(
            seen.refusal(&target("usr_1", Some("d_a")), 2).unwrap(),
            None
        );
        assert_eq!(seen.refusal(&target("usr_2", None), 3).unwrap(), None);
        assert_eq!(
            seen.refusal(&target("usr_1", Some("d_a")), 9).unwrap(),
            Some(Rejection::duplicate_of(2))
        );
        assert_eq!(
            seen.refusal(&target("usr_1", None), 10).unwrap(),
            Some(Rejection::conflicting_with(2))
        );
        assert_eq!(
            seen.refusal(&target("usr_2", None), 11).unwrap(),
            Some(Rejection::duplicate_of(3))
        );
        // Another organization's user of the same id is someone else.
        let mut elsewhere = target("usr_1", Some("d_a"));
        elsewhere.organization_id = OrgId::new_unchecked("org_b");
        assert_eq!(seen.refusal(&elsewhere, 12).unwrap(), None);
    }
}
