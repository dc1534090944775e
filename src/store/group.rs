//! Group commit of the writes of requests' runs: one task per process folds
//! the claims, checkpoints, outcomes and audit events of many requests into
//! one transaction, as apalis does for its acks. Each write keeps its own
//! claim check, so a write whose claim was lost writes nothing and the
//! others still commit; a database error re-runs the group one write at a
//! time, so it fails only the write that caused it.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::audit::{self, AuditEvent};
use super::connect::{SQLITE_BUSY_TIMEOUT, begin_write};
use super::sql::Params;
use super::{Backend, Finish, StoreError, now_ms};
use crate::domain::Step;

/// Writes folded into one transaction at most.
const MAX_GROUP: usize = 64;

/// A write of a request's run: taking or renewing its claim, or ending a
/// step of it.
pub(super) enum RunWrite {
    /// Takes the claim when free, expired or already `owner`'s; answers
    /// whether it was taken.
    Claim {
        id: String,
        owner: String,
        now: i64,
        expires_at: i64,
    },
    /// Extends a held claim; answers whether it was still held.
    Renew {
        id: String,
        owner: String,
        expires_at: i64,
    },
    /// A step's checkpoint; answers whether a cancel was asked for.
    Step {
        id: String,
        owner: String,
        step: Step,
        data: String,
    },
    /// The request's outcome; the claim is dropped.
    Finish {
        id: String,
        owner: String,
        finish: Finish,
        retries: u32,
    },
    /// Left open for later; the claim is dropped.
    Postpone {
        id: String,
        owner: String,
        error: Option<(String, String)>,
        retries: u32,
    },
}

impl RunWrite {
    fn request_id(&self) -> &str {
        match self {
            RunWrite::Claim { id, .. }
            | RunWrite::Renew { id, .. }
            | RunWrite::Step { id, .. }
            | RunWrite::Finish { id, .. }
            | RunWrite::Postpone { id, .. } => id,
        }
    }
}

struct Pending {
    write: RunWrite,
    events: Vec<AuditEvent>,
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

/// Handle on the process's group-commit task; cheap to clone.
#[derive(Clone)]
pub(super) struct GroupWriter {
    queue: mpsc::UnboundedSender<Pending>,
    /// The task's pool (on SQLite a connection of its own), closed with
    /// the store.
    pool: AnyPool,
}

impl fmt::Debug for GroupWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GroupWriter")
    }
}

impl GroupWriter {
    /// Starts the task; it ends when the last handle is dropped.
    pub(super) fn start(pool: AnyPool, backend: Backend) -> GroupWriter {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(run(pool.clone(), backend, pending));
        GroupWriter { queue, pool }
    }

    /// Closes the task's pool: later writes fail instead of committing.
    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    /// Commits `write` with `events` (in some group) and returns its answer.
    pub(super) async fn write(
        &self,
        write: RunWrite,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            write,
            events: events.to_vec(),
            reply,
        };
        if self.queue.send(pending).is_err() {
            return Err(StoreError::Config("the store is closed".into()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Config("the store is closed".into())))
    }
}

async fn run(pool: AnyPool, backend: Backend, mut pending: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = pending.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match pending.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let committed = commit(&pool, backend, &group).await;
        // How full groups are and how long the write lock is held: the two
        // figures that bound a worker's throughput on SQLite (BENCHMARKS.md).
        tracing::debug!(
            writes = group.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "group committed"
        );
        match committed {
            Ok(answers) => {
                for (p, answer) in group.into_iter().zip(answers) {
                    let _ = p.reply.send(answer);
                }
            }
            Err(e) if group.len() == 1 => {
                let _ = group.pop().map(|p| p.reply.send(Err(e)));
            }
            // Writing one at a time would wait that long again per write.
            Err(StoreError::Locked(waited)) => {
                for p in group {
                    let _ = p.reply.send(Err(StoreError::Locked(waited)));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, writes = group.len(), "group commit failed; writing one at a time");
                for p in group {
                    let answer = match commit(&pool, backend, std::slice::from_ref(&p)).await {
                        Ok(mut answers) => answers.pop().unwrap_or(Ok(false)),
                        Err(e) => Err(e),
                    };
                    let _ = p.reply.send(answer);
                }
            }
        }
    }
}

