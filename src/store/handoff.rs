//! The hand-off of stored requests to the queue, on our side of it: which
//! requests have a job (the enqueue marks), a batch's push cursor, and the
//! pages of requests that still need a job. Every statement on our tables
//! that the hand-off makes is here, private; the queue brings only a
//! closure that writes its own job rows, and on SQLite that closure runs
//! inside the same write transaction as the marks, so "job written" and
//! "request marked" commit together and a crash leaves no duplicate job.
//!
//! The engines keep two protocols behind these functions. SQLite intake
//! stores new requests held ([`EnqueueMark::Held`]) so that the push
//! writes their jobs in the writer's transaction that moves the batch's
//! cursor, because marking requests after the fact rewrites every row, a
//! fifth of the writer's work per row (BENCHMARKS.md, "Why: held jobs").
//! On PostgreSQL no transaction of ours can hold the rows apalis pushes in
//! one statement on its own pool (`push_all`), so requests are stored
//! unqueued and marked once their jobs exist, a crash in between leaving at
//! most a duplicate job that is harmless because a job must claim its
//! request.

use rusqlite::{OptionalExtension, params};

use super::{NewJob, Store, StoreError};

/// A request's `requests.enqueued` mark. The SQL below spells the values
/// out (a partial index, `requests_batch_unqueued`, is defined on
/// `enqueued = 0`, and SQLite uses it only for a query with that literal);
/// a unit test holds them to this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnqueueMark {
    /// No job yet: a sweep or the batch's release enqueues it.
    Unqueued = 0,
    /// It has a job.
    Enqueued = 1,
    /// SQLite intake stored it with its job held back until the batch may
    /// run; the batch's push writes it, and no sweep takes it.
    Held = 2,
}

impl EnqueueMark {
    pub(crate) fn value(self) -> i64 {
        self as i64
    }
}

/// The writer's transaction a job-writing closure runs in (SQLite).
pub(crate) type WriterTx<'t> = rusqlite::Transaction<'t>;

const MARK_ENQUEUED_SQL: &str = "UPDATE requests SET enqueued = 1 WHERE id = ?1";
/// A batch's first requests with no job, in id order (`$1` batch,
/// `$2` how many). Served by `requests_batch_unqueued`.
pub(super) const UNENQUEUED_OF_SQL: &str =
    "SELECT id, CASE WHEN dry_run = 2 THEN NULL ELSE effective_at END AS effective_at FROM requests
     WHERE batch_id = $1 AND enqueued = 0 AND outcome IS NULL ORDER BY id LIMIT $2";
/// Marks a page of a batch read by `UNENQUEUED_OF_SQL` in one statement:
/// in the transaction that read it, the page is exactly the batch's
/// unqueued requests up to its last id. Walking `requests_batch_unqueued`
/// once replaces a primary-key lookup and a statement per request
/// (BENCHMARKS.md, "Why: multi-row statements on the writer").
/// `INDEXED BY` turns a plan that lost the index into an error, not a
/// scan of the whole batch per page.
const MARK_PAGE_OF_SQL: &str = "UPDATE requests INDEXED BY requests_batch_unqueued SET enqueued = 1
     WHERE batch_id = ?1 AND enqueued = 0 AND outcome IS NULL AND id <= ?2";

/// How far a batch's push has got, while it holds requests with no job
/// and may run (the same states as [`HELD_BATCHES_SQL`]).
const PUSH_CURSOR_SQL: &str =
    "SELECT pushed_through FROM batches WHERE id = ?1 AND push_pending = 1
       AND (stored_state IS NULL OR stored_state NOT IN ('intake', 'halted', 'cancelled'))";
/// The next held requests of a batch, in the order intake stored them.
/// `enqueued = 2` (held) leaves out an adopted request (from another batch
/// or an earlier chunk of this one), which comes unqueued and gets its job
/// from [`Store::hand_off_unqueued`], and a reopened one.
const HELD_PAGE_SQL: &str = "SELECT rowid, id, CASE WHEN dry_run = 2 THEN NULL ELSE effective_at END AS effective_at FROM requests INDEXED BY requests_batch
     WHERE batch_id = ?1 AND rowid > ?2 AND enqueued = 2 AND outcome IS NULL
     ORDER BY rowid LIMIT ?3";
const PUSHED_THROUGH_SQL: &str = "UPDATE batches SET pushed_through = ?2 WHERE id = ?1";
const PUSHED_ALL_SQL: &str = "UPDATE batches SET push_pending = 0 WHERE id = ?1";
/// Batches holding jobs that may run now, oldest first.
const HELD_BATCHES_SQL: &str = "SELECT id FROM batches WHERE push_pending = 1
       AND (stored_state IS NULL OR stored_state NOT IN ('intake', 'halted', 'cancelled'))
     ORDER BY id";

