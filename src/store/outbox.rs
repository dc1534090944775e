//! The notification outbox: events written in the transaction of the
//! change that causes them (`notify_events`, unique by a dedupe key, so two
//! processes that make the same change write it once), one delivery row per
//! channel that wants it (`notify_deliveries`), and the delivery's lease,
//! taken like a request's claim on the database's clock, so two processes
//! never send one event to one channel at once. A channel that answered is
//! marked `sent` and never sent the event again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use sqlx::Row;

use super::group::db_now_ms;
use super::sql::Params;
use super::{Store, StoreError, now_ms};

/// Which channels want which events (from `[notify]`), so that a change
/// writes only what some channel will be sent.
#[derive(Debug, Clone, Default)]
pub struct NotifyRoutes(pub Vec<NotifyRoute>);

/// One channel's subscriptions.
#[derive(Debug, Clone)]
pub struct NotifyRoute {
    pub channel: String,
    pub kinds: Vec<String>,
    /// `batch.finished` with no problem too.
    pub finished_always: bool,
}

impl NotifyRoutes {
    /// Whether any channel wants `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.0.iter().any(|r| r.kinds.iter().any(|k| k == kind))
    }

    fn channels(&self, notice: &Notice) -> Vec<&str> {
        self.0
            .iter()
            .filter(|r| r.kinds.iter().any(|k| k == notice.kind))
            .filter(|r| notice.kind != "batch.finished" || notice.problems || r.finished_always)
            .map(|r| r.channel.as_str())
            .collect()
    }
}

/// An event to write.
#[derive(Debug, Clone)]
pub struct Notice {
    pub kind: &'static str,
    /// Unique per occurrence: `KIND/BATCH/N`, `dropfolder.file_failed/SHA`.
    pub dedupe_key: String,
    pub batch_id: Option<String>,
    /// What is known only at the change (a halt's reason, a file's error).
    pub facts: serde_json::Value,
    /// `batch.finished`: some request ended needs_attention, failed or dead.
    pub problems: bool,
}

/// A stored event.
#[derive(Debug, Clone)]
pub struct NotifyEvent {
    pub id: String,
    pub kind: String,
    pub batch_id: Option<String>,
    pub facts: serde_json::Value,
    /// The rendered message, once rendered.
    pub payload: Option<String>,
    pub created_at: i64,
}

/// A delivery this process holds the lease of.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_id: String,
    pub channel: String,
    /// Attempts before this one.
    pub attempts: i64,
    pub created_at: i64,
}

/// A pending or dead delivery, for `offboard notify status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryStatus {
    pub event_id: String,
    pub kind: String,
    pub batch_id: Option<String>,
    pub channel: String,
    pub state: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

/// Writes `notice` inside the caller's transaction, with a delivery per
/// channel that wants it; nothing when none does, or when an event of the
/// same dedupe key exists. Returns the new event's id.
pub(super) async fn insert(
    tx: &mut sqlx::AnyConnection,
    routes: &NotifyRoutes,
    notice: &Notice,
) -> Result<Option<String>, StoreError> {
    let channels = routes.channels(notice);
    if channels.is_empty() {
        return Ok(None);
    }
    let id = ulid::Ulid::new().to_string();
    let now = now_ms();
    let written = sqlx::query(
        "INSERT INTO notify_events (id, dedupe_key, kind, batch_id, facts, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(&id)
    .bind(&notice.dedupe_key)
    .bind(notice.kind)
    .bind(notice.batch_id.as_deref())
    .bind(notice.facts.to_string())
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if written == 0 {
        return Ok(None);
    }
    for channel in channels {
        sqlx::query(
            "INSERT INTO notify_deliveries (event_id, channel, state, next_at) VALUES ($1, $2, 'pending', $3)",
        )
        .bind(&id)
        .bind(channel)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    Ok(Some(id))
}

/// How many times the batch has had `action` recorded (the occurrence
/// number of a halt, a hold, a retry).
async fn occurrences(
    tx: &mut sqlx::AnyConnection,
    batch_id: &str,
    action: &str,
) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM batch_events WHERE batch_id = $1 AND action = $2")
            .bind(batch_id)
            .bind(action)
            .fetch_one(&mut *tx)
            .await?,
    )
}

