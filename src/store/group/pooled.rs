//! The group writer on PostgreSQL: a task with a connection of its own
//! that writes each group as one statement, since every statement is a
//! round trip to the server (BENCHMARKS.md, "Why: a group in one statement
//! on PostgreSQL"). A second connection reads the requests a group
//! claimed, while the writer goes on to the next group.
//!
//! The group's writes travel as one JSON parameter and the statement's
//! data-modifying `WITH` parts apply each kind of write to its rows. Every
//! row keeps its own guard (the claim it needs) in its condition, so each
//! write is answered as if it had been written alone. The rows are locked
//! in id order before any change, so two writers never wait on each other
//! in a cycle. A statement changes a row at most once, so a request written
//! twice in a group goes in a second round, in one transaction with the
//! first. A statement the server refuses changed nothing: two writes that
//! collide (two subjects of one person) break a unique index, and the group
//! is written again one write at a time. A connection lost on the way
//! leaves unknown what was stored, so nothing is written again: every write
//! of the group fails, and its run starts over from its checkpoints.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::{AnyPool, ConnectOptions, Connection as _, Row};
use tokio::sync::mpsc;

use super::{
    Answer, Committed, Message, Pending, RunWrite, STEP_CONFLICT_SQL, Then, Turn, closed, fail,
    gather, reply, reply_one,
};
use crate::store::requests::{CLAIMED_FROM, fold_claimed};
use crate::store::sql::roles_text;
use crate::store::{Backend, Claimed, StoreError, now_ms};

const BACKEND: Backend = Backend::Postgres;

pub(super) async fn run(pool: AnyPool, mut inbox: mpsc::UnboundedReceiver<Message>) {
    let mut writer = OwnConnection {
        pool: pool.clone(),
        conn: None,
    };
    let mut reader = Some(Reader::start(pool));
    let mut open = true;
    while let Some(first) = inbox.recv().await {
        let Turn { group, then } = gather(first, &mut inbox);
        if !open {
            fail(group, closed);
        } else if !group.is_empty() {
            let started = std::time::Instant::now();
            let committed = writer.commit(&group).await;
            super::group_committed(group.len(), started);
            let (group, committed) = match &reader {
                Some(reader) => reader.take_claims(group, committed),
                None => (group, committed),
            };
            for p in reply(group, committed) {
                let committed = writer.commit(std::slice::from_ref(&p)).await;
                reply_one(p, committed);
            }
        }
        match then {
            // Only SQLite's writer has a connection to run work on.
            Some(Then::Run(work)) => work(None),
            Some(Then::Close(done)) => {
                if let Some(reader) = reader.take() {
                    reader.close().await;
                }
                if let Some((conn, _)) = writer.conn.take() {
                    let _ = conn.close().await;
                }
                writer.pool.close().await;
                open = false;
                let _ = done.send(());
            }
            None => {}
        }
    }
}

/// Claims committed, waiting for their requests to be read.
struct ToRead {
    claims: Vec<(Pending, Committed)>,
}

/// Reads the requests a group claimed, once the claims are committed, on a
/// connection of its own: the writer goes on to its next group meanwhile
/// (the read took about a sixth of a group's time on the writer's path).
struct Reader {
    jobs: mpsc::UnboundedSender<ToRead>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    fn start(pool: AnyPool) -> Reader {
        let (jobs, mut inbox) = mpsc::unbounded_channel::<ToRead>();
        let task = tokio::spawn(async move {
            let mut own = OwnConnection { pool, conn: None };
            let limit = own.pool.options().get_acquire_timeout();
            while let Some(ToRead { claims }) = inbox.recv().await {
                let ids: Vec<&str> = claims.iter().map(|(p, _)| p.write.request_id()).collect();
                // Within the pool's acquire timeout, or the callers read
                // their own: a read that hangs must not hold their runs.
                let read = tokio::time::timeout(limit, async {
                    read_claimed(own.ready().await?, &ids).await
                })
                .await
                .unwrap_or_else(|_| Err(interrupted("timed out reading claimed requests")));
                own.settle(read.is_ok());
                let mut reads = read.unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "claimed requests not read with the group; each run reads its own");
                    HashMap::new()
                });
                for (p, mut committed) in claims {
                    committed.read = reads.remove(p.write.request_id()).map(Box::new);
                    let _ = p.reply.send(committed);
                }
            }
            if let Some((conn, _)) = own.conn.take() {
                let _ = conn.close().await;
            }
        });
        Reader { jobs, task }
    }

    /// Hands the group's taken claims whose callers want the request to the
    /// reader, which replies to them; returns the rest of the group.
    fn take_claims(
        &self,
        group: Vec<Pending>,
        committed: Result<Vec<Committed>, StoreError>,
    ) -> (Vec<Pending>, Result<Vec<Committed>, StoreError>) {
        let Ok(answers) = committed else {
            return (group, committed);
        };
        let (claims, rest): (Vec<_>, Vec<_>) =
            group.into_iter().zip(answers).partition(|(p, committed)| {
                p.wants_read
                    && matches!(p.write, RunWrite::Claim { .. })
                    && matches!(committed.answer, Ok(true))
            });
        let claims = if claims.is_empty() {
            Vec::new()
        } else {
            match self.jobs.send(ToRead { claims }) {
                Ok(()) => Vec::new(),
                // The reader is gone: the callers read their own.
                Err(mpsc::error::SendError(ToRead { claims })) => claims,
            }
        };
        let (group, answers) = rest.into_iter().chain(claims).unzip();
        (group, Ok(answers))
    }

    /// Replies to every claim handed over, then closes its connection.
    async fn close(self) {
        drop(self.jobs);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the reader of claimed requests stopped");
        }
    }
}

