//! Requests: claiming one for a run, checkpointing its steps, finishing it.
//! Every write that ends a step also stores that step's audit events, in one
//! transaction, so the record of calls never disagrees with the checkpoints.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use sqlx::Row;

use super::group::RunWrite;
use super::sql::{roles_of_text, roles_text};
use super::{AuditEvent, Store, StoreError};
use crate::domain::{
    DepartmentId, OrgId, Outcome, ProviderName, RunMode, Step, StoredState, Target, UserId,
};

/// A stored request.
#[derive(Debug, Clone)]
pub struct RequestRow {
    pub id: String,
    pub batch_id: String,
    pub target: Target,
    pub reason: Option<String>,
    pub effective_at: Option<i64>,
    pub mode: RunMode,
    pub outcome: Option<Outcome>,
    pub attempts: u32,
    pub roles_removed: Vec<String>,
    /// What the request's live attempts removed, copied when a retry of
    /// its held batch previews it again (`roles_removed` then shows the
    /// new plan) and its record again once it is released or ends; empty
    /// until such a retry.
    pub roles_removed_earlier: Vec<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub finished_at: Option<i64>,
    /// The claim this worker holds on the request (empty unless claimed);
    /// every write of a run is conditioned on it.
    pub claim: String,
}

/// What trying to claim a request found.
#[derive(Debug)]
pub enum ClaimResult {
    /// This worker now runs the request's steps.
    Claimed(Box<Claimed>),
    /// Nothing to do: the request already has an outcome.
    Final,
    /// Another worker holds a live claim for this many more ms (by the
    /// database's clock).
    HeldBy { remaining_ms: i64 },
    /// No such request.
    Missing,
}

/// A request just claimed, with what its run must know before the first
/// step, all read in one query (one round trip where there were three).
#[derive(Debug)]
pub struct Claimed {
    pub request: RequestRow,
    /// The batch's stored state, if any.
    pub batch_state: Option<StoredState>,
    /// A person asked the request to stop.
    pub cancel_requested: bool,
    /// The checkpoints written by earlier runs, by step.
    pub checkpoints: HashMap<Step, serde_json::Value>,
}

/// What became of a plan's checkpoint stored with the person it resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanSaved {
    /// Stored, and no other open request acts for the person: this one
    /// does now. `cancel`: a person asked the request to stop meanwhile.
    Stored { cancel: bool },
    /// Nothing stored: this open request already acts for the same person.
    HeldBy(String),
}

