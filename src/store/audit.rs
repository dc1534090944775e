//! Audit events: one per outbound provider call attempt.

use super::sql::Params;
use super::{Backend, StoreError};
use crate::domain::AuditEvent;

/// Stores a step's events in one statement (a step makes a handful of
/// calls, so the statement stays small).
pub(super) async fn insert_all(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO audit_events (request_id, provider, method, path, status, error_code, attempt, latency_ms, at)
         VALUES {}",
        Params::new(backend).tuples(events.len(), 9)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for e in events {
        q = q
            .bind(e.request_id.as_deref())
            .bind(e.provider.as_str())
            .bind(e.method.as_str())
            .bind(e.path.as_str())
            .bind(e.status.map(i64::from))
            .bind(e.error_code.as_deref())
            .bind(e.attempt as i64)
            .bind(e.latency_ms as i64)
            .bind(e.at);
    }
    q.execute(&mut *tx).await?;
    Ok(())
}
