//! The group writer on SQLite: a thread of its own with a connection of its
//! own, through SQLite's C API directly (rusqlite) rather than sqlx.
//!
//! sqlx runs each SQLite connection on a worker thread, so every statement
//! is a round trip of two thread wake-ups made while SQLite's only write
//! lock is held. Here a statement is a function call on the thread that
//! holds the lock (BENCHMARKS.md, "Why: a native writer").

use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use tokio::sync::mpsc;

use super::checkpoint::Checkpoints;
use super::{
    Answer, Committed, Message, Pending, RunWrite, STEP_CONFLICT_SQL, SUBJECT_SQL, Then, Turn,
    Value, closed, fail, gather, reply, reply_one,
};
use crate::store::Claimed;
use crate::store::connect::SQLITE_BUSY_TIMEOUT;
use crate::store::requests::{CLAIMED_SQL, fold_claimed};
use crate::store::{StoreError, now_ms};

const STEP_HOLDER_SQL: &str =
    "SELECT claim_owner, cancel_requested FROM requests WHERE id = ?1 AND outcome IS NULL";
static STEP_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO step_checkpoints (request_id, step, data, finished_at) VALUES (?1, ?2, ?3, ?4){STEP_CONFLICT_SQL}"
    )
});
const ROLES_SQL: &str = "UPDATE requests SET roles_removed = ?1 WHERE id = ?2";
const AUDIT_SQL: &str = "INSERT INTO audit_events (request_id, provider, method, path, status, error_code, attempt, latency_ms, at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// Tries for the write lock a thread yield apart before sleeping: it is
/// mostly held by one of apalis's statements, for about 0.1 ms.
const SPINS_BEFORE_SLEEP: i32 = 64;
const SLEEP_BETWEEN_TRIES: Duration = Duration::from_micros(200);
/// About the busy timeout the other connections have.
const MAX_TRIES: i32 =
    SPINS_BEFORE_SLEEP + (SQLITE_BUSY_TIMEOUT.as_micros() / SLEEP_BETWEEN_TRIES.as_micros()) as i32;

/// Opens the writer's connection on the database file at `path`.
pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(16);
    conn.busy_handler(Some(wait_for_lock))?;
    Ok(conn)
}

/// SQLite's busy handler for the writer: `tries` earlier calls for this
/// lock; false gives up, and the statement fails with `SQLITE_BUSY`.
fn wait_for_lock(tries: i32) -> bool {
    if tries < SPINS_BEFORE_SLEEP {
        std::thread::yield_now();
    } else {
        std::thread::sleep(SLEEP_BETWEEN_TRIES);
    }
    #[cfg(test)]
    tests::LOCK_WAITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    tries < MAX_TRIES
}

/// The writer's loop, on its own thread, until every handle is dropped.
pub(super) fn run(
    conn: Connection,
    checkpoints: Checkpoints,
    mut inbox: mpsc::UnboundedReceiver<Message>,
) {
    let mut conn = Some(conn);
    let mut checkpoints = Some(checkpoints);
    while let Some(first) = inbox.blocking_recv() {
        let Turn { group, then } = gather(first, &mut inbox);
        match conn.as_mut() {
            _ if group.is_empty() => {}
            Some(c) => {
                let started = std::time::Instant::now();
                let committed = commit(c, &group);
                super::group_committed(group.len(), started);
                for p in reply(group, committed) {
                    let committed = commit(c, std::slice::from_ref(&p));
                    reply_one(p, committed);
                }
            }
            None => fail(group, closed),
        }
        match then {
            Some(Then::Run(work)) => work(conn.as_mut()),
            Some(Then::Close(done)) => {
                // The checkpoint thread's connection closes last (dropping
                // `Checkpoints` joins that thread), and SQLite's last
                // connection to close checkpoints the WAL into the file.
                conn = None;
                checkpoints = None;
                let _ = done.send(());
            }
            None => {}
        }
        if let (Some(c), Some(k)) = (&conn, &checkpoints) {
            k.after_commit(c);
        }
    }
}

pub(super) fn sql_error(e: rusqlite::Error) -> StoreError {
    if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) {
        return StoreError::Locked(SQLITE_BUSY_TIMEOUT);
    }
    StoreError::Native(e)
}

/// `work` in a write transaction, committed when it succeeds.
pub(super) fn in_transaction<T>(
    conn: &mut Connection,
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    let done = work(&tx)?;
    tx.commit().map_err(sql_error)?;
    Ok(done)
}

