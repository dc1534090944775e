//! One CSV intake from start to finish: a batch, its rows stored chunk by
//! chunk, and a queue job for every request it created.

use std::io::Read;

use super::{CsvIntake, IntakeError, ProviderCatalog};
use crate::domain::now_ms;
use crate::domain::{Actor, Halt, HaltCode, RunMode};
use crate::queue::{Queue, QueueError};
use crate::store::{NewBatch, RejectedRow, Store, StoreError};

/// Rows per transaction: large enough to amortise the commit (each one
/// rewrites the index pages it touched), small enough to keep memory flat
/// for any file size.
const CHUNK_ROWS: usize = 5_000;
/// Rejections kept for printing; all of them are stored.
const MAX_REJECTIONS_KEPT: usize = 1_000;

/// How an intake should treat its rows.
#[derive(Debug, Clone)]
pub struct IntakeOptions {
    pub source: String,
    pub source_name: Option<String>,
    pub dry_run: bool,
    /// Store a preview: plan every request, remove nothing, and wait for
    /// the submitter to release it (`offboard approve`).
    pub hold: bool,
    /// Successful requests younger than this answer for a resubmission;
    /// `None` (`--force`) plans every row afresh.
    pub dedupe_window: Option<std::time::Duration>,
    /// More accepted rows than this halt the batch until it is approved
    /// (`[safety] max_batch_requests`); `None` when already approved
    /// (`run --yes`).
    pub max_requests: Option<u64>,
    /// Who submits it.
    pub actor: Actor,
    /// Where it came from, as its `submitted` event says: `upload`, `cli`,
    /// `dropfolder`.
    pub origin: &'static str,
}

impl IntakeOptions {
    /// How the batch's requests run.
    pub fn mode(&self) -> RunMode {
        if self.dry_run {
            RunMode::DryRun
        } else if self.hold {
            RunMode::Preview
        } else {
            RunMode::Live
        }
    }
}

/// What an intake did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IntakeSummary {
    pub batch_id: String,
    pub accepted_rows: u64,
    pub rejected_count: u64,
    /// The first rejections, in line order.
    pub rejected_rows: Vec<RejectedRow>,
    /// Requests created (the rest linked to earlier ones).
    pub new_requests: u64,
    /// Why the batch waits for approval, when it does.
    pub halted: Option<String>,
    pub halt_code: Option<HaltCode>,
    /// Stored as a preview that waits for its release.
    pub held: bool,
    /// Rows of only delimiters and spaces (`,,,`), skipped.
    pub blank_lines_ignored: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The file cannot be used: the caller's to fix.
    #[error(transparent)]
    Input(IntakeError),
    /// Keeping track of the file's people failed: ours, not the file's.
    #[error(transparent)]
    People(super::people::PeopleError),
    #[error("the CSV has no valid row ({rejected} rejected)")]
    NoValidRow { rejected: u64, batch_id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl From<IntakeError> for SubmitError {
    fn from(e: IntakeError) -> Self {
        match e {
            IntakeError::People(e) => SubmitError::People(e),
            e => SubmitError::Input(e),
        }
    }
}

/// Reads `input`, stores the batch and enqueues its new requests.
pub async fn submit_csv<R: Read>(
    store: &Store,
    queue: &Queue,
    catalog: &ProviderCatalog,
    input: R,
    options: &IntakeOptions,
) -> Result<IntakeSummary, SubmitError> {
    let mut csv = CsvIntake::new(input, catalog)?;
    let batch_id = store
        .create_batch(&NewBatch {
            source: options.source.clone(),
            source_name: options.source_name.clone(),
            dry_run: options.dry_run,
            actor: options.actor.clone(),
            origin: options.origin,
        })
        .await?;
    // Nothing of the batch runs until the whole file is in and checked
    // against the cap, even if another process sweeps for unqueued work.
    store.mark_intake(&batch_id).await?;
    match take_rows(store, &mut csv, &batch_id, options).await {
        Ok(summary) => finish_intake(store, queue, summary, options).await,
        Err(e) => {
            // A file that broke off half-way leaves nothing runnable behind.
            store
                .cancel_batch(
                    &batch_id,
                    "the intake of this batch failed",
                    &Actor::system(),
                )
                .await?;
            Err(e)
        }
    }
}

async fn take_rows<R: Read>(
    store: &Store,
    csv: &mut CsvIntake<'_, R>,
    batch_id: &str,
    options: &IntakeOptions,
) -> Result<IntakeSummary, SubmitError> {
    let dedupe_since = options
        .dedupe_window
        .map(|w| now_ms().saturating_sub(crate::config::millis(w)));
    let mut summary = IntakeSummary {
        batch_id: batch_id.to_owned(),
        accepted_rows: 0,
        rejected_count: 0,
        rejected_rows: Vec::new(),
        new_requests: 0,
        halted: None,
        halt_code: None,
        held: false,
        blank_lines_ignored: 0,
    };
    let mut next = csv.next_chunk(CHUNK_ROWS)?;
    while let Some(chunk) = next {
        let (accepted, rejected) = (chunk.accepted.len() as u64, chunk.rejected.len() as u64);
        // The summary keeps the first rejections; the chunk itself moves to
        // the store.
        let room = MAX_REJECTIONS_KEPT.saturating_sub(summary.rejected_rows.len());
        summary
            .rejected_rows
            .extend(chunk.rejected.iter().take(room).cloned());
        let write = store.write_intake_chunk(batch_id, options.mode(), dedupe_since, chunk);
        // The next chunk is read while this one is written: `join` polls
        // the write first, which hands the chunk to SQLite's writer thread,
        // then reads on this one. On PostgreSQL the write's first poll only
        // takes a connection and begins; its statements wait for the read,
        // so the two take as long as one after the other did.
        let (jobs, read) = futures::future::join(write, async { csv.next_chunk(CHUNK_ROWS) }).await;
        let jobs = jobs?;
        summary.accepted_rows += accepted;
        summary.rejected_count += rejected;
        summary.new_requests += jobs.len() as u64;
        crate::metrics::rows(accepted, rejected);
        next = read?;
    }
    summary.blank_lines_ignored = csv.blank_rows();
    Ok(summary)
}

async fn finish_intake(
    store: &Store,
    queue: &Queue,
    mut summary: IntakeSummary,
    options: &IntakeOptions,
) -> Result<IntakeSummary, SubmitError> {
    let batch_id = summary.batch_id.clone();
    if summary.accepted_rows == 0 {
        store.end_intake(&batch_id).await?;
        return Err(SubmitError::NoValidRow {
            rejected: summary.rejected_count,
            batch_id,
        });
    }
    // A preview only plans; the cap is checked when it is released.
    if options.mode() == RunMode::Preview {
        store.hold_batch(&batch_id, &options.actor).await?;
        queue.enqueue_batch(store, &batch_id).await?;
        summary.held = true;
        return Ok(summary);
    }
    // Checked before the first job exists: a wrong 20,000-row file does
    // nothing until a person approves it.
    if let Some(cap) = options
        .max_requests
        .filter(|cap| summary.accepted_rows > *cap)
    {
        let halt = Halt::new(
            HaltCode::MaxBatchRequests,
            format!(
                "{} requests exceed [safety] max_batch_requests = {cap}; run `offboard approve {batch_id}` to apply them",
                summary.accepted_rows
            ),
        );
        store.halt_batch(&batch_id, &halt).await?;
        summary.halt_code = Some(halt.code);
        summary.halted = Some(halt.reason);
        return Ok(summary);
    }
    store.end_intake(&batch_id).await?;
    queue.enqueue_batch(store, &batch_id).await?;
    Ok(summary)
}
