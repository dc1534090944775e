//! apalis's side of the database: the typed pool its storage is built on,
//! its migrations, and the index changes we make to its `Jobs` table. The
//! store opens its own pool on the same database and never names apalis;
//! `database::open` opens and migrates both, this side first.

use std::str::FromStr;

use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{PgPool, SqlitePool};

use crate::config::DatabaseConfig;
use crate::store::{Backend, StoreError, database_password, sqlite_options};

/// The typed pool apalis's storage is built on.
#[derive(Debug, Clone)]
pub enum QueuePool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// apalis-sqlite 1.0 indexes that make its worker's queries scan instead
/// of looking jobs up by id, so a drain slows as the table grows:
/// - `LIdx(lock_by)`: the ack query walks every row this worker ever
///   locked (`../shared/apalis-notes.md` §5.1).
/// - `idx_jobs_status_run_at`: the lock query (`status = 'Queued' OR …`
///   with `id IN json_each(?)`) walks every pending job, on every fetch.
const UNWANTED_QUEUE_INDEXES: [&str; 2] = ["LIdx", "idx_jobs_status_run_at"];

/// The one query that used those indexes for a good reason, re-enqueueing
/// a dead worker's jobs (apalis's `reenqueue_orphaned` and
/// `reenqueue_abandoned`), finds them through this one: partial on exactly
/// their terms, so the lock and ack queries cannot pick it over the
/// primary key. Databases migrated before the queue owned it got it from
/// our migration `…_jobs_held_index`, hence `IF NOT EXISTS`.
const JOBS_HELD_INDEX: &str = "CREATE INDEX IF NOT EXISTS offboard_jobs_held ON Jobs(lock_by)
WHERE status = 'Running' OR status = 'Queued'";

impl QueuePool {
    /// Opens the pool without migrating.
    pub async fn connect(config: &DatabaseConfig) -> Result<QueuePool, StoreError> {
        let connections = config.max_connections;
        if config.is_postgres() {
            let mut options = PgConnectOptions::from_str(&config.url)?;
            if let Some(password) = database_password(config)? {
                options = options.password(&password);
            }
            let pool = PgPoolOptions::new()
                .max_connections(connections)
                .connect_with(options)
                .await?;
            return Ok(QueuePool::Postgres(pool));
        }
        // apalis's setup() sets per-connection PRAGMAs (synchronous=OFF among
        // them) on whatever connection runs it; we run its migrations
        // ourselves instead so every pooled connection stays durable.
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(sqlite_options(&config.url)?)
            .await?;
        Ok(QueuePool::Sqlite(pool))
    }

    pub fn backend(&self) -> Backend {
        match self {
            QueuePool::Sqlite(_) => Backend::Sqlite,
            QueuePool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies apalis's migrations and our changes to its indexes; a no-op
    /// when they are current.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            QueuePool::Sqlite(pool) => {
                // apalis and the store share `_sqlx_migrations` here, each
                // ignoring the other's versions.
                let mut apalis = SqliteStorage::migrations();
                apalis.set_ignore_missing(true);
                apalis.run(pool).await?;
                for index in UNWANTED_QUEUE_INDEXES {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX IF EXISTS {index}")))
                        .execute(pool)
                        .await?;
                }
                sqlx::query(JOBS_HELD_INDEX).execute(pool).await?;
            }
            QueuePool::Postgres(pool) => {
                // apalis keeps its history in its own schema; the migrator
                // holds an advisory lock, so concurrent starts take turns.
                PostgresStorage::migrations().run(pool).await?;
            }
        }
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            QueuePool::Sqlite(pool) => pool.close().await,
            QueuePool::Postgres(pool) => pool.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Row};

    use super::QueuePool;
    use crate::queue::scratch_queue as scratch;
    use crate::store::query_plan as plan;

    /// Both pools' connections keep a small page cache (`POOL_CACHE_SIZE`);
    /// SQLite's default would be -2000.
    #[tokio::test]
    async fn pooled_connections_keep_a_small_page_cache() {
        let (_dir, _url, store, pool) = scratch().await;
        let QueuePool::Sqlite(queue) = &pool else {
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
        let want: i64 = crate::store::POOL_CACHE_SIZE.parse().unwrap();
        assert_eq!((queue_cache, pool_cache), (want, want));
        store.close().await;
        pool.close().await;
    }

    /// apalis-sqlite 1.0's lock and orphan queries, as it sends them
    /// (queries/task/lock.sql, queries/backend/reenqueue_orphaned.sql):
    /// each must reach its jobs through a key, not by walking every pending
    /// job. Rerun after any apalis upgrade.
    #[tokio::test]
    async fn apalis_worker_queries_find_jobs_by_key() {
        let (_dir, url, store, pool) = scratch().await;
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
        pool.close().await;
    }
}