/// A batch event's notice (`batch.halted`, `batch.held`), keyed by how
/// many such events the batch has: a halt after an approval and a retry
/// is news again, the same halt seen twice is not.
pub(super) async fn insert_for_batch_event(
    tx: &mut sqlx::AnyConnection,
    routes: &NotifyRoutes,
    kind: &'static str,
    action: &str,
    batch_id: &str,
    facts: serde_json::Value,
) -> Result<(), StoreError> {
    if !routes.wants(kind) {
        return Ok(());
    }
    let n = occurrences(tx, batch_id, action).await?;
    let notice = Notice {
        kind,
        dedupe_key: format!("{kind}/{batch_id}/{n}"),
        batch_id: Some(batch_id.to_owned()),
        facts,
        problems: true,
    };
    insert(tx, routes, &notice).await?;
    Ok(())
}

/// The line of batch `$1`'s first entry at or after line `$2` whose
/// request is still to run or to plan (a planned preview has its
/// `finished_at`), in the entries' key order.
pub(super) const UNSETTLED_SQL: &str =
    "SELECT e.line FROM batch_entries e JOIN requests r ON r.id = e.request_id
     WHERE e.batch_id = $1 AND e.line >= $2 AND r.outcome IS NULL AND r.finished_at IS NULL
     ORDER BY e.line LIMIT 1";

/// The outcomes that make a finished batch worth a message by default.
const PROBLEMS_SQL: &str = "('needs_attention', 'failed', 'dead')";

impl Store {
    /// Which channels want which events; empty until set.
    pub fn notify_routes(&self) -> &NotifyRoutes {
        static NONE: NotifyRoutes = NotifyRoutes(Vec::new());
        self.notify.get().unwrap_or(&NONE)
    }

    /// Sets the routes (once per store; later calls are ignored).
    pub fn set_notify_routes(&self, routes: NotifyRoutes) {
        let _ = self.notify.set(routes);
    }

