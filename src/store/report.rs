//! The rows of a batch report: every accepted line with its request's
//! state, and every rejected line, in line order.

use sqlx::Row;

use super::{Store, StoreError, format_ms, now_ms};

/// One report line (conventions.md column order).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportRow {
    pub line: u64,
    pub provider: String,
    pub organization_id: String,
    pub user_id: String,
    /// An outcome, or `rejected`, `scheduled`, `pending`.
    pub outcome: String,
    pub roles_removed: Vec<String>,
    pub transfer_to_department_id: String,
    pub attempts: u32,
    pub error_code: String,
    pub error_message: String,
    pub request_id: String,
    /// The batch whose request this line reports (an earlier one for a
    /// resubmitted row).
    pub batch_id: String,
    pub reason: String,
    pub finished_at: String,
}

impl Store {
    pub async fn report_rows(&self, batch_id: &str) -> Result<Vec<ReportRow>, StoreError> {
        let now = now_ms();
        let accepted = sqlx::query(
            "SELECT e.line, r.provider, r.organization_id, r.user_id, r.outcome, r.effective_at,
                    r.roles_removed, r.transfer_to_department_id, r.attempts, r.error_code,
                    r.error_message, r.id, r.batch_id, r.reason, r.finished_at
             FROM batch_entries e JOIN requests r ON r.id = e.request_id
             WHERE e.batch_id = $1 ORDER BY e.line",
        )
        .bind(batch_id)
        .fetch_all(&self.pool)
        .await?;
        let mut rows: Vec<ReportRow> = Vec::with_capacity(accepted.len());
        for r in &accepted {
            let outcome: Option<String> = r.try_get("outcome")?;
            let effective_at: Option<i64> = r.try_get("effective_at")?;
            let outcome = outcome.unwrap_or_else(|| {
                if effective_at.is_some_and(|at| at > now) {
                    "scheduled".into()
                } else {
                    "pending".into()
                }
            });
            let roles: String = r.try_get("roles_removed")?;
            rows.push(ReportRow {
                line: r.try_get::<i64, _>("line")? as u64,
                provider: r.try_get("provider")?,
                organization_id: r.try_get("organization_id")?,
                user_id: r.try_get("user_id")?,
                outcome,
                roles_removed: roles
                    .split(';')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                transfer_to_department_id: r
                    .try_get::<Option<String>, _>("transfer_to_department_id")?
                    .unwrap_or_default(),
                attempts: r.try_get::<i64, _>("attempts")? as u32,
                error_code: r
                    .try_get::<Option<String>, _>("error_code")?
                    .unwrap_or_default(),
                error_message: r
                    .try_get::<Option<String>, _>("error_message")?
                    .unwrap_or_default(),
                request_id: r.try_get("id")?,
                batch_id: r.try_get("batch_id")?,
                reason: r
                    .try_get::<Option<String>, _>("reason")?
                    .unwrap_or_default(),
                finished_at: r
                    .try_get::<Option<i64>, _>("finished_at")?
                    .map(format_ms)
                    .unwrap_or_default(),
            });
        }
        let rejected = sqlx::query(
            "SELECT line, code, message, provider, organization_id, user_id
             FROM rejected_rows WHERE batch_id = $1 ORDER BY line",
        )
        .bind(batch_id)
        .fetch_all(&self.pool)
        .await?;
        for r in &rejected {
            rows.push(ReportRow {
                line: r.try_get::<i64, _>("line")? as u64,
                provider: r
                    .try_get::<Option<String>, _>("provider")?
                    .unwrap_or_default(),
                organization_id: r
                    .try_get::<Option<String>, _>("organization_id")?
                    .unwrap_or_default(),
                user_id: r
                    .try_get::<Option<String>, _>("user_id")?
                    .unwrap_or_default(),
                outcome: "rejected".into(),
                roles_removed: Vec::new(),
                transfer_to_department_id: String::new(),
                attempts: 0,
                error_code: r.try_get("code")?,
                error_message: r.try_get("message")?,
                request_id: String::new(),
                batch_id: batch_id.to_owned(),
                reason: String::new(),
                finished_at: String::new(),
            });
        }
        rows.sort_by_key(|r| r.line);
        Ok(rows)
    }
}
