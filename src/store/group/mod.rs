//! Group commit of the writes of requests' runs: one writer per process
//! folds the claims, checkpoints, outcomes and audit events of many requests
//! into one commit, as apalis does for its acks. Each write keeps its own
//! claim check, so a write whose claim was lost writes nothing and the
//! others still commit; a group the database refused is written again one
//! write at a time, so only the write that caused it fails (a group whose
//! fate is unknown, [`StoreError::Interrupted`], fails whole instead).
//!
//! On SQLite the writer is a thread with a connection of its own
//! ([`native`]); on PostgreSQL a task with connections of its own that
//! sends a group as one statement ([`pooled`]).

mod checkpoint;
mod native;
mod pooled;

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::sql::roles_text;
use super::{Backend, Claimed, Finish, StoreError};
use crate::domain::AuditEvent;
use crate::domain::Step;

/// Writes folded into one transaction at most.
const MAX_GROUP: usize = 64;

// The statements SQLite's writer sends, one a write, in `$N` parameters
// that rusqlite reads by position (PostgreSQL's writer sends a whole group
// as one statement of its own, `pooled`, with the same guards).

/// Takes the claim when free, expired or already the owner's, for `$2` ms
/// of the database's clock.
static CLAIM_SQL: LazyLock<String> = LazyLock::new(|| {
    let now = db_now_ms(Backend::Sqlite);
    format!(
        "UPDATE requests SET claim_owner = $1, claim_expires_at = {now} + $2, attempts = attempts + 1
         WHERE id = $3 AND outcome IS NULL
           AND (claim_owner IS NULL OR claim_owner = $4 OR claim_expires_at < {now})"
    )
});
static RENEW_SQL: LazyLock<String> = LazyLock::new(|| {
    let now = db_now_ms(Backend::Sqlite);
    format!(
        "UPDATE requests SET claim_expires_at = {now} + $1 WHERE id = $2 AND claim_owner = $3 AND outcome IS NULL"
    )
});
/// Stores a run's audit events between its checkpoints, while it holds
/// its claim.
const AUDIT_GUARD_SQL: &str = "UPDATE requests SET claim_owner = claim_owner WHERE id = $1 AND claim_owner = $2 AND outcome IS NULL";