/// One transaction for `group`: each write's answer, or an error that
/// rolled all of them back. The steps' checkpoints go in together, which
/// halves the statements a group sends while it holds SQLite's only write
/// lock (apalis's fetches and acks wait for it); BENCHMARKS.md has what
/// that did and did not change.
async fn commit(
    pool: &AnyPool,
    backend: Backend,
    group: &[Pending],
) -> Result<Vec<Result<bool, StoreError>>, StoreError> {
    let mut tx = begin(pool, backend).await?;
    if backend == Backend::Postgres {
        lock_in_id_order(&mut tx, backend, group).await?;
    }
    let mut answers = store_steps(&mut tx, backend, group).await?;
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
    let answers: Vec<Result<bool, StoreError>> = answers
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
        audit::insert_all(&mut tx, backend, part).await?;
    }
    tx.commit().await?;
    Ok(answers)
}

/// Tries for SQLite's write lock a task yield apart before sleeping: the
/// lock is mostly held by one of apalis's statements, for about 0.1 ms.
const SPINS_BEFORE_SLEEP: u32 = 64;

/// Begins the group's transaction. On SQLite the writer's connection has no
/// busy timeout, so this waits for the write lock itself: a few quick tries,
/// then a millisecond apart, up to the busy timeout the other connections
/// have.
async fn begin(
    pool: &AnyPool,
    backend: Backend,
) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
    let started = Instant::now();
    let mut tries = 0u32;
    loop {
        match begin_write(pool, backend).await {
            Err(e) if backend == Backend::Sqlite && is_busy(&e) => {
                if started.elapsed() >= SQLITE_BUSY_TIMEOUT {
                    return Err(StoreError::Locked(SQLITE_BUSY_TIMEOUT));
                }
                tries += 1;
                if tries < SPINS_BEFORE_SLEEP {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            begun => return Ok(begun?),
        }
    }
}

/// SQLite's `SQLITE_BUSY`, plain or extended.
fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c & 0xff == 5)
}

/// Locks every request row the group writes, in id order, before any write:
/// two groups (or a group and another multi-row writer, see
/// `sql::requests_in_id_order`, which also says why `NO KEY`) then never
/// wait on each other in a cycle.
async fn lock_in_id_order(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    group: &[Pending],
) -> Result<(), StoreError> {
    let ids = distinct_ids(group.iter().map(|p| p.write.request_id()));
    requests_by_id(
        tx,
        backend,
        "SELECT id",
        &ids,
        " ORDER BY id FOR NO KEY UPDATE",
    )
    .await?;
    Ok(())
}

