//! Halting, approving and cancelling: the store side of the safety rails.

use sqlx::Row;

use super::{NewJob, Store, StoreError, now_ms};

impl Store {
    /// Marks a batch halted with a reason; its requests get no job until
    /// it is approved.
    pub async fn halt_batch(&self, batch_id: &str, reason: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE batches SET stored_state = 'halted', halt_reason = $1 WHERE id = $2")
            .bind(reason)
            .bind(batch_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks a batch as still being taken in: none of its requests may run
    /// before intake decides to release or halt it.
    pub async fn mark_intake(&self, batch_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE batches SET stored_state = 'intake' WHERE id = $1")
            .bind(batch_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends intake: the batch's requests may run.
    pub async fn end_intake(&self, batch_id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE batches SET stored_state = NULL WHERE id = $1 AND stored_state = 'intake'",
        )
        .bind(batch_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Lifts a halt (the caller then enqueues the batch).
    pub async fn release_batch(&self, batch_id: &str) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE batches SET stored_state = NULL, halt_reason = NULL WHERE id = $1 AND stored_state = 'halted'",
        )
        .bind(batch_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// The open requests a batch created, as (request id, user id).
    pub async fn open_requests_of(
        &self,
        batch_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id FROM requests WHERE batch_id = $1 AND outcome IS NULL ORDER BY id",
        )
        .bind(batch_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("id"), r.get("user_id")))
            .collect())
    }

    /// Requests of a batch still waiting for a queue job, a page at a time.
    pub async fn unenqueued_of(
        &self,
        batch_id: &str,
        limit: u32,
    ) -> Result<Vec<NewJob>, StoreError> {
        let rows = sqlx::query(UNENQUEUED_OF_SQL)
            .bind(batch_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| NewJob {
                request_id: r.get("id"),
                effective_at: r.get("effective_at"),
            })
            .collect())
    }

    /// Cancels a request: at once when no worker holds it, else by asking
    /// the holder to stop before its next step. Returns whether it was open.
    pub async fn cancel_request(&self, id: &str, message: &str) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let mut tx = self.begin_write().await?;
        // Flag first: a worker holding the request stops before its next
        // step even if its claim is about to lapse.
        let flagged = sqlx::query(
            "UPDATE requests SET cancel_requested = 1 WHERE id = $1 AND outcome IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // A claim lapses by the database's clock, as it does for workers.
        let ended = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE requests SET outcome = 'cancelled', error_code = 'cancelled', error_message = $1, finished_at = $2
             WHERE id = $3 AND outcome IS NULL AND (claim_owner IS NULL OR claim_expires_at < {})",
            super::group::db_now_ms(self.backend())
        )))
        .bind(message)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        tracing::debug!(request = id, ended_now = ended, "request cancelled");
        Ok(flagged > 0)
    }

    /// Cancels a batch: stored state `cancelled`, every open request it
    /// created cancelled (running ones before their next step).
    pub async fn cancel_batch(&self, batch_id: &str, message: &str) -> Result<u64, StoreError> {
        sqlx::query("UPDATE batches SET stored_state = 'cancelled' WHERE id = $1")
            .bind(batch_id)
            .execute(&self.pool)
            .await?;
        let mut n = 0;
        for (id, _) in self.open_requests_of(batch_id).await? {
            if self.cancel_request(&id, message).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Records a reconciliation tick; false when another process already
    /// took it.
    pub async fn take_tick(&self, job: &str, scheduled_at: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO reconcile_ticks (job, scheduled_at, started_at) VALUES ($1, $2, $3)
             ON CONFLICT (job, scheduled_at) DO NOTHING",
        )
        .bind(job)
        .bind(scheduled_at)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub async fn set_tick_batch(
        &self,
        job: &str,
        scheduled_at: i64,
        batch_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE reconcile_ticks SET batch_id = $1 WHERE job = $2 AND scheduled_at = $3",
        )
        .bind(batch_id)
        .bind(job)
        .bind(scheduled_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest recorded tick of a job.
    pub async fn last_tick(&self, job: &str) -> Result<Option<i64>, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(scheduled_at) FROM reconcile_ticks WHERE job = $1")
                .bind(job)
                .fetch_one(&self.pool)
                .await?;
        Ok(v)
    }
}

/// A page of a batch's open requests with no queue job, in id order.
pub(crate) const UNENQUEUED_OF_SQL: &str = "SELECT id, effective_at FROM requests
     WHERE batch_id = $1 AND enqueued = 0 AND outcome IS NULL ORDER BY id LIMIT $2";