/// How a request ended.
#[derive(Debug, Clone)]
pub struct Finish {
    pub outcome: Outcome,
    pub roles_removed: Vec<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

pub(super) const REQUEST_COLUMNS: &str = "id, batch_id, provider, organization_id, user_id, transfer_to_department_id, reason, effective_at, dry_run, outcome, attempts, roles_removed, roles_removed_earlier, error_code, error_message, finished_at";

impl Store {
    pub async fn request(&self, id: &str) -> Result<Option<RequestRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| request_from_row(&r)).transpose()
    }

    /// Claims an open request for `owner` for `lease`, counting the attempt.
    /// Two workers never hold the same request at once: the claim is taken
    /// only when free, expired, or already ours.
    pub async fn claim(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<ClaimResult, StoreError> {
        let (claimed, read) = self
            .group
            .claim(RunWrite::Claim {
                id: id.to_owned(),
                owner: owner.to_owned(),
                lease_ms: lease.as_millis() as i64,
            })
            .await?;
        if claimed {
            // The writer reads the request once the claim is committed,
            // except when its group was written one write at a time or the
            // read failed.
            let read = match read {
                Some(read) => Some(*read),
                None => self.claimed(id).await?,
            };
            return match read {
                Some(mut claimed) => {
                    claimed.request.claim = owner.to_owned();
                    Ok(ClaimResult::Claimed(Box::new(claimed)))
                }
                None => Ok(ClaimResult::Missing),
            };
        }
        let sql = format!(
            "SELECT outcome, claim_expires_at - {} AS remaining_ms FROM requests WHERE id = $1",
            super::group::db_now_ms(self.backend())
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            None => ClaimResult::Missing,
            Some(r) if r.get::<Option<String>, _>("outcome").is_some() => ClaimResult::Final,
            Some(r) => ClaimResult::HeldBy {
                remaining_ms: r.get::<Option<i64>, _>("remaining_ms").unwrap_or(0),
            },
        })
    }

    /// Extends a held claim; false when it was lost meanwhile.
    pub async fn renew_claim(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        self.group
            .write(
                RunWrite::Renew {
                    id: id.to_owned(),
                    owner: owner.to_owned(),
                    lease_ms: lease.as_millis() as i64,
                },
                &[],
            )
            .await
    }

    /// The request with its batch gate and checkpoints: one row per
    /// checkpoint (or one with no step), in one query.
    pub(super) async fn claimed(&self, id: &str) -> Result<Option<Claimed>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(CLAIMED_SQL.as_str()))
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        let mut claimed = None;
        for r in &rows {
            fold_claimed(&mut claimed, r)?;
        }
        Ok(claimed)
    }

    /// Records a finished step and the calls it made; returns whether a
    /// person asked the request to stop meanwhile (read in the same
    /// transaction, so no separate query is needed before the next step).
    pub async fn save_step(
        &self,
        id: &str,
        owner: &str,
        step: Step,
        data: &serde_json::Value,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        self.save_step_and_roles(id, owner, (step, data), None, events)
            .await
    }

    /// [`Store::save_step`], and with `roles` (a roles step's: the roles
    /// on the request's record so far) `roles_removed` set to them in the
    /// same commit.
    pub async fn save_step_and_roles(
        &self,
        id: &str,
        owner: &str,
        (step, data): (Step, &serde_json::Value),
        roles: Option<&[String]>,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let write = RunWrite::Step {
            id: id.to_owned(),
            owner: owner.to_owned(),
            step,
            data: data.to_string(),
            subject: None,
            roles: roles.map(roles_text),
        };
        self.group.write(write, events).await
    }

    /// Records the plan's checkpoint together with the person it resolved
    /// as `subject` (the provider's id), unless another open request of the
    /// same connection and organization already acts for them, or another
    /// request of this batch did: one person, one request. One commit for
    /// both, since a run waits for each. `events` are stored only with the
    /// checkpoint.
    pub async fn save_plan(
        &self,
        id: &str,
        owner: &str,
        subject: &str,
        data: &serde_json::Value,
        events: &[AuditEvent],
    ) -> Result<PlanSaved, StoreError> {
        // A holder found taken may finish before it is read: look again.
        for _ in 0..3 {
            let write = RunWrite::Step {
                id: id.to_owned(),
                owner: owner.to_owned(),
                step: Step::Plan,
                data: data.to_string(),
                subject: Some(subject.to_owned()),
                roles: None,
            };
            match self.group.write(write, events).await {
                Ok(cancel) => return Ok(PlanSaved::Stored { cancel }),
                Err(StoreError::SubjectHeld(_)) => {}
                Err(e) => return Err(e),
            }
            let holder: Option<String> = sqlx::query_scalar(
                "SELECT o.id FROM requests r JOIN requests o
                   ON o.provider = r.provider AND o.organization_id = r.organization_id
                 WHERE r.id = $1 AND o.subject = $2 AND o.dry_run = 0 AND o.id <> r.id
                   AND (o.outcome IS NULL OR o.batch_id = r.batch_id)
                 LIMIT 1",
            )
            .bind(id)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(holder) = holder {
                return Ok(PlanSaved::HeldBy(holder));
            }
        }
        Err(StoreError::ClaimLost(id.to_owned()))
    }

    /// Stores the audit events of a run's calls so far, while it still
    /// holds the claim: what a destructive call did is on record before
    /// the next one starts.
    pub async fn save_audit(
        &self,
        id: &str,
        owner: &str,
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        self.group
            .write(
                RunWrite::Audit {
                    id: id.to_owned(),
                    owner: owner.to_owned(),
                },
                events,
            )
            .await
            .map(|_| ())
    }

    /// Gives the request its outcome and drops the claim. `retries` are the
    /// in-place retries of this run, added to the request's attempts.
    pub async fn finish(
        &self,
        id: &str,
        owner: &str,
        finish: &Finish,
        retries: u32,
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        self.group
            .write(
                RunWrite::Finish {
                    id: id.to_owned(),
                    owner: owner.to_owned(),
                    finish: finish.clone(),
                    retries,
                },
                events,
            )
            .await
            .map(|_| ())
    }

    /// Stores a held preview's plan on the request (the roles it would
    /// remove, and a note) and drops the claim; the request stays open
    /// until its batch is released.
    pub async fn preview(
        &self,
        id: &str,
        owner: &str,
        roles: &[String],
        message: &str,
        retries: u32,
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        self.group
            .write(
                RunWrite::Preview {
                    id: id.to_owned(),
                    owner: owner.to_owned(),
                    roles: roles_text(roles),
                    message: message.to_owned(),
                    retries,
                },
                events,
            )
            .await
            .map(|_| ())
    }

    /// Leaves the request open for a later attempt, whose job the caller
    /// schedules: records the error that made it wait (if any) and releases
    /// the claim. `roles_removed`, when given, replaces the request's: the
    /// roles removed so far, earlier attempts' included.
    pub async fn postpone(
        &self,
        id: &str,
        owner: &str,
        error: Option<(&str, &str)>,
        roles_removed: Option<&[String]>,
        retries: u32,
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let error = error.map(|(code, message)| (code.to_owned(), message.to_owned()));
        let write = postpone_write(id, owner, error, roles_removed, retries, false);
        self.group.write(write, events).await.map(|_| ())
    }

    /// Leaves the request open with no queue job, marked unqueued, so the
    /// sweep of its batch's release (an approval, the end of its intake)
    /// enqueues it again; releases the claim.
    pub async fn park(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let write = postpone_write(id, owner, None, None, 0, true);
        self.group.write(write, &[]).await.map(|_| ())
    }

    /// Marks requests as having a queue job.
    pub async fn mark_enqueued(&self, ids: &[String]) -> Result<(), StoreError> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut tx = self.begin_write().await?;
        set_enqueued(&mut tx, self.backend(), &ids).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Open requests that never got a queue job (on PostgreSQL an intake
    /// interrupted between storing rows and enqueueing them; on either
    /// engine a request adopted or reopened when that stopped half-way).
    /// SQLite's intake stores its requests marked and holds their jobs
    /// instead (`queue::bulk`).
    /// The oldest `limit` of them (batch and request ids are ULIDs), read
    /// through `requests_batch_unqueued`: enqueueing a page takes it out of
    /// the next one.
    pub async fn unenqueued_requests(&self, limit: u32) -> Result<Vec<super::NewJob>, StoreError> {
        let rows = sqlx::query(UNENQUEUED_PAGE)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| super::NewJob {
                request_id: r.get("id"),
                effective_at: r.get("effective_at"),
            })
            .collect())
    }
}

