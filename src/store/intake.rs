//! Writing one chunk of validated CSV rows: new requests, links to open or
//! recently successful ones, and rejected rows, in one transaction.

use std::collections::HashMap;

use sqlx::Row;

use super::Backend;
use super::sql::Params;
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

/// Rows per multi-row statement: far below both engines' limits on bound
/// parameters (SQLite 32,766; PostgreSQL 65,535) for our widest table.
const ROWS_PER_STATEMENT: usize = 500;

impl Store {
    /// Stores a chunk and returns the requests it created (which need jobs).
    /// A row whose key matches an open request, or one that succeeded after
    /// `dedupe_since` (unix ms), links to it instead of creating work. The
    /// whole chunk costs a handful of statements, not a few per row.
    pub async fn write_intake_chunk(
        &self,
        batch_id: &str,
        dry_run: bool,
        dedupe_since: Option<i64>,
        chunk: &IntakeChunk,
    ) -> Result<Vec<NewJob>, StoreError> {
        let mut tx = self.begin_intake().await?;
        let now = now_ms();
        let keys: Vec<String> = chunk
            .accepted
            .iter()
            .map(|r| IdempotencyKey::of(&r.target).as_str().to_owned())
            .collect();
        let backend = self.backend();
        let mut linked = if dry_run {
            HashMap::new()
        } else {
            find_reusable(&mut tx, backend, batch_id, &keys, dedupe_since).await?
        };
        let mut created = Vec::new();
        let mut new_rows = Vec::new();
        let mut entries = Vec::with_capacity(keys.len());
        for (row, key) in chunk.accepted.iter().zip(&keys) {
            let request_id = match linked.get(key) {
                Some(id) => id.clone(),
                None => {
                    let id = ulid::Ulid::new().to_string();
                    if !dry_run {
                        linked.insert(key.clone(), id.clone());
                    }
                    new_rows.push((id.clone(), row, key.as_str()));
                    created.push(NewJob {
                        request_id: id.clone(),
                        effective_at: row.effective_at,
                    });
                    id
                }
            };
            entries.push((row.line, request_id));
        }
        for part in new_rows.chunks(ROWS_PER_STATEMENT) {
            insert_requests(&mut tx, backend, batch_id, part, dry_run, now).await?;
        }
        for part in entries.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO batch_entries (batch_id, line, request_id) VALUES {}",
                Params::new(backend).tuples(part.len(), 3)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (line, id) in part {
                q = q.bind(batch_id).bind(*line as i64).bind(id.as_str());
            }
            q.execute(&mut *tx).await?;
        }
        for part in chunk.rejected.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO rejected_rows (batch_id, line, code, message, provider, organization_id, user_id) VALUES {}",
                Params::new(backend).tuples(part.len(), 7)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in part {
                q = q
                    .bind(batch_id)
                    .bind(r.line as i64)
                    .bind(&r.code)
                    .bind(&r.message)
                    .bind(&r.provider)
                    .bind(&r.organization_id)
                    .bind(&r.user_id);
            }
            q.execute(&mut *tx).await?;
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

/// For each key that already has work: the request a row links to. An open
/// request of an unapproved batch (or of an intake that died half-way) is
/// adopted by this batch, which then runs it.
async fn find_reusable(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    batch_id: &str,
    keys: &[String],
    dedupe_since: Option<i64>,
) -> Result<HashMap<String, String>, StoreError> {
    let mut found = HashMap::new();
    let mut adopt = Vec::new();
    for part in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT r.id, r.idempotency_key, b.stored_state FROM requests r JOIN batches b ON b.id = r.batch_id
             WHERE r.idempotency_key IN ({}) AND r.outcome IS NULL AND r.dry_run = 0",
            Params::new(backend).list(part.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for k in part {
            q = q.bind(k.as_str());
        }
        for row in q.fetch_all(&mut *tx).await? {
            let id: String = row.try_get("id")?;
            let state: Option<String> = row.try_get("stored_state")?;
            if matches!(state.as_deref(), Some("halted" | "intake")) {
                adopt.push(id.clone());
            }
            found.insert(row.try_get("idempotency_key")?, id);
        }
    }
    adopt.sort_unstable();
    for part in adopt.chunks(ROWS_PER_STATEMENT) {
        let mut p = Params::new(backend);
        let batch = p.one();
        let sql = format!(
            "UPDATE requests SET batch_id = {batch}, enqueued = 0 WHERE {}",
            super::sql::requests_in_id_order(backend, &p.list(part.len()))
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(batch_id);
        for id in part {
            q = q.bind(id.as_str());
        }
        q.execute(&mut *tx).await?;
    }
    let Some(since) = dedupe_since else {
        return Ok(found);
    };
    let rest: Vec<&String> = keys.iter().filter(|k| !found.contains_key(*k)).collect();
    for part in rest.chunks(ROWS_PER_STATEMENT) {
        // The newest success per key answers for it.
        let mut p = Params::new(backend);
        let sql = format!(
            "SELECT id, idempotency_key FROM requests
             WHERE idempotency_key IN ({}) AND dry_run = 0
               AND outcome IN ('succeeded', 'already_done') AND finished_at >= {}
             ORDER BY finished_at",
            p.list(part.len()),
            p.one()
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for k in part {
            q = q.bind(k.as_str());
        }
        q = q.bind(since);
        for row in q.fetch_all(&mut *tx).await? {
            found.insert(row.try_get("idempotency_key")?, row.try_get("id")?);
        }
    }
    Ok(found)
}

async fn insert_requests(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    batch_id: &str,
    rows: &[(String, &AcceptedRow, &str)],
    dry_run: bool,
    now: i64,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO requests (id, batch_id, provider, organization_id, user_id,
             transfer_to_department_id, reason, effective_at, idempotency_key, dry_run, created_at)
         VALUES {}",
        Params::new(backend).tuples(rows.len(), 11)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (id, row, key) in rows {
        let t = &row.target;
        q = q
            .bind(id.as_str())
            .bind(batch_id)
            .bind(t.provider.as_str())
            .bind(t.organization_id.as_str())
            .bind(t.user_id.as_str())
            .bind(t.transfer_to_department_id.as_ref().map(|d| d.as_str()))
            .bind(row.reason.as_deref())
            .bind(row.effective_at)
            .bind(*key)
            .bind(i64::from(dry_run))
            .bind(now);
    }
    q.execute(&mut *tx).await?;
    Ok(())
}