/// `select` from the requests whose id is in `ids`, then `tail`.
async fn requests_by_id(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    select: &str,
    ids: &[&str],
    tail: &str,
) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
    let sql = format!(
        "{select} FROM requests WHERE id IN ({}){tail}",
        Params::new(backend).list(ids.len())
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
    backend: Backend,
    group: &[Pending],
) -> Result<Vec<Option<Result<bool, StoreError>>>, StoreError> {
    let mut answers: Vec<Option<Result<bool, StoreError>>> = group.iter().map(|_| None).collect();
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
        backend,
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
        "INSERT INTO step_checkpoints (request_id, step, data, finished_at) VALUES {}
         ON CONFLICT (request_id, step) DO UPDATE SET data = excluded.data, finished_at = excluded.finished_at",
        Params::new(backend).tuples(held.len(), 4)
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
/// writes; the check is part of the statement or read in the transaction.
async fn apply(tx: &mut sqlx::AnyConnection, write: &RunWrite) -> Result<bool, StoreError> {
    match write {
        RunWrite::Claim {
            id,
            owner,
            now,
            expires_at,
        } => {
            let n = sqlx::query(
                "UPDATE requests SET claim_owner = $1, claim_expires_at = $2, attempts = attempts + 1
                 WHERE id = $3 AND outcome IS NULL
                   AND (claim_owner IS NULL OR claim_owner = $4 OR claim_expires_at < $5)",
            )
            .bind(owner.as_str())
            .bind(*expires_at)
            .bind(id.as_str())
            .bind(owner.as_str())
            .bind(*now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Ok(n == 1)
        }
        RunWrite::Renew {
            id,
            owner,
            expires_at,
        } => {
            let n = sqlx::query(
                "UPDATE requests SET claim_expires_at = $1 WHERE id = $2 AND claim_owner = $3 AND outcome IS NULL",
            )
            .bind(*expires_at)
            .bind(id.as_str())
            .bind(owner.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Ok(n == 1)
        }
        // `store_steps` answers every step before the other writes run.
        RunWrite::Step { .. } => unreachable!("steps are stored together"),
        RunWrite::Finish {
            id,
            owner,
            finish,
            retries,
        } => {
            let n = sqlx::query(
                "UPDATE requests SET outcome = $1, roles_removed = $2, error_code = $3, error_message = $4,
                     finished_at = $5, claim_owner = NULL, claim_expires_at = NULL, attempts = attempts + $6
                 WHERE id = $7 AND claim_owner = $8 AND outcome IS NULL",
            )
            .bind(finish.outcome.as_str())
            .bind(finish.roles_removed.join(";"))
            .bind(finish.error_code.as_deref())
            .bind(finish.error_message.as_deref())
            .bind(now_ms())
            .bind(i64::from(*retries))
            .bind(id.as_str())
            .bind(owner.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            held(n, id)
        }
        RunWrite::Postpone {
            id,
            owner,
            error,
            retries,
        } => {
            let n = sqlx::query(
                "UPDATE requests SET error_code = COALESCE($1, error_code), error_message = COALESCE($2, error_message),
                     claim_owner = NULL, claim_expires_at = NULL, attempts = attempts + $3
                 WHERE id = $4 AND claim_owner = $5 AND outcome IS NULL",
            )
            .bind(error.as_ref().map(|e| e.0.as_str()))
            .bind(error.as_ref().map(|e| e.1.as_str()))
            .bind(i64::from(*retries))
            .bind(id.as_str())
            .bind(owner.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            held(n, id)
        }
    }
}

/// A claim-guarded `UPDATE` that changed no row lost its claim.
fn held(rows: u64, id: &str) -> Result<bool, StoreError> {
    if rows == 0 {
        return Err(StoreError::ClaimLost(id.to_owned()));
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Executor};

    use super::*;

    /// The writer's connection meets another's write lock as `SQLITE_BUSY`
    /// at once, and the group waits for the lock instead of failing.
    #[tokio::test]
    async fn a_group_waits_for_the_write_lock_it_meets() {
        let (_dir, url, store) = crate::store::scratch_store().await;
        let mut holder = sqlx::SqliteConnection::connect(&url).await.unwrap();
        holder.execute("BEGIN IMMEDIATE").await.unwrap();

        let probe = super::super::connect::writer_pool(&url).await.unwrap();
        let busy = begin_write(&probe, Backend::Sqlite).await.unwrap_err();
        assert!(is_busy(&busy), "{busy}");

        let waiting = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .renew_claim("req_none", "w", Duration::from_secs(1))
                    .await
            }
        });
        for _ in 0..SPINS_BEFORE_SLEEP {
            tokio::task::yield_now().await;
        }
        holder.execute("COMMIT").await.unwrap();
        // No such request: the write commits and answers "not held".
        assert!(!waiting.await.unwrap().unwrap());
        store.close().await;
    }
}
