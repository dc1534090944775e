//! The decisions a person makes about work the rails stopped or must
//! guard: approving a halted batch or releasing a held one, retrying what
//! failed, cancelling, and undoing a batch. Each is recorded with its
//! actor.

mod approve;
mod cancel;
mod retry;
mod undo;

pub use approve::{Approval, approve, hold_owner, submitters};
pub use cancel::{Cancellation, cancel, expire_holds};
pub use retry::{Retried, retry};
pub use undo::{Undo, undo};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RailError {
    #[error("no batch or request {0}")]
    NotFound(String),
    #[error("batch {0} is not halted: there is nothing to approve")]
    NotHalted(String),
    #[error("--only names {0}, who is not in the batch's plan")]
    NotInBatch(String),
    #[error(
        "batch {batch} was taken in {age_hours} h ago, more than [safety] retry_max_age = {max}: the people in it may have come back since; retry with --force (?force=true) to reopen it anyway"
    )]
    RetryTooOld {
        batch: String,
        age_hours: i64,
        max: String,
    },
    #[error(
        "the hold on batch {batch} expired (not released within [safety] hold_ttl = {ttl}); it is cancelled: submit the file again"
    )]
    HoldExpired { batch: String, ttl: String },
    #[error(
        "batch {batch} is still being previewed ({open} request(s) to plan): release it once `offboard status {batch}` shows none open"
    )]
    PreviewNotReady { batch: String, open: u64 },
    #[error(
        "batch {0} is held, cancelled, still being taken in, or a released preview waiting for its approval (approve or cancel it first): there is nothing to retry now"
    )]
    NotRetryable(String),
    #[error(
        "four_eyes_required: {actor} submitted batch {batch} (or retried or released it), so another person must approve it ([safety] four_eyes)"
    )]
    FourEyes { batch: String, actor: String },
    #[error("batch {0} is halted: approving it needs the approver role")]
    NeedsApprover(String),
    #[error(
        "batch {0} is an undo batch; an undo cannot be undone (offboard the people again instead)"
    )]
    UndoOfUndo(String),
    #[error(
        "batch {0} has no request of its own to undo (a dry run, or rows that reported earlier batches' requests)"
    )]
    NothingToUndo(String),
    #[error(
        "batch {batch} is not finished ({open} request(s) still to run or waiting for approval): cancel it or let it finish before undoing it"
    )]
    NotFinished { batch: String, open: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
}