/// The writer's own connection, opened with the pool's settings beside
/// the pool (as SQLite's writer has its own): taken from the pool for each
/// group, it cost a round trip of the pool's check, and kept, it would
/// leave a pool of one connection to no one else.
struct OwnConnection {
    pool: AnyPool,
    /// The connection and when it was last used.
    conn: Option<(sqlx::AnyConnection, Instant)>,
}

/// A connection idle this long is checked before use: a peer or firewall
/// that dropped it silently would otherwise hold the writer until TCP
/// gives up, minutes later.
const IDLE_CHECK: Duration = Duration::from_secs(10);

impl OwnConnection {
    /// Commits `group` on the connection, opened (or checked) first if
    /// need be, within the pool's acquire timeout; a connection that saw
    /// an error is dropped and opened again next time.
    async fn commit(&mut self, group: &[Pending]) -> Result<Vec<Committed>, StoreError> {
        let conn = self.ready().await?;
        let committed = commit(conn, group).await;
        self.settle(committed.is_ok());
        committed
    }

    /// After a use: the connection is kept as last used now, or dropped
    /// after an error, to be opened again next time.
    fn settle(&mut self, ok: bool) {
        match &mut self.conn {
            Some((_, used)) if ok => *used = Instant::now(),
            _ => self.conn = None,
        }
    }

    async fn ready(&mut self) -> Result<&mut sqlx::AnyConnection, StoreError> {
        let limit = self.pool.options().get_acquire_timeout();
        if let Some((conn, used)) = &mut self.conn
            && used.elapsed() >= IDLE_CHECK
            && !matches!(tokio::time::timeout(limit, conn.ping()).await, Ok(Ok(())))
        {
            self.conn = None;
        }
        if self.conn.is_none() {
            let options = self.pool.connect_options();
            let conn = match tokio::time::timeout(limit, options.connect()).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => return Err(interrupted(e)),
                Err(_) => return Err(interrupted("timed out opening a connection")),
            };
            self.conn = Some((conn, Instant::now()));
        }
        match &mut self.conn {
            Some((conn, _)) => Ok(conn),
            None => unreachable!("opened above"),
        }
    }
}

/// The writer lost its way to the server: what the group stored is not
/// known, so none of it is written again.
fn interrupted(e: impl std::fmt::Display) -> StoreError {
    StoreError::Interrupted(e.to_string())
}

/// A statement's error: refused by the server (nothing changed, the group
/// may be written again one write at a time), or anything else.
fn statement_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(_) => StoreError::Sql(e),
        other => interrupted(other),
    }
}

/// A write that came back refused: a step whose claim held but whose person
/// another request holds.
const REFUSED: i64 = -1;

