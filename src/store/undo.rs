//! Undo: reading what a batch's requests removed, writing the undo batch's
//! requests with what each gives back, and the checks an undo request
//! makes before its first call.

use sqlx::Row;

use super::requests::{REQUEST_COLUMNS, RequestRow, request_from_row};
use super::sql::Params;
use super::{Backend, Store, StoreError, now_ms};
use crate::domain::{IdempotencyKey, Removal, RunMode, Step, Target};

/// A finished request of the batch being undone, with its record.
#[derive(Debug)]
pub struct UndoSource {
    pub request: RequestRow,
    /// Its line in the batch's file (the undo batch reports it there too).
    pub line: i64,
    /// Its checkpoints in the order they were written: those of attempts
    /// a retry reopened first, then the last attempt's.
    pub checkpoints: Vec<(Step, serde_json::Value)>,
}

/// One request of an undo batch.
#[derive(Debug, Clone)]
pub struct UndoRow {
    pub line: i64,
    /// The request it gives back what was removed by.
    pub undoes: String,
    pub target: Target,
    pub reason: Option<String>,
    pub removal: Removal,
}

/// What an undo request reverses.
#[derive(Debug, Clone)]
pub struct UndoLink {
    pub undoes: String,
    pub removal: Removal,
}

/// Of a preview (of `requests`): a live attempt before it made a change,
/// so a retry of its held batch made it a preview again. A preview writes
/// only its plan, and only a retry moves checkpoints to `step_history`.
const LIVE_BEFORE_SQL: &str = "EXISTS (SELECT 1 FROM step_history h
                  WHERE h.request_id = requests.id AND h.step <> 'plan')";