/// A page of open requests with no queue job, oldest first. A held
/// preview's job runs at once whatever its `effective_at` (here and in
/// every query that makes jobs): it plans now, and its release waits.
pub(super) const UNENQUEUED_PAGE: &str = "SELECT id, CASE WHEN dry_run = 2 THEN NULL ELSE effective_at END AS effective_at FROM requests
     WHERE enqueued = 0 AND outcome IS NULL
       AND batch_id NOT IN (SELECT id FROM batches WHERE stored_state IN ('intake', 'halted', 'cancelled'))
     ORDER BY batch_id, id LIMIT $1";

/// The request, its batch gate and its checkpoints, one row per checkpoint
/// (or one with no step): what a run must know before its first step.
/// Built once: every claimed request runs it.
pub(super) static CLAIMED_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} LEFT JOIN step_checkpoints c ON c.request_id = r.id WHERE r.id = $1",
        CLAIMED_FROM.as_str()
    )
});
/// `CLAIMED_SQL`'s columns (of requests `r`, batches `b` and checkpoints
/// `c`) up to the join of the checkpoints, which each reader makes its own
/// way.
pub(super) static CLAIMED_FROM: LazyLock<String> = LazyLock::new(|| {
    let columns = REQUEST_COLUMNS
        .split(", ")
        .map(|c| format!("r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {columns}, b.stored_state, r.cancel_requested, c.step, c.data
         FROM requests r JOIN batches b ON b.id = r.batch_id"
    )
});

/// A row's columns by name, whichever driver read it: sqlx's `Any`, or
/// rusqlite on SQLite's group writer.
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<Option<i64>, StoreError>;

    fn required_text(&self, column: &str) -> Result<String, StoreError> {
        self.text(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL")))
    }

    fn required_int(&self, column: &str) -> Result<i64, StoreError> {
        self.int(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL")))
    }
}

impl Columns for sqlx::any::AnyRow {
    fn text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get(column)?)
    }

    fn int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.get(column)?)
    }
}

/// A row of [`CLAIMED_SQL`] as a claimed request with no checkpoints yet.
/// Folds a row of [`CLAIMED_SQL`] (or of a read of many requests with its
/// columns) into its request: the request's first row makes it, and each
/// row adds the checkpoint it carries.
pub(super) fn fold_claimed(
    claimed: &mut Option<Claimed>,
    r: &impl Columns,
) -> Result<(), StoreError> {
    let request = match claimed.as_mut() {
        Some(request) => request,
        None => claimed.insert(claimed_from_row(r)?),
    };
    add_checkpoint(request, r)
}

fn claimed_from_row(r: &impl Columns) -> Result<Claimed, StoreError> {
    Ok(Claimed {
        request: request_from_row(r)?,
        batch_state: super::batches::stored_state(r.text("stored_state")?),
        cancel_requested: r.required_int("cancel_requested")? != 0,
        checkpoints: HashMap::new(),
    })
}

/// Adds the checkpoint a row of [`CLAIMED_SQL`] carries, if any.
fn add_checkpoint(claimed: &mut Claimed, r: &impl Columns) -> Result<(), StoreError> {
    let Some(step) = r.text("step")? else {
        return Ok(());
    };
    let data = r.required_text("data")?;
    let step = step.parse::<Step>().map_err(StoreError::Corrupt)?;
    let data = serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    claimed.checkpoints.insert(step, data);
    Ok(())
}

