//! Batches: one per intake, with counts derived from their requests.

use sqlx::Row;

use super::{Store, StoreError, events, now_ms};
use crate::domain::{
    Actor, BatchState, EventAction, HaltCode, Outcome, OutcomeCounts, StoredState,
};

/// What a new batch records about its origin.
#[derive(Debug, Clone)]
pub struct NewBatch {
    /// `cli`, `api`, `dropfolder` or `reconcile`.
    pub source: String,
    /// The file or job the batch came from.
    pub source_name: Option<String>,
    pub dry_run: bool,
    /// Who submitted it; recorded as its `submitted` event.
    pub actor: Actor,
    /// The event's `detail.source`: `upload`, `cli`, `dropfolder`,
    /// `schedule`.
    pub origin: &'static str,
}

/// A stored batch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchRow {
    pub id: String,
    pub source: String,
    pub source_name: Option<String>,
    pub dry_run: bool,
    /// The state its row stores, if any; other states are derived.
    pub stored_state: Option<StoredState>,
    /// Which rail halted it, while it waits for approval.
    pub halt_code: Option<HaltCode>,
    /// Why a halted batch waits for approval.
    pub halt_reason: Option<String>,
    pub rejected_rows: u64,
    pub created_at: i64,
}

/// The columns of a listed batch.
pub(super) const LIST_SQL: &str = "SELECT id, source, source_name, dry_run, stored_state, halt_code, halt_reason, rejected_rows, created_at
     FROM batches";

/// A request of `r` held for later (`effective_at` still to come), with the
/// time now as `$1`: the counts call it scheduled and the cursor of
/// [`Store::first_open_entry`] skips it, so both read "open" alike.
macro_rules! held_sql {
    () => {
        "(r.outcome IS NULL AND COALESCE(r.effective_at, 0) > $1)"
    };
}

/// A request of `r` that a held batch previewed: it waits for the batch's
/// release, planned, so a waiter no longer counts it as work to do.
macro_rules! previewed_sql {
    () => {
        "(r.outcome IS NULL AND r.dry_run = 2 AND r.finished_at IS NOT NULL)"
    };
}

/// Lines one read of [`Store::first_open_entry`] covers. A batch's entries
/// are written faster than the server gathers statistics on them, and then
/// it estimates a few rows, so it plans to join all the entries from the
/// first line on and sort them, not to stop at the first open one: a look
/// read all 20,000 entries of the batch it watched (30–60 ms, ten times a
/// second). A window bounds what one read can touch.
const OPEN_ENTRY_WINDOW: i64 = 1024;

/// The batch's last line: one entry read backwards along the key.
const LAST_LINE_SQL: &str =
    "SELECT line FROM batch_entries WHERE batch_id = $1 ORDER BY line DESC LIMIT 1";