impl Store {
    /// Up to `limit` of the batch's own finished requests that ran live
    /// (live ones, and previews `LIVE_BEFORE_SQL` finds a change before)
    /// after
    /// request `after`, in id order, each with its checkpoints.
    pub async fn undo_sources(
        &self,
        batch_id: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<UndoSource>, StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS},
                    COALESCE((SELECT MIN(e.line) FROM batch_entries e
                              WHERE e.batch_id = requests.batch_id AND e.request_id = requests.id), 0) AS line
             FROM requests
             WHERE batch_id = $1 AND (dry_run = 0 OR (dry_run = 2 AND {LIVE_BEFORE_SQL}))
               AND outcome IS NOT NULL AND id > $2
             ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(batch_id)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut sources = Vec::with_capacity(rows.len());
        for r in &rows {
            sources.push(UndoSource {
                request: request_from_row(r)?,
                line: r.try_get("line")?,
                checkpoints: Vec::new(),
            });
        }
        if sources.is_empty() {
            return Ok(sources);
        }
        let mut p = Params::new(self.backend());
        let history = p.list(sources.len());
        let current = p.list(sources.len());
        let sql = format!(
            "SELECT request_id, step, data, finished_at, 0 AS latest FROM step_history WHERE request_id IN ({history})
             UNION ALL
             SELECT request_id, step, data, finished_at, 1 AS latest FROM step_checkpoints WHERE request_id IN ({current})"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for _ in 0..2 {
            for s in &sources {
                q = q.bind(s.request.id.as_str());
            }
        }
        let mut found: Vec<(String, i64, i64, Step, serde_json::Value)> = Vec::new();
        for r in q.fetch_all(&self.pool).await? {
            let step: String = r.try_get("step")?;
            let step = step.parse::<Step>().map_err(StoreError::Corrupt)?;
            let data: String = r.try_get("data")?;
            let data =
                serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            found.push((
                r.try_get("request_id")?,
                r.try_get("latest")?,
                r.try_get("finished_at")?,
                step,
                data,
            ));
        }
        // Steps of one attempt may share a millisecond: pipeline order
        // breaks the tie.
        found.sort_by_key(|(_, latest, at, step, _)| (*latest, *at, *step));
        for (id, _, _, step, data) in found {
            if let Some(s) = sources.iter_mut().find(|s| s.request.id == id) {
                s.checkpoints.push((step, data));
            }
        }
        Ok(sources)
    }

    /// Which of `users` have a request of the batch's own.
    pub async fn users_in_batch(
        &self,
        batch_id: &str,
        users: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        for part in users.chunks(500) {
            let mut p = Params::new(self.backend());
            let batch = p.one();
            let sql = format!(
                "SELECT DISTINCT user_id FROM requests WHERE batch_id = {batch} AND user_id IN ({})",
                p.list(part.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(batch_id);
            for u in part {
                q = q.bind(u.as_str());
            }
            for r in q.fetch_all(&self.pool).await? {
                found.push(r.try_get("user_id")?);
            }
        }
        Ok(found)
    }

    /// Stores an undo batch's requests, unqueued, each with its line and
    /// what it gives back, in one transaction.
    pub async fn write_undo_rows(
        &self,
        batch_id: &str,
        rows: &[UndoRow],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let mut ids = ulid::Generator::new();
        for row in rows {
            let id = ids
                .generate()
                .unwrap_or_else(|_| ulid::Ulid::new())
                .to_string();
            let t = &row.target;
            sqlx::query(
                "INSERT INTO requests (id, batch_id, provider, organization_id, user_id,
                     transfer_to_department_id, reason, idempotency_key, dry_run, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&id)
            .bind(batch_id)
            .bind(t.provider.as_str())
            .bind(t.organization_id.as_str())
            .bind(t.user_id.as_str())
            .bind(t.transfer_to_department_id.as_ref().map(|d| d.as_str()))
            .bind(row.reason.as_deref())
            .bind(IdempotencyKey::of(t).into_string())
            .bind(RunMode::Undo.as_int())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO batch_entries (batch_id, line, request_id) VALUES ($1, $2, $3)",
            )
            .bind(batch_id)
            .bind(row.line)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            let removal = serde_json::to_string(&row.removal)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO undo_requests (request_id, undoes, removal) VALUES ($1, $2, $3)",
            )
            .bind(&id)
            .bind(&row.undoes)
            .bind(removal)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// What the undo request `id` reverses.
    pub async fn undo_link(&self, id: &str) -> Result<Option<UndoLink>, StoreError> {
        let row = sqlx::query("SELECT undoes, removal FROM undo_requests WHERE request_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let removal: String = r.try_get("removal")?;
            Ok(UndoLink {
                undoes: r.try_get("undoes")?,
                removal: serde_json::from_str(&removal)
                    .map_err(|e| StoreError::Corrupt(format!("undo removal: {e}")))?,
            })
        })
        .transpose()
    }

    /// The batch of a newer offboarding of the person that request
    /// `original` offboarded and that is still in force (not undone,
    /// cancelled or skipped): open, or finished after it, for the same
    /// connection, organization and user (any transfer department), or a
    /// later batch whose row reported `original`'s outcome as its own.
    pub async fn offboarded_again(&self, original: &str) -> Result<Option<String>, StoreError> {
        let Some(o) = sqlx::query(
            "SELECT idempotency_key, batch_id, created_at, provider, organization_id,
                    COALESCE(subject, user_id) AS person
             FROM requests WHERE id = $1",
        )
        .bind(original)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let key: String = o.try_get("idempotency_key")?;
        let batch: String = o.try_get("batch_id")?;
        let created: i64 = o.try_get("created_at")?;
        // Every key of the person, whatever the department: ids hold no
        // raw '/', and '0' is the byte after it.
        let person = key.rsplit_once('/').map_or(key.as_str(), |(p, _)| p);
        let (from, to) = (format!("{person}/"), format!("{person}0"));
        let c = match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => " COLLATE \"C\"",
        };
        let finished = format!(
            "SELECT batch_id FROM requests
             WHERE idempotency_key{c} >= $1 AND idempotency_key{c} < $2
               AND dry_run = 0 AND finished_at IS NOT NULL AND created_at >= $3 AND id <> $4
               AND undone_by IS NULL AND outcome NOT IN ('cancelled', 'skipped')
             LIMIT 1"
        );
        // One a retry of its held batch previews again after a live
        // attempt: held, it removes again once released, whenever it was
        // made (as an open one below); ended, it counts as a finished one.
        let previewed = format!(
            "SELECT batch_id FROM requests
             WHERE idempotency_key{c} >= $1 AND idempotency_key{c} < $2
               AND dry_run = 2 AND id <> $4 AND undone_by IS NULL
               AND (outcome IS NULL OR (outcome NOT IN ('cancelled', 'skipped') AND created_at >= $3))
               AND {LIVE_BEFORE_SQL}
             LIMIT 1"
        );
        for sql in [finished, previewed] {
            let newer: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(&from)
                .bind(&to)
                .bind(created)
                .bind(original)
                .fetch_optional(&self.pool)
                .await?;
            if newer.is_some() {
                return Ok(newer);
            }
        }
        // An open one: found by the person its plan resolved; one not yet
        // planned removes whatever it finds when it runs.
        let open: Option<String> = sqlx::query_scalar(
            "SELECT batch_id FROM requests
             WHERE provider = $1 AND organization_id = $2 AND subject = $3
               AND outcome IS NULL AND dry_run = 0
             LIMIT 1",
        )
        .bind(o.try_get::<String, _>("provider")?)
        .bind(o.try_get::<String, _>("organization_id")?)
        .bind(o.try_get::<String, _>("person")?)
        .fetch_optional(&self.pool)
        .await?;
        if open.is_some() {
            return Ok(open);
        }
        let linked: Option<String> = sqlx::query_scalar(
            "SELECT e.batch_id FROM batch_entries e JOIN batches b ON b.id = e.batch_id
             WHERE e.request_id = $1 AND e.batch_id <> $2 AND b.created_at > $3
               AND NOT EXISTS (SELECT 1 FROM batches u WHERE u.source = 'undo' AND u.source_name = e.batch_id)
             LIMIT 1",
        )
        .bind(original)
        .bind(&batch)
        .bind(created)
        .fetch_optional(&self.pool)
        .await?;
        Ok(linked)
    }

    /// Marks `original` as undone by `undo_batch`: it no longer answers a
    /// resubmission, and a retry of its batch leaves it alone.
    pub async fn mark_undone(&self, original: &str, undo_batch: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE requests SET undone_by = $1 WHERE id = $2 AND undone_by IS NULL")
            .bind(undo_batch)
            .bind(original)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::domain::Outcome;
    use crate::store::{ClaimResult, Finish, chunk_of, scratch_batch, scratch_store};

    /// An undone request is no longer reopened by a retry of its batch,
    /// nor one an undo is about to give back.
    #[tokio::test]
    async fn a_retry_leaves_an_undone_request_alone() {
        let (_dir, _url, store) = scratch_store().await;
        let batch = scratch_batch(&store).await;
        let jobs = store
            .write_intake_chunk(
                &batch,
                crate::domain::RunMode::Live,
                None,
                chunk_of(&["u1"]),
            )
            .await
            .unwrap();
        let id = jobs[0].request_id.clone();
        let ClaimResult::Claimed(_) = store
            .claim(&id, "w", Duration::from_secs(60))
            .await
            .unwrap()
        else {
            panic!("not claimed");
        };
        let failed = Finish {
            outcome: Outcome::Failed,
            roles_removed: vec!["role_a".into()],
            error_code: Some("http_403".into()),
            error_message: Some("no".into()),
        };
        store.finish(&id, "w", &failed, 0, &[]).await.unwrap();
        assert_eq!(
            store
                .reopenable(&batch, &[Outcome::Failed])
                .await
                .unwrap()
                .len(),
            1
        );
        // An undo of it waiting to run keeps it closed too.
        let undo = scratch_batch(&store).await;
        let row = super::UndoRow {
            line: 2,
            undoes: id.clone(),
            target: chunk_of(&["u1"]).accepted.remove(0).target,
            reason: None,
            removal: crate::domain::Removal::default(),
        };
        store.write_undo_rows(&undo, &[row]).await.unwrap();
        assert!(
            store
                .reopenable(&batch, &[Outcome::Failed])
                .await
                .unwrap()
                .is_empty()
        );
        store.mark_undone(&id, "undo-batch").await.unwrap();
        assert!(
            store
                .reopenable(&batch, &[Outcome::Failed])
                .await
                .unwrap()
                .is_empty()
        );
        let reopened = store
            .reopen(&crate::store::Reopening {
                batch_id: &batch,
                outcomes: &[Outcome::Failed],
                run: &[id],
                back: &[],
                mode: crate::domain::RunMode::Live,
                halt: None,
                actor: &crate::domain::Actor::named("test"),
                detail: serde_json::json!({}),
            })
            .await
            .unwrap();
        assert!(reopened.is_empty());
        store.close().await;
    }
}
