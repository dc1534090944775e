//! Our tables: batches, requests, checkpoints, audit events. One function
//! per query; callers never write SQL, and stored states come out as
//! `domain` enums. The hand-off to the queue (`handoff`) runs the queue's
//! job-writing closure inside our write transaction. The same database
//! (SQLite or PostgreSQL) holds the queue's tables, which the queue opens,
//! migrates and writes itself: nothing here imports apalis. Queries use `$N`
//! parameters and integer flags, which both engines read the same way.

mod batches;
mod connect;
mod events;
mod group;
mod handoff;
mod intake;
mod outbox;
mod purge;
mod rails;
mod report;
mod requests;
mod retry;
mod sessions;
mod sql;
mod surfaces;
mod tokens;
mod trail;
mod undo;

// Every table stamps times with the same clock the audit events use.
use crate::domain::{AuditEvent, now_ms};

pub use batches::{BatchRow, NewBatch};
#[cfg(test)]
pub(crate) use connect::POOL_CACHE_SIZE;
pub use connect::{Backend, Store, database_password, sqlite_options};
pub use group::{WriterTimes, writer_times};
pub(crate) use handoff::{EnqueueMark, WriterTx};
pub use intake::{AcceptedRow, IntakeChunk, NewJob, RejectedRow};
#[cfg(test)]
pub(crate) use intake::{chunk_of, scratch_batch};
pub use outbox::{
    Delivery, DeliveryState, DeliveryStatus, Notice, NotifyEvent, NotifyRoute, NotifyRoutes,
};
pub use rails::{LeftOut, Released};
pub use report::{FIRST_REJECTED, ReportRow, ReportWindow};
pub use requests::{ClaimResult, Claimed, Finish, PlanSaved, RequestRow};
pub use retry::{ReopenError, Reopening};
pub use sessions::{NewSession, SessionRow};
pub use surfaces::{DropFile, DropFileState, IdempotentAnswer};
pub use tokens::{NewToken, TokenHolder, TokenRow};
pub use trail::{TrailCursor, TrailEntry, TrailPage, TrailQuery};
pub use undo::{UndoLink, UndoRow, UndoSource};

/// A failure of the database itself, never of a provider.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// From the SQLite writer's own connection (`group::native`).
    #[error("database error: {0}")]
    Native(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database configuration: {0}")]
    Config(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The worker no longer holds the request's claim (its lease lapsed and
    /// another worker took it): it must stop without writing.
    #[error("the claim on request {0} was lost")]
    ClaimLost(String),
    /// The person a plan resolved is held by another open request; the
    /// plan's checkpoint was not stored (or the claim was lost: the store
    /// tells the two apart before answering its caller).
    #[error("another request acts for the person request {0} resolved to")]
    SubjectHeld(String),
    /// The connection to the database failed while writes were on their
    /// way: whether they were stored is not known.
    #[error(
        "the database connection failed during a write ({0}); it may or may not have been stored"
    )]
    Interrupted(String),
    /// SQLite's write lock stayed taken for the whole busy timeout.
    #[error("the database stayed locked for {0:?}")]
    Locked(std::time::Duration),
}

impl Store {
    /// Runs `work` in a write transaction on SQLite's writer thread and
    /// connection, between two groups of run writes: for bulk writes whose
    /// statements would each be a round trip to sqlx's connection thread.
    /// Fails on PostgreSQL, which has no such connection.
    pub(super) async fn on_sqlite_writer<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.group.run(work).await
    }
}

/// Renders a stored timestamp for people and reports.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A store on a fresh database of the PostgreSQL server named by
/// `OFFBOARD_TEST_POSTGRES_URL`, for unit tests of PostgreSQL's own paths;
/// `None` (with SKIPPED on stderr) when the variable is unset.
#[cfg(test)]
pub(crate) struct ScratchPostgres {
    pub(crate) store: Store,
    server: String,
    name: String,
}

#[cfg(test)]
impl ScratchPostgres {
    pub(crate) async fn create(test: &str) -> Option<ScratchPostgres> {
        use sqlx::{Connection, Executor};
        let Ok(server) = std::env::var("OFFBOARD_TEST_POSTGRES_URL") else {
            eprintln!(
                "SKIPPED {test}: OFFBOARD_TEST_POSTGRES_URL is not set (no PostgreSQL server)"
            );
            return None;
        };
        let name = format!("offboard_unit_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(&server).await.unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap();
        conn.close().await.unwrap();
        let store = Store::open(&crate::config::DatabaseConfig {
            url: crate::config::with_database(&server, &name),
            ..crate::config::DatabaseConfig::default()
        })
        .await
        .unwrap();
        Some(ScratchPostgres {
            store,
            server,
            name,
        })
    }

    /// `n` open requests `r1`…`rn` of `batch`, written in one statement
    /// (no intake), so the server has no statistics of them yet.
    pub(crate) async fn open_requests(&self, batch: &str, n: i64) {
        sqlx::query(
            "INSERT INTO requests (id, batch_id, provider, organization_id, user_id,
                                   idempotency_key, dry_run, created_at)
             SELECT 'r' || i, $1, 'p', 'o', 'u' || i, 'k' || i, 0, 0
             FROM generate_series(1, $2) AS i",
        )
        .bind(batch)
        .bind(n)
        .execute(&self.store.pool)
        .await
        .unwrap();
    }

    pub(crate) async fn drop(self) {
        use sqlx::{Connection, Executor};
        self.store.close().await;
        let mut conn = sqlx::PgConnection::connect(&self.server).await.unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .await
        .unwrap();
    }
}

/// The plan SQLite picks for `sql`. `EXPLAIN` does not check whether the
/// schema changed since the connection read it, so the connection must be
/// opened after the migration.
#[cfg(test)]
pub(crate) async fn query_plan(
    conn: &mut sqlx::SqliteConnection,
    sql: &str,
    params: usize,
) -> String {
    use sqlx::Row;
    let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
    for _ in 0..params {
        q = q.bind(None::<String>);
    }
    let rows = q.fetch_all(conn).await.unwrap();
    rows.iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A store on a fresh SQLite file for unit tests: the directory that holds
/// it (keep it alive), the file's URL, and the store, migrated.
#[cfg(test)]
pub(crate) async fn scratch_store() -> (tempfile::TempDir, String, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    let store = Store::open(&crate::config::DatabaseConfig {
        url: url.clone(),
        ..crate::config::DatabaseConfig::default()
    })
    .await
    .unwrap();
    (dir, url, store)
}
