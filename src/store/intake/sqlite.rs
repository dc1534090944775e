//! An intake chunk on SQLite, written on the group writer's thread and
//! connection: one prepared statement per row instead of multi-row
//! statements through sqlx, whose every statement is a round trip to its
//! connection's thread (BENCHMARKS.md, "Late morning series"). The same
//! rows as the PostgreSQL path writes, through the same plan (`ChunkPlan`).

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::{ADD_REJECTED_SQL, ChunkPlan, ChunkWrite, REQUEST_INSERT_COLUMNS, keys_of};
use crate::store::{NewJob, StoreError, now_ms};

const OPEN_SQL: &str =
    "SELECT r.id, b.stored_state FROM requests r JOIN batches b ON b.id = r.batch_id
     WHERE r.idempotency_key = ?1 AND r.outcome IS NULL AND r.dry_run = 0";
const ADOPT_SQL: &str = "UPDATE requests SET batch_id = ?1, enqueued = 0 WHERE id = ?2";
/// The newest success per key answers for it.
const RECENT_SQL: &str = "SELECT id FROM requests
     WHERE idempotency_key = ?1 AND dry_run = 0
       AND outcome IN ('succeeded', 'already_done') AND finished_at >= ?2
     ORDER BY finished_at DESC LIMIT 1";
const ENTRY_SQL: &str =
    "INSERT INTO batch_entries (batch_id, line, request_id) VALUES (?1, ?2, ?3)";
const REJECTED_SQL: &str =
    "INSERT INTO rejected_rows (batch_id, line, code, message, provider, organization_id, user_id)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Stores the chunk in `tx`; returns the requests it created.
pub(super) fn write_chunk(
    tx: &rusqlite::Transaction<'_>,
    write: &ChunkWrite,
) -> Result<Vec<NewJob>, StoreError> {
    let ChunkWrite {
        batch_id,
        dry_run,
        dedupe_since,
        chunk,
    } = write;
    let keys = keys_of(chunk);
    let linked = if *dry_run {
        HashMap::new()
    } else {
        find_reusable(tx, batch_id, &keys, *dedupe_since)?
    };
    let plan = ChunkPlan::of(chunk, &keys, linked, *dry_run);
    let now = now_ms();
    (|| -> Result<(), rusqlite::Error> {
        let mut insert = tx.prepare_cached(&format!(
            "INSERT INTO requests ({REQUEST_INSERT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ))?;
        for (id, row, key) in &plan.new_rows {
            let t = &row.target;
            insert.execute(params![
                id,
                batch_id,
                t.provider.as_str(),
                t.organization_id.as_str(),
                t.user_id.as_str(),
                t.transfer_to_department_id.as_ref().map(|d| d.as_str()),
                row.reason,
                row.effective_at,
                key,
                i64::from(*dry_run),
                now
            ])?;
        }
        let mut entry = tx.prepare_cached(ENTRY_SQL)?;
        for (line, id) in &plan.entries {
            entry.execute(params![batch_id, *line as i64, id])?;
        }
        let mut rejected = tx.prepare_cached(REJECTED_SQL)?;
        for r in &chunk.rejected {
            rejected.execute(params![
                batch_id,
                r.line as i64,
                r.code,
                r.message,
                r.provider,
                r.organization_id,
                r.user_id
            ])?;
        }
        if !chunk.rejected.is_empty() {
            tx.prepare_cached(ADD_REJECTED_SQL)?
                .execute(params![chunk.rejected.len() as i64, batch_id])?;
        }
        Ok(())
    })()
    .map_err(StoreError::from)?;
    Ok(plan.created)
}

/// For each key that already has work: the request a row links to. An open
/// request of an unapproved batch (or of an intake that died half-way) is
/// adopted by this batch, which then runs it.
fn find_reusable(
    tx: &rusqlite::Transaction<'_>,
    batch_id: &str,
    keys: &[String],
    dedupe_since: Option<i64>,
) -> Result<HashMap<String, String>, rusqlite::Error> {
    let mut found = HashMap::new();
    let mut open = tx.prepare_cached(OPEN_SQL)?;
    let mut adopt = tx.prepare_cached(ADOPT_SQL)?;
    let mut recent = tx.prepare_cached(RECENT_SQL)?;
    for key in keys {
        if found.contains_key(key) {
            continue;
        }
        let row: Option<(String, Option<String>)> = open
            .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let id = match row {
            Some((id, state)) => {
                if matches!(state.as_deref(), Some("halted" | "intake")) {
                    adopt.execute(params![batch_id, id])?;
                }
                Some(id)
            }
            None => match dedupe_since {
                Some(since) => recent
                    .query_row(params![key, since], |r| r.get(0))
                    .optional()?,
                None => None,
            },
        };
        if let Some(id) = id {
            found.insert(key.clone(), id);
        }
    }
    Ok(found)
}