/// `$1`: the writes (`n`, their place in the round; `k`, their kind), `$2`:
/// their audit events (`w`, the write's `n`), `$3`: the time a finish or a
/// checkpoint is stamped with. Answers a row `(n, flag)` for each write that
/// held (a step's flag: its cancel), and [`REFUSED`] for a step whose person
/// another request holds. `subjected` keeps `SUBJECT_SQL`'s rule.
static GROUP_SQL: LazyLock<String> = LazyLock::new(|| {
    let now = super::db_now_ms(BACKEND);
    let held = "requests.id = w.id AND requests.claim_owner = w.owner AND requests.outcome IS NULL";
    // `locked` looks the rows up by `= ANY (ARRAY(…))`: as `IN (SELECT …)`
    // the planner, which guesses a JSON array holds 100 rows, scans the
    // whole table once it has a few thousand.
    format!(
        "WITH w AS MATERIALIZED (
            SELECT * FROM json_to_recordset($1::json) AS x(
                n bigint, k text, id text, owner text, lease_ms bigint, step text, data text,
                subject text, outcome text, roles text, error_code text, error_message text,
                retries bigint, unqueued bigint)
        ),
        locked AS MATERIALIZED (
            SELECT r.id, r.claim_owner, r.cancel_requested, r.outcome FROM requests r
            WHERE r.id = ANY (ARRAY(SELECT id FROM w)) ORDER BY r.id FOR NO KEY UPDATE
        ),
        mine AS MATERIALIZED (
            SELECT w.n, w.id, w.k, l.cancel_requested FROM w JOIN locked l ON l.id = w.id
            WHERE l.claim_owner = w.owner AND l.outcome IS NULL
        ),
        claimed AS (
            UPDATE requests SET claim_owner = w.owner, claim_expires_at = {now} + w.lease_ms,
                attempts = requests.attempts + 1
            FROM w JOIN locked l ON l.id = w.id
            WHERE w.k = 'claim' AND requests.id = w.id AND requests.outcome IS NULL
              AND (requests.claim_owner IS NULL OR requests.claim_owner = w.owner
                   OR requests.claim_expires_at < {now})
            RETURNING w.n
        ),
        renewed AS (
            UPDATE requests SET claim_expires_at = {now} + w.lease_ms
            FROM w JOIN locked l ON l.id = w.id
            WHERE w.k = 'renew' AND {held}
            RETURNING w.n
        ),
        subjected AS (
            UPDATE requests SET subject = w.subject
            FROM w JOIN locked l ON l.id = w.id
            WHERE w.k = 'step' AND w.subject IS NOT NULL AND {held}
              AND NOT EXISTS (SELECT 1 FROM requests o
                              WHERE o.provider = requests.provider
                                AND o.organization_id = requests.organization_id
                                AND o.subject = w.subject AND o.outcome IS NULL AND o.dry_run = 0
                                AND o.id <> w.id)
              AND NOT EXISTS (SELECT 1 FROM requests b
                              WHERE b.batch_id = requests.batch_id AND b.subject = w.subject
                                AND b.provider = requests.provider
                                AND b.organization_id = requests.organization_id
                                AND b.dry_run = 0 AND b.id <> w.id)
            RETURNING w.n
        ),
        finished AS (
            UPDATE requests SET outcome = w.outcome,
                roles_removed = CASE WHEN requests.dry_run = 2 THEN requests.roles_removed_earlier ELSE w.roles END,
                error_code = w.error_code, error_message = w.error_message, finished_at = $3,
                claim_owner = NULL, claim_expires_at = NULL,
                attempts = requests.attempts + w.retries
            FROM w JOIN locked l ON l.id = w.id
            WHERE w.k = 'finish' AND {held}
            RETURNING w.n
        ),
        previewed AS (
            UPDATE requests SET roles_removed = w.roles, error_message = w.error_message,
                finished_at = $3, claim_owner = NULL, claim_expires_at = NULL,
                attempts = requests.attempts + w.retries
            FROM w JOIN locked l ON l.id = w.id
            WHERE w.k = 'preview' AND {held} AND requests.dry_run = 2
            RETURNING w.n
        ),
        postponed AS (
            UPDATE requests SET error_code = COALESCE(w.error_code, requests.error_code),
                error_message = COALESCE(w.error_message, requests.error_message),
                roles_removed = COALESCE(w.roles, requests.roles_removed),
                claim_owner = NULL, claim_expires_at = NULL,
                attempts = requests.attempts + w.retries,
                enqueued = CASE WHEN w.unqueued = 1 THEN 0 ELSE requests.enqueued END
            FROM w JOIN locked l ON l.id = w.id
            WHERE w.k = 'postpone' AND {held}
            RETURNING w.n
        ),
        rolled AS (
            UPDATE requests SET roles_removed = w.roles
            FROM w JOIN mine m ON m.n = w.n
            WHERE w.k = 'step' AND w.roles IS NOT NULL AND requests.id = w.id
            RETURNING w.n
        ),
        stepped AS (
            INSERT INTO step_checkpoints (request_id, step, data, finished_at)
            SELECT w.id, w.step, w.data, $3 FROM w JOIN mine m ON m.n = w.n
            WHERE w.k = 'step' AND (w.subject IS NULL OR w.n IN (SELECT n FROM subjected))
            {STEP_CONFLICT_SQL}
            RETURNING request_id
        ),
        answered AS (
            SELECT n, NULL::bigint AS flag FROM renewed
            UNION ALL SELECT n, NULL FROM finished
            UNION ALL SELECT n, NULL FROM previewed
            UNION ALL SELECT n, NULL FROM postponed
            UNION ALL SELECT n, NULL FROM mine WHERE k = 'audit'
            UNION ALL SELECT m.n, m.cancel_requested FROM stepped s
                JOIN mine m ON m.id = s.request_id AND m.k = 'step'
        ),
        logged AS (
            INSERT INTO audit_events
                (request_id, provider, method, path, status, error_code, attempt, latency_ms, at)
            SELECT e.request_id, e.provider, e.method, e.path, e.status, e.error_code,
                   e.attempt, e.latency_ms, e.at
            FROM json_to_recordset($2::json) AS e(
                w bigint, seq bigint, request_id text, provider text, method text, path text,
                status bigint, error_code text, attempt bigint, latency_ms bigint, at bigint)
            WHERE e.w IN (SELECT n FROM answered)
               OR e.w IN (SELECT n FROM w WHERE k IN ('claim', 'renew'))
            ORDER BY e.seq
        )
        SELECT n, flag FROM answered
        UNION ALL SELECT n, NULL FROM claimed
        UNION ALL SELECT m.n, {REFUSED} FROM mine m JOIN w ON w.n = m.n
            WHERE w.k = 'step' AND w.subject IS NOT NULL
              AND m.n NOT IN (SELECT n FROM subjected)"
    )
});