/// One transaction for `group`, its writes in arrival order: each write's
/// answer, or an error that rolled all of them back.
fn commit(conn: &mut Connection, group: &[Pending]) -> Result<Vec<Committed>, StoreError> {
    in_transaction(conn, |tx| {
        let now = now_ms();
        let mut answers = Vec::with_capacity(group.len());
        for p in group {
            let answer = apply(tx, &p.write, now).map_err(sql_error)?;
            let read = match (&p.write, &answer) {
                (RunWrite::Claim { id, .. }, Ok(true)) if p.wants_read => read_claimed(tx, id)?,
                _ => None,
            };
            answers.push(Committed { answer, read });
        }
        let mut insert = tx.prepare_cached(AUDIT_SQL).map_err(sql_error)?;
        // Only writes that held their claim leave their calls in the log.
        for (p, _) in group.iter().zip(&answers).filter(|(_, c)| c.answer.is_ok()) {
            for e in &p.events {
                insert
                    .execute(params![
                        e.request_id,
                        e.provider,
                        e.method,
                        e.path,
                        e.status,
                        e.error_code,
                        e.attempt,
                        e.latency_ms as i64,
                        e.at
                    ])
                    .map_err(sql_error)?;
            }
        }
        Ok(answers)
    })
}

/// A claimed request as its run needs it, read in the claim's transaction
/// (sqlx's pool would take two more thread hand-offs).
fn read_claimed(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
) -> Result<Option<Box<Claimed>>, StoreError> {
    let mut statement = tx.prepare_cached(&CLAIMED_SQL).map_err(sql_error)?;
    let mut rows = statement.query(params![id]).map_err(sql_error)?;
    let mut claimed: Option<Claimed> = None;
    while let Some(row) = rows.next().map_err(sql_error)? {
        fold_claimed(&mut claimed, row)?;
    }
    Ok(claimed.map(Box::new))
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Value::Text(Some(t)) => Ok(rusqlite::types::ToSqlOutput::from(t.as_ref())),
            Value::Text(None) => Ok(rusqlite::types::ToSqlOutput::from(rusqlite::types::Null)),
            Value::Int(i) => i.to_sql(),
        }
    }
}

/// One write; the outer error is the database's, the inner one a lost claim.
fn apply(
    tx: &rusqlite::Transaction<'_>,
    write: &RunWrite,
    now: i64,
) -> Result<Answer, rusqlite::Error> {
    if let Some(update) = write.update(now) {
        let n = tx
            .prepare_cached(update.sql)?
            .execute(rusqlite::params_from_iter(&update.values))?;
        return Ok(update.answer(n as u64, write.request_id()));
    }
    let RunWrite::Step {
        id,
        owner,
        step,
        data,
        subject,
        roles,
    } = write
    else {
        unreachable!("every other write is an update");
    };
    let holder: Option<(Option<String>, i64)> = tx
        .prepare_cached(STEP_HOLDER_SQL)?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let cancel = match holder {
        Some((Some(holder), cancel)) if holder == *owner => cancel != 0,
        _ => return Ok(Err(StoreError::ClaimLost(id.clone()))),
    };
    if let Some(subject) = subject {
        let taken = tx
            .prepare_cached(SUBJECT_SQL)?
            .execute(params![subject, id, owner, subject, id, subject, id])?;
        if taken == 0 {
            return Ok(Err(StoreError::SubjectHeld(id.clone())));
        }
    }
    tx.prepare_cached(&STEP_SQL)?
        .execute(params![id, step.as_str(), data, now])?;
    if let Some(roles) = roles {
        tx.prepare_cached(ROLES_SQL)?.execute(params![roles, id])?;
    }
    Ok(Ok(cancel))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use sqlx::{Connection, Executor};

    /// Calls of the writer's busy handler, across the test process.
    pub(super) static LOCK_WAITS: AtomicU64 = AtomicU64::new(0);

    /// A group that meets another connection's write lock waits in the
    /// writer's busy handler and commits once the lock is let go.
    #[tokio::test]
    async fn a_group_waits_for_the_write_lock_it_meets() {
        let (_dir, url, store) = crate::store::scratch_store().await;
        let mut holder = sqlx::SqliteConnection::connect(&url).await.unwrap();
        holder.execute("BEGIN IMMEDIATE").await.unwrap();
        let waits_before = LOCK_WAITS.load(Ordering::SeqCst);
        let waiting = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .renew_claim("req_none", "w", std::time::Duration::from_secs(1))
                    .await
            }
        });
        // The writer's thread is now in its busy handler, or will be.
        while LOCK_WAITS.load(Ordering::SeqCst) == waits_before {
            tokio::task::yield_now().await;
        }
        assert!(
            !waiting.is_finished(),
            "the write did not wait for the lock"
        );
        holder.execute("COMMIT").await.unwrap();
        // No such request: the write commits and answers "not held".
        assert!(!waiting.await.unwrap().unwrap());
        store.close().await;
    }

    /// After the store is closed, a write fails instead of committing.
    #[tokio::test]
    async fn writes_after_close_fail() {
        let (_dir, _url, store) = crate::store::scratch_store().await;
        store.close().await;
        let late = store
            .renew_claim("req_none", "w", std::time::Duration::from_secs(1))
            .await;
        assert!(
            matches!(late, Err(crate::store::StoreError::Config(_))),
            "{late:?}"
        );
    }
}
