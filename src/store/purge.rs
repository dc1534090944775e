//! Retention: finished batches past `[retention] keep_days` are deleted
//! with their requests, entries, rejected rows, checkpoints, audit events
//! and decisions, leaving one `purged_batches` row each. A large batch goes
//! a few thousand requests per transaction, marked `purging` first, so a
//! purge never holds the write lock for long and a crash half-way is
//! finished by the next one.

use sqlx::Row;

use super::sql::Params;
use super::{BatchRow, Store, StoreError, now_ms};
use crate::domain::{Actor, OutcomeCounts};

/// Requests deleted per transaction.
const PURGE_CHUNK: i64 = 2_000;

/// A batch none of whose requests is open, as the counts say (`e` names
/// `batch_entries` of batch `b`).
const FINISHED_SQL: &str =
    "NOT EXISTS (SELECT 1 FROM batch_entries e JOIN requests r ON r.id = e.request_id
                     WHERE e.batch_id = b.id AND r.outcome IS NULL)";

impl Store {
    /// Batches that may be purged: last active before `before` (unix ms:
    /// taken in, a decision, or a request finished), finished (no open
    /// request; not held, halted or being taken in), or already
    /// half-purged. Oldest first, after `after` (keyset), at most `limit`.
    pub async fn purgeable(
        &self,
        before: i64,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<BatchRow>, StoreError> {
        let (after_at, after_id) = after.unwrap_or((i64::MIN, ""));
        let ids: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT b.id FROM batches b
             WHERE b.created_at < $1
               AND (b.created_at > $2 OR (b.created_at = $3 AND b.id > $4))
               AND (b.stored_state = 'purging'
                    OR ((b.stored_state IS NULL OR b.stored_state = 'cancelled') AND {FINISHED_SQL}
                        AND NOT EXISTS (SELECT 1 FROM batch_events ev
                                        WHERE ev.batch_id = b.id AND ev.at >= $5)
                        AND NOT EXISTS (SELECT 1 FROM batch_entries e JOIN requests r ON r.id = e.request_id
                                        WHERE e.batch_id = b.id AND r.finished_at >= $6)))
             ORDER BY b.created_at, b.id LIMIT $7"
        )))
        .bind(before)
        .bind(after_at)
        .bind(after_at)
        .bind(after_id)
        .bind(before)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.get("id"))
        .collect();
        let mut batches = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(b) = self.batch(&id).await? {
                batches.push(b);
            }
        }
        Ok(batches)
    }

    /// Purges one batch (see the module's doc); false when it is no longer
    /// purgeable (a retry reopened it meanwhile).
    pub async fn purge_batch(
        &self,
        batch: &BatchRow,
        counts: &OutcomeCounts,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        // Under the lock retries and intakes take on PostgreSQL, so a retry
        // that reopens this batch's requests is seen here, not purged.
        let mut tx = self.begin_write().await?;
        if self.backend() == super::Backend::Postgres {
            sqlx::query(
                "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(hashtext('offboard.intake'))) AS l",
            )
            .execute(&mut *tx)
            .await?;
        }
        let n = sqlx::query(
            "UPDATE batches SET stored_state = 'purging' WHERE id = $1
               AND (stored_state = 'purging'
                    OR ((stored_state IS NULL OR stored_state = 'cancelled')
                        AND NOT EXISTS (SELECT 1 FROM batch_entries e JOIN requests r ON r.id = e.request_id
                                        WHERE e.batch_id = $2 AND r.outcome IS NULL)))",
        )
        .bind(&batch.id)
        .bind(&batch.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if n == 0 {
            return Ok(false);
        }
        while self.purge_requests(&batch.id).await? > 0 {}
        let mut tx = self.begin_write().await?;
        for sql in [
            "DELETE FROM batch_entries WHERE batch_id = $1",
            "DELETE FROM rejected_rows WHERE batch_id = $1",
            "DELETE FROM batch_events WHERE batch_id = $1",
            "DELETE FROM api_idempotency WHERE batch_id = $1",
            "DELETE FROM notify_deliveries WHERE event_id IN (SELECT id FROM notify_events WHERE batch_id = $1)",
            "DELETE FROM notify_events WHERE batch_id = $1",
            "UPDATE dropfolder_files SET batch_id = NULL WHERE batch_id = $1",
            "UPDATE reconcile_ticks SET batch_id = NULL WHERE batch_id = $1",
            "DELETE FROM batches WHERE id = $1",
        ] {
            sqlx::query(sql).bind(&batch.id).execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO purged_batches (batch_id, source, source_name, created_at, counts, purged_at, actor)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(&batch.id)
        .bind(&batch.source)
        .bind(&batch.source_name)
        .bind(batch.created_at)
        .bind(serde_json::to_string(counts).unwrap_or_default())
        .bind(now_ms())
        .bind(actor.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes the next chunk of the batch's own requests with their
    /// checkpoints, audit events and this batch's entries for them; how
    /// many went. A request a later batch links to moves to that batch
    /// instead, with its record.
    async fn purge_requests(&self, batch_id: &str) -> Result<u64, StoreError> {
        let backend = self.backend();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE requests SET batch_id = (SELECT MAX(e.batch_id) FROM batch_entries e
                                             WHERE e.request_id = requests.id AND e.batch_id <> $1)
             WHERE batch_id = $2
               AND EXISTS (SELECT 1 FROM batch_entries e
                           WHERE e.request_id = requests.id AND e.batch_id <> $3)",
        )
        .bind(batch_id)
        .bind(batch_id)
        .bind(batch_id)
        .execute(&mut *tx)
        .await?;
        let ids: Vec<String> =
            sqlx::query("SELECT id FROM requests WHERE batch_id = $1 ORDER BY id LIMIT $2")
                .bind(batch_id)
                .bind(PURGE_CHUNK)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.get("id"))
                .collect();
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        for table in [
            "audit_events WHERE request_id",
            "step_checkpoints WHERE request_id",
            "batch_entries WHERE request_id",
            "requests WHERE id",
        ] {
            let sql = format!(
                "DELETE FROM {table} IN ({})",
                Params::new(backend).list(ids.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in &ids {
                q = q.bind(id.as_str());
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }
}
