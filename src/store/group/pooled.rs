//! The group writer on PostgreSQL: a task that commits each group through
//! the shared pool, locking the group's request rows in id order first.

use std::collections::HashMap;

use sqlx::{AnyPool, Row};
use tokio::sync::mpsc;

use super::{
    Answer, Committed, Message, Pending, RunWrite, STEP_CONFLICT_SQL, Then, Turn, Value, closed,
    fail, gather, reply, reply_one,
};
use crate::domain::Step;
use crate::store::audit;
use crate::store::connect::begin_write;
use crate::store::requests::{CLAIMED_OF_SQL, add_checkpoint, claimed_from_row};
use crate::store::sql::Params;
use crate::store::{AuditEvent, Backend, Claimed, StoreError, now_ms};

const BACKEND: Backend = Backend::Postgres;

pub(super) async fn run(pool: AnyPool, mut inbox: mpsc::UnboundedReceiver<Message>) {
    let mut open = true;
    while let Some(first) = inbox.recv().await {
        let Turn { group, then } = gather(first, &mut inbox);
        if !open {
            fail(group, closed);
        } else if !group.is_empty() {
            let started = std::time::Instant::now();
            let committed = commit(&pool, &group).await;
            super::group_committed(group.len(), started);
            for p in reply(group, committed) {
                let committed = commit(&pool, std::slice::from_ref(&p)).await;
                reply_one(p, committed);
            }
        }
        match then {
            // Only SQLite's writer has a connection to run work on.
            Some(Then::Run(work)) => work(None),
            Some(Then::Close(done)) => {
                pool.close().await;
                open = false;
                let _ = done.send(());
            }
            None => {}
        }
    }
}

/// One transaction for `group`: each write's answer, or an error that
/// rolled all of them back. The steps' checkpoints go in together, since
/// each statement is a round trip to the server.
async fn commit(pool: &AnyPool, group: &[Pending]) -> Result<Vec<Committed>, StoreError> {
    let mut tx = begin_write(pool, BACKEND).await?;
    lock_in_id_order(&mut tx, group).await?;
    let mut answers = store_steps(&mut tx, group).await?;
    super::together::write(&mut tx, group, &mut answers).await?;
    for (p, answer) in group.iter().zip(answers.iter_mut()) {
        if answer.is_some() {
            continue;
        }
        *answer = match apply(&mut tx, &p.write).await {
            Ok(held) => Some(Ok(held)),
            Err(lost @ StoreError::ClaimLost(_)) => Some(Err(lost)),
            Err(e) => return Err(e),
        };
    }
    let answers: Vec<Answer> = answers
        .into_iter()
        .map(|a| a.unwrap_or(Ok(false)))
        .collect();
    // Only writes that held their claim leave their calls in the audit log.
    let events: Vec<AuditEvent> = group
        .iter()
        .zip(&answers)
        .filter(|(_, answer)| answer.is_ok())
        .flat_map(|(p, _)| p.events.iter().cloned())
        .collect();
    for part in events.chunks(500) {
        audit::insert_all(&mut tx, BACKEND, part).await?;
    }
    let mut reads = read_claimed(&mut tx, group, &answers).await?;
    tx.commit().await?;
    Ok(group
        .iter()
        .zip(answers)
        .map(|(p, answer)| Committed {
            read: reads.remove(p.write.request_id()).map(Box::new),
            answer,
        })
        .collect())
}

