//! A batch's events: who did what to it, and when. Written in the same
//! transaction as the change they record, and never updated.

use sqlx::Row;

use super::{Store, StoreError, format_ms, now_ms};
use crate::domain::{Actor, BatchEvent, EventAction};

/// Adds an event inside the caller's transaction.
pub(super) async fn insert(
    tx: &mut sqlx::AnyConnection,
    batch_id: &str,
    actor: &Actor,
    action: EventAction,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO batch_events (batch_id, at, actor, action, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(batch_id)
    .bind(now_ms())
    .bind(actor.as_str())
    .bind(action.as_str())
    .bind(detail.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl Store {
    /// Records an event on its own.
    pub async fn record_event(
        &self,
        batch_id: &str,
        actor: &Actor,
        action: EventAction,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert(&mut tx, batch_id, actor, action, &detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The batch's events, oldest first.
    pub async fn events(&self, batch_id: &str) -> Result<Vec<BatchEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, detail FROM batch_events WHERE batch_id = $1 ORDER BY id",
        )
        .bind(batch_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let action: String = r.try_get("action")?;
                let detail: String = r.try_get("detail")?;
                Ok(BatchEvent {
                    at: format_ms(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    action: EventAction::parse(&action)
                        .ok_or_else(|| StoreError::Corrupt(format!("event action {action:?}")))?,
                    detail: serde_json::from_str(&detail)
                        .map_err(|e| StoreError::Corrupt(format!("event detail: {e}")))?,
                })
            })
            .collect()
    }
}