pub(super) fn request_from_row(r: &impl Columns) -> Result<RequestRow, StoreError> {
    let outcome = r
        .text("outcome")?
        .map(|o| o.parse::<Outcome>())
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let roles = |column| Ok::<_, StoreError>(roles_of_text(&r.required_text(column)?));
    Ok(RequestRow {
        id: r.required_text("id")?,
        batch_id: r.required_text("batch_id")?,
        target: Target {
            provider: ProviderName::new_unchecked(r.required_text("provider")?),
            organization_id: OrgId::new_unchecked(r.required_text("organization_id")?),
            user_id: UserId::new_unchecked(r.required_text("user_id")?),
            transfer_to_department_id: r
                .text("transfer_to_department_id")?
                .map(DepartmentId::new_unchecked),
        },
        reason: r.text("reason")?,
        effective_at: r.int("effective_at")?,
        mode: RunMode::from_int(r.required_int("dry_run")?)
            .ok_or_else(|| StoreError::Corrupt("requests.dry_run out of range".into()))?,
        outcome,
        attempts: r.required_int("attempts")? as u32,
        roles_removed: roles("roles_removed")?,
        roles_removed_earlier: roles("roles_removed_earlier")?,
        error_code: r.text("error_code")?,
        error_message: r.text("error_message")?,
        finished_at: r.int("finished_at")?,
        claim: String::new(),
    })
}

/// A write that leaves request `id` open for later (see [`Store::postpone`]
/// and [`Store::park`]).
fn postpone_write(
    id: &str,
    owner: &str,
    error: Option<(String, String)>,
    roles: Option<&[String]>,
    retries: u32,
    unqueued: bool,
) -> RunWrite {
    RunWrite::Postpone {
        id: id.to_owned(),
        owner: owner.to_owned(),
        error,
        roles: roles.map(roles_text),
        retries,
        unqueued,
    }
}