/// The database's clock in unix ms. Claims expire by it, not by a
/// worker's: two hosts whose clocks disagree would otherwise both take a
/// request, or leave a lapsed one to wait.
pub(crate) fn db_now_ms(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

/// A preview removes nothing: its record keeps only what attempts before
/// a retry removed.
const FINISH_SQL: &str =
    "UPDATE requests SET outcome = $1,
         roles_removed = CASE WHEN dry_run = 2 THEN roles_removed_earlier ELSE $2 END, error_code = $3, error_message = $4,
         finished_at = $5, claim_owner = NULL, claim_expires_at = NULL, attempts = attempts + $6
     WHERE id = $7 AND claim_owner = $8 AND outcome IS NULL";
/// A held preview's plan: what it would remove, kept on the request while
/// it waits for its batch's release; `finished_at` says when it was made.
const PREVIEW_SQL: &str =
    "UPDATE requests SET roles_removed = $1, error_message = $2, finished_at = $3,
         claim_owner = NULL, claim_expires_at = NULL, attempts = attempts + $4
     WHERE id = $5 AND claim_owner = $6 AND outcome IS NULL AND dry_run = 2";
/// `$5 = 1` also marks it unqueued, for the sweep of a batch's release.
const POSTPONE_SQL: &str = "UPDATE requests SET error_code = COALESCE($1, error_code), error_message = COALESCE($2, error_message),
         roles_removed = COALESCE($3, roles_removed),
         claim_owner = NULL, claim_expires_at = NULL, attempts = attempts + $4,
         enqueued = CASE WHEN $5 = 1 THEN 0 ELSE enqueued END
     WHERE id = $6 AND claim_owner = $7 AND outcome IS NULL";
/// Claims the person the plan resolved, unless another open request of the
/// same connection and organization holds them, or another request of the
/// same batch did (`requests_open_subject` makes a race between two
/// writers an error, re-run one write at a time).
pub(in crate::store) const SUBJECT_SQL: &str = "UPDATE requests SET subject = $1
     WHERE id = $2 AND claim_owner = $3 AND outcome IS NULL
       AND NOT EXISTS (SELECT 1 FROM requests o
                       WHERE o.provider = requests.provider
                         AND o.organization_id = requests.organization_id
                         AND o.subject = $4 AND o.outcome IS NULL AND o.dry_run = 0
                         AND o.id <> $5)
       AND NOT EXISTS (SELECT 1 FROM requests b
                       WHERE b.batch_id = requests.batch_id AND b.subject = $6
                         AND b.provider = requests.provider
                         AND b.organization_id = requests.organization_id
                         AND b.dry_run = 0 AND b.id <> $7)";
/// Tail of a checkpoint insert: a step run again replaces its checkpoint.
const STEP_CONFLICT_SQL: &str = " ON CONFLICT (request_id, step) DO UPDATE SET data = excluded.data, finished_at = excluded.finished_at";

/// A write of a request's run: taking or renewing its claim, or ending a
/// step of it.
pub(super) enum RunWrite {
    /// Takes the claim when free, expired or already `owner`'s, for
    /// `lease_ms` of the database's clock; answers whether it was taken.
    Claim {
        id: String,
        owner: String,
        lease_ms: i64,
    },
    /// Extends a held claim; answers whether it was still held.
    Renew {
        id: String,
        owner: String,
        lease_ms: i64,
    },
    /// Only the events that come with it, while the claim is held (a lost
    /// claim stores none).
    Audit { id: String, owner: String },
    /// A step's checkpoint; answers whether a cancel was asked for. With
    /// a `subject` (the person the plan resolved, see `SUBJECT_SQL`), the
    /// checkpoint is stored only if this request takes them, and otherwise
    /// answered `SubjectHeld`.
    /// With `roles` (a roles step's), the request's `roles_removed`
    /// becomes them in the same commit, so its record shows what was
    /// removed even if no outcome follows (a worker that dies, a cancel).
    Step {
        id: String,
        owner: String,
        step: Step,
        data: String,
        subject: Option<String>,
        roles: Option<String>,
    },
    /// The request's outcome; the claim is dropped.
    Finish {
        id: String,
        owner: String,
        finish: Finish,
        retries: u32,
    },
    /// A held preview planned; the claim is dropped.
    Preview {
        id: String,
        owner: String,
        roles: String,
        message: String,
        retries: u32,
    },
    /// Left open for later; the claim is dropped. `unqueued` marks it as
    /// having no queue job, when none was scheduled for it. `roles`: the
    /// roles removed so far, kept on the request's record while it waits.
    Postpone {
        id: String,
        owner: String,
        error: Option<(String, String)>,
        roles: Option<String>,
        retries: u32,
        unqueued: bool,
    },
}

impl RunWrite {
    /// What the write does, in one word (the metric's label, and the
    /// PostgreSQL statement's `k`).
    fn kind(&self) -> &'static str {
        match self {
            RunWrite::Claim { .. } => "claim",
            RunWrite::Renew { .. } => "renew",
            RunWrite::Audit { .. } => "audit",
            RunWrite::Step { .. } => "step",
            RunWrite::Finish { .. } => "finish",
            RunWrite::Preview { .. } => "preview",
            RunWrite::Postpone { .. } => "postpone",
        }
    }

    fn request_id(&self) -> &str {
        match self {
            RunWrite::Claim { id, .. }
            | RunWrite::Renew { id, .. }
            | RunWrite::Audit { id, .. }
            | RunWrite::Step { id, .. }
            | RunWrite::Preview { id, .. }
            | RunWrite::Finish { id, .. }
            | RunWrite::Postpone { id, .. } => id,
        }
    }
}

/// A value bound to one of a write's statements.
enum Value<'a> {
    Text(Option<Cow<'a, str>>),
    Int(i64),
}

/// A claim-guarded `UPDATE` and what its row count answers.
struct Update<'a> {
    sql: &'static str,
    values: Vec<Value<'a>>,
    /// Claims and renewals answer whether they held; an outcome or a
    /// postponement that changed no row lost its claim.
    guards_claim: bool,
}

