//! Bookkeeping of the intake surfaces: API idempotency keys and drop-folder
//! files.

use sqlx::Row;

use super::{Store, StoreError, now_ms};

/// The stored first answer to an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct IdempotentAnswer {
    pub body_sha256: String,
    pub status: u16,
    pub response: String,
}

/// Where a drop-folder file is (`dropfolder_files.state`), parsed where
/// the row is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropFileState {
    /// Taken into processing; its batch may not exist yet.
    Intake,
    /// Its batch is stored and runs.
    Running,
    /// Moved to `done/` with its report.
    Done,
    /// Moved to `failed/` with its errors or report.
    Failed,
}

impl DropFileState {
    pub fn as_str(self) -> &'static str {
        match self {
            DropFileState::Intake => "intake",
            DropFileState::Running => "running",
            DropFileState::Done => "done",
            DropFileState::Failed => "failed",
        }
    }

    /// The state of a stored value; one this version does not know reads
    /// as not finished, as it always has.
    fn parse(s: &str) -> DropFileState {
        match s {
            "running" => DropFileState::Running,
            "done" => DropFileState::Done,
            "failed" => DropFileState::Failed,
            _ => DropFileState::Intake,
        }
    }

    /// Whether the file has left `processing/`.
    pub fn is_finished(self) -> bool {
        matches!(self, DropFileState::Done | DropFileState::Failed)
    }
}

/// A drop-folder file known by its content.
#[derive(Debug, Clone)]
pub struct DropFile {
    pub sha256: String,
    pub file_name: String,
    pub batch_id: Option<String>,
    pub state: DropFileState,
}

impl Store {
    pub async fn idempotent_answer(
        &self,
        key: &str,
    ) -> Result<Option<IdempotentAnswer>, StoreError> {
        let row =
            sqlx::query("SELECT body_sha256, status, response FROM api_idempotency WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| IdempotentAnswer {
            body_sha256: r.get("body_sha256"),
            status: r.get::<i64, _>("status") as u16,
            response: r.get("response"),
        }))
    }

    /// Reserves an `Idempotency-Key` for an upload about to be taken in;
    /// false when the key is already taken (answered, or still in progress).
    pub async fn reserve_key(&self, key: &str, body_sha256: &str) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO api_idempotency (key, body_sha256, batch_id, status, response, created_at)
             VALUES ($1, $2, '', 0, '', $3) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(body_sha256)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Stores the answer of a reserved key.
    pub async fn remember_answer(
        &self,
        key: &str,
        batch_id: &str,
        status: u16,
        response: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_idempotency SET batch_id = $1, status = $2, response = $3 WHERE key = $4",
        )
        .bind(batch_id)
        .bind(status as i64)
        .bind(response)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Frees a reserved key whose upload failed before it had an answer.
    pub async fn release_key(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM api_idempotency WHERE key = $1 AND status = 0")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn drop_file(&self, sha256: &str) -> Result<Option<DropFile>, StoreError> {
        let row = sqlx::query(
            "SELECT sha256, file_name, batch_id, state FROM dropfolder_files WHERE sha256 = $1",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| DropFile {
            sha256: r.get("sha256"),
            file_name: r.get("file_name"),
            batch_id: r.get("batch_id"),
            state: DropFileState::parse(&r.get::<String, _>("state")),
        }))
    }

    /// Records a file taken into processing (before its batch exists).
    pub async fn record_drop_file(
        &self,
        sha256: &str,
        job: &str,
        file_name: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO dropfolder_files (sha256, job, file_name, state, created_at) VALUES ($1, $2, $3, 'intake', $4)
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(sha256)
        .bind(job)
        .bind(file_name)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn update_drop_file(
        &self,
        sha256: &str,
        batch_id: Option<&str>,
        state: DropFileState,
    ) -> Result<(), StoreError> {
        let finished = state.is_finished().then(now_ms);
        sqlx::query(
            "UPDATE dropfolder_files SET batch_id = COALESCE($1, batch_id), state = $2, finished_at = COALESCE($3, finished_at)
             WHERE sha256 = $4",
        )
        .bind(batch_id)
        .bind(state.as_str())
        .bind(finished)
        .bind(sha256)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Requests not final yet, across all batches (queue depth).
    pub async fn open_requests(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE outcome IS NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