/// One write of a round as the statement reads it.
#[derive(Serialize)]
struct WriteRow<'a> {
    n: usize,
    k: &'static str,
    id: &'a str,
    owner: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unqueued: Option<i64>,
}

impl<'a> WriteRow<'a> {
    fn of(n: usize, write: &'a RunWrite) -> WriteRow<'a> {
        let (id, owner) = match write {
            RunWrite::Claim { id, owner, .. }
            | RunWrite::Renew { id, owner, .. }
            | RunWrite::Audit { id, owner }
            | RunWrite::Step { id, owner, .. }
            | RunWrite::Finish { id, owner, .. }
            | RunWrite::Preview { id, owner, .. }
            | RunWrite::Postpone { id, owner, .. } => (id, owner),
        };
        let mut row = WriteRow {
            n,
            k: write.kind(),
            id,
            owner,
            lease_ms: None,
            step: None,
            data: None,
            subject: None,
            outcome: None,
            roles: None,
            error_code: None,
            error_message: None,
            retries: None,
            unqueued: None,
        };
        match write {
            RunWrite::Claim { lease_ms, .. } | RunWrite::Renew { lease_ms, .. } => {
                row.lease_ms = Some(*lease_ms);
            }
            RunWrite::Audit { .. } => {}
            RunWrite::Step {
                step,
                data,
                subject,
                roles,
                ..
            } => {
                row.step = Some(step.as_str());
                row.data = Some(data);
                row.subject = subject.as_deref();
                row.roles = roles.clone();
            }
            RunWrite::Finish {
                finish, retries, ..
            } => {
                row.outcome = Some(finish.outcome.as_str());
                row.roles = Some(roles_text(&finish.roles_removed));
                row.error_code = finish.error_code.as_deref();
                row.error_message = finish.error_message.as_deref();
                row.retries = Some(i64::from(*retries));
            }
            RunWrite::Preview {
                roles,
                message,
                retries,
                ..
            } => {
                row.roles = Some(roles.clone());
                row.error_message = Some(message);
                row.retries = Some(i64::from(*retries));
            }
            RunWrite::Postpone {
                error,
                roles,
                retries,
                unqueued,
                ..
            } => {
                row.roles = roles.clone();
                row.error_code = error.as_ref().map(|e| e.0.as_str());
                row.error_message = error.as_ref().map(|e| e.1.as_str());
                row.retries = Some(i64::from(*retries));
                row.unqueued = Some(i64::from(*unqueued));
            }
        }
        row
    }
}

/// One audit event of a round's write `w`, `seq` its place among them.
#[derive(Serialize)]
struct EventRow<'a> {
    w: usize,
    seq: usize,
    request_id: Option<&'a str>,
    provider: &'a str,
    method: &'a str,
    path: &'a str,
    status: Option<u16>,
    error_code: Option<&'a str>,
    attempt: u32,
    latency_ms: u64,
    at: i64,
}

/// Writes `group`: each write's answer, or an error: `Sql` when the
/// server refused a statement and nothing was stored, `Interrupted` when
/// that is not known. One statement, and no transaction around it, when no
/// request is written twice.
async fn commit(
    conn: &mut sqlx::AnyConnection,
    group: &[Pending],
) -> Result<Vec<Committed>, StoreError> {
    let rounds = rounds(group);
    let mut answers: Vec<Option<Answer>> = group.iter().map(|_| None).collect();
    if let [round] = rounds.as_slice() {
        write_round(conn, group, round, &mut answers).await?;
    } else {
        let mut tx = conn.begin().await.map_err(interrupted)?;
        for round in &rounds {
            write_round(&mut tx, group, round, &mut answers).await?;
        }
        tx.commit().await.map_err(interrupted)?;
    }
    Ok(answers
        .into_iter()
        .map(|a| Committed::from(a.unwrap_or(Ok(false))))
        .collect())
}

