//! A batch's status as people and the API see it: state, counts, progress
//! and an estimate of the time left.

use crate::domain::now_ms;
use crate::domain::{BatchEvent, OutcomeCounts};
use crate::store::{BatchRow, Store, StoreError};

#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchStatus {
    #[serde(flatten)]
    pub batch: BatchRow,
    pub state: String,
    pub counts: OutcomeCounts,
    /// Share of requests final or held, 0..=1.
    pub progress: f64,
    /// Seconds left at the pace so far; absent before any progress.
    pub eta_seconds: Option<f64>,
    /// Who did what to the batch, oldest first (one batch asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<BatchEvent>>,
}

/// One batch as [`describe`] gives it, with its events.
pub async fn describe_one(store: &Store, batch: BatchRow) -> Result<BatchStatus, StoreError> {
    let events = store.events(&batch.id).await?;
    let mut status = describe(store, batch).await?;
    status.events = Some(events);
    Ok(status)
}

pub async fn describe(store: &Store, batch: BatchRow) -> Result<BatchStatus, StoreError> {
    let counts = store.batch_counts(&batch).await?;
    let state = Store::batch_state(&batch, &counts).to_string();
    let total = counts.requests();
    let settled = counts.finished() + counts.scheduled + counts.held;
    let progress = if total == 0 {
        1.0
    } else {
        settled as f64 / total as f64
    };
    let elapsed = (now_ms() - batch.created_at).max(1) as f64 / 1000.0;
    let eta_seconds =
        (settled > 0 && counts.open > 0).then(|| counts.open as f64 / (settled as f64 / elapsed));
    Ok(BatchStatus {
        batch,
        state,
        counts,
        progress,
        eta_seconds,
        events: None,
    })
}
