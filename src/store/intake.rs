//! Writing one chunk of validated CSV rows: new requests, links to open or
//! recently successful ones, and rejected rows, in one transaction.

use sqlx::Row;

use super::{Store, StoreError, now_ms};
use crate::domain::{IdempotencyKey, Target};

/// A CSV row that passed validation.
#[derive(Debug, Clone)]
pub struct AcceptedRow {
    pub line: u64,
    pub target: Target,
    pub reason: Option<String>,
    /// Not before this instant (unix ms).
    pub effective_at: Option<i64>,
}

/// A CSV row refused at intake, with the reason.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RejectedRow {
    pub line: u64,
    pub code: String,
    pub message: String,
    pub provider: Option<String>,
    pub organization_id: Option<String>,
    pub user_id: Option<String>,
}

/// A slice of an intake, written atomically.
#[derive(Debug, Default)]
pub struct IntakeChunk {
    pub accepted: Vec<AcceptedRow>,
    pub rejected: Vec<RejectedRow>,
}

/// A request that needs a queue job.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub request_id: String,
    pub effective_at: Option<i64>,
}

impl Store {
    /// Stores a chunk and returns the requests it created (which need jobs).
    /// A row whose key matches an open request, or one that succeeded after
    /// `dedupe_since` (unix ms), links to it instead of creating work.
    pub async fn write_intake_chunk(
        &self,
        batch_id: &str,
        dry_run: bool,
        dedupe_since: Option<i64>,
        chunk: &IntakeChunk,
    ) -> Result<Vec<NewJob>, StoreError> {
        let mut tx = self.begin_intake().await?;
        let now = now_ms();
        let mut created = Vec::new();
        for row in &chunk.accepted {
            let key = IdempotencyKey::of(&row.target);
            let existing = if dry_run {
                None
            } else {
                find_reusable(&mut tx, batch_id, key.as_str(), dedupe_since).await?
            };
            let request_id = match existing {
                Some(id) => id,
                None => {
                    let id = ulid::Ulid::new().to_string();
                    insert_request(&mut tx, &id, batch_id, row, key.as_str(), dry_run, now).await?;
                    created.push(NewJob {
                        request_id: id.clone(),
                        effective_at: row.effective_at,
                    });
                    id
                }
            };
            sqlx::query(
                "INSERT INTO batch_entries (batch_id, line, request_id) VALUES ($1, $2, $3)",
            )
            .bind(batch_id)
            .bind(row.line as i64)
            .bind(&request_id)
            .execute(&mut *tx)
            .await?;
        }
        for r in &chunk.rejected {
            sqlx::query(
                "INSERT INTO rejected_rows (batch_id, line, code, message, provider, organization_id, user_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(batch_id)
            .bind(r.line as i64)
            .bind(&r.code)
            .bind(&r.message)
            .bind(&r.provider)
            .bind(&r.organization_id)
            .bind(&r.user_id)
            .execute(&mut *tx)
            .await?;
        }
        if !chunk.rejected.is_empty() {
            sqlx::query("UPDATE batches SET rejected_rows = rejected_rows + $1 WHERE id = $2")
                .bind(chunk.rejected.len() as i64)
                .bind(batch_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(created)
    }
}

async fn find_reusable(
    tx: &mut sqlx::AnyConnection,
    batch_id: &str,
    key: &str,
    dedupe_since: Option<i64>,
) -> Result<Option<String>, StoreError> {
    let open = sqlx::query(
        "SELECT r.id, b.stored_state FROM requests r JOIN batches b ON b.id = r.batch_id
         WHERE r.idempotency_key = $1 AND r.outcome IS NULL AND r.dry_run = 0",
    )
    .bind(key)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = open {
        let id: String = row.try_get("id")?;
        let state: Option<String> = row.try_get("stored_state")?;
        if matches!(state.as_deref(), Some("halted" | "intake")) {
            // The newest plan owns work that an unapproved batch (or an
            // intake that crashed half-way) was holding: running or
            // approving this batch runs it.
            sqlx::query("UPDATE requests SET batch_id = $1, enqueued = 0 WHERE id = $2")
                .bind(batch_id)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        return Ok(Some(id));
    }
    let Some(since) = dedupe_since else {
        return Ok(None);
    };
    let done = sqlx::query(
        "SELECT id FROM requests
         WHERE idempotency_key = $1 AND dry_run = 0
           AND outcome IN ('succeeded', 'already_done') AND finished_at >= $2
         ORDER BY finished_at DESC LIMIT 1",
    )
    .bind(key)
    .bind(since)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(done.map(|r| r.get("id")))
}

async fn insert_request(
    tx: &mut sqlx::AnyConnection,
    id: &str,
    batch_id: &str,
    row: &AcceptedRow,
    key: &str,
    dry_run: bool,
    now: i64,
) -> Result<(), StoreError> {
    let t = &row.target;
    sqlx::query(
        "INSERT INTO requests (id, batch_id, provider, organization_id, user_id,
             transfer_to_department_id, reason, effective_at, idempotency_key, dry_run, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(batch_id)
    .bind(t.provider.as_str())
    .bind(t.organization_id.as_str())
    .bind(t.user_id.as_str())
    .bind(t.transfer_to_department_id.as_ref().map(|d| d.as_str()))
    .bind(&row.reason)
    .bind(row.effective_at)
    .bind(key)
    .bind(i64::from(dry_run))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
