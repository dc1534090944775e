//! Writing one chunk of validated CSV rows: new requests, links to open or
//! recently successful ones, and rejected rows, in one transaction.

mod postgres;
mod sqlite;

use std::collections::HashMap;

use super::{Backend, Store, StoreError};
use crate::domain::{IdempotencyKey, Target};

/// The columns a new request is inserted with, in bind order.
const REQUEST_INSERT_COLUMNS: &str = "id, batch_id, provider, organization_id, user_id,
             transfer_to_department_id, reason, effective_at, idempotency_key, dry_run, created_at";

/// A CSV row that passed validation.
#[derive(Debug, Clone)]
pub struct AcceptedRow {
    pub line: u64,
    pub target: Target,
    pub reason: Option<String>,
    /// Not before this instant (unix ms).
    pub effective_at: Option<i64>,
}

/// A CSV row refused at intake, with the reason.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RejectedRow {
    pub line: u64,
    pub code: String,
    pub message: String,
    pub provider: Option<String>,
    pub organization_id: Option<String>,
    pub user_id: Option<String>,
}

/// A slice of an intake, written atomically.
#[derive(Debug, Default, Clone)]
pub struct IntakeChunk {
    pub accepted: Vec<AcceptedRow>,
    pub rejected: Vec<RejectedRow>,
}

/// A request that needs a queue job.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub request_id: String,
    pub effective_at: Option<i64>,
}

impl Store {
    /// Stores a chunk and returns the requests it created (which need jobs).
    /// A row whose key matches an open request, or one that succeeded after
    /// `dedupe_since` (unix ms), links to it instead of creating work.
    /// Intakes take turns on both engines: a row whose key another upload
    /// is inserting at the same moment must link to that request, not
    /// collide with it on the open-key index.
    pub async fn write_intake_chunk(
        &self,
        batch_id: &str,
        dry_run: bool,
        dedupe_since: Option<i64>,
        chunk: &IntakeChunk,
    ) -> Result<Vec<NewJob>, StoreError> {
        match self.backend() {
            Backend::Sqlite => {
                // SQLite's writer thread takes the chunk (a copy of its
                // rows: about 0.2 µs a row, against several for each
                // statement sent through sqlx's connection thread).
                let write = ChunkWrite {
                    batch_id: batch_id.to_owned(),
                    dry_run,
                    dedupe_since,
                    chunk: chunk.clone(),
                };
                self.group
                    .run(move |tx| sqlite::write_chunk(tx, &write))
                    .await
            }
            Backend::Postgres => {
                postgres::write_chunk(self, batch_id, dry_run, dedupe_since, chunk).await
            }
        }
    }
}

/// A chunk handed to SQLite's writer thread.
struct ChunkWrite {
    batch_id: String,
    dry_run: bool,
    dedupe_since: Option<i64>,
    chunk: IntakeChunk,
}

const ADD_REJECTED_SQL: &str =
    "UPDATE batches SET rejected_rows = rejected_rows + $1 WHERE id = $2";

/// Each accepted row's idempotency key, in order.
fn keys_of(chunk: &IntakeChunk) -> Vec<String> {
    chunk
        .accepted
        .iter()
        .map(|r| IdempotencyKey::of(&r.target).as_str().to_owned())
        .collect()
}

/// What a chunk writes once the work its keys already have is known.
struct ChunkPlan<'a> {
    /// New requests: id, row, key.
    new_rows: Vec<(String, &'a AcceptedRow, &'a str)>,
    /// Every accepted line and the request it became or links to.
    entries: Vec<(u64, String)>,
    /// The new requests, which need queue jobs.
    created: Vec<NewJob>,
}

impl<'a> ChunkPlan<'a> {
    /// `linked` maps a key to the request its rows link to; a key seen a
    /// second time in the chunk links to the request its first row made
    /// (except in a dry run, where every row stands alone).
    fn of(
        chunk: &'a IntakeChunk,
        keys: &'a [String],
        mut linked: HashMap<String, String>,
        dry_run: bool,
    ) -> ChunkPlan<'a> {
        let mut plan = ChunkPlan {
            new_rows: Vec::new(),
            entries: Vec::with_capacity(keys.len()),
            created: Vec::new(),
        };
        for (row, key) in chunk.accepted.iter().zip(keys) {
            let request_id = match linked.get(key) {
                Some(id) => id.clone(),
                None => {
                    let id = ulid::Ulid::new().to_string();
                    if !dry_run {
                        linked.insert(key.clone(), id.clone());
                    }
                    plan.new_rows.push((id.clone(), row, key.as_str()));
                    plan.created.push(NewJob {
                        request_id: id.clone(),
                        effective_at: row.effective_at,
                    });
                    id
                }
            };
            plan.entries.push((row.line, request_id));
        }
        plan
    }
}