/// `CLAIMED_SQL` for the ids of a JSON array: one text, so one plan
/// whatever their number. The checkpoints are looked up per request
/// (`OFFSET 0` keeps the planner from joining the whole table): a plan made
/// while `step_checkpoints` was small scanned all of it once it had grown.
static CLAIMED_OF_IDS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}
         LEFT JOIN LATERAL (SELECT step, data FROM step_checkpoints
                            WHERE request_id = r.id OFFSET 0) c ON true
         WHERE r.id = ANY (ARRAY(SELECT json_array_elements_text($1::json)))",
        CLAIMED_FROM.as_str()
    )
});

/// The requests `ids` (claimed for callers that run them), with their
/// batch gate and checkpoints, in one read once the claims are committed:
/// read in the claims' own statement, a checkpoint the last holder
/// committed while the claim waited for its row would be missed. A caller
/// given none reads its request itself, so a failed read only costs time.
async fn read_claimed(
    conn: &mut sqlx::AnyConnection,
    ids: &[&str],
) -> Result<HashMap<String, Claimed>, StoreError> {
    let mut claimed: HashMap<String, Option<Claimed>> = HashMap::new();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids = serde_json::to_string(&ids)
        .map_err(|e| StoreError::Corrupt(format!("claimed ids as JSON: {e}")))?;
    let rows = sqlx::query(CLAIMED_OF_IDS_SQL.as_str())
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
    for row in rows {
        let id: String = row.try_get("id")?;
        fold_claimed(claimed.entry(id).or_default(), &row)?;
    }
    Ok(claimed
        .into_iter()
        .filter_map(|(id, request)| Some((id, request?)))
        .collect())
}

/// The group's writes in rounds in which each request is written once,
/// each request's writes in the order they came.
fn rounds(group: &[Pending]) -> Vec<Vec<usize>> {
    let mut written: HashMap<&str, usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, p) in group.iter().enumerate() {
        let times = written.entry(p.write.request_id()).or_default();
        if rounds.len() <= *times {
            rounds.push(Vec::new());
        }
        rounds[*times].push(i);
        *times += 1;
    }
    rounds
}

/// One statement for the writes of `group` at `round`, answering them.
async fn write_round(
    conn: &mut sqlx::AnyConnection,
    group: &[Pending],
    round: &[usize],
    answers: &mut [Option<Answer>],
) -> Result<(), StoreError> {
    let writes: Vec<WriteRow<'_>> = round
        .iter()
        .enumerate()
        .map(|(n, &i)| WriteRow::of(n, &group[i].write))
        .collect();
    let events: Vec<EventRow<'_>> = round
        .iter()
        .enumerate()
        .flat_map(|(n, &i)| group[i].events.iter().map(move |e| (n, e)))
        .enumerate()
        .map(|(seq, (w, e))| EventRow {
            w,
            seq,
            request_id: e.request_id.as_deref(),
            provider: &e.provider,
            method: &e.method,
            path: &e.path,
            status: e.status,
            error_code: e.error_code.as_deref(),
            attempt: e.attempt,
            latency_ms: e.latency_ms,
            at: e.at,
        })
        .collect();
    let json = |e: serde_json::Error| StoreError::Corrupt(format!("a group as JSON: {e}"));
    let rows = sqlx::query(GROUP_SQL.as_str())
        .bind(serde_json::to_string(&writes).map_err(json)?)
        .bind(serde_json::to_string(&events).map_err(json)?)
        .bind(now_ms())
        .fetch_all(&mut *conn)
        .await
        .map_err(statement_error)?;
    // What came back of each write: its flag.
    let mut came: Vec<Option<i64>> = vec![None; round.len()];
    for row in &rows {
        let n = row.try_get::<i64, _>("n").map_err(interrupted)?;
        let n = usize::try_from(n)
            .ok()
            .filter(|n| *n < round.len())
            .ok_or_else(|| interrupted("a group's answer names no write"))?;
        came[n] = Some(
            row.try_get::<Option<i64>, _>("flag")
                .map_err(interrupted)?
                .unwrap_or(0),
        );
    }
    for (n, &i) in round.iter().enumerate() {
        answers[i] = Some(answer(&group[i].write, came[n]));
    }
    Ok(())
}