impl RunWrite {
    /// The write as one `UPDATE` on SQLite, or `None` for a step's
    /// checkpoint, which takes more than one. `now` stamps a finish.
    fn update<'a>(&'a self, now: i64) -> Option<Update<'a>> {
        use Value::{Int, Text};
        let text = |s: &'a str| Text(Some(Cow::Borrowed(s)));
        let opt = |s: Option<&'a str>| Text(s.map(Cow::Borrowed));
        let (sql, values, guards_claim) = match self {
            RunWrite::Claim {
                id,
                owner,
                lease_ms,
            } => (
                CLAIM_SQL.as_str(),
                vec![text(owner), Int(*lease_ms), text(id), text(owner)],
                false,
            ),
            RunWrite::Renew {
                id,
                owner,
                lease_ms,
            } => (
                RENEW_SQL.as_str(),
                vec![Int(*lease_ms), text(id), text(owner)],
                false,
            ),
            RunWrite::Audit { id, owner } => (AUDIT_GUARD_SQL, vec![text(id), text(owner)], true),
            RunWrite::Step { .. } => return None,
            RunWrite::Finish {
                id,
                owner,
                finish,
                retries,
            } => (
                FINISH_SQL,
                vec![
                    text(finish.outcome.as_str()),
                    Text(Some(Cow::Owned(roles_text(&finish.roles_removed)))),
                    opt(finish.error_code.as_deref()),
                    opt(finish.error_message.as_deref()),
                    Int(now),
                    Int(i64::from(*retries)),
                    text(id),
                    text(owner),
                ],
                true,
            ),
            RunWrite::Preview {
                id,
                owner,
                roles,
                message,
                retries,
            } => (
                PREVIEW_SQL,
                vec![
                    text(roles),
                    text(message),
                    Int(now),
                    Int(i64::from(*retries)),
                    text(id),
                    text(owner),
                ],
                true,
            ),
            RunWrite::Postpone {
                id,
                owner,
                error,
                roles,
                retries,
                unqueued,
            } => (
                POSTPONE_SQL,
                vec![
                    opt(error.as_ref().map(|e| e.0.as_str())),
                    opt(error.as_ref().map(|e| e.1.as_str())),
                    opt(roles.as_deref()),
                    Int(i64::from(*retries)),
                    Int(i64::from(*unqueued)),
                    text(id),
                    text(owner),
                ],
                true,
            ),
        };
        Some(Update {
            sql,
            values,
            guards_claim,
        })
    }
}

impl Update<'_> {
    /// The write's answer from the rows its `UPDATE` changed.
    fn answer(&self, rows: u64, id: &str) -> Answer {
        if self.guards_claim {
            held(rows, id)
        } else {
            Ok(rows == 1)
        }
    }
}

type Answer = Result<bool, StoreError>;

/// A write's answer once its group committed, and for a claim taken the
/// request as read in the same transaction.
struct Committed {
    answer: Answer,
    read: Option<Box<Claimed>>,
}

impl From<Answer> for Committed {
    fn from(answer: Answer) -> Committed {
        Committed { answer, read: None }
    }
}

struct Pending {
    write: RunWrite,
    events: Vec<AuditEvent>,
    /// A claim whose caller takes the request as the writer reads it.
    wants_read: bool,
    reply: oneshot::Sender<Committed>,
}

/// Work run on SQLite's writer connection, given `None` once it is closed.
type Work = Box<dyn FnOnce(Option<&mut rusqlite::Connection>) + Send>;

enum Message {
    Write(Pending),
    Then(Then),
}

/// What the writer does between two groups.
enum Then {
    /// Work of its own on the writer's connection (SQLite only).
    Run(Work),
    /// Closes the writer's connection; later writes fail.
    Close(oneshot::Sender<()>),
}

/// Handle on the process's group writer; cheap to clone.
#[derive(Clone)]
pub(super) struct GroupWriter {
    queue: mpsc::UnboundedSender<Message>,
}

impl fmt::Debug for GroupWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GroupWriter")
    }
}

impl GroupWriter {
    /// The writer of the SQLite database at `path`, on a thread of its own
    /// that ends when the last handle is dropped.
    pub(super) fn start_sqlite(path: &Path) -> Result<GroupWriter, StoreError> {
        let conn = native::open(path)?;
        let checkpoints = checkpoint::Checkpoints::start(&conn, path)?;
        let (queue, inbox) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("offboard-writer".into())
            .spawn(move || native::run(conn, checkpoints, inbox))
            .map_err(|e| StoreError::Config(format!("cannot start the database writer: {e}")))?;
        Ok(GroupWriter { queue })
    }

