//! Audit events: one per outbound provider call attempt.

use super::StoreError;

/// One provider call attempt, as recorded. Never a header or a token.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEvent {
    pub request_id: Option<String>,
    pub provider: String,
    pub method: String,
    pub path: String,
    /// `None` when no answer came (timeout, reset, refused).
    pub status: Option<u16>,
    pub error_code: Option<String>,
    pub attempt: u32,
    pub latency_ms: u64,
    /// Unix ms when the call started.
    pub at: i64,
}

pub(super) async fn insert_all(
    tx: &mut sqlx::AnyConnection,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    for e in events {
        sqlx::query(
            "INSERT INTO audit_events (request_id, provider, method, path, status, error_code, attempt, latency_ms, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&e.request_id)
        .bind(&e.provider)
        .bind(&e.method)
        .bind(&e.path)
        .bind(e.status.map(i64::from))
        .bind(&e.error_code)
        .bind(e.attempt as i64)
        .bind(e.latency_ms as i64)
        .bind(e.at)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
