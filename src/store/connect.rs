//! Opening our side of the database. SQLite (one machine) and PostgreSQL
//! (many workers) hold the same tables; our queries go through one `Any`
//! pool written in the SQL both understand. The queue opens its own pool
//! on the same database (`queue::QueuePool`, with the settings here) and
//! `database::open` migrates both, the queue's first.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AnyPool, Connection, Executor, SqlSafeStr};

use super::StoreError;
use super::group::GroupWriter;
use crate::config::DatabaseConfig;

/// How long a connection waits for SQLite's write lock.
pub(super) const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Page cache of each pooled SQLite connection, in KiB when negative (the
/// writer keeps SQLite's default 2 MB). The run's writes and the claim's
/// reads go through the writer, so the pools' connections mostly read a
/// few hot pages of apalis's `Jobs`, and 2 MB caches on up to 32 of them
/// only grew the RSS with the database (BENCHMARKS.md, "Why: small pool
/// caches").
pub(crate) const POOL_CACHE_SIZE: &str = "-256";

/// The database engine behind the store and the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
    pub(super) group: GroupWriter,
    /// How far this process's clock is off (tests stand in for a host with
    /// a wrong clock); zero otherwise.
    clock_offset_ms: i64,
    /// Which notification channels want which events (`store::outbox`).
    pub(super) notify: super::outbox::RoutesCell,
    /// Where each batch's last settle check stopped (`store::outbox`).
    pub(super) settle_cursors: super::outbox::SettleCursors,
    /// SQLite's report pages, read natively (`store::report`); `None` on
    /// PostgreSQL.
    pub(super) report_readers: Option<Arc<super::report::Readers>>,
}

impl Store {
    /// Opens (creating a missing SQLite file) and migrates our tables
    /// alone, for the store's own tests: `database::open` opens and
    /// migrates the queue's side too.
    #[cfg(test)]
    pub(crate) async fn open(config: &DatabaseConfig) -> Result<Store, StoreError> {
        let store = Self::connect(config).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the pools without migrating.
    pub async fn connect(config: &DatabaseConfig) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let connections = config.max_connections;
        if config.is_postgres() {
            let mut any = AnyConnectOptions::from_str(&config.url)?;
            if let Some(password) = &database_password(config)? {
                any.database_url
                    .set_password(Some(password))
                    .map_err(|()| {
                        StoreError::Config("database.url cannot hold a password".into())
                    })?;
            }
            let pool = AnyPoolOptions::new()
                .max_connections(connections)
                .connect_with(any)
                .await?;
            return Ok(Store {
                group: GroupWriter::start_postgres(pool.clone()),
                pool,
                backend: Backend::Postgres,
                clock_offset_ms: 0,
                notify: Default::default(),
                settle_cursors: Default::default(),
                report_readers: None,
            });
        }
        let options = sqlite_options(&config.url)?;
        // The `Any` driver takes only a URL: one typed connection first
        // creates a missing file and turns on WAL, which the file keeps.
        sqlx::SqliteConnection::connect_with(&options)
            .await?
            .close()
            .await?;
        let pool = any_sqlite_pool(&config.url, connections, SQLITE_BUSY_TIMEOUT).await?;
        // The group writer gets a connection of its own, on a thread of its
        // own, that never sleeps in SQLite's 1–25 ms busy handler (apalis
        // holds the lock for about 0.1 ms) and sends its statements without
        // a hand-off to another thread each (`group::native`).
        let group = GroupWriter::start_sqlite(options.get_filename())?;
        Ok(Store {
            group,
            pool,
            backend: Backend::Sqlite,
            clock_offset_ms: 0,
            notify: Default::default(),
            settle_cursors: Default::default(),
            report_readers: Some(super::report::Readers::new(
                options.get_filename(),
                connections,
            )),
        })
    }

    /// This process's time in unix ms, for what it stamps (never for
    /// claims, which the database's clock decides).
    pub(crate) fn now_ms(&self) -> i64 {
        super::now_ms() + self.clock_offset_ms
    }

