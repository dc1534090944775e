//! A retry's writes: which finished requests it may reopen, and the
//! reopening itself, with the batch's state, its events and the members
//! back in the roster in one transaction.

use sqlx::Row;

use super::{Backend, NewJob, Store, StoreError, events, sql::Params};
use crate::domain::{Actor, EventAction, Halt, Outcome, RunMode};

/// What a retry reopens, and how.
#[derive(Debug)]
pub struct Reopening<'a> {
    pub batch_id: &'a str,
    pub outcomes: &'a [Outcome],
    /// Requests to run again.
    pub run: &'a [String],
    /// Requests whose person is back in the roster: they end `cancelled` /
    /// `back_in_roster` instead, never reopened.
    pub back: &'a [String],
    /// `Live`, or `Preview` for a batch that was held: its requests are
    /// previewed again and the batch held for a release.
    pub mode: RunMode,
    /// Set when the reopened requests are over the cap.
    pub halt: Option<&'a Halt>,
    pub actor: &'a Actor,
    pub detail: serde_json::Value,
}

/// Why a retry changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReopenError {
    #[error(
        "batch {0} is held, cancelled, still being taken in, or a released preview waiting for its approval: there is nothing to retry now"
    )]
    NotRetryable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ReopenError {
    fn from(e: sqlx::Error) -> Self {
        ReopenError::Store(e.into())
    }
}

/// A finished request (`r`, as the query names `requests`) may be reopened
/// only while no other open request does its work (same key), never once
/// an undo gave back what it removed, and not while an undo of it waits to
/// run (it would give back less than this run removes).
fn reopenable_sql(r: &str) -> String {
    format!(
        "
       AND {r}.undone_by IS NULL
       AND NOT EXISTS (SELECT 1 FROM undo_requests u JOIN requests x ON x.id = u.request_id
                       WHERE u.undoes = {r}.id AND x.outcome IS NULL)
       AND NOT EXISTS (SELECT 1 FROM requests o
                       WHERE o.idempotency_key = {r}.idempotency_key
                         AND o.outcome IS NULL AND o.dry_run = 0 AND {r}.dry_run = 0)"
    )
}

/// A live request previewed again keeps what it removed apart from the
/// preview's plan, which takes `roles_removed` (see `Store::reopen`).
const EARLIER_SQL: &str = ",
                     roles_removed_earlier = CASE WHEN dry_run = 0 THEN roles_removed ELSE roles_removed_earlier END";