/// A write's answer from what came back of it (`Some(flag)`) or not.
fn answer(write: &RunWrite, came: Option<i64>) -> Answer {
    match (write, came) {
        (RunWrite::Claim { .. } | RunWrite::Renew { .. }, came) => Ok(came.is_some()),
        (RunWrite::Step { .. }, Some(REFUSED)) => {
            Err(StoreError::SubjectHeld(write.request_id().to_owned()))
        }
        // A step answers whether a cancel was asked for.
        (RunWrite::Step { .. }, Some(cancel)) => Ok(cancel != 0),
        (_, Some(_)) => Ok(false),
        // A claim-guarded write that changed nothing lost its claim.
        (_, None) => Err(StoreError::ClaimLost(write.request_id().to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use futures::future::join_all;

    use crate::domain::{Outcome, RunMode, Step};
    use crate::store::{
        ClaimResult, Finish, PlanSaved, ScratchPostgres, StoreError, chunk_of, scratch_batch,
    };

    /// Writes that arrive at once share statements on PostgreSQL; each is
    /// still answered as if it had been written alone: one of two owners
    /// claims a request, one of two requests holds a person, and only the
    /// claim's holder finishes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_sent_together_are_answered_as_if_alone() {
        let users: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        let Some((pg, ids)) =
            with_requests("writes_sent_together_are_answered_as_if_alone", &users).await
        else {
            return;
        };
        let store = &pg.store;
        let lease = Duration::from_secs(60);

        let claims = join_all(ids.iter().flat_map(|id| {
            ["a", "b"].map(|owner| async move { (id, owner, store.claim(id, owner, lease).await) })
        }))
        .await;
        let mut holder: HashMap<&String, &str> = HashMap::new();
        for (id, owner, claimed) in claims {
            match claimed.unwrap() {
                ClaimResult::Claimed(c) => {
                    assert_eq!(&c.request.id, id);
                    assert_eq!(c.request.claim, owner);
                    assert!(holder.insert(id, owner).is_none(), "two owners hold {id}");
                }
                ClaimResult::HeldBy { remaining_ms } => assert!(remaining_ms > 0),
                other => panic!("{id}: {other:?}"),
            }
        }
        assert_eq!(holder.len(), ids.len(), "every request has one holder");

        // Two requests at a time act for the same person: one of each pair
        // holds them and stores its plan.
        let plan = serde_json::json!({"plan": 1});
        let subjects = join_all(ids.iter().enumerate().map(|(i, id)| {
            let (owner, plan) = (holder[id], &plan);
            async move {
                let person = format!("person-{}", i / 2);
                let saved = store.save_plan(id, owner, &person, plan, &[]).await;
                (id, saved.unwrap())
            }
        }))
        .await;
        let mut taken = 0;
        for (id, saved) in &subjects {
            let stored = store.claimed(id).await.unwrap().unwrap().checkpoints;
            match saved {
                PlanSaved::Stored { cancel: false } => {
                    taken += 1;
                    assert_eq!(stored.get(&Step::Plan), Some(&plan), "{id}");
                }
                PlanSaved::HeldBy(other) => {
                    assert_ne!(other, *id);
                    assert!(stored.is_empty(), "{id}: a plan stored without its person");
                }
                other => panic!("{id}: {other:?}"),
            }
        }
        assert_eq!(taken, ids.len() / 2, "{subjects:?}");

        let finish = Finish {
            outcome: Outcome::Succeeded,
            roles_removed: vec!["role_a".into()],
            error_code: None,
            error_message: None,
        };
        let finishes = join_all(ids.iter().flat_map(|id| {
            let finish = &finish;
            ["a", "b"].map(|owner| async move {
                (id, owner, store.finish(id, owner, finish, 0, &[]).await)
            })
        }))
        .await;
        for (id, owner, finished) in finishes {
            if holder[id] == owner {
                finished.unwrap();
            } else {
                assert!(
                    matches!(finished, Err(StoreError::ClaimLost(_))),
                    "{id} finished by {owner}, who does not hold it: {finished:?}"
                );
            }
        }
        for id in &ids {
            let row = store.request(id).await.unwrap().unwrap();
            assert_eq!(row.outcome, Some(Outcome::Succeeded), "{id}");
            assert_eq!(row.attempts, 1, "{id}: one claim taken");
        }
        pg.drop().await;
    }

    /// A claim taken after waiting for its row reads the checkpoint the
    /// last holder committed meanwhile: the claimed request is read once
    /// the claim is committed, not with the claim's own snapshot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_that_waited_reads_what_the_last_holder_stored() {
        use sqlx::Connection;

        let Some((pg, ids)) = with_requests(
            "a_claim_that_waited_reads_what_the_last_holder_stored",
            &["u0"],
        )
        .await
        else {
            return;
        };
        let store = &pg.store;
        let id = ids[0].clone();
        // The last holder's lease has lapsed; its writer still holds the row.
        sqlx::query("UPDATE requests SET claim_owner = 'old', claim_expires_at = 0 WHERE id = $1")
            .bind(&id)
            .execute(&store.pool)
            .await
            .unwrap();
        let options = store.pool.connect_options();
        let mut old = sqlx::AnyConnection::connect_with(&options).await.unwrap();
        let mut tx = old.begin().await.unwrap();
        sqlx::query("SELECT id FROM requests WHERE id = $1 FOR NO KEY UPDATE")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO step_checkpoints (request_id, step, data, finished_at)
             VALUES ($1, 'plan', '{\"kept\":true}', 0)",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await
        .unwrap();
        let claiming = tokio::spawn({
            let (store, id) = (store.clone(), id.clone());
            async move { store.claim(&id, "new", Duration::from_secs(60)).await }
        });
        // The claim's statement waits for the row lock.
        until_a_session_waits_for_a_lock(store).await;
        tx.commit().await.unwrap();
        let ClaimResult::Claimed(claimed) = claiming.await.unwrap().unwrap() else {
            panic!("the lapsed claim was not taken");
        };
        assert_eq!(
            claimed.checkpoints.get(&Step::Plan),
            Some(&serde_json::json!({"kept": true})),
            "{:?}",
            claimed.checkpoints
        );
        old.close().await.unwrap();
        pg.drop().await;
    }

    /// A scratch database with an open request of one batch for each of
    /// `users`, by intake; their ids in order.
    async fn with_requests(test: &str, users: &[&str]) -> Option<(ScratchPostgres, Vec<String>)> {
        let pg = ScratchPostgres::create(test).await?;
        let batch = scratch_batch(&pg.store).await;
        let jobs = pg
            .store
            .write_intake_chunk(&batch, RunMode::Live, None, chunk_of(users))
            .await
            .unwrap();
        let ids = jobs.into_iter().map(|j| j.request_id).collect();
        Some((pg, ids))
    }

    /// Returns once a session of the store's database waits for a lock.
    async fn until_a_session_waits_for_a_lock(store: &crate::store::Store) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no session waited for the lock"
            );
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&store.pool)
            .await
            .unwrap();
            if waiting > 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    /// The read of a group's claimed requests does not hold up the next
    /// group: while it waits (here for a lock on `batches`, which it joins
    /// and no write touches), another request's checkpoint commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_does_not_wait_for_the_read_of_another_claim() {
        use sqlx::Connection;

        let Some((pg, ids)) = with_requests(
            "a_write_does_not_wait_for_the_read_of_another_claim",
            &["u0", "u1"],
        )
        .await
        else {
            return;
        };
        let (a, b) = (ids[0].clone(), ids[1].clone());
        let store = &pg.store;
        let lease = Duration::from_secs(60);
        assert!(matches!(
            store.claim(&b, "b", lease).await.unwrap(),
            ClaimResult::Claimed(_)
        ));
        let options = store.pool.connect_options();
        let mut locker = sqlx::AnyConnection::connect_with(&options).await.unwrap();
        let mut tx = locker.begin().await.unwrap();
        sqlx::query("LOCK TABLE batches IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .unwrap();
        let claiming = tokio::spawn({
            let (store, a) = (store.clone(), a.clone());
            async move { store.claim(&a, "a", lease).await }
        });
        // The claim committed and its read waits for the lock.
        until_a_session_waits_for_a_lock(store).await;
        let data = serde_json::json!({"removed": [], "complete": true});
        let saved = tokio::time::timeout(
            Duration::from_secs(30),
            store.save_step(&b, "b", Step::StripRoles, &data, &[]),
        )
        .await;
        assert!(
            matches!(saved, Ok(Ok(false))),
            "the checkpoint waited for another request's read: {saved:?}"
        );
        tx.commit().await.unwrap();
        let ClaimResult::Claimed(claimed) = claiming.await.unwrap().unwrap() else {
            panic!("not claimed");
        };
        assert_eq!(claimed.request.id, a);
        locker.close().await.unwrap();
        pg.drop().await;
    }

    /// The group's statement finds its rows by index, however many
    /// requests the table holds: the planner's guess of a JSON array's
    /// size must not turn the row locks into a scan of the table.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_reads_its_rows_by_index() {
        use sqlx::Row;

        let Some(pg) = ScratchPostgres::create("a_group_reads_its_rows_by_index").await else {
            return;
        };
        let store = &pg.store;
        let batch = scratch_batch(store).await;
        pg.open_requests(&batch, 20_000).await;
        sqlx::query("ANALYZE requests")
            .execute(&store.pool)
            .await
            .unwrap();
        let writes: Vec<String> = (0..16)
            .map(|n| format!(r#"{{"n":{n},"k":"claim","id":"r{n}","owner":"a","lease_ms":1}}"#))
            .collect();
        let q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN {}",
            super::GROUP_SQL.as_str()
        )))
        .bind(format!("[{}]", writes.join(",")))
        .bind("[]")
        .bind(0_i64);
        let plan: Vec<String> = q
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("Index Scan"), "{plan}");
        assert!(!plan.contains("Seq Scan on requests"), "{plan}");

        // The claimed requests' checkpoints, with statistics from when
        // there were none.
        sqlx::query("ANALYZE step_checkpoints")
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO step_checkpoints (request_id, step, data, finished_at)
             SELECT 'r' || i, 'plan', '{}', 0 FROM generate_series(1, 20000) AS i",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN {}",
            super::CLAIMED_OF_IDS_SQL.as_str()
        )))
        .bind(r#"["r1","r2"]"#)
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan on step_checkpoints"), "{plan}");
        assert!(!plan.contains("Seq Scan on requests"), "{plan}");
        pg.drop().await;
    }

    /// A group in which a request is written twice goes in two rounds in
    /// one transaction, keeping the request's order; a write whose claim
    /// is not held is answered so and leaves no audit event.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_written_twice_in_a_group_keeps_its_order() {
        use tokio::sync::oneshot;

        use super::super::{Pending, RunWrite};
        use crate::domain::{AuditEvent, Step};

        let Some((pg, ids)) = with_requests(
            "a_request_written_twice_in_a_group_keeps_its_order",
            &["u0", "u1"],
        )
        .await
        else {
            return;
        };
        let (u0, u1) = (ids[0].clone(), ids[1].clone());
        let store = &pg.store;
        let lease = Duration::from_secs(60);
        for id in [&u0, &u1] {
            assert!(matches!(
                store.claim(id, "a", lease).await.unwrap(),
                ClaimResult::Claimed(_)
            ));
        }
        let event = |id: &str, path: &str| AuditEvent {
            request_id: Some(id.to_owned()),
            provider: "p".into(),
            method: "DELETE".into(),
            path: path.into(),
            status: Some(204),
            error_code: None,
            attempt: 1,
            latency_ms: 3,
            at: 1,
        };
        let mut replies = Vec::new();
        let mut pending = |write: RunWrite, events: Vec<AuditEvent>| {
            let (reply, answer) = oneshot::channel();
            replies.push(answer);
            Pending {
                write,
                events,
                wants_read: false,
                reply,
            }
        };
        let group = vec![
            pending(
                RunWrite::Renew {
                    id: u0.clone(),
                    owner: "a".into(),
                    lease_ms: 90_000,
                },
                vec![],
            ),
            pending(
                RunWrite::Audit {
                    id: u1.clone(),
                    owner: "b".into(),
                },
                vec![event(&u1, "/not-held")],
            ),
            pending(
                RunWrite::Finish {
                    id: u0.clone(),
                    owner: "a".into(),
                    finish: Finish {
                        outcome: Outcome::Succeeded,
                        roles_removed: vec!["r1".into(), "r2".into()],
                        error_code: None,
                        error_message: Some("it's done; \"quoted\"".into()),
                    },
                    retries: 2,
                },
                vec![event(&u0, "/first"), event(&u0, "/second")],
            ),
            pending(
                RunWrite::Step {
                    id: u1.clone(),
                    owner: "a".into(),
                    step: Step::Plan,
                    data: "{\"k\":1}".into(),
                    subject: None,
                    roles: None,
                },
                vec![event(&u1, "/held")],
            ),
        ];
        assert_eq!(super::rounds(&group), vec![vec![0, 1], vec![2, 3]]);
        let mut conn = store.pool.acquire().await.unwrap();
        let answers: Vec<_> = super::commit(&mut conn, &group)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.answer)
            .collect();
        assert!(matches!(answers[0], Ok(true)), "{answers:?}");
        assert!(
            matches!(answers[1], Err(StoreError::ClaimLost(_))),
            "{answers:?}"
        );
        assert!(matches!(answers[2], Ok(false)), "{answers:?}");
        assert!(matches!(answers[3], Ok(false)), "{answers:?}");
        drop((replies, conn));

        let row = store.request(&u0).await.unwrap().unwrap();
        assert_eq!(row.outcome, Some(Outcome::Succeeded));
        assert_eq!(row.roles_removed, vec!["r1".to_owned(), "r2".to_owned()]);
        assert_eq!(row.error_message.as_deref(), Some("it's done; \"quoted\""));
        assert_eq!(row.attempts, 3, "one claim and two retries");
        let paths: Vec<String> = sqlx::query_scalar("SELECT path FROM audit_events ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(paths, ["/first", "/second", "/held"]);
        let data: String = sqlx::query_scalar(
            "SELECT data FROM step_checkpoints WHERE request_id = $1 AND step = 'plan'",
        )
        .bind(&u1)
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(data, "{\"k\":1}");
        pg.drop().await;
    }
}
