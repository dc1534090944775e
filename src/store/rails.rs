//! Halting, approving and cancelling: the store side of the safety rails.

use sqlx::Row;

use super::{Backend, NewJob, Store, StoreError, events, now_ms, outbox};

/// A request left out of an approval or a release, with the outcome's
/// code and message it ends with.
#[derive(Debug, Clone)]
pub struct LeftOut {
    pub id: String,
    pub code: String,
    pub message: String,
}

impl LeftOut {
    pub fn new(id: &str, code: &str, message: &str) -> Self {
        Self {
            id: id.to_owned(),
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// A job's (`$1`) last run that reached a final state: applied (not a
/// dry run), not halted, held or cancelled, with no request still open.
const LAST_GOOD_SQL: &str = "WHERE b.source = 'reconcile' AND b.source_name = $1 AND b.dry_run = 0
       AND b.roster_rows IS NOT NULL AND b.stored_state IS NULL
       AND NOT EXISTS (SELECT 1 FROM batch_entries e JOIN requests r ON r.id = e.request_id
                       WHERE e.batch_id = b.id AND r.outcome IS NULL)
     ORDER BY b.created_at DESC, b.id DESC LIMIT 1";

/// What releasing a held preview did.
#[derive(Debug)]
pub struct Released {
    /// Requests whose person another open request offboards: skipped.
    pub duplicates: u64,
    /// Set when the release went over the cap and halted the batch.
    pub halted: Option<Halt>,
}
use crate::domain::{Actor, EventAction, Halt, Outcome};

impl Store {
    /// Marks a batch halted by a rail, with its code and reason and a
    /// `halted` event; its requests get no job until it is approved.
    pub async fn halt_batch(&self, batch_id: &str, halt: &Halt) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        self.halt_in(&mut tx, batch_id, halt).await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Store::halt_batch`] inside the caller's transaction.
    async fn halt_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        batch_id: &str,
        halt: &Halt,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE batches SET stored_state = 'halted', halt_code = $1, halt_reason = $2 WHERE id = $3",
        )
        .bind(halt.code.as_str())
        .bind(&halt.reason)
        .bind(batch_id)
        .execute(&mut *tx)
        .await?;
        self.record_halt(tx, batch_id, halt).await
    }

    /// A halt's `halted` event and its `batch.halted` notice, inside the
    /// caller's transaction (which stores the halt itself).
    pub(super) async fn record_halt(
        &self,
        tx: &mut sqlx::AnyConnection,
        batch_id: &str,
        halt: &Halt,
    ) -> Result<(), StoreError> {
        let detail = serde_json::json!({"code": halt.code, "reason": halt.reason});
        events::insert(tx, batch_id, &Actor::system(), EventAction::Halted, &detail).await?;
        outbox::insert_for_batch_event(
            tx,
            self.notify_routes(),
            "batch.halted",
            "halted",
            batch_id,
            detail,
        )
        .await
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

    /// Ends intake as a held preview, with a `held` event: its requests
    /// plan and then wait for its release.
    pub async fn hold_batch(&self, batch_id: &str, actor: &Actor) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE batches SET stored_state = 'held' WHERE id = $1 AND stored_state = 'intake'",
        )
        .bind(batch_id)
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::json!({});
        events::insert(&mut tx, batch_id, actor, EventAction::Held, &detail).await?;
        tx.commit().await?;
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

    /// Applies a halted batch in one transaction: lifts the halt (the
    /// halt's own event stays), cancels the requests `left_out` of the
    /// approval, and records an `approved` event naming `actor` and `only`.
    /// False, with nothing changed, when the batch is no longer halted (a
    /// concurrent approval or cancel came first). The caller then enqueues
    /// the batch.
    pub async fn release_batch(
        &self,
        batch_id: &str,
        actor: &Actor,
        only: Option<&[String]>,
        left_out: &[LeftOut],
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE batches SET stored_state = NULL, halt_code = NULL, halt_reason = NULL
             WHERE id = $1 AND stored_state = 'halted'",
        )
        .bind(batch_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        for left in left_out {
            self.cancel_in(&mut tx, left).await?;
        }
        let detail = serde_json::json!({"only": only, "left_out": left_out.len()});
        events::insert(&mut tx, batch_id, actor, EventAction::Approved, &detail).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Releases a held preview in one transaction: its planned requests
    /// become live (a request whose person another open request offboards
    /// meanwhile ends `skipped` / `duplicate_person`), those `left_out`
    /// are cancelled, and a `released` event names `actor`. More than
    /// `cap` of them halt the batch with `over(n)` instead of letting it
    /// run; either way the caller then enqueues it. `None`, with nothing
    /// changed, when the batch is no longer held.
    pub async fn release_hold(
        &self,
        batch_id: &str,
        actor: &Actor,
        only: Option<&[String]>,
        left_out: &[LeftOut],
        cap: u64,
        over: impl Fn(u64) -> Halt,
    ) -> Result<Option<Released>, StoreError> {
        let mut tx = self.begin_write().await?;
        if self.backend() == Backend::Postgres {
            // Intakes take turns with this (`write_intake_chunk`): a row
            // stored meanwhile links to, or is linked from, what is live.
            sqlx::query(
                "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(hashtext('offboard.intake'))) AS l",
            )
            .execute(&mut *tx)
            .await?;
        }
        let held = sqlx::query(
            "UPDATE batches SET stored_state = NULL WHERE id = $1 AND stored_state = 'held'",
        )
        .bind(batch_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if held == 0 {
            return Ok(None);
        }
        for left in left_out {
            self.cancel_in(&mut tx, left).await?;
        }
        let live = sqlx::query(
            "UPDATE requests SET dry_run = 0, roles_removed = roles_removed_earlier,
                 finished_at = NULL, enqueued = 0
             WHERE batch_id = $1 AND dry_run = 2 AND outcome IS NULL
               AND NOT EXISTS (SELECT 1 FROM requests o
                               WHERE o.idempotency_key = requests.idempotency_key
                                 AND o.outcome IS NULL AND o.dry_run = 0)",
        )
        .bind(batch_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let duplicates = sqlx::query(
            "UPDATE requests SET outcome = 'skipped', error_code = 'duplicate_person',
                 error_message = 'another open request offboards this person; nothing was changed',
                 roles_removed = roles_removed_earlier, finished_at = $1
             WHERE batch_id = $2 AND dry_run = 2 AND outcome IS NULL",
        )
        .bind(now_ms())
        .bind(batch_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let detail = serde_json::json!({"only": only, "requests": live});
        events::insert(&mut tx, batch_id, actor, EventAction::Released, &detail).await?;
        let halted = (live > cap).then(|| over(live));
        if let Some(halt) = &halted {
            self.halt_in(&mut tx, batch_id, halt).await?;
        }
        tx.commit().await?;
        Ok(Some(Released { duplicates, halted }))
    }

    /// Held previews taken in before `before` (unix ms): their hold ran out.
    pub async fn expired_holds(&self, before: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM batches WHERE stored_state = 'held' AND created_at < $1 ORDER BY id",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?)
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
        let rows = sqlx::query(super::handoff::UNENQUEUED_OF_SQL)
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
    pub async fn cancel_request(
        &self,
        id: &str,
        code: &str,
        message: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let open = self
            .cancel_in(&mut tx, &LeftOut::new(id, code, message))
            .await?;
        tx.commit().await?;
        Ok(open)
    }

    /// [`Store::cancel_request`] inside the caller's transaction.
    async fn cancel_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        left: &LeftOut,
    ) -> Result<bool, StoreError> {
        // Flag first: a worker holding the request stops before its next
        // step even if its claim is about to lapse.
        let flagged = sqlx::query(
            "UPDATE requests SET cancel_requested = 1 WHERE id = $1 AND outcome IS NULL",
        )
        .bind(&left.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // A claim lapses by the database's clock, as it does for workers.
        // A held preview's roles are what it would have removed: cancelled,
        // it removed only what attempts before a retry did.
        let ended = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE requests SET outcome = 'cancelled', error_code = $1, error_message = $2, finished_at = $3,
                 roles_removed = CASE WHEN dry_run = 2 THEN roles_removed_earlier ELSE roles_removed END
             WHERE id = $4 AND outcome IS NULL AND (claim_owner IS NULL OR claim_expires_at < {})",
            super::group::db_now_ms(self.backend())
        )))
        .bind(&left.code)
        .bind(&left.message)
        .bind(self.now_ms())
        .bind(&left.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tracing::debug!(request = %left.id, ended_now = ended, "request cancelled");
        Ok(flagged > 0)
    }

    /// Cancels a batch: stored state `cancelled` with a `cancelled` event
    /// naming `actor`, every open request it created cancelled (running
    /// ones before their next step).
    pub async fn cancel_batch(
        &self,
        batch_id: &str,
        message: &str,
        actor: &Actor,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE batches SET stored_state = 'cancelled' WHERE id = $1")
            .bind(batch_id)
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({"reason": message});
        events::insert(&mut tx, batch_id, actor, EventAction::Cancelled, &detail).await?;
        tx.commit().await?;
        let mut n = 0;
        for (id, _) in self.open_requests_of(batch_id).await? {
            if self.cancel_request(&id, "cancelled", message).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Records how many rows a reconciliation's roster had.
    pub async fn set_roster_rows(&self, batch_id: &str, rows: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE batches SET roster_rows = $1 WHERE id = $2")
            .bind(rows as i64)
            .bind(batch_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The job's last run that reached a final state (see
    /// [`Store::last_good_roster_rows`]).
    pub async fn last_good_roster_batch(&self, job: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT b.id FROM batches b {LAST_GOOD_SQL}"
        )))
        .bind(job)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The roster size of the job's last run that reached a final state:
    /// applied (not a dry run), not halted, held or cancelled, with no
    /// request still open.
    pub async fn last_good_roster_rows(&self, job: &str) -> Result<Option<u64>, StoreError> {
        let rows: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT b.roster_rows FROM batches b {LAST_GOOD_SQL}"
        )))
        .bind(job)
        .fetch_optional(&self.pool)
        .await?;
        Ok(rows.map(|r| r as u64))
    }

    /// Gives requests that must never run their outcome before any job
    /// claims them (a reconciliation's unmatched members).
    pub async fn settle_unrun(
        &self,
        ids: &[String],
        outcome: Outcome,
        code: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        for part in ids.chunks(500) {
            let mut p = super::sql::Params::new(self.backend());
            let head = format!(
                "UPDATE requests SET outcome = {}, error_code = {}, error_message = {}, finished_at = {}
                 WHERE outcome IS NULL AND ",
                p.one(),
                p.one(),
                p.one(),
                p.one()
            );
            let sql = head + &super::sql::requests_in_id_order(self.backend(), &p.list(part.len()));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(outcome.as_str())
                .bind(code)
                .bind(message)
                .bind(now);
            for id in part {
                q = q.bind(id.as_str());
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
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
