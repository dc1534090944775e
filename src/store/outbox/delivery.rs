//! Deliveries: leased on the database's clock like a request's claim,
//! renewed before each send, marked `sent` (never sent again), tried again
//! later or `dead`; and what `offboard notify status` lists.

use sqlx::Row;

use super::{Delivery, DeliveryState, DeliveryStatus, NotifyEvent};
use crate::store::group::db_now_ms;
use crate::store::sql::Params;
use crate::store::{Store, StoreError, now_ms};

impl Store {
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
        .bind(
            if dead {
                DeliveryState::Dead
            } else {
                DeliveryState::Pending
            }
            .as_str(),
        )
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
                    state: DeliveryState::parse(&r.try_get::<String, _>("state")?)?,
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
}
