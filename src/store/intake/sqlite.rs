//! An intake chunk on SQLite, written on the group writer's thread and
//! connection with prepared multi-row statements, not through sqlx, whose
//! every statement is a round trip to its connection's thread
//! (BENCHMARKS.md, "Why: a native writer"). The same rows as the PostgreSQL
//! path writes, through the same plan (`ChunkPlan`), except that new
//! requests are stored held ([`EnqueueMark::Held`]: not unqueued, and not
//! marked by a sweep) and their batch as holding jobs to push
//! (`store::handoff`), where PostgreSQL stores them unqueued.

use std::collections::HashMap;

use rusqlite::{CachedStatement, OptionalExtension, Statement, params};

use super::{
    ADD_REJECTED_SQL, AcceptedRow, ChunkPlan, ChunkWrite, REQUEST_INSERT_COLUMNS, keys_of,
};
use crate::store::sql::Params;
use crate::store::{Backend, EnqueueMark, NewJob, StoreError, now_ms};

const OPEN_SQL: &str =
    "SELECT r.id, b.stored_state FROM requests r JOIN batches b ON b.id = r.batch_id
     WHERE r.idempotency_key = ?1 AND r.outcome IS NULL AND r.dry_run = 0";
const ADOPT_SQL: &str = "UPDATE requests SET batch_id = ?1, enqueued = 0 WHERE id = ?2";
/// The newest success per key answers for it, unless an undo gave back
/// what it removed (then none does: the person may have access again).
const RECENT_SQL: &str = "SELECT id, undone_by FROM requests
     WHERE idempotency_key = ?1 AND dry_run = 0
       AND outcome IN ('succeeded', 'already_done') AND finished_at >= ?2
     ORDER BY finished_at DESC LIMIT 1";
const ENTRY_COLUMNS: &str = "batch_id, line, request_id";
/// The batch's new requests wait for the push that gives them jobs once
/// the batch may run.
const HOLD_JOBS_SQL: &str =
    "UPDATE batches SET push_pending = 1 WHERE id = ?1 AND push_pending = 0";
const REJECTED_SQL: &str =
    "INSERT INTO rejected_rows (batch_id, line, code, message, provider, organization_id, user_id)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Stores the chunk in `tx`; returns the requests it created.
///
/// Each key is looked up right before its request would be inserted, in
/// the plan's key order: the open-key index is walked once front to back,
/// each of its pages read and dirtied once per chunk, where a lookup pass
/// and then an insert pass read every page twice and wrote it back
/// whenever the page cache let it go in between.
pub(super) fn write_chunk(
    tx: &rusqlite::Transaction<'_>,
    write: &ChunkWrite,
) -> Result<Vec<NewJob>, StoreError> {
    let ChunkWrite {
        batch_id,
        mode,
        dedupe_since,
        chunk,
    } = write;
    let alone = mode.stands_alone();
    let keys = keys_of(chunk);
    // Every key's first row planned as a new request; the keys that
    // already have work are linked to it below instead.
    let mut plan = ChunkPlan::of(chunk, &keys, HashMap::new(), alone);
    let now = now_ms();
    let columns = format!("{REQUEST_INSERT_COLUMNS}, enqueued");
    (|| -> Result<(), rusqlite::Error> {
        let mut insert = Rows::new(
            tx,
            "requests",
            &columns,
            |s: &mut Statement<'_>, at: usize, new_row: &&(String, &AcceptedRow, &str)| {
                let (id, row, key) = new_row;
                let t = &row.target;
                s.raw_bind_parameter(at, id)?;
                s.raw_bind_parameter(at + 1, batch_id)?;
                s.raw_bind_parameter(at + 2, t.provider.as_str())?;
                s.raw_bind_parameter(at + 3, t.organization_id.as_str())?;
                s.raw_bind_parameter(at + 4, t.user_id.as_str())?;
                s.raw_bind_parameter(
                    at + 5,
                    t.transfer_to_department_id.as_ref().map(|d| d.as_str()),
                )?;
                s.raw_bind_parameter(at + 6, &row.reason)?;
                s.raw_bind_parameter(at + 7, row.effective_at)?;
                s.raw_bind_parameter(at + 8, *key)?;
                s.raw_bind_parameter(at + 9, mode.as_int())?;
                s.raw_bind_parameter(at + 10, now)?;
                // Held: the batch's push gives it a job (`store::handoff`).
                s.raw_bind_parameter(at + 11, EnqueueMark::Held.value())
            },
        )?;
        let mut reusable = Reusable::new(tx, batch_id, *dedupe_since)?;
        let mut linked = HashMap::new();
        for new_row in &plan.new_rows {
            let (id, _, key) = new_row;
            if !alone && let Some(existing) = reusable.find(key)? {
                linked.insert(id.clone(), existing);
                continue;
            }
            insert.push(new_row)?;
        }
        insert.finish()?;
        plan.link(&linked);
        if !plan.created.is_empty() {
            tx.prepare_cached(HOLD_JOBS_SQL)?
                .execute(params![batch_id])?;
        }
        let mut entry = Rows::new(
            tx,
            "batch_entries",
            ENTRY_COLUMNS,
            |s: &mut Statement<'_>, at: usize, entry: &&(u64, String)| {
                let (line, id) = entry;
                s.raw_bind_parameter(at, batch_id)?;
                s.raw_bind_parameter(at + 1, *line as i64)?;
                s.raw_bind_parameter(at + 2, id)
            },
        )?;
        for e in &plan.entries {
            entry.push(e)?;
        }
        entry.finish()?;
        let mut rejected = tx.prepare_cached(REJECTED_SQL)?;
        for r in &chunk.rejected {
            rejected.execute(params![
                batch_id,
                r.line as i64,
                r.code,
                r.message,
                r.provider,
                r.organization_id,
                r.user_id
            ])?;
        }
        if !chunk.rejected.is_empty() {
            tx.prepare_cached(ADD_REJECTED_SQL)?
                .execute(params![chunk.rejected.len() as i64, batch_id])?;
        }
        Ok(())
    })()
    .map_err(StoreError::from)?;
    Ok(plan.created)
}