impl Store {
    /// The batch's own requests (not those its rows linked to in another
    /// batch, which that batch's rails govern) that ended with one of
    /// `outcomes` and that a retry may reopen, as (request id, user id),
    /// in id order.
    pub async fn reopenable(
        &self,
        batch_id: &str,
        outcomes: &[Outcome],
    ) -> Result<Vec<(String, String)>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = Params::new(self.backend());
        let sql = format!(
            "SELECT id, user_id FROM requests r
             WHERE r.batch_id = {} AND r.outcome IN ({}){}
             ORDER BY r.id",
            p.one(),
            p.list(outcomes.len()),
            reopenable_sql("r")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(batch_id);
        for o in outcomes {
            query = query.bind(o.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("id"), r.get("user_id")))
            .collect())
    }

    /// Reopens `r.run` (those that still ended with one of `r.outcomes`)
    /// in `r.mode` (but a dry run stays a dry run and an undo an undo: a
    /// retry never turns either into an offboarding that removes people)
    /// with a fresh attempt budget and no checkpoint, so they plan again
    /// (what they removed before stays in `roles_removed`, and their
    /// checkpoints move to `step_history` for an undo to read); ends `r.back`
    /// `back_in_roster`; records a `retried` event; and halts the batch
    /// when `r.halt` says so — all in one transaction, so no sweep can
    /// run a reopened request before the halt. Returns the reopened
    /// requests, which need queue jobs unless the batch is halted.
    pub async fn reopen(&self, r: &Reopening<'_>) -> Result<Vec<NewJob>, ReopenError> {
        let backend = self.backend();
        let mut tx = self.begin_write().await?;
        if backend == Backend::Postgres {
            // Intakes and releases take turns with this: a key reopened
            // here is not at the same moment given a request of its own.
            sqlx::query(
                "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(hashtext('offboard.intake'))) AS l",
            )
            .execute(&mut *tx)
            .await?;
        }
        // Only a batch that ran (or waits on a halt) is retried; a held
        // one's requests are previewed again and the batch held again. A
        // held batch halted at its release has live requests waiting for
        // an approver: held again, nothing would stop them.
        let retryable = match r.mode {
            RunMode::Preview => "stored_state IS NULL",
            _ => "(stored_state IS NULL OR stored_state = 'halted')",
        };
        let state = match (r.mode, r.halt) {
            (RunMode::Preview, _) => "'held', halt_code = NULL, halt_reason = NULL",
            (_, Some(_)) => "'halted'",
            _ => "stored_state",
        };
        let guarded = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE batches SET stored_state = {state} WHERE id = $1 AND {retryable}"
        )))
        .bind(r.batch_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if guarded == 0 {
            return Err(ReopenError::NotRetryable(r.batch_id.to_owned()));
        }
        events::insert(
            &mut tx,
            r.batch_id,
            r.actor,
            EventAction::Retried,
            &r.detail,
        )
        .await?;
        if r.mode == RunMode::Preview {
            let detail = serde_json::json!({"retry": true});
            events::insert(&mut tx, r.batch_id, r.actor, EventAction::Held, &detail).await?;
        }
        if let Some(halt) = r.halt {
            sqlx::query("UPDATE batches SET halt_code = $1, halt_reason = $2 WHERE id = $3")
                .bind(halt.code.as_str())
                .bind(&halt.reason)
                .bind(r.batch_id)
                .execute(&mut *tx)
                .await?;
            self.record_halt(&mut tx, r.batch_id, halt).await?;
        }
        let mut reopened = Vec::new();
        for part in r.run.chunks(500) {
            let mut p = Params::new(backend);
            let mode = p.one();
            let listed = p.list(part.len());
            let sql = format!(
                "UPDATE requests SET outcome = NULL, attempts = 0, error_code = NULL, error_message = NULL,
                     finished_at = NULL, enqueued = 0, cancel_requested = 0, subject = NULL,
                     dry_run = CASE WHEN dry_run IN ({dry}, {undo}) THEN dry_run ELSE {mode} END{earlier}
                 WHERE {} AND outcome IN ({}){}
                 RETURNING id, CASE WHEN dry_run = 2 THEN NULL ELSE effective_at END AS effective_at",
                super::sql::requests_in_id_order(backend, &listed),
                p.list(r.outcomes.len()),
                reopenable_sql("requests"),
                dry = RunMode::DryRun.as_int(),
                undo = RunMode::Undo.as_int(),
                earlier = if r.mode == RunMode::Preview {
                    EARLIER_SQL
                } else {
                    ""
                },
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(r.mode.as_int());
            for id in part {
                query = query.bind(id.as_str());
            }
            for o in r.outcomes {
                query = query.bind(o.as_str());
            }
            let rows = query.fetch_all(&mut *tx).await?;
            let done: Vec<String> = rows.iter().map(|row| row.get("id")).collect();
            if !done.is_empty() {
                let listed = Params::new(backend).list(done.len());
                // An undo still reads what the earlier attempt removed.
                let keep = format!(
                    "INSERT INTO step_history (request_id, step, data, finished_at)
                     SELECT request_id, step, data, finished_at FROM step_checkpoints
                     WHERE request_id IN ({listed})
                     ON CONFLICT DO NOTHING"
                );
                let drop = format!("DELETE FROM step_checkpoints WHERE request_id IN ({listed})");
                for sql in [keep, drop] {
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for id in &done {
                        query = query.bind(id.as_str());
                    }
                    query.execute(&mut *tx).await?;
                }
            }
            reopened.extend(rows.iter().map(|row| NewJob {
                request_id: row.get("id"),
                effective_at: row.get("effective_at"),
            }));
        }
        let now = self.now_ms();
        for part in r.back.chunks(500) {
            let mut p = Params::new(backend);
            let head = format!(
                "UPDATE requests SET outcome = 'cancelled', error_code = 'back_in_roster',
                     error_message = {}, finished_at = {}
                 WHERE outcome IN ({}) AND ",
                p.one(),
                p.one(),
                p.list(r.outcomes.len())
            );
            let sql = head + &super::sql::requests_in_id_order(backend, &p.list(part.len()));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind("not run again: back in the roster when the retry was asked for")
                .bind(now);
            for o in r.outcomes {
                query = query.bind(o.as_str());
            }
            for id in part {
                query = query.bind(id.as_str());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(reopened)
    }
}
