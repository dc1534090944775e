//! An intake chunk on PostgreSQL, through the pool: the chunk costs a
//! handful of multi-row statements, each a round trip to the server.

use std::collections::HashMap;

use sqlx::Row;

use super::{
    ADD_REJECTED_SQL, AcceptedRow, ChunkPlan, IntakeChunk, NewJob, REQUEST_INSERT_COLUMNS, keys_of,
};
use crate::domain::RunMode;
use crate::store::sql::{Params, requests_in_id_order};
use crate::store::{Backend, Store, StoreError, now_ms};

const BACKEND: Backend = Backend::Postgres;

/// Rows per multi-row statement: far below PostgreSQL's limit of 65,535
/// bound parameters for our widest table.
const ROWS_PER_STATEMENT: usize = 500;

/// Stores the chunk in one transaction; returns the requests it created.
pub(super) async fn write_chunk(
    store: &Store,
    batch_id: &str,
    mode: RunMode,
    dedupe_since: Option<i64>,
    chunk: &IntakeChunk,
) -> Result<Vec<NewJob>, StoreError> {
    let alone = mode.stands_alone();
    let mut tx = store.begin_write().await?;
    // Intakes take turns (see `Store::write_intake_chunk`). Wrapped so
    // the row holds a bigint: `Any` cannot read `void`.
    sqlx::query(
        "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(hashtext('offboard.intake'))) AS l",
    )
    .execute(&mut *tx)
    .await?;
    let now = now_ms();
    let keys = keys_of(chunk);
    let linked = if alone {
        HashMap::new()
    } else {
        find_reusable(&mut tx, batch_id, &keys, dedupe_since).await?
    };
    let plan = ChunkPlan::of(chunk, &keys, linked, alone);
    for part in plan.new_rows.chunks(ROWS_PER_STATEMENT) {
        insert_requests(&mut tx, batch_id, part, mode, now).await?;
    }
    for part in plan.entries.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO batch_entries (batch_id, line, request_id) VALUES {}",
            Params::new(BACKEND).tuples(part.len(), 3)
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
            Params::new(BACKEND).tuples(part.len(), 7)
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

/// For each key that already has work: the request a row links to. An open
/// request of an unapproved batch (or of an intake that died half-way) is
/// adopted by this batch, which then runs it.
async fn find_reusable(
    tx: &mut sqlx::AnyConnection,
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
            Params::new(BACKEND).list(part.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for k in part {
            q = q.bind(k.as_str());
        }
        for row in q.fetch_all(&mut *tx).await? {
            let id: String = row.try_get("id")?;
            let state: Option<String> = row.try_get("stored_state")?;
            if crate::store::batches::stored_state(state)
                .is_some_and(crate::domain::StoredState::waits_for_release)
            {
                adopt.push(id.clone());
            }
            found.insert(row.try_get("idempotency_key")?, id);
        }
    }
    adopt.sort_unstable();
    for part in adopt.chunks(ROWS_PER_STATEMENT) {
        let mut p = Params::new(BACKEND);
        let batch = p.one();
        let sql = format!(
            "UPDATE requests SET batch_id = {batch}, enqueued = {} WHERE {}",
            crate::store::EnqueueMark::Unqueued.value(),
            requests_in_id_order(BACKEND, &p.list(part.len()))
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
        // The newest success per key answers for it, unless an undo gave
        // back what it removed (then none does).
        let mut p = Params::new(BACKEND);
        let sql = format!(
            "SELECT id, idempotency_key, undone_by FROM requests
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
        let mut newest: HashMap<String, Option<String>> = HashMap::new();
        for row in q.fetch_all(&mut *tx).await? {
            let undone: Option<String> = row.try_get("undone_by")?;
            let id: String = row.try_get("id")?;
            newest.insert(
                row.try_get("idempotency_key")?,
                undone.is_none().then_some(id),
            );
        }
        found.extend(newest.into_iter().filter_map(|(k, id)| Some((k, id?))));
    }
    Ok(found)
}

async fn insert_requests(
    tx: &mut sqlx::AnyConnection,
    batch_id: &str,
    rows: &[(String, &AcceptedRow, &str)],
    mode: RunMode,
    now: i64,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO requests ({REQUEST_INSERT_COLUMNS}) VALUES {}",
        Params::new(BACKEND).tuples(rows.len(), 11)
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
            .bind(mode.as_int())
            .bind(now);
    }
    q.execute(&mut *tx).await?;
    Ok(())
}