/// The first open entry in the lines `[$3, $4)`, `$5` the window's size:
/// the window's entries are read first (a `LIMIT` keeps them apart from
/// the join), then their requests.
const OPEN_IN_WINDOW_SQL: &str = concat!(
    "SELECT e.line AS line
     FROM (SELECT line, request_id FROM batch_entries
           WHERE batch_id = $2 AND line >= $3 AND line < $4 LIMIT $5) e
     JOIN requests r ON r.id = e.request_id
     WHERE r.outcome IS NULL AND NOT (",
    held_sql!(),
    ") AND NOT ",
    previewed_sql!(),
    " ORDER BY e.line LIMIT 1"
);

impl Store {
    pub async fn create_batch(&self, batch: &NewBatch) -> Result<String, StoreError> {
        let id = ulid::Ulid::new().to_string();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO batches (id, source, source_name, dry_run, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(&batch.source)
        .bind(&batch.source_name)
        .bind(i64::from(batch.dry_run))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::json!({
            "source": batch.origin,
            "name": batch.source_name,
            "dry_run": batch.dry_run,
        });
        events::insert(&mut tx, &id, &batch.actor, EventAction::Submitted, &detail).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn batch(&self, id: &str) -> Result<Option<BatchRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, source, source_name, dry_run, stored_state, halt_code, halt_reason, rejected_rows, created_at
             FROM batches WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| batch_from_row(&r)))
    }

    /// Newest first (ids are ULIDs: they sort as they were made).
    pub async fn list_batches(&self, limit: u32, offset: u64) -> Result<Vec<BatchRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, source, source_name, dry_run, stored_state, halt_code, halt_reason, rejected_rows, created_at
             FROM batches ORDER BY id DESC LIMIT $1 OFFSET $2",
        )
        .bind(i64::from(limit))
        .bind(offset as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(batch_from_row).collect())
    }

    /// Newest first, after the batch `after` (keyset: a deep page is found
    /// by the primary key, not by walking past the newer ones).
    pub async fn list_batches_after(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<BatchRow>, StoreError> {
        let rows = match after {
            Some(after) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{LIST_SQL} WHERE id < $1 ORDER BY id DESC LIMIT $2"
                )))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{LIST_SQL} ORDER BY id DESC LIMIT $1"
                )))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(rows.iter().map(batch_from_row).collect())
    }

    /// Batches waiting for a person (halted or held), newest first.
    pub async fn waiting_batches(&self, limit: u32) -> Result<Vec<BatchRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{LIST_SQL} WHERE stored_state IN ('halted', 'held') ORDER BY id DESC LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(batch_from_row).collect())
    }

    /// The newest batch from `source` called `name` (a job's last run).
    pub async fn last_batch_of(
        &self,
        source: &str,
        name: &str,
    ) -> Result<Option<BatchRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{LIST_SQL} WHERE source = $1 AND source_name = $2 ORDER BY created_at DESC, id DESC LIMIT 1"
        )))
        .bind(source)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| batch_from_row(&r)))
    }

    /// The line of the batch's first entry at or after `from_line` whose
    /// request is still to run (no outcome, not scheduled for later): one
    /// that [`Store::batch_counts`] counts as open. A waiter that keeps
    /// the line it got reads only the entries from there on, where
    /// `batch_counts` reads every entry of the batch; at 20,000 entries a
    /// count every 100 ms took a tenth of the CPU of the run it watched.
    pub async fn first_open_entry(
        &self,
        batch_id: &str,
        from_line: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.first_open_entry_by(batch_id, from_line, OPEN_ENTRY_WINDOW)
            .await
    }

    /// [`Store::first_open_entry`], reading `window` lines at a time up to
    /// the batch's last line.
    async fn first_open_entry_by(
        &self,
        batch_id: &str,
        from_line: i64,
        window: i64,
    ) -> Result<Option<i64>, StoreError> {
        let last: Option<i64> = sqlx::query_scalar(LAST_LINE_SQL)
            .bind(batch_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(last) = last else {
            return Ok(None);
        };
        let window = window.max(1);
        let mut from = from_line;
        while from <= last {
            let to = from.saturating_add(window);
            let line: Option<i64> = sqlx::query_scalar(OPEN_IN_WINDOW_SQL)
                .bind(now_ms())
                .bind(batch_id)
                .bind(from)
                .bind(to)
                .bind(window)
                .fetch_optional(&self.pool)
                .await?;
            if line.is_some() {
                return Ok(line);
            }
            from = to;
        }
        Ok(None)
    }

    /// Counts of the batch's entries by their request's outcome.
    pub async fn batch_counts(&self, batch: &BatchRow) -> Result<OutcomeCounts, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT r.outcome AS outcome, CASE WHEN ",
            previewed_sql!(),
            " THEN 2 WHEN ",
            held_sql!(),
            " THEN 1 ELSE 0 END AS held, COUNT(*) AS n
             FROM batch_entries e JOIN requests r ON r.id = e.request_id
             WHERE e.batch_id = $2
             GROUP BY 1, 2"
        ))
        .bind(now_ms())
        .bind(&batch.id)
        .fetch_all(&self.pool)
        .await?;
        let mut counts = OutcomeCounts {
            rejected: batch.rejected_rows,
            ..Default::default()
        };
        for row in rows {
            let n: i64 = row.try_get("n")?;
            let outcome: Option<String> = row.try_get("outcome")?;
            let held = row.try_get::<i64, _>("held")?;
            match outcome {
                Some(o) => {
                    let o: Outcome = o.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?;
                    counts.add(o, n as u64);
                }
                None if held == 1 => counts.scheduled += n as u64,
                None if held == 2 => counts.held += n as u64,
                None => counts.open += n as u64,
            }
        }
        Ok(counts)
    }

    /// The batch's requests that ended `outcome`, as (user id, error code),
    /// up to `limit`, with how many there are in all.
    pub async fn batch_people(
        &self,
        batch_id: &str,
        outcome: &str,
        limit: u32,
    ) -> Result<(Vec<(String, Option<String>)>, i64), StoreError> {
        let rows = sqlx::query(
            "SELECT r.user_id AS user_id, r.error_code AS error_code
             FROM batch_entries e JOIN requests r ON r.id = e.request_id
             WHERE e.batch_id = $1 AND r.outcome = $2 ORDER BY e.line LIMIT $3",
        )
        .bind(batch_id)
        .bind(outcome)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM batch_entries e JOIN requests r ON r.id = e.request_id
             WHERE e.batch_id = $1 AND r.outcome = $2",
        )
        .bind(batch_id)
        .bind(outcome)
        .fetch_one(&self.pool)
        .await?;
        let people = rows
            .iter()
            .map(|r| Ok((r.try_get("user_id")?, r.try_get("error_code")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok((people, total))
    }

    /// The batch's state: stored when halted or cancelled, else derived.
    pub fn batch_state(batch: &BatchRow, counts: &OutcomeCounts) -> BatchState {
        match batch.stored_state {
            Some(StoredState::Halted) => BatchState::Halted,
            Some(StoredState::Held) => BatchState::Held,
            Some(StoredState::Cancelled) => BatchState::Cancelled,
            Some(StoredState::Intake) => BatchState::Queued,
            Some(StoredState::Purging) | None => counts.derived_state(),
        }
    }
}

/// A stored state as read from its column; a value this version does not
/// know reads as none stored, as it always has.
pub(super) fn stored_state(text: Option<String>) -> Option<StoredState> {
    let text = text?;
    let state = StoredState::parse(&text);
    if state.is_none() {
        tracing::warn!(stored_state = %text, "unknown stored batch state; derived from the requests instead");
    }
    state
}

fn batch_from_row(r: &sqlx::any::AnyRow) -> BatchRow {
    BatchRow {
        id: r.get("id"),
        source: r.get("source"),
        source_name: r.get("source_name"),
        dry_run: r.get::<i64, _>("dry_run") != 0,
        stored_state: stored_state(r.get("stored_state")),
        halt_code: r
            .get::<Option<String>, _>("halt_code")
            .as_deref()
            .and_then(HaltCode::parse),
        halt_reason: r.get("halt_reason"),
        rejected_rows: r.get::<i64, _>("rejected_rows") as u64,
        created_at: r.get("created_at"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::domain::Outcome;
    use crate::store::{ClaimResult, Finish, chunk_of, scratch_batch, scratch_store};

    #[tokio::test]
    async fn the_first_open_entry_is_what_the_counts_call_open() {
        let (_dir, _url, store) = scratch_store().await;
        let batch = scratch_batch(&store).await;
        let mut chunk = chunk_of(&["u1", "u2", "u3", "u4"]);
        // u4 (line 5) may run only in an hour.
        chunk.accepted[3].effective_at = Some(crate::store::now_ms() + 3_600_000);
        let jobs = store
            .write_intake_chunk(&batch, crate::domain::RunMode::Live, None, chunk)
            .await
            .unwrap();
        let mut by_user = std::collections::HashMap::new();
        for job in &jobs {
            let request = store.request(&job.request_id).await.unwrap().unwrap();
            by_user.insert(request.target.user_id.as_str().to_owned(), request.id);
        }
        let finish = |user: &str| {
            let (store, id) = (store.clone(), by_user[user].clone());
            async move {
                let lease = Duration::from_secs(60);
                let ClaimResult::Claimed(_) = store.claim(&id, "w:1", lease).await.unwrap() else {
                    panic!("not claimed");
                };
                let done = Finish {
                    outcome: Outcome::Succeeded,
                    roles_removed: Vec::new(),
                    error_code: None,
                    error_message: None,
                };
                store.finish(&id, "w:1", &done, 0, &[]).await.unwrap();
            }
        };
        // Every window size gives the same answer, across window edges.
        let first_open = |from: i64| {
            let (store, batch) = (store.clone(), batch.clone());
            async move {
                let line = store.first_open_entry(&batch, from).await.unwrap();
                for window in [1, 2, 3] {
                    let by = store.first_open_entry_by(&batch, from, window).await;
                    assert_eq!(by.unwrap(), line, "window {window} from {from}");
                }
                line
            }
        };
        let row = store.batch(&batch).await.unwrap().unwrap();
        assert_eq!(first_open(0).await, Some(2));
        finish("u2").await;
        assert_eq!(first_open(0).await, Some(2));
        assert_eq!(first_open(3).await, Some(4));
        finish("u1").await;
        assert_eq!(first_open(0).await, Some(4));
        assert_eq!(store.batch_counts(&row).await.unwrap().open, 1);
        finish("u3").await;
        assert_eq!(first_open(0).await, None);
        assert_eq!(first_open(6).await, None, "past the last line");
        let counts = store.batch_counts(&row).await.unwrap();
        assert_eq!((counts.open, counts.scheduled), (0, 1), "u4 waits");
        store.close().await;
    }

    /// However the server plans the look for an open entry of a batch it
    /// has no statistics of (the entries written since it last gathered
    /// them), one read touches at most a window of entries.
    #[tokio::test]
    async fn a_look_for_an_open_entry_reads_one_window() {
        let Some(pg) =
            crate::store::ScratchPostgres::create("a_look_for_an_open_entry_reads_one_window")
                .await
        else {
            return;
        };
        let store = &pg.store;
        let batch = crate::store::scratch_batch(store).await;
        // 20,000 open requests, each an entry: the first is open, so a plan
        // that stops at it reads one.
        pg.open_requests(&batch, 20_000).await;
        sqlx::query(
            "INSERT INTO batch_entries (batch_id, line, request_id)
             SELECT $1, i, 'r' || i FROM generate_series(1, 20000) AS i",
        )
        .bind(&batch)
        .execute(&store.pool)
        .await
        .unwrap();
        assert_eq!(store.first_open_entry(&batch, 0).await.unwrap(), Some(1));
        let explain = |sql: &str| sqlx::AssertSqlSafe(format!("EXPLAIN ANALYZE {sql}"));
        let plan: Vec<String> = sqlx::query_scalar(explain(super::LAST_LINE_SQL))
            .bind(&batch)
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert!(most_rows(&plan) <= 1, "{}", plan.join("\n"));
        let plan: Vec<String> = sqlx::query_scalar(explain(super::OPEN_IN_WINDOW_SQL))
            .bind(super::now_ms())
            .bind(&batch)
            .bind(0_i64)
            .bind(super::OPEN_ENTRY_WINDOW)
            .bind(super::OPEN_ENTRY_WINDOW)
            .fetch_all(&store.pool)
            .await
            .unwrap();
        let window = super::OPEN_ENTRY_WINDOW as u64;
        assert!(most_rows(&plan) <= window, "{}", plan.join("\n"));
        pg.drop().await;
    }

    /// The most rows any node of an `EXPLAIN ANALYZE` plan produced, over
    /// all its loops.
    fn most_rows(plan: &[String]) -> u64 {
        // Newer servers print `rows=1.00`.
        let number = |line: &str, key: &str| -> f64 {
            line.split(key)
                .nth(1)
                .and_then(|rest| rest.split([' ', ')']).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line}"))
        };
        let nodes: Vec<f64> = plan
            .iter()
            .filter_map(|line| line.split("(actual ").nth(1))
            .map(|actual| number(actual, "rows=") * number(actual, "loops=").max(1.0))
            .collect();
        assert!(!nodes.is_empty(), "no node read in {plan:?}");
        nodes.into_iter().fold(0.0, f64::max).round() as u64
    }
}
