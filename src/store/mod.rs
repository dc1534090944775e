//! Our tables: batches, requests, checkpoints, audit events. One function
//! per query; callers never write SQL. The same SQLite file holds apalis's
//! queue tables.

mod audit;
mod batches;
mod connect;
mod intake;
mod rails;
mod report;
mod requests;
mod surfaces;

pub use audit::AuditEvent;
pub use batches::{BatchRow, NewBatch};
pub use connect::Store;
pub use intake::{AcceptedRow, IntakeChunk, NewJob, RejectedRow};
pub use report::ReportRow;
pub use requests::{ClaimResult, Finish, RequestRow};
pub use surfaces::{DropFile, IdempotentAnswer};

/// A failure of the database itself, never of a provider.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The worker no longer holds the request's claim (its lease lapsed and
    /// another worker took it): it must stop without writing.
    #[error("the claim on request {0} was lost")]
    ClaimLost(String),
}

/// Milliseconds since the Unix epoch, the timestamp unit of every table.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Renders a stored timestamp for people and reports.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