/// The requests whose claim the group took for a caller that runs them,
/// with their batch gate and checkpoints, in one read inside the claims'
/// transaction.
async fn read_claimed(
    tx: &mut sqlx::AnyConnection,
    group: &[Pending],
    answers: &[Answer],
) -> Result<HashMap<String, Claimed>, StoreError> {
    let ids: Vec<&str> = group
        .iter()
        .zip(answers)
        .filter(|(p, answer)| {
            p.wants_read && matches!(p.write, RunWrite::Claim { .. }) && matches!(answer, Ok(true))
        })
        .map(|(p, _)| p.write.request_id())
        .collect();
    let mut claimed: HashMap<String, Claimed> = HashMap::new();
    if ids.is_empty() {
        return Ok(claimed);
    }
    let sql = format!(
        "{} IN ({})",
        CLAIMED_OF_SQL.as_str(),
        Params::new(BACKEND).list(ids.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in &ids {
        q = q.bind(*id);
    }
    for row in q.fetch_all(&mut *tx).await? {
        let id: String = row.try_get("id")?;
        match claimed.get_mut(&id) {
            Some(request) => add_checkpoint(request, &row)?,
            None => {
                let mut request = claimed_from_row(&row)?;
                add_checkpoint(&mut request, &row)?;
                claimed.insert(id, request);
            }
        }
    }
    Ok(claimed)
}

/// Locks every request row the group writes, in id order, before any write:
/// two groups (or a group and another multi-row writer, see
/// `sql::requests_in_id_order`, which also says why `NO KEY`) then never
/// wait on each other in a cycle.
async fn lock_in_id_order(
    tx: &mut sqlx::AnyConnection,
    group: &[Pending],
) -> Result<(), StoreError> {
    let ids = distinct_ids(group.iter().map(|p| p.write.request_id()));
    requests_by_id(tx, "SELECT id", &ids, " ORDER BY id FOR NO KEY UPDATE").await?;
    Ok(())
}

/// `select` from the requests whose id is in `ids`, then `tail`.
async fn requests_by_id(
    tx: &mut sqlx::AnyConnection,
    select: &str,
    ids: &[&str],
    tail: &str,
) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
    let sql = format!(
        "{select} FROM requests WHERE id IN ({}){tail}",
        Params::new(BACKEND).list(ids.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in ids {
        q = q.bind(*id);
    }
    Ok(q.fetch_all(&mut *tx).await?)
}

/// The group's step checkpoints in two statements: one read of the claims
/// and cancel flags, one multi-row insert of the checkpoints whose request
/// is still held by the writer. Answers the `Step` writes; the others stay
/// `None`.
async fn store_steps(
    tx: &mut sqlx::AnyConnection,
    group: &[Pending],
) -> Result<Vec<Option<Answer>>, StoreError> {
    let mut answers: Vec<Option<Answer>> = group.iter().map(|_| None).collect();
    let steps: Vec<(usize, &str, &str, Step, &str)> = group
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match &p.write {
            RunWrite::Step {
                id,
                owner,
                step,
                data,
            } => Some((i, id.as_str(), owner.as_str(), *step, data.as_str())),
            _ => None,
        })
        .collect();
    if steps.is_empty() {
        return Ok(answers);
    }
    let ids = distinct_ids(steps.iter().map(|s| s.1));
    let rows = requests_by_id(
        tx,
        "SELECT id, claim_owner, cancel_requested",
        &ids,
        " AND outcome IS NULL",
    )
    .await?;
    let mut holders: HashMap<String, (Option<String>, i64)> = HashMap::new();
    for row in rows {
        holders.insert(
            row.try_get("id")?,
            (
                row.try_get("claim_owner")?,
                row.try_get("cancel_requested")?,
            ),
        );
    }
    let mut held = Vec::with_capacity(steps.len());
    for &(i, id, owner, step, data) in &steps {
        answers[i] = Some(match holders.get(id) {
            Some((Some(holder), cancel)) if holder == owner => {
                held.push((id, step, data));
                Ok(*cancel != 0)
            }
            _ => Err(StoreError::ClaimLost(id.to_owned())),
        });
    }
    if held.is_empty() {
        return Ok(answers);
    }
    let sql = format!(
        "INSERT INTO step_checkpoints (request_id, step, data, finished_at) VALUES {}{STEP_CONFLICT_SQL}",
        Params::new(BACKEND).tuples(held.len(), 4)
    );
    let now = now_ms();
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (id, step, data) in held {
        q = q.bind(id).bind(step.as_str()).bind(data).bind(now);
    }
    q.execute(&mut *tx).await?;
    Ok(answers)
}

/// Each id once, in order.
fn distinct_ids<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut ids: Vec<&str> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// One write inside the group's transaction. Only the claim holder
/// writes; the check is part of the statement.
async fn apply(tx: &mut sqlx::AnyConnection, write: &RunWrite) -> Answer {
    // `store_steps` answers every step before the other writes run.
    let Some(update) = write.update(now_ms(), super::Backend::Postgres) else {
        unreachable!("steps are stored together")
    };
    let mut q = sqlx::query(update.sql);
    for v in &update.values {
        q = match v {
            Value::Text(t) => q.bind(t.as_deref()),
            Value::Int(i) => q.bind(*i),
        };
    }
    let n = q.execute(&mut *tx).await?.rows_affected();
    update.answer(n, write.request_id())
}
