//! Writing one chunk of validated CSV rows: new requests, links to open or
//! recently successful ones, and rejected rows, in one transaction.

mod postgres;
mod sqlite;

use std::collections::HashMap;

use super::{Backend, Store, StoreError};
use crate::domain::{IdempotencyKey, RunMode, Target};

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
    ///
    /// The chunk is taken by value: SQLite's writer thread owns it while it
    /// writes, so its rows move there instead of being copied.
    pub async fn write_intake_chunk(
        &self,
        batch_id: &str,
        mode: RunMode,
        dedupe_since: Option<i64>,
        chunk: IntakeChunk,
    ) -> Result<Vec<NewJob>, StoreError> {
        match self.backend() {
            Backend::Sqlite => {
                let write = ChunkWrite {
                    batch_id: batch_id.to_owned(),
                    mode,
                    dedupe_since,
                    chunk,
                };
                self.group
                    .run(move |tx| sqlite::write_chunk(tx, &write))
                    .await
            }
            Backend::Postgres => {
                postgres::write_chunk(self, batch_id, mode, dedupe_since, &chunk).await
            }
        }
    }
}

/// A chunk handed to SQLite's writer thread.
struct ChunkWrite {
    batch_id: String,
    mode: RunMode,
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
        .map(|r| IdempotencyKey::of(&r.target).into_string())
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
    /// (except in a dry run or a preview, where every row stands alone).
    ///
    /// New requests come in key order, and their ids rise in that order:
    /// the open-key index is then written front to back, each of its pages
    /// once per chunk (and for a file sorted by user, only its last pages),
    /// and the rows' own order on disk, which the enqueue later reads in id
    /// order, is the same order.
    fn of(
        chunk: &'a IntakeChunk,
        keys: &'a [String],
        mut linked: HashMap<String, String>,
        alone: bool,
    ) -> ChunkPlan<'a> {
        let mut fresh = Vec::new();
        let mut first_rows = std::collections::HashSet::new();
        for (i, key) in keys.iter().enumerate() {
            if !linked.contains_key(key) && (alone || first_rows.insert(key.as_str())) {
                fresh.push(i);
            }
        }
        // Stable: a dry run's rows of one key keep their line order.
        fresh.sort_by_key(|&i| keys[i].as_str());
        let mut ids = ulid::Generator::new();
        let mut row_ids: Vec<Option<String>> = vec![None; keys.len()];
        let mut plan = ChunkPlan {
            new_rows: Vec::with_capacity(fresh.len()),
            entries: Vec::with_capacity(keys.len()),
            created: Vec::with_capacity(fresh.len()),
        };
        for i in fresh {
            // Past 2^80 ids in one millisecond the generator gives up.
            let id = ids
                .generate()
                .unwrap_or_else(|_| ulid::Ulid::new())
                .to_string();
            let row = &chunk.accepted[i];
            if !alone {
                linked.insert(keys[i].clone(), id.clone());
            }
            plan.new_rows.push((id.clone(), row, keys[i].as_str()));
            plan.created.push(NewJob {
                request_id: id.clone(),
                effective_at: row.effective_at,
            });
            row_ids[i] = Some(id);
        }
        for ((row, key), own) in chunk.accepted.iter().zip(keys).zip(row_ids) {
            let request_id = own.unwrap_or_else(|| linked[key].clone());
            plan.entries.push((row.line, request_id));
        }
        plan
    }

    /// Links the planned new requests in `linked` (new id to the request
    /// that already does the work) instead of creating them.
    fn link(&mut self, linked: &HashMap<String, String>) {
        if linked.is_empty() {
            return;
        }
        for (_, id) in &mut self.entries {
            if let Some(existing) = linked.get(id) {
                id.clone_from(existing);
            }
        }
        self.new_rows.retain(|(id, ..)| !linked.contains_key(id));
        self.created
            .retain(|job| !linked.contains_key(&job.request_id));
    }
}

/// A batch as `offboard submit t.csv` creates it, for tests.
#[cfg(test)]
pub(crate) async fn scratch_batch(store: &Store) -> String {
    store
        .create_batch(&super::NewBatch {
            source: "cli".into(),
            source_name: Some("t.csv".into()),
            dry_run: false,
            actor: crate::domain::Actor::named("test"),
            origin: "cli",
        })
        .await
        .unwrap()
}

/// A chunk of one accepted row per user (provider `acme`, organization
/// `org_a`, lines from 2), for tests.
#[cfg(test)]
pub(crate) fn chunk_of(users: &[&str]) -> IntakeChunk {
    use crate::domain::{OrgId, ProviderName, UserId};
    IntakeChunk {
        accepted: users
            .iter()
            .enumerate()
            .map(|(i, user)| AcceptedRow {
                line: i as u64 + 2,
                target: Target {
                    provider: ProviderName::new_unchecked("acme"),
                    organization_id: OrgId::new_unchecked("org_a"),
                    user_id: UserId::new_unchecked(*user),
                    transfer_to_department_id: None,
                },
                reason: None,
                effective_at: None,
            })
            .collect(),
        rejected: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_requests_come_in_key_order_with_rising_ids_and_every_line_keeps_its_own() {
        let chunk = chunk_of(&["u3", "u1", "u6", "u2", "u5", "u4"]);
        let keys = keys_of(&chunk);
        let plan = ChunkPlan::of(&chunk, &keys, HashMap::new(), false);
        let planned_keys: Vec<&str> = plan.new_rows.iter().map(|(_, _, k)| *k).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(planned_keys, sorted);
        let ids: Vec<&String> = plan.new_rows.iter().map(|(id, ..)| id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let created: Vec<&String> = plan.created.iter().map(|j| &j.request_id).collect();
        assert_eq!(created, ids);
        // Entries stay in line order, each with the request its row made.
        for ((line, id), row) in plan.entries.iter().zip(&chunk.accepted) {
            assert_eq!(*line, row.line);
            let (_, made, _) = plan.new_rows.iter().find(|(i, ..)| i == id).unwrap();
            assert_eq!(made.line, row.line);
        }
    }

    #[test]
    fn a_key_with_work_links_and_a_repeated_key_links_to_its_first_row() {
        let chunk = chunk_of(&["u1", "u2", "u1"]);
        let keys = keys_of(&chunk);
        let linked = HashMap::from([(keys[1].clone(), "earlier".to_owned())]);
        let plan = ChunkPlan::of(&chunk, &keys, linked, false);
        assert_eq!(plan.new_rows.len(), 1);
        let made = &plan.new_rows[0].0;
        let entries: Vec<&str> = plan.entries.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(entries, [made.as_str(), "earlier", made.as_str()]);

        let dry = ChunkPlan::of(&chunk, &keys, HashMap::new(), true);
        assert_eq!(dry.new_rows.len(), 3, "a dry run's rows stand alone");
        let mut own: Vec<&String> = dry.entries.iter().map(|(_, id)| id).collect();
        own.dedup();
        assert_eq!(own.len(), 3);
    }

    #[test]
    fn linking_after_the_plan_keeps_the_linked_rows_out_of_the_new_work() {
        let chunk = chunk_of(&["u1", "u2"]);
        let keys = keys_of(&chunk);
        let mut plan = ChunkPlan::of(&chunk, &keys, HashMap::new(), false);
        let first = plan.entries[0].1.clone();
        plan.link(&HashMap::from([(first.clone(), "open".to_owned())]));
        assert_eq!(plan.entries[0].1, "open");
        assert_eq!(plan.created.len(), 1);
        assert_ne!(plan.created[0].request_id, first);
        assert!(plan.new_rows.iter().all(|(id, ..)| *id != first));
    }
}
