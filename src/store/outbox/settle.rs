//! Whether a batch has settled — every request final (`batch.finished`),
//! or every request of a held preview planned (`batch.held`) — asked after
//! each run and at `serve`'s start, walking the batch's entries from where
//! this process's last look stopped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Notice, insert, insert_for_batch_event, occurrences};
use crate::domain::StoredState;
use crate::store::{Store, StoreError};

/// The line of batch `$1`'s first entry at or after line `$2` whose
/// request is still to run or to plan (a planned preview has its
/// `finished_at`), in the entries' key order.
pub(in crate::store) const UNSETTLED_SQL: &str =
    "SELECT e.line FROM batch_entries e JOIN requests r ON r.id = e.request_id
     WHERE e.batch_id = $1 AND e.line >= $2 AND r.outcome IS NULL AND r.finished_at IS NULL
     ORDER BY e.line LIMIT 1";

/// The outcomes that make a finished batch worth a message by default.
const PROBLEMS_SQL: &str = "('needs_attention', 'failed', 'dead')";

impl Store {
    /// After a request's run: each batch it belongs to (its own, and any
    /// that links to it) that has now finished gets its `batch.finished`,
    /// and a held preview whose every request is planned its `batch.held`.
    /// Runs after the request's own write committed, so of two requests
    /// ending at once the later check sees both; the dedupe key makes the
    /// earlier's (if it saw both too) the only one.
    pub async fn notice_after_run(&self, request_id: &str) -> Result<(), StoreError> {
        if !self.wants_settled() {
            return Ok(());
        }
        let batches: Vec<String> = sqlx::query_scalar(
            "SELECT batch_id FROM requests WHERE id = $1
             UNION SELECT batch_id FROM batch_entries WHERE request_id = $2",
        )
        .bind(request_id)
        .bind(request_id)
        .fetch_all(&self.pool)
        .await?;
        for batch_id in batches {
            self.notice_if_settled(&batch_id).await?;
        }
        Ok(())
    }

    /// At `serve`'s start: the notices a settled batch made since `since`
    /// (unix ms) should have had, for a process killed between a
    /// request's last write and [`Store::notice_after_run`]. The dedupe
    /// keys make it a no-op for every batch that has them.
    pub async fn notice_settled_since(&self, since: i64) -> Result<(), StoreError> {
        if !self.wants_settled() {
            return Ok(());
        }
        let batches: Vec<String> =
            sqlx::query_scalar("SELECT id FROM batches WHERE created_at >= $1 ORDER BY id")
                .bind(since)
                .fetch_all(&self.pool)
                .await?;
        for batch_id in batches {
            self.notice_if_settled(&batch_id).await?;
        }
        Ok(())
    }

    /// Whether a channel wants what a settled batch tells.
    fn wants_settled(&self) -> bool {
        let routes = self.notify_routes();
        routes.wants("batch.finished") || routes.wants("batch.held")
    }

    async fn notice_if_settled(&self, batch_id: &str) -> Result<(), StoreError> {
        // Most runs stop here, having walked the batch's entries from the
        // line where the last look stopped, not from its first line: over
        // a batch's run each entry is passed about once.
        let from = self.settle_cursors.from(batch_id);
        let unsettled: Option<i64> = sqlx::query_scalar(UNSETTLED_SQL)
            .bind(batch_id)
            .bind(from)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(line) = unsettled {
            self.settle_cursors.set(batch_id, line);
            return Ok(());
        }
        let routes = self.notify_routes();
        let mut tx = self.begin_write().await?;
        // Again from the first line, in the transaction: a retry may have
        // reopened a line the cursor passed.
        let unsettled: Option<i64> = sqlx::query_scalar(UNSETTLED_SQL)
            .bind(batch_id)
            .bind(0_i64)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(line) = unsettled {
            self.settle_cursors.set(batch_id, line);
            return Ok(());
        }
        self.settle_cursors.forget(batch_id);
        let state: Option<Option<String>> =
            sqlx::query_scalar("SELECT stored_state FROM batches WHERE id = $1")
                .bind(batch_id)
                .fetch_optional(&mut *tx)
                .await?;
        // The batch's row, and the state it stores (parsed once here).
        match state.map(super::super::batches::stored_state) {
            Some(Some(StoredState::Held)) => {
                insert_for_batch_event(
                    &mut tx,
                    routes,
                    "batch.held",
                    "held",
                    batch_id,
                    serde_json::json!({}),
                )
                .await?;
            }
            Some(None) if routes.wants("batch.finished") => {
                let open: Option<i64> = sqlx::query_scalar(
                    "SELECT 1 FROM batch_entries e JOIN requests r ON r.id = e.request_id
                     WHERE e.batch_id = $1 AND r.outcome IS NULL LIMIT 1",
                )
                .bind(batch_id)
                .fetch_optional(&mut *tx)
                .await?;
                if open.is_none() {
                    let problems: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT COUNT(*) FROM batch_entries e JOIN requests r ON r.id = e.request_id
                         WHERE e.batch_id = $1 AND r.outcome IN {PROBLEMS_SQL}"
                    )))
                    .bind(batch_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    let n = occurrences(&mut tx, batch_id, "retried").await?;
                    let notice = Notice {
                        kind: "batch.finished",
                        dedupe_key: format!("batch.finished/{batch_id}/{n}"),
                        batch_id: Some(batch_id.to_owned()),
                        facts: serde_json::json!({}),
                        problems: problems > 0,
                    };
                    insert(&mut tx, routes, &notice).await?;
                }
            }
            _ => {}
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Batches this process holds a cursor for at most; past it they start
/// again from their first line.
const MAX_CURSORS: usize = 10_000;

/// Per batch, the line where the last look found a request unsettled:
/// the lines before it were settled then, so the next look starts there.
/// Only a hint: a settled batch is confirmed from its first line.
#[derive(Debug, Clone, Default)]
pub(in crate::store) struct SettleCursors(Arc<Mutex<HashMap<String, i64>>>);

impl SettleCursors {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn from(&self, batch_id: &str) -> i64 {
        self.map().get(batch_id).copied().unwrap_or(0)
    }

    fn set(&self, batch_id: &str, line: i64) {
        let mut map = self.map();
        if map.len() >= MAX_CURSORS && !map.contains_key(batch_id) {
            map.clear();
        }
        map.insert(batch_id.to_owned(), line);
    }

    fn forget(&self, batch_id: &str) {
        self.map().remove(batch_id);
    }
}