    /// The writer of a PostgreSQL database, a task on `pool`.
    pub(super) fn start_postgres(pool: AnyPool) -> GroupWriter {
        let (queue, inbox) = mpsc::unbounded_channel();
        tokio::spawn(pooled::run(pool, inbox));
        GroupWriter { queue }
    }

    /// Closes the writer's connection: later writes fail instead of
    /// committing.
    pub(super) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.queue.send(Message::Then(Then::Close(done))).is_ok() {
            let _ = closed.await;
        }
    }

    /// Runs `work` in a write transaction of its own on the writer's
    /// connection, between two groups (SQLite: bulk writes such as intake
    /// chunks and enqueued pages, which would otherwise send each
    /// statement through sqlx's connection thread).
    pub(super) async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = move |conn: Option<&mut rusqlite::Connection>| {
            let done = match conn {
                Some(conn) => native::in_transaction(conn, work),
                None => Err(StoreError::Config(
                    "no SQLite writer connection (the store is closed, or on PostgreSQL)".into(),
                )),
            };
            let _ = reply.send(done);
        };
        if self
            .queue
            .send(Message::Then(Then::Run(Box::new(job))))
            .is_err()
        {
            return Err(closed());
        }
        answer.await.unwrap_or_else(|_| Err(closed()))
    }

    /// Commits `write` with `events` (in some group) and returns its answer.
    pub(super) async fn write(&self, write: RunWrite, events: &[AuditEvent]) -> Answer {
        self.send(write, events, false).await.answer
    }

    /// Commits a claim; when taken, also the request as read in the same
    /// transaction (`None` when the group was written one at a time).
    pub(super) async fn claim(
        &self,
        write: RunWrite,
    ) -> Result<(bool, Option<Box<Claimed>>), StoreError> {
        let committed = self.send(write, &[], true).await;
        Ok((committed.answer?, committed.read))
    }

    async fn send(&self, write: RunWrite, events: &[AuditEvent], wants_read: bool) -> Committed {
        let _waiting = WriteWaits::start();
        let kind = write.kind();
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            write,
            events: events.to_vec(),
            wants_read,
            reply,
        };
        if self.queue.send(Message::Write(pending)).is_err() {
            return Committed::from(Err(closed()));
        }
        let committed = answer
            .await
            .unwrap_or_else(|_| Committed::from(Err(closed())));
        if committed.answer.is_ok() {
            crate::metrics::run_write(kind);
        }
        committed
    }
}

/// Writes sent to this process's group writers and the time their callers
/// waited for the commit: a run waits for each before its next call, so
/// `bench engine` reports them per user beside the floors.
static WAITED: (AtomicU64, AtomicU64) = (AtomicU64::new(0), AtomicU64::new(0));

/// One caller waiting for its write, counted when it stops waiting.
struct WriteWaits(Instant);

impl WriteWaits {
    fn start() -> WriteWaits {
        WriteWaits(Instant::now())
    }
}