/// Marks requests as having a queue job, inside the caller's transaction,
/// taking the rows in id order (see `requests_in_id_order`).
pub(crate) async fn set_enqueued(
    tx: &mut sqlx::AnyConnection,
    backend: super::Backend,
    ids: &[&str],
) -> Result<(), StoreError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    for part in ids.chunks(500) {
        let list = super::sql::Params::new(backend).list(part.len());
        let sql = format!(
            "UPDATE requests SET enqueued = {} WHERE {}",
            super::EnqueueMark::Enqueued.value(),
            super::sql::requests_in_id_order(backend, &list)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in part {
            q = q.bind(*id);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AcceptedRow, IntakeChunk};

    /// The async check `$check(&Store)` as two tests: on SQLite, and on
    /// PostgreSQL where `OFFBOARD_TEST_POSTGRES_URL` names a server.
    macro_rules! on_both_backends {
        ($check:ident, $sqlite:ident, $postgres:ident) => {
            #[tokio::test]
            async fn $sqlite() {
                let (_dir, _url, store) = crate::store::scratch_store().await;
                $check(&store).await;
                store.close().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $postgres() {
                let test = stringify!($postgres);
                let Some(pg) = crate::store::ScratchPostgres::create(test).await else {
                    return;
                };
                $check(&pg.store).await;
                pg.drop().await;
            }
        };
    }

    /// A retry in `mode` (`Live`, or `Preview` for a batch that was held)
    /// of request `id` of `batch` that ended `outcome`; it must reopen it.
    async fn reopen_one(store: &Store, batch: &str, outcome: Outcome, id: &str, mode: RunMode) {
        let reopened = store
            .reopen(&crate::store::Reopening {
                batch_id: batch,
                outcomes: &[outcome],
                run: &[id.to_owned()],
                back: &[],
                mode,
                halt: None,
                actor: &crate::domain::Actor::named("test"),
                detail: serde_json::json!({}),
            })
            .await
            .unwrap();
        assert_eq!(reopened.len(), 1);
    }

    /// A batch of one request (`u1`) in `mode`, claimed by `owner`: the
    /// batch's id and the request's.
    async fn one_claimed(store: &Store, mode: RunMode, owner: &str) -> (String, String) {
        let batch = crate::store::scratch_batch(store).await;
        let jobs = store
            .write_intake_chunk(&batch, mode, None, crate::store::chunk_of(&["u1"]))
            .await
            .unwrap();
        let id = jobs[0].request_id.clone();
        let lease = Duration::from_secs(60);
        let ClaimResult::Claimed(_) = store.claim(&id, owner, lease).await.unwrap() else {
            panic!("{id} not claimed");
        };
        (batch, id)
    }

    /// A retry plans again: a reopened request has no checkpoint left, and
    /// keeps the roles its earlier attempt removed on its record.
    #[tokio::test]
    async fn a_reopened_request_plans_again() {
        let (_dir, _url, store) = crate::store::scratch_store().await;
        let batch = crate::store::scratch_batch(&store).await;
        let jobs = store
            .write_intake_chunk(
                &batch,
                crate::domain::RunMode::Live,
                None,
                crate::store::chunk_of(&["u1"]),
            )
            .await
            .unwrap();
        let id = jobs[0].request_id.clone();
        let lease = Duration::from_secs(60);
        let ClaimResult::Claimed(_) = store.claim(&id, "w:1", lease).await.unwrap() else {
            panic!("not claimed");
        };
        let plan = serde_json::json!({"role_ids": ["role_a", "role_b"], "is_member": true});
        store
            .save_step(&id, "w:1", Step::Plan, &plan, &[])
            .await
            .unwrap();
        let dead = Finish {
            outcome: Outcome::Dead,
            roles_removed: vec!["role_a".into()],
            error_code: Some("http_503".into()),
            error_message: Some("gave up".into()),
        };
        store.finish(&id, "w:1", &dead, 0, &[]).await.unwrap();
        let reopenable = store.reopenable(&batch, &[Outcome::Dead]).await.unwrap();
        assert_eq!(reopenable, [(id.clone(), "u1".to_owned())]);
        reopen_one(&store, &batch, Outcome::Dead, &id, RunMode::Live).await;
        let ClaimResult::Claimed(again) = store.claim(&id, "w:2", lease).await.unwrap() else {
            panic!("not claimed again");
        };
        assert!(again.checkpoints.is_empty(), "{:?}", again.checkpoints);
        assert_eq!(again.request.roles_removed, ["role_a"]);
        assert_eq!(again.request.outcome, None);
        // What the first attempt planned is kept for an undo to read.
        store.finish(&id, "w:2", &dead, 0, &[]).await.unwrap();
        let sources = store.undo_sources(&batch, "", 10).await.unwrap();
        assert_eq!(sources[0].checkpoints, [(Step::Plan, plan)]);
        store.close().await;
    }

    /// The plan's checkpoint and its person are one commit: a second
    /// request of the batch that resolved to the same person stores neither
    /// its plan nor its calls' events and is told who holds them; a run
    /// whose claim was lost is told so.
    async fn a_plan_is_stored_only_with_its_person(store: &Store) {
        let batch = crate::store::scratch_batch(store).await;
        let jobs = store
            .write_intake_chunk(
                &batch,
                RunMode::Live,
                None,
                crate::store::chunk_of(&["u1", "u1-alias", "u2"]),
            )
            .await
            .unwrap();
        let ids: Vec<&str> = jobs.iter().map(|j| j.request_id.as_str()).collect();
        let lease = Duration::from_secs(60);
        for id in &ids[..2] {
            let ClaimResult::Claimed(_) = store.claim(id, "w", lease).await.unwrap() else {
                panic!("not claimed");
            };
        }
        let plan = serde_json::json!({"is_member": true});
        let event = |id: &str| AuditEvent {
            request_id: Some(id.to_owned()),
            provider: "aitronos".into(),
            method: "GET".into(),
            path: format!("/plan/{id}"),
            status: Some(200),
            error_code: None,
            attempt: 1,
            latency_ms: 1,
            at: 1,
        };
        let first = store
            .save_plan(ids[0], "w", "person-1", &plan, &[event(ids[0])])
            .await
            .unwrap();
        assert_eq!(first, PlanSaved::Stored { cancel: false });
        let second = store
            .save_plan(ids[1], "w", "person-1", &plan, &[event(ids[1])])
            .await
            .unwrap();
        assert_eq!(second, PlanSaved::HeldBy(ids[0].to_owned()));
        assert_eq!(
            store.claimed(ids[0]).await.unwrap().unwrap().checkpoints[&Step::Plan],
            plan
        );
        assert!(
            store
                .claimed(ids[1])
                .await
                .unwrap()
                .unwrap()
                .checkpoints
                .is_empty(),
            "a plan stored without its person"
        );
        let paths: Vec<String> = sqlx::query_scalar("SELECT path FROM audit_events ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(paths, [format!("/plan/{}", ids[0])]);
        // Not claimed by "w": the claim is lost, whoever holds the person.
        let lost = store.save_plan(ids[2], "w", "person-2", &plan, &[]).await;
        assert!(matches!(lost, Err(StoreError::ClaimLost(_))), "{lost:?}");
    }

    on_both_backends!(
        a_plan_is_stored_only_with_its_person,
        a_plan_is_stored_only_with_its_person_on_sqlite,
        a_plan_is_stored_only_with_its_person_on_postgres
    );

    /// Two hosts whose clocks disagree never both hold a request: a live
    /// claim is not taken by a host whose clock runs ahead, and a lapsed
    /// one is taken by a host whose clock runs behind.
    #[tokio::test]
    async fn claims_expire_by_the_database_clock() {
        let (_dir, _url, store) = crate::store::scratch_store().await;
        let batch = crate::store::scratch_batch(&store).await;
        let jobs = store
            .write_intake_chunk(
                &batch,
                crate::domain::RunMode::Live,
                None,
                crate::store::chunk_of(&["u1"]),
            )
            .await
            .unwrap();
        let id = jobs[0].request_id.clone();
        let minute = Duration::from_secs(60);
        let ahead = store.with_clock_offset(10 * 60_000);
        let behind = store.with_clock_offset(-10 * 60_000);

        assert!(matches!(
            store.claim(&id, "a", minute).await.unwrap(),
            ClaimResult::Claimed(_)
        ));
        match ahead.claim(&id, "b", minute).await.unwrap() {
            ClaimResult::HeldBy { remaining_ms } => {
                assert!(remaining_ms > 0 && remaining_ms <= 60_000, "{remaining_ms}")
            }
            other => panic!("a live claim was taken: {other:?}"),
        }
        // The claim lapses (two minutes pass, as far as the database knows).
        sqlx::query(
            "UPDATE requests SET claim_expires_at = claim_expires_at - 120000 WHERE id = $1",
        )
        .bind(&id)
        .execute(&store.pool)
        .await
        .unwrap();
        assert!(
            matches!(
                behind.claim(&id, "c", minute).await.unwrap(),
                ClaimResult::Claimed(_)
            ),
            "a lapsed claim is free whatever the taker's clock says"
        );
        assert!(
            !store.renew_claim(&id, "a", minute).await.unwrap(),
            "a lost it"
        );
        store.close().await;
    }

    /// On SQLite the writer reads a claimed request in the claim's own
    /// transaction; it must read what the pool reads: the row, the batch
    /// gate and every checkpoint.
    #[tokio::test]
    async fn the_writer_s_claim_read_is_the_pool_s() {
        let (_dir, _url, store) = crate::store::scratch_store().await;
        let batch = crate::store::scratch_batch(&store).await;
        let chunk = IntakeChunk {
            accepted: vec![AcceptedRow {
                line: 2,
                target: Target {
                    provider: ProviderName::new_unchecked("acme"),
                    organization_id: OrgId::new_unchecked("org_1"),
                    user_id: UserId::new_unchecked("usr_2"),
                    transfer_to_department_id: Some(DepartmentId::new_unchecked("dept_3")),
                },
                reason: Some("left".into()),
                effective_at: None,
            }],
            rejected: Vec::new(),
        };
        let jobs = store
            .write_intake_chunk(&batch, crate::domain::RunMode::Live, None, chunk)
            .await
            .unwrap();
        let id = jobs[0].request_id.clone();
        let lease = Duration::from_secs(60);
        let ClaimResult::Claimed(first) = store.claim(&id, "w:1", lease).await.unwrap() else {
            panic!("not claimed");
        };
        assert!(first.checkpoints.is_empty());
        let plan = serde_json::json!({"role_ids": ["role_a"], "is_member": true});
        assert!(
            !store
                .save_step(&id, "w:1", Step::Plan, &plan, &[])
                .await
                .unwrap()
        );
        // The same owner claims again, as a resumed run of its own would.
        let ClaimResult::Claimed(by_writer) = store.claim(&id, "w:1", lease).await.unwrap() else {
            panic!("not claimed again");
        };
        let by_pool = store.claimed(&id).await.unwrap().unwrap();
        assert_eq!(by_writer.checkpoints.get(&Step::Plan), Some(&plan));
        assert_eq!(by_writer.checkpoints, by_pool.checkpoints);
        assert_eq!(by_writer.batch_state, by_pool.batch_state);
        assert_eq!(by_writer.cancel_requested, by_pool.cancel_requested);
        assert_eq!(
            format!("{:?}", by_writer.request),
            format!(
                "{:?}",
                RequestRow {
                    claim: "w:1".into(),
                    ..by_pool.request
                }
            )
        );
        assert_eq!(
            by_writer.request.attempts, 2,
            "each claim counts an attempt"
        );
        store.close().await;
    }

    /// A request left for a later attempt keeps the roles removed so far
    /// on its record (a cancel before that attempt ends it with them); a
    /// postponement that names none leaves them as they are.
    async fn a_postponed_request_keeps_its_roles(store: &Store) {
        let batch = crate::store::scratch_batch(store).await;
        let jobs = store
            .write_intake_chunk(&batch, RunMode::Live, None, crate::store::chunk_of(&["u1"]))
            .await
            .unwrap();
        let id = &jobs[0].request_id;
        let lease = Duration::from_secs(60);
        let roles = ["role_a".to_owned()];
        let error = Some(("http_503", "later"));
        for (attempt, given) in [(1, Some(&roles[..])), (2, None)] {
            let owner = format!("w:{attempt}");
            let ClaimResult::Claimed(_) = store.claim(id, &owner, lease).await.unwrap() else {
                panic!("{id} not claimed");
            };
            // Two in-place retries of this attempt count too.
            store
                .postpone(id, &owner, error, given, 2, &[])
                .await
                .unwrap();
            let row = store.request(id).await.unwrap().unwrap();
            assert_eq!(row.roles_removed, roles, "attempt {attempt}");
            assert_eq!(row.outcome, None);
            assert_eq!(row.attempts, attempt * 3, "one claim and two retries each");
            assert_eq!(row.error_code.as_deref(), Some("http_503"));
        }
    }

    /// A roles step's checkpoint puts the roles on the request's record in
    /// its commit, under the claim: a writer that lost it changes neither.
    async fn a_roles_checkpoint_puts_them_on_record(store: &Store) {
        let (_, id) = one_claimed(store, RunMode::Live, "w:1").await;
        let id = &id;
        let data = serde_json::json!({"removed": ["role_a"], "complete": true});
        let step = (Step::StripRoles, &data);
        let lost = store
            .save_step_and_roles(id, "w:2", step, Some(&["role_x".to_owned()]), &[])
            .await;
        assert!(matches!(lost, Err(StoreError::ClaimLost(_))), "{lost:?}");
        let row = store.request(id).await.unwrap().unwrap();
        assert!(row.roles_removed.is_empty(), "{:?}", row.roles_removed);
        let roles = ["role_0".to_owned(), "role_a".to_owned()];
        let cancel = store
            .save_step_and_roles(id, "w:1", step, Some(&roles), &[])
            .await
            .unwrap();
        assert!(!cancel);
        let row = store.request(id).await.unwrap().unwrap();
        assert_eq!(row.roles_removed, roles);
    }

    on_both_backends!(
        a_roles_checkpoint_puts_them_on_record,
        a_roles_checkpoint_puts_them_on_record_on_sqlite,
        a_roles_checkpoint_puts_them_on_record_on_postgres
    );

    on_both_backends!(
        a_postponed_request_keeps_its_roles,
        a_postponed_request_keeps_its_roles_on_sqlite,
        a_postponed_request_keeps_its_roles_on_postgres
    );

    /// A retry asked to run a batch live reopens its dry-run requests as
    /// dry runs: a retry never makes a dry run remove anyone.
    async fn a_reopened_dry_run_stays_a_dry_run(store: &Store) {
        let (batch, id) = one_claimed(store, RunMode::DryRun, "w:1").await;
        let failed = Finish {
            outcome: Outcome::Failed,
            roles_removed: Vec::new(),
            error_code: Some("http_400".into()),
            error_message: Some("no".into()),
        };
        store.finish(&id, "w:1", &failed, 0, &[]).await.unwrap();
        reopen_one(store, &batch, Outcome::Failed, &id, RunMode::Live).await;
        let row = store.request(&id).await.unwrap().unwrap();
        assert_eq!((row.outcome, row.mode), (None, RunMode::DryRun));
    }

    on_both_backends!(
        a_reopened_dry_run_stays_a_dry_run,
        a_reopened_dry_run_stays_a_dry_run_on_sqlite,
        a_reopened_dry_run_stays_a_dry_run_on_postgres
    );

    /// A live request that wrote `steps` and ended `needs_attention`
    /// with `earlier` removed, previewed again by a retry of its held
    /// batch (planning `role_c`), held: the batch's id and the request's.
    async fn previewed_again(
        store: &Store,
        steps: &[(Step, serde_json::Value)],
        earlier: &[String],
    ) -> (String, String) {
        let (batch, id) = one_claimed(store, RunMode::Live, "w:1").await;
        for (step, data) in steps {
            store.save_step(&id, "w:1", *step, data, &[]).await.unwrap();
        }
        let failed = Finish {
            outcome: Outcome::NeedsAttention,
            roles_removed: earlier.to_vec(),
            error_code: Some("plan_changed".into()),
            error_message: Some("left in place".into()),
        };
        store.finish(&id, "w:1", &failed, 0, &[]).await.unwrap();
        reopen_one(
            store,
            &batch,
            Outcome::NeedsAttention,
            &id,
            RunMode::Preview,
        )
        .await;
        let lease = Duration::from_secs(60);
        let ClaimResult::Claimed(_) = store.claim(&id, "w:2", lease).await.unwrap() else {
            panic!("{id} not claimed");
        };
        let planned = ["role_c".to_owned()];
        store
            .preview(&id, "w:2", &planned, "previewed", 0, &[])
            .await
            .unwrap();
        let held = store.request(&id).await.unwrap().unwrap();
        assert_eq!(held.mode, RunMode::Preview);
        assert_eq!(held.roles_removed, planned);
        assert_eq!(held.roles_removed_earlier, earlier);
        (batch, id)
    }

    /// [`previewed_again`], then ended `end` when its job claims it again
    /// (a cancel, or a failure).
    async fn previewed_again_then_ended(
        store: &Store,
        steps: &[(Step, serde_json::Value)],
        earlier: &[String],
        end: Outcome,
    ) -> (String, String) {
        let (batch, id) = previewed_again(store, steps, earlier).await;
        let lease = Duration::from_secs(60);
        let ClaimResult::Claimed(_) = store.claim(&id, "w:3", lease).await.unwrap() else {
            panic!("{id} not claimed");
        };
        let ended = Finish {
            outcome: end,
            roles_removed: Vec::new(),
            error_code: Some(end.as_str().into()),
            error_message: Some("ended".into()),
        };
        store.finish(&id, "w:3", &ended, 0, &[]).await.unwrap();
        (batch, id)
    }

    /// A request that removed roles and is previewed again by a retry of
    /// its held batch shows the new plan while it waits, and ends with
    /// what it removed before on record.
    async fn a_preview_again_ends_with_what_was_removed_before(store: &Store) {
        let earlier = vec!["role_a".to_owned(), "role_b".to_owned()];
        let (_, id) = previewed_again_then_ended(store, &[], &earlier, Outcome::Cancelled).await;
        let row = store.request(&id).await.unwrap().unwrap();
        assert_eq!(row.outcome, Some(Outcome::Cancelled));
        assert_eq!(row.roles_removed, earlier);
    }

    on_both_backends!(
        a_preview_again_ends_with_what_was_removed_before,
        a_preview_again_ends_with_what_was_removed_before_on_sqlite,
        a_preview_again_ends_with_what_was_removed_before_on_postgres
    );

    /// One whose live attempt removed only the membership is read by an
    /// undo of the batch all the same.
    async fn a_preview_again_after_a_membership_removal_is_undone(store: &Store) {
        let steps = [
            (
                Step::Plan,
                serde_json::json!({"plan": {"role_ids": [], "is_member": true}}),
            ),
            (
                Step::RemoveMembership,
                serde_json::json!({"change": "changed"}),
            ),
        ];
        let (batch, id) = previewed_again_then_ended(store, &steps, &[], Outcome::Cancelled).await;
        let sources = store.undo_sources(&batch, "", 10).await.unwrap();
        assert_eq!(sources.len(), 1, "{sources:?}");
        assert_eq!(sources[0].request.id, id);
        assert!(
            sources[0]
                .checkpoints
                .iter()
                .any(|(step, _)| *step == Step::RemoveMembership),
            "{sources:?}"
        );
    }

    /// Such a request, held or failed, is a newer offboarding of its
    /// person: an undo of an older batch does not give back what it
    /// removed (or, released, will remove again).
    async fn a_preview_again_is_a_newer_offboarding(store: &Store, failed: bool) {
        let (_, old) = one_claimed(store, RunMode::Live, "w:0").await;
        let done = Finish {
            outcome: Outcome::Succeeded,
            roles_removed: vec!["role_z".to_owned()],
            error_code: None,
            error_message: None,
        };
        store.finish(&old, "w:0", &done, 0, &[]).await.unwrap();
        let steps = [(
            Step::StripRoles,
            serde_json::json!({"removed": ["role_a"], "complete": true}),
        )];
        let earlier = ["role_a".to_owned()];
        let (newer, _) = if failed {
            previewed_again_then_ended(store, &steps, &earlier, Outcome::Failed).await
        } else {
            previewed_again(store, &steps, &earlier).await
        };
        assert_eq!(store.offboarded_again(&old).await.unwrap(), Some(newer));
    }

    async fn a_held_preview_again_is_a_newer_offboarding(store: &Store) {
        a_preview_again_is_a_newer_offboarding(store, false).await;
    }

    async fn a_failed_preview_again_is_a_newer_offboarding(store: &Store) {
        a_preview_again_is_a_newer_offboarding(store, true).await;
    }

    on_both_backends!(
        a_held_preview_again_is_a_newer_offboarding,
        a_held_preview_again_is_a_newer_offboarding_on_sqlite,
        a_held_preview_again_is_a_newer_offboarding_on_postgres
    );

    on_both_backends!(
        a_failed_preview_again_is_a_newer_offboarding,
        a_failed_preview_again_is_a_newer_offboarding_on_sqlite,
        a_failed_preview_again_is_a_newer_offboarding_on_postgres
    );

    on_both_backends!(
        a_preview_again_after_a_membership_removal_is_undone,
        a_preview_again_after_a_membership_removal_is_undone_on_sqlite,
        a_preview_again_after_a_membership_removal_is_undone_on_postgres
    );

    /// A held preview keeps what it would remove in `roles_removed`;
    /// cancelled, it removed nothing, and its record says so.
    #[tokio::test]
    async fn a_cancelled_held_preview_removed_nothing() {
        let (_dir, _url, store) = crate::store::scratch_store().await;
        let (_, id) = one_claimed(&store, RunMode::Preview, "w:1").await;
        let id = &id;
        let planned = ["role_a".to_owned()];
        store
            .preview(id, "w:1", &planned, "previewed", 0, &[])
            .await
            .unwrap();
        let held = store.request(id).await.unwrap().unwrap();
        assert_eq!(held.roles_removed, planned);
        assert!(store.cancel_request(id, "cancelled", "no").await.unwrap());
        let row = store.request(id).await.unwrap().unwrap();
        assert_eq!(row.outcome, Some(Outcome::Cancelled));
        assert!(row.roles_removed.is_empty(), "{:?}", row.roles_removed);
        store.close().await;
    }
}
