//! Opening the database. SQLite (one machine) and PostgreSQL (many workers)
//! hold the same tables; our queries go through one `Any` pool written in
//! the SQL both understand, while apalis gets the typed pool it needs.

use std::str::FromStr;
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
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

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
                group: GroupWriter::start(pool.clone(), Backend::Postgres),
                pool,
                queue_pool: QueuePool::Postgres(queue),
            });
        }
        let options = SqliteConnectOptions::from_str(&config.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true);
        // apalis's setup() sets per-connection PRAGMAs (synchronous=OFF among
        // them) on whatever connection runs it; we run its migrations
        // ourselves instead so every pooled connection stays durable.
        let queue = SqlitePoolOptions::new()
            .max_connections(connections)
            .min_connections(1)
            .connect_with(options)
            .await?;
        // The `Any` driver takes only a URL, so the per-connection settings
        // the typed options carry are applied on connect.
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    let busy = format!("PRAGMA busy_timeout = {}", SQLITE_BUSY_TIMEOUT.as_millis());
                    conn.execute(sqlx::AssertSqlSafe(busy)).await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            })
            .connect(&config.url)
            .await?;
        Ok(Store {
            group: GroupWriter::start(pool.clone(), Backend::Sqlite),
            pool,
            queue_pool: QueuePool::Sqlite(queue),
        })
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
                // apalis-sqlite 1.0's ack query picks this index and turns
                // quadratic (apalis-notes.md §5.1); the status indexes serve
                // its other queries.
                sqlx::query("DROP INDEX IF EXISTS LIdx")
                    .execute(pool)
                    .await?;
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

    /// Begins an intake transaction. Intakes take turns on both engines:
    /// a row whose key another upload is inserting at the same moment must
    /// link to that request, not collide with it on the open-key index.
    pub(crate) async fn begin_intake(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let mut tx = self.begin_write().await?;
        if self.backend() == Backend::Postgres {
            // Wrapped so the row holds a bigint: `Any` cannot read `void`.
            sqlx::query(
                "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(hashtext('offboard.intake'))) AS l",
            )
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }
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