    /// The same store as seen from a host whose clock is `offset_ms` off.
    #[cfg(test)]
    pub(crate) fn with_clock_offset(&self, offset_ms: i64) -> Store {
        Store {
            clock_offset_ms: offset_ms,
            ..self.clone()
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies our migrations; a no-op when they are current. On SQLite
    /// they share `_sqlx_migrations` with the queue's, each migrator
    /// ignoring the other's versions.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => {
                let mut ours = sqlx::migrate!("./migrations/sqlite");
                ours.set_ignore_missing(true);
                let mut migrations = ours.migrations.into_owned();
                for m in &mut migrations {
                    // The index this migration made on apalis's `Jobs` is
                    // the queue's now (`queue::QueuePool::migrate`). The
                    // file stays as it was, its checksum recorded in every
                    // database that ran it; here it runs nothing, so our
                    // tables never wait for apalis's.
                    if m.version == JOBS_HELD_INDEX_MIGRATION {
                        m.sql = "SELECT 1".into_sql_str();
                    }
                }
                ours.migrations = migrations.into();
                ours.run(&self.pool).await?;
            }
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&self.pool)
                    .await?
            }
        }
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(readers) = &self.report_readers {
            readers.close();
        }
        self.group.close().await;
        self.pool.close().await;
    }

    /// Begins a transaction for writes. On SQLite it holds the write lock
    /// from the start, so it never fails half-way with "database is locked"
    /// on upgrade; PostgreSQL locks rows as they are written.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(begin_write(&self.pool, self.backend()).await?)
    }
}

/// `migrations/sqlite/…_jobs_held_index.sql`, which indexed apalis's
/// table before the queue owned that index.
const JOBS_HELD_INDEX_MIGRATION: i64 = 20261201000006;

/// The settings of every pool on a SQLite file, ours and the queue's.
pub fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
    Ok(SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true)
        .pragma("cache_size", POOL_CACHE_SIZE))
}

/// The PostgreSQL password `database.password_env` names, if any.
pub fn database_password(config: &DatabaseConfig) -> Result<Option<String>, StoreError> {
    match &config.password_env {
        Some(var) => std::env::var(var).map(Some).map_err(|_| {
            StoreError::Config(format!(
                "database.password_env names {var}, which is not set"
            ))
        }),
        None => Ok(None),
    }
}

/// A pool of `Any` connections to a SQLite file. The `Any` driver takes
/// only a URL, so the per-connection settings the typed options carry are
/// applied on connect.
async fn any_sqlite_pool(url: &str, max: u32, busy: Duration) -> Result<AnyPool, sqlx::Error> {
    AnyPoolOptions::new()
        .max_connections(max)
        .test_before_acquire(false)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                let busy = format!("PRAGMA busy_timeout = {}", busy.as_millis());
                conn.execute(sqlx::AssertSqlSafe(busy)).await?;
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                let cache = format!("PRAGMA cache_size = {POOL_CACHE_SIZE}");
                conn.execute(sqlx::AssertSqlSafe(cache)).await?;
                Ok(())
            })
        })
        .connect(url)
        .await
}

/// A write transaction on `pool`: on SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`) so it never fails half-way on lock upgrade.
pub(super) async fn begin_write(
    pool: &AnyPool,
    backend: Backend,
) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
    match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => pool.begin().await,
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use crate::store::query_plan as plan;

    /// The start-up sweep for requests that never got a job walks the
    /// partial index that holds only them, in the order it pages, without
    /// sorting the table.
    #[tokio::test]
    async fn unqueued_requests_are_read_through_their_index() {
        let (_dir, url, store) = crate::store::scratch_store().await;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let page = plan(
            &mut conn,
            &super::super::requests::UNENQUEUED_PAGE.replace("$1", "?1"),
            1,
        )
        .await;
        assert!(page.contains("requests_batch_unqueued"), "{page}");
        assert!(!page.contains("TEMP B-TREE"), "{page}");
        store.close().await;
    }

    /// After each run, "is any request of its batch still open?" walks
    /// the batch's entries by their key from the cursor's line, without
    /// sorting and without walking the requests.
    #[tokio::test]
    async fn an_unsettled_request_of_a_batch_is_found_from_a_line() {
        let (_dir, url, store) = crate::store::scratch_store().await;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let sql = super::super::outbox::UNSETTLED_SQL
            .replace("$1", "?1")
            .replace("$2", "?2");
        let walk = plan(&mut conn, &sql, 2).await;
        assert!(walk.contains("(batch_id=? AND line>?)"), "{walk}");
        assert!(!walk.contains("TEMP B-TREE"), "{walk}");
        assert!(!walk.contains("SCAN"), "{walk}");
        store.close().await;
    }

    /// Claiming the person a plan resolved looks for another holder through
    /// the two subject indexes, never by walking the requests.
    #[tokio::test]
    async fn a_subject_claim_reads_only_the_subject_indexes() {
        let (_dir, url, store) = crate::store::scratch_store().await;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let mut sql = super::super::group::SUBJECT_SQL.to_owned();
        for n in (1..=7).rev() {
            sql = sql.replace(&format!("${n}"), &format!("?{n}"));
        }
        let claim = plan(&mut conn, &sql, 7).await;
        assert!(claim.contains("requests_open_subject"), "{claim}");
        assert!(claim.contains("requests_batch_subject"), "{claim}");
        assert!(!claim.contains("SCAN"), "{claim}");
        store.close().await;
    }
}