impl Store {
    /// SQLite: runs `write_jobs` (the queue's rows for `ids`) and marks
    /// `ids` enqueued, in one transaction on the writer.
    pub(crate) async fn hand_off_ids<W>(
        &self,
        ids: Vec<String>,
        write_jobs: W,
    ) -> Result<(), StoreError>
    where
        W: FnOnce(&WriterTx<'_>) -> Result<(), StoreError> + Send + 'static,
    {
        self.on_sqlite_writer(move |tx| {
            write_jobs(tx)?;
            let mut mark = tx.prepare_cached(MARK_ENQUEUED_SQL)?;
            for id in &ids {
                mark.execute(params![id])?;
            }
            Ok(())
        })
        .await
    }

    /// SQLite: reads the next `limit` requests with no job (of `batch`, in
    /// id order, or of any batch that may run), runs `write_jobs` on them
    /// and marks them enqueued, in one transaction; returns how many.
    pub(crate) async fn hand_off_unqueued<W>(
        &self,
        batch: Option<String>,
        limit: usize,
        write_jobs: W,
    ) -> Result<usize, StoreError>
    where
        W: FnOnce(&WriterTx<'_>, &[NewJob]) -> Result<(), StoreError> + Send + 'static,
    {
        self.on_sqlite_writer(move |tx| {
            let job = |r: &rusqlite::Row<'_>| {
                Ok(NewJob {
                    request_id: r.get(0)?,
                    effective_at: r.get(1)?,
                })
            };
            let page: Vec<NewJob> = match &batch {
                Some(batch) => tx
                    .prepare_cached(UNENQUEUED_OF_SQL)?
                    .query_map(params![batch, limit as i64], job)?
                    .collect::<Result<_, _>>()?,
                None => tx
                    .prepare_cached(super::requests::UNENQUEUED_PAGE)?
                    .query_map(params![limit as i64], job)?
                    .collect::<Result<_, _>>()?,
            };
            write_jobs(tx, &page)?;
            match (batch, page.last()) {
                (Some(batch), Some(last)) => {
                    tx.prepare_cached(MARK_PAGE_OF_SQL)?
                        .execute(params![batch, last.request_id])?;
                }
                _ => {
                    let mut mark = tx.prepare_cached(MARK_ENQUEUED_SQL)?;
                    for job in &page {
                        mark.execute(params![job.request_id])?;
                    }
                }
            }
            Ok(page.len())
        })
        .await
    }

    /// SQLite: runs `write_jobs` on the next `limit` requests `batch` holds,
    /// in the transaction that reads them and moves the batch's cursor past
    /// them; returns how many (0 once the batch holds none, which it then
    /// records, or while it may not run).
    pub(crate) async fn hand_off_held<W>(
        &self,
        batch: String,
        limit: usize,
        write_jobs: W,
    ) -> Result<usize, StoreError>
    where
        W: FnOnce(&WriterTx<'_>, &[NewJob]) -> Result<(), StoreError> + Send + 'static,
    {
        self.on_sqlite_writer(move |tx| {
            let Some(after) = tx
                .prepare_cached(PUSH_CURSOR_SQL)?
                .query_row(params![batch], |r| r.get::<_, i64>(0))
                .optional()?
            else {
                return Ok(0);
            };
            let held: Vec<(i64, NewJob)> = tx
                .prepare_cached(HELD_PAGE_SQL)?
                .query_map(params![batch, after, limit as i64], |r| {
                    Ok((
                        r.get(0)?,
                        NewJob {
                            request_id: r.get(1)?,
                            effective_at: r.get(2)?,
                        },
                    ))
                })?
                .collect::<Result<_, _>>()?;
            let Some(&(last, _)) = held.last() else {
                tx.prepare_cached(PUSHED_ALL_SQL)?.execute(params![batch])?;
                return Ok(0);
            };
            let page: Vec<NewJob> = held.into_iter().map(|(_, job)| job).collect();
            write_jobs(tx, &page)?;
            tx.prepare_cached(PUSHED_THROUGH_SQL)?
                .execute(params![batch, last])?;
            Ok(page.len())
        })
        .await
    }

    /// SQLite: the batches whose held requests may run now and still need
    /// jobs (an intake or approval that stopped before its push finished).
    pub(crate) async fn held_batches(&self) -> Result<Vec<String>, StoreError> {
        self.on_sqlite_writer(|tx| {
            Ok(tx
                .prepare_cached(HELD_BATCHES_SQL)?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The marks the SQL spells out are the enum's.
    #[test]
    fn the_sql_marks_are_the_enum_s() {
        let unqueued = format!("enqueued = {}", EnqueueMark::Unqueued.value());
        let enqueued = format!("enqueued = {}", EnqueueMark::Enqueued.value());
        let held = format!("enqueued = {}", EnqueueMark::Held.value());
        assert!(MARK_ENQUEUED_SQL.contains(&enqueued));
        assert!(MARK_PAGE_OF_SQL.contains(&enqueued) && MARK_PAGE_OF_SQL.contains(&unqueued));
        assert!(UNENQUEUED_OF_SQL.contains(&unqueued));
        assert!(super::super::requests::UNENQUEUED_PAGE.contains(&unqueued));
        assert!(HELD_PAGE_SQL.contains(&held));
    }
}