    /// Writes a notice in a transaction of its own (a change that has no
    /// stored state of ours: a listing that failed, a breaker that tripped).
    pub async fn record_notice(&self, notice: &Notice) -> Result<Option<String>, StoreError> {
        if self.notify_routes().0.is_empty() {
            return Ok(None);
        }
        let mut tx = self.begin_write().await?;
        let id = insert(&mut tx, self.notify_routes(), notice).await?;
        tx.commit().await?;
        Ok(id)
    }

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
        match state {
            Some(Some(s)) if s == "held" => {
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

    /// Takes the lease of up to `limit` due deliveries to `channels`
    /// (events made at or after `since`, when given), for `lease_ms` of the
    /// database's clock.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        lease_ms: i64,
        channels: &[String],
        since: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let db_now = db_now_ms(self.backend());
        let mut p = Params::new(self.backend());
        let (now, since_p, listed, limit_p) = (p.one(), p.one(), p.list(channels.len()), p.one());
        let sql = format!(
            "SELECT d.event_id, d.channel, d.attempts, e.created_at
             FROM notify_deliveries d JOIN notify_events e ON e.id = d.event_id
             WHERE d.state = 'pending' AND d.next_at <= {now} AND e.created_at >= {since_p}
               AND d.channel IN ({listed})
               AND (d.claim_owner IS NULL OR d.claim_expires_at < {db_now})
             ORDER BY d.next_at LIMIT {limit_p}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms())
            .bind(since.unwrap_or(0));
        for c in channels {
            q = q.bind(c.as_str());
        }
        let rows = q.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        let mut claimed = Vec::new();
        for row in rows {
            let delivery = Delivery {
                event_id: row.try_get("event_id")?,
                channel: row.try_get("channel")?,
                attempts: row.try_get("attempts")?,
                created_at: row.try_get("created_at")?,
            };
            let taken = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE notify_deliveries SET claim_owner = $1, claim_expires_at = {db_now} + $2
                 WHERE event_id = $3 AND channel = $4 AND state = 'pending'
                   AND (claim_owner IS NULL OR claim_expires_at < {db_now})"
            )))
            .bind(owner)
            .bind(lease_ms)
            .bind(&delivery.event_id)
            .bind(&delivery.channel)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if taken == 1 {
                claimed.push(delivery);
            }
        }
        Ok(claimed)
    }

    /// Extends a held lease to a full `lease_ms` right before a send, so a
    /// send never starts on a lease about to lapse; false when another
    /// owner took the delivery (or it is no longer pending).
    pub async fn renew_delivery(
        &self,
        d: &Delivery,
        owner: &str,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE notify_deliveries SET claim_expires_at = {} + $1
             WHERE event_id = $2 AND channel = $3 AND claim_owner = $4 AND state = 'pending'",
            db_now_ms(self.backend())
        )))
        .bind(lease_ms)
        .bind(&d.event_id)
        .bind(&d.channel)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// The channel answered: never sent again.
    pub async fn delivery_sent(&self, d: &Delivery, owner: &str) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE notify_deliveries SET state = 'sent', sent_at = $1, attempts = attempts + 1,
                 last_error = NULL, claim_owner = NULL, claim_expires_at = NULL
             WHERE event_id = $2 AND channel = $3 AND claim_owner = $4",
        )
        .bind(now_ms())
        .bind(&d.event_id)
        .bind(&d.channel)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// The attempt failed: tried again at `next_at`, or `dead` when `dead`.
    pub async fn delivery_failed(
        &self,
        d: &Delivery,
        owner: &str,
        error: &str,
        next_at: i64,
        dead: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notify_deliveries SET state = $1, attempts = attempts + 1, last_error = $2,
                 next_at = $3, claim_owner = NULL, claim_expires_at = NULL
             WHERE event_id = $4 AND channel = $5 AND claim_owner = $6",
        )
        .bind(if dead { "dead" } else { "pending" })
        .bind(error)
        .bind(next_at)
        .bind(&d.event_id)
        .bind(&d.channel)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn notify_event(&self, id: &str) -> Result<Option<NotifyEvent>, StoreError> {
        let row = sqlx::query(
            "SELECT id, kind, batch_id, facts, payload, created_at FROM notify_events WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let facts: String = r.try_get("facts")?;
            Ok(NotifyEvent {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                batch_id: r.try_get("batch_id")?,
                facts: serde_json::from_str(&facts)
                    .map_err(|e| StoreError::Corrupt(format!("notify_events.facts: {e}")))?,
                payload: r.try_get("payload")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Keeps the first rendering of an event's message: every channel and
    /// every attempt sends the same one. Returns the kept one.
    pub async fn keep_payload(&self, id: &str, payload: &str) -> Result<String, StoreError> {
        sqlx::query("UPDATE notify_events SET payload = $1 WHERE id = $2 AND payload IS NULL")
            .bind(payload)
            .bind(id)
            .execute(&self.pool)
            .await?;
        let kept: Option<String> =
            sqlx::query_scalar("SELECT payload FROM notify_events WHERE id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
        Ok(kept.unwrap_or_else(|| payload.to_owned()))
    }

    /// Deliveries still pending, or dead, oldest event first.
    pub async fn notify_status(&self) -> Result<Vec<DeliveryStatus>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.event_id, e.kind, e.batch_id, d.channel, d.state, d.attempts, d.next_at,
                    d.last_error, e.created_at
             FROM notify_deliveries d JOIN notify_events e ON e.id = d.event_id
             WHERE d.state IN ('pending', 'dead') ORDER BY d.event_id, d.channel",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryStatus {
                    event_id: r.try_get("event_id")?,
                    kind: r.try_get("kind")?,
                    batch_id: r.try_get("batch_id")?,
                    channel: r.try_get("channel")?,
                    state: r.try_get("state")?,
                    attempts: r.try_get("attempts")?,
                    next_at: r.try_get("next_at")?,
                    last_error: r.try_get("last_error")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Retention of the notifications no batch holds (a batch's go with
    /// its purge): those made before `before` (unix ms), none pending.
    pub async fn purge_notifications(&self, before: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let old = "SELECT id FROM notify_events WHERE batch_id IS NULL AND created_at < $1
                   AND NOT EXISTS (SELECT 1 FROM notify_deliveries d
                                   WHERE d.event_id = notify_events.id AND d.state = 'pending')";
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM notify_deliveries WHERE event_id IN ({old})"
        )))
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM notify_events WHERE id IN ({old})"
        )))
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Deliveries of events made at or after `since` still pending.
    pub async fn pending_deliveries_since(&self, since: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM notify_deliveries d JOIN notify_events e ON e.id = d.event_id
             WHERE d.state = 'pending' AND e.created_at >= $1",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await?)
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
}

/// The routes cell a store shares with its clones.
pub(super) type RoutesCell = Arc<OnceLock<NotifyRoutes>>;

/// Batches this process holds a cursor for at most; past it they start
/// again from their first line.
const MAX_CURSORS: usize = 10_000;

/// Per batch, the line where the last look found a request unsettled:
/// the lines before it were settled then, so the next look starts there.
/// Only a hint: a settled batch is confirmed from its first line.
#[derive(Debug, Clone, Default)]
pub(super) struct SettleCursors(Arc<Mutex<HashMap<String, i64>>>);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::scratch_store;

    fn routes() -> NotifyRoutes {
        NotifyRoutes(vec![
            NotifyRoute {
                channel: "hook".into(),
                kinds: vec!["reconcile.failed".into(), "batch.finished".into()],
                finished_always: false,
            },
            NotifyRoute {
                channel: "mail".into(),
                kinds: vec!["reconcile.failed".into()],
                finished_always: false,
            },
        ])
    }

    fn notice(kind: &'static str, key: &str, problems: bool) -> Notice {
        Notice {
            kind,
            dedupe_key: key.into(),
            batch_id: None,
            facts: serde_json::json!({"job": "nightly"}),
            problems,
        }
    }

    /// One event per dedupe key, a delivery per channel that wants it, a
    /// lease that two owners cannot both hold, and a sent delivery never
    /// leased again.
    #[tokio::test]
    async fn events_are_written_once_and_leased_to_one_owner() {
        let (_dir, _url, store) = scratch_store().await;
        store.set_notify_routes(routes());
        let n = notice("reconcile.failed", "reconcile.failed/nightly/1", true);
        assert!(store.record_notice(&n).await.unwrap().is_some());
        assert!(store.record_notice(&n).await.unwrap().is_none(), "once");
        // A finished batch without problems: no channel wants it.
        let quiet = notice("batch.finished", "batch.finished/b/0", false);
        assert!(store.record_notice(&quiet).await.unwrap().is_none());
        let channels = vec!["hook".to_owned(), "mail".to_owned()];
        let first = store
            .claim_deliveries("a", 60_000, &channels, None, 10)
            .await
            .unwrap();
        assert_eq!(first.len(), 2);
        let second = store
            .claim_deliveries("b", 60_000, &channels, None, 10)
            .await
            .unwrap();
        assert!(second.is_empty(), "leased by a");
        assert!(store.renew_delivery(&first[0], "a", 60_000).await.unwrap());
        assert!(!store.renew_delivery(&first[0], "b", 60_000).await.unwrap());
        let hook = first.iter().find(|d| d.channel == "hook").unwrap();
        assert!(store.delivery_sent(hook, "a").await.unwrap());
        let mail = first.iter().find(|d| d.channel == "mail").unwrap();
        store
            .delivery_failed(mail, "a", "the channel answered HTTP 503", 0, false)
            .await
            .unwrap();
        let again = store
            .claim_deliveries("b", 60_000, &channels, None, 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].channel.as_str(), again[0].attempts), ("mail", 1));
        let status = store.notify_status().await.unwrap();
        assert_eq!(status.len(), 1, "the sent one is not listed: {status:?}");
        store.close().await;
    }

    /// A batch whose last request ended needs_attention gets one
    /// `batch.finished`: after the run, or at the next start when the
    /// process died before (both, and twice, still write it once); a
    /// batch with a request still open gets none.
    #[tokio::test]
    async fn a_settled_batch_is_noticed_once() {
        use crate::domain::{Outcome, RunMode};
        use crate::store::{ClaimResult, Finish, chunk_of, scratch_batch};
        let (_dir, _url, store) = scratch_store().await;
        store.set_notify_routes(routes());
        let batch = scratch_batch(&store).await;
        let jobs = store
            .write_intake_chunk(&batch, RunMode::Live, None, chunk_of(&["u1", "u2"]))
            .await
            .unwrap();
        let lease = std::time::Duration::from_secs(60);
        let finish = |id: String, outcome: Outcome| {
            let store = store.clone();
            async move {
                let ClaimResult::Claimed(_) = store.claim(&id, "w:1", lease).await.unwrap() else {
                    panic!("not claimed");
                };
                let done = Finish {
                    outcome,
                    roles_removed: Vec::new(),
                    error_code: Some("LAST_OWNER_CANNOT_BE_REMOVED".into()),
                    error_message: None,
                };
                store.finish(&id, "w:1", &done, 0, &[]).await.unwrap();
            }
        };
        let events = |store: Store| async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notify_events")
                .fetch_one(&store.pool)
                .await
                .unwrap();
            n
        };
        finish(jobs[0].request_id.clone(), Outcome::NeedsAttention).await;
        store.notice_after_run(&jobs[0].request_id).await.unwrap();
        store.notice_settled_since(0).await.unwrap();
        assert_eq!(events(store.clone()).await, 0, "u2 is still open");
        finish(jobs[1].request_id.clone(), Outcome::Succeeded).await;
        // The process died here: the next start writes it.
        store.notice_settled_since(0).await.unwrap();
        store.notice_after_run(&jobs[1].request_id).await.unwrap();
        store.notice_settled_since(0).await.unwrap();
        assert_eq!(events(store.clone()).await, 1);
        let (people, total) = store
            .batch_people(&batch, "needs_attention", 50)
            .await
            .unwrap();
        assert_eq!((people.len(), total), (1, 1));
        store.close().await;
    }
}