impl Drop for WriteWaits {
    fn drop(&mut self) {
        let nanos = u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        WAITED.0.fetch_add(1, Ordering::Relaxed);
        WAITED.1.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Time this process's group writers spent committing groups.
static BUSY: AtomicU64 = AtomicU64::new(0);

/// Counts a group's commit, begun at `started`. How full groups are and how
/// long each takes are the two figures that bound a worker.
fn group_committed(writes: usize, started: Instant) {
    let took = started.elapsed();
    BUSY.fetch_add(
        u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    tracing::debug!(
        writes,
        elapsed_us = took.as_micros() as u64,
        "group committed"
    );
}

/// What this process's group writers did so far: writes committed, the
/// time their callers spent waiting for them in all, and the time the
/// writers spent committing.
pub fn writer_times() -> WriterTimes {
    WriterTimes {
        writes: WAITED.0.load(Ordering::Relaxed),
        waited: Duration::from_nanos(WAITED.1.load(Ordering::Relaxed)),
        busy: Duration::from_nanos(BUSY.load(Ordering::Relaxed)),
    }
}

/// See [`writer_times`].
#[derive(Debug, Default, Clone, Copy)]
pub struct WriterTimes {
    pub writes: u64,
    pub waited: Duration,
    pub busy: Duration,
}

impl WriterTimes {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: WriterTimes) -> WriterTimes {
        WriterTimes {
            writes: self.writes - earlier.writes,
            waited: self.waited.saturating_sub(earlier.waited),
            busy: self.busy.saturating_sub(earlier.busy),
        }
    }
}

fn closed() -> StoreError {
    StoreError::Config("the store is closed".into())
}

/// What the writer does next: a group of writes, then perhaps the work or
/// close that came in after them.
struct Turn {
    group: Vec<Pending>,
    then: Option<Then>,
}

/// The writes waiting behind `first`, up to a group, and what came after
/// them if it is not a write.
fn gather(first: Message, inbox: &mut mpsc::UnboundedReceiver<Message>) -> Turn {
    let mut group = Vec::new();
    let mut next = Some(first);
    while let Some(message) = next.take() {
        match message {
            Message::Write(p) => group.push(p),
            Message::Then(then) => {
                return Turn {
                    group,
                    then: Some(then),
                };
            }
        }
        if group.len() < MAX_GROUP {
            next = inbox.try_recv().ok();
        }
    }
    Turn { group, then: None }
}

/// Replies to a group from its commit. Returns the writes to commit again
/// one at a time: a group that failed for any reason but a lock held all
/// along, so only the write that caused the error fails.
fn reply(group: Vec<Pending>, committed: Result<Vec<Committed>, StoreError>) -> Vec<Pending> {
    match committed {
        Ok(answers) => {
            for (p, committed) in group.into_iter().zip(answers) {
                let _ = p.reply.send(committed);
            }
            Vec::new()
        }
        Err(e) if group.len() == 1 => {
            if let Some(p) = group.into_iter().next() {
                let _ = p.reply.send(Committed::from(Err(e)));
            }
            Vec::new()
        }
        // Writing one at a time would wait that long again per write.
        Err(StoreError::Locked(waited)) => {
            fail(group, || StoreError::Locked(waited));
            Vec::new()
        }
        // Some of it may be stored: writing it again could store it twice.
        Err(StoreError::Interrupted(why)) => {
            fail(group, || StoreError::Interrupted(why.clone()));
            Vec::new()
        }
        Err(e) => {
            tracing::debug!(error = %e, writes = group.len(), "group commit failed; writing one at a time");
            group
        }
    }
}

/// Replies to a write committed alone.
fn reply_one(p: Pending, committed: Result<Vec<Committed>, StoreError>) {
    let committed = match committed.map(|mut c| c.pop()) {
        Ok(Some(committed)) => committed,
        Ok(None) => Committed::from(Ok(false)),
        Err(e) => Committed::from(Err(e)),
    };
    let _ = p.reply.send(committed);
}

/// Answers every write of `group` with an error.
fn fail(group: Vec<Pending>, error: impl Fn() -> StoreError) {
    for p in group {
        let _ = p.reply.send(Committed::from(Err(error())));
    }
}

/// A claim-guarded `UPDATE` that changed no row lost its claim.
fn held(rows: u64, id: &str) -> Answer {
    if rows == 0 {
        return Err(StoreError::ClaimLost(id.to_owned()));
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::{Committed, Pending, RunWrite, StoreError, reply};

    /// `n` writes and the receivers of their answers.
    fn group(n: usize) -> (Vec<Pending>, Vec<oneshot::Receiver<Committed>>) {
        (0..n)
            .map(|i| {
                let (reply, answer) = oneshot::channel();
                let write = RunWrite::Audit {
                    id: format!("r{i}"),
                    owner: "w".into(),
                };
                let pending = Pending {
                    write,
                    events: Vec::new(),
                    wants_read: false,
                    reply,
                };
                (pending, answer)
            })
            .unzip()
    }

    /// A group whose fate is unknown fails whole and is not written again
    /// one write at a time (which could store its writes twice); a group
    /// the database refused is.
    #[test]
    fn only_a_refused_group_is_written_again() {
        let (pending, answers) = group(3);
        let again = reply(pending, Err(StoreError::Interrupted("reset".into())));
        assert!(again.is_empty());
        for mut answer in answers {
            let committed = answer.try_recv().unwrap();
            assert!(
                matches!(committed.answer, Err(StoreError::Interrupted(_))),
                "{:?}",
                committed.answer
            );
        }
        let (pending, _answers) = group(3);
        let refused = StoreError::Corrupt("refused".into());
        assert_eq!(reply(pending, Err(refused)).len(), 3);
    }
}
