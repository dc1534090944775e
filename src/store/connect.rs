//! Opening the database. SQLite (one machine) and PostgreSQL (many workers)
//! hold the same tables; our queries go through one `Any` pool written in
//! the SQL both understand, while apalis gets the typed pool it needs.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AnyPool, Executor, PgPool, SqlitePool};

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
const POOL_CACHE_SIZE: &str = "-256";

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

/// The typed pool apalis's storage is built on.
#[derive(Debug, Clone)]
pub(crate) enum QueuePool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    queue_pool: QueuePool,
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
    /// Opens (creating a missing SQLite file) and migrates the database.
    pub async fn open(config: &DatabaseConfig) -> Result<Store, StoreError> {
        let store = Self::connect(config).await?;
        // Two processes starting on a fresh database race to migrate; the
        // loser finds the tables made and its second pass is a no-op.
        let mut tries = 0;
        loop {
            match store.migrate().await {
                Ok(()) => return Ok(store),
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::debug!(error = %e, "migration raced another process; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens the pools without migrating.
    pub async fn connect(config: &DatabaseConfig) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let connections = config.max_connections;
        if config.is_postgres() {
            let password = match &config.password_env {
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    StoreError::Config(format!(
                        "database.password_env names {var}, which is not set"
                    ))
                })?),
                None => None,
            };
            let mut typed = PgConnectOptions::from_str(&config.url)?;
            let mut any = AnyConnectOptions::from_str(&config.url)?;
            if let Some(password) = &password {
                typed = typed.password(password);
                any.database_url
                    .set_password(Some(password))
                    .map_err(|()| {
                        StoreError::Config("database.url cannot hold a password".into())
                    })?;
            }
            let queue = PgPoolOptions::new()
                .max_connections(connections)
                .connect_with(typed)
                .await?;
            let pool = AnyPoolOptions::new()
                .max_connections(connections)
                .connect_with(any)
                .await?;
            return Ok(Store {
                group: GroupWriter::start_postgres(pool.clone()),
                pool,
                queue_pool: QueuePool::Postgres(queue),
                clock_offset_ms: 0,
                notify: Default::default(),
                settle_cursors: Default::default(),
                report_readers: None,
            });
        }
        let options = SqliteConnectOptions::from_str(&config.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("cache_size", POOL_CACHE_SIZE);
        // apalis's setup() sets per-connection PRAGMAs (synchronous=OFF among
        // them) on whatever connection runs it; we run its migrations
        // ourselves instead so every pooled connection stays durable.
        let queue = SqlitePoolOptions::new()
            .max_connections(connections)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
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
            queue_pool: QueuePool::Sqlite(queue),
            clock_offset_ms: 0,
            notify: Default::default(),
            settle_cursors: Default::default(),
            report_readers: Some(super::report::Readers::new(options.get_filename())),
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
        match self.queue_pool {
            QueuePool::Sqlite(_) => Backend::Sqlite,
            QueuePool::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) fn queue_pool(&self) -> &QueuePool {
        &self.queue_pool
    }

    /// Applies apalis's and our migrations; a no-op when both are current.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.queue_pool {
            QueuePool::Sqlite(pool) => {
                // Both migrators share `_sqlx_migrations` here, each
                // ignoring the other's versions.
                let mut queue = SqliteStorage::migrations();
                queue.set_ignore_missing(true);
                queue.run(pool).await?;
                for index in UNWANTED_QUEUE_INDEXES {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX IF EXISTS {index}")))
                        .execute(pool)
                        .await?;
                }
                let mut ours = sqlx::migrate!("./migrations/sqlite");
                ours.set_ignore_missing(true);
                ours.run(pool).await?;
            }
            QueuePool::Postgres(pool) => {
                // apalis keeps its history in its own schema; the migrator
                // holds an advisory lock, so concurrent starts take turns.
                PostgresStorage::migrations().run(pool).await?;
                sqlx::migrate!("./migrations/postgres").run(pool).await?;
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
        match &self.queue_pool {
            QueuePool::Sqlite(pool) => pool.close().await,
            QueuePool::Postgres(pool) => pool.close().await,
        }
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

/// apalis-sqlite 1.0 indexes that make its worker's queries scan instead
/// of looking jobs up by id, so a drain slows as the table grows:
/// - `LIdx(lock_by)`: the ack query walks every row this worker ever
///   locked (`../shared/apalis-notes.md` §5.1).
/// - `idx_jobs_status_run_at`: the lock query (`status = 'Queued' OR …`
///   with `id IN json_each(?)`) walks every pending job, on every fetch.
///
/// Our migration `…_jobs_held_index` serves the one query that used them
/// for a good reason: re-enqueueing a dead worker's jobs.
const UNWANTED_QUEUE_INDEXES: [&str; 2] = ["LIdx", "idx_jobs_status_run_at"];

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
    use sqlx::{Connection, Row};

    /// The plan SQLite picks for `sql`. `EXPLAIN` does not check whether
    /// the schema changed since the connection read it, so the connection
    /// must be opened after the migration.
    async fn plan(conn: &mut sqlx::SqliteConnection, sql: &str, params: usize) -> String {
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

    /// Both pools' connections keep a small page cache (`POOL_CACHE_SIZE`);
    /// SQLite's default would be -2000.
    #[tokio::test]
    async fn pooled_connections_keep_a_small_page_cache() {
        let (_dir, _url, store) = crate::store::scratch_store().await;
        let crate::store::QueuePool::Sqlite(queue) = store.queue_pool() else {
            panic!("a scratch store is SQLite");
        };
        let queue_cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(queue)
            .await
            .unwrap();
        let row = sqlx::query("PRAGMA cache_size")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        let pool_cache: i64 = row.get(0);
        let want: i64 = super::POOL_CACHE_SIZE.parse().unwrap();
        assert_eq!((queue_cache, pool_cache), (want, want));
    }

    /// apalis-sqlite 1.0's lock and orphan queries, as it sends them
    /// (queries/task/lock.sql, queries/backend/reenqueue_orphaned.sql):
    /// each must reach its jobs through a key, not by walking every pending
    /// job. Rerun after any apalis upgrade.
    #[tokio::test]
    async fn apalis_worker_queries_find_jobs_by_key() {
        let (_dir, url, store) = crate::store::scratch_store().await;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let lock = plan(
            &mut conn,
            "UPDATE Jobs SET status = 'Running', lock_at = strftime('%s', 'now'), lock_by = ?2
             WHERE id IN (SELECT value FROM json_each(?1))
               AND (status = 'Queued' OR status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))",
            2,
        )
        .await;
        assert!(
            lock.contains("USING INDEX sqlite_autoindex_Jobs_1 (id=?)"),
            "{lock}"
        );
        let orphaned = plan(
            &mut conn,
            r#"UPDATE Jobs SET status = "Pending", done_at = NULL, lock_by = NULL, lock_at = NULL
             WHERE id IN (
                 SELECT Jobs.id FROM Jobs INNER JOIN Workers ON lock_by = Workers.id
                 WHERE (status = "Running" OR status = "Queued")
                   AND strftime('%s', 'now') - Workers.last_seen >= ?1
                   AND Workers.worker_type = ?2
                   AND (?3 IS NULL OR Workers.id != ?3)
                   AND (?4 IS NULL OR Workers.id = ?4))"#,
            4,
        )
        .await;
        assert!(orphaned.contains("offboard_jobs_held"), "{orphaned}");
        assert!(!orphaned.contains("SCAN Jobs"), "{orphaned}");
        store.close().await;
    }

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
