//! Writing one chunk of validated CSV rows: new requests, links to open or
//! recently successful ones, and rejected rows, in one transaction.

mod sqlite;

use std::collections::HashMap;

use sqlx::Row;

use super::Backend;
use super::sql::Params;
use super::{Store, StoreError, now_ms};
use crate::domain::{IdempotencyKey, Target};

/// The columns a new request is inserted with, in bind order.
const REQUEST_INSERT_COLUMNS: &str = "id, batch_id, provider, organization_id, user_id,
             transfer_to_department_id, reason, effective_at, idempotency_key, dry_run, created_at";

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
#[derive(Debug, Default, Clone)]
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
        if self.backend() == Backend::Sqlite {
            // SQLite's writer thread takes the chunk (a copy of its rows:
            // about 0.2 µs a row, against several for each statement sent
            // through sqlx's connection thread).
            let write = ChunkWrite {
                batch_id: batch_id.to_owned(),
                dry_run,
                dedupe_since,
                chunk: chunk.clone(),
            };
            return self
                .group
                .run(move |tx| sqlite::write_chunk(tx, &write))
                .await;
        }
        let mut tx = self.begin_intake().await?;
        let now = now_ms();
        let keys = keys_of(chunk);
        let backend = self.backend();
        let linked = if dry_run {
            HashMap::new()
        } else {
            find_reusable(&mut tx, backend, batch_id, &keys, dedupe_since).await?
        };
        let plan = ChunkPlan::of(chunk, &keys, linked, dry_run);
        for part in plan.new_rows.chunks(ROWS_PER_STATEMENT) {
            insert_requests(&mut tx, backend, batch_id, part, dry_run, now).await?;
        }
        for part in plan.entries.chunks(ROWS_PER_STATEMENT) {
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
            sqlx::query(ADD_REJECTED_SQL)
                .bind(chunk.rejected.len() as i64)
                .bind(batch_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(plan.created)
    }
}

/// A chunk handed to SQLite's writer thread.
struct ChunkWrite {
    batch_id: String,
    dry_run: bool,
    dedupe_since: Option<i64>,
    chunk: IntakeChunk,
}

const ADD_REJECTED_SQL: &str =
    "UPDATE batches SET rejected_rows = rejected_rows + $1 WHERE id = $2";

/// Each accepted row's idempotency key, in order.
fn keys_of(chunk: &IntakeChunk) -> Vec<String> {
    chunk
        .accepted
        .iter()
        .map(|r| IdempotencyKey::of(&r.target).as_str().to_owned())
        .collect()
}

/// What a chunk writes once the work its keys already have is known.
struct ChunkPlan<'a> {
    /// New requests: id, row, key.
    new_rows: Vec<(String, &'a AcceptedRow, &'a str)>,
    /// Every accepted line and the request it became or links to.
    entries: Vec<(u64, String)>,
    /// The new requests, which need queue jobs.
    created: Vec<NewJob>,
}

impl<'a> ChunkPlan<'a> {
    /// `linked` maps a key to the request its rows link to; a key seen a
    /// second time in the chunk links to the request its first row made
    /// (except in a dry run, where every row stands alone).
    fn of(
        chunk: &'a IntakeChunk,
        keys: &'a [String],
        mut linked: HashMap<String, String>,
        dry_run: bool,
    ) -> ChunkPlan<'a> {
        let mut plan = ChunkPlan {
            new_rows: Vec::new(),
            entries: Vec::with_capacity(keys.len()),
            created: Vec::new(),
        };
        for (row, key) in chunk.accepted.iter().zip(keys) {
            let request_id = match linked.get(key) {
                Some(id) => id.clone(),
                None => {
                    let id = ulid::Ulid::new().to_string();
                    if !dry_run {
                        linked.insert(key.clone(), id.clone());
                    }
                    plan.new_rows.push((id.clone(), row, key.as_str()));
                    plan.created.push(NewJob {
                        request_id: id.clone(),
                        effective_at: row.effective_at,
                    });
                    id
                }
            };
            plan.entries.push((row.line, request_id));
        }
        plan
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
        "INSERT INTO requests ({REQUEST_INSERT_COLUMNS}) VALUES {}",
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