/// Rows per multi-row `INSERT`: SQLite binds, steps and resets a statement
/// once for all of them instead of once a row (BENCHMARKS.md, "Why:
/// multi-row statements on the writer").
const ROWS_PER_INSERT: usize = 64;

/// Inserts rows into one table, [`ROWS_PER_INSERT`] to a statement and
/// the last few one by one, so that only two statements are ever prepared
/// (the writer's statement cache is small).
struct Rows<'t, T, B> {
    many: CachedStatement<'t>,
    one: CachedStatement<'t>,
    columns: usize,
    /// Binds a row's values from the given one-based parameter index on.
    bind: B,
    pending: Vec<T>,
}

impl<'t, T, B> Rows<'t, T, B>
where
    B: Fn(&mut Statement<'_>, usize, &T) -> Result<(), rusqlite::Error>,
{
    /// Rows of `table`'s `columns` (a comma-separated list, in the order
    /// `bind` binds them).
    fn new(
        tx: &'t rusqlite::Transaction<'_>,
        table: &str,
        columns: &str,
        bind: B,
    ) -> Result<Self, rusqlite::Error> {
        let count = columns.split(',').count();
        let values = |rows: usize| {
            let tuples = Params::new(Backend::Sqlite).tuples(rows, count);
            format!("INSERT INTO {table} ({columns}) VALUES {tuples}")
        };
        Ok(Rows {
            many: tx.prepare_cached(&values(ROWS_PER_INSERT))?,
            one: tx.prepare_cached(&values(1))?,
            columns: count,
            bind,
            pending: Vec::with_capacity(ROWS_PER_INSERT),
        })
    }

    fn push(&mut self, row: T) -> Result<(), rusqlite::Error> {
        self.pending.push(row);
        if self.pending.len() == ROWS_PER_INSERT {
            for (i, row) in self.pending.iter().enumerate() {
                (self.bind)(&mut self.many, 1 + i * self.columns, row)?;
            }
            self.many.raw_execute()?;
            self.pending.clear();
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(), rusqlite::Error> {
        for row in &self.pending {
            (self.bind)(&mut self.one, 1, row)?;
            self.one.raw_execute()?;
        }
        Ok(())
    }
}

/// Finds the request a key's rows link to: an open one, or (within the
/// dedupe window) a recent success. An open request of an unapproved
/// batch (or of an intake that died half-way) is adopted by this batch,
/// which then runs it.
struct Reusable<'t> {
    batch_id: &'t str,
    dedupe_since: Option<i64>,
    open: rusqlite::CachedStatement<'t>,
    adopt: rusqlite::CachedStatement<'t>,
    recent: rusqlite::CachedStatement<'t>,
}

impl<'t> Reusable<'t> {
    fn new(
        tx: &'t rusqlite::Transaction<'_>,
        batch_id: &'t str,
        dedupe_since: Option<i64>,
    ) -> Result<Self, rusqlite::Error> {
        Ok(Reusable {
            batch_id,
            dedupe_since,
            open: tx.prepare_cached(OPEN_SQL)?,
            adopt: tx.prepare_cached(ADOPT_SQL)?,
            recent: tx.prepare_cached(RECENT_SQL)?,
        })
    }

    fn find(&mut self, key: &str) -> Result<Option<String>, rusqlite::Error> {
        let open: Option<(String, Option<String>)> = self
            .open
            .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((id, state)) = open {
            if crate::store::batches::stored_state(state)
                .is_some_and(crate::domain::StoredState::waits_for_release)
            {
                self.adopt.execute(params![self.batch_id, id])?;
            }
            return Ok(Some(id));
        }
        match self.dedupe_since {
            Some(since) => Ok(self
                .recent
                .query_row(params![key, since], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .optional()?
                .and_then(|(id, undone_by)| undone_by.is_none().then_some(id))),
            None => Ok(None),
        }
    }
}
